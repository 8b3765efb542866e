#!/usr/bin/env bash
# Runs a command against the local cluster:
#
#   scripts/with-cluster.sh cargo test ...
#
# If a cluster is already running it is used and left alone. Otherwise one is
# started for the command and stopped afterwards, also when the command fails
# or this script is interrupted. The command's exit code is preserved. The
# command sees KUBECONFIG and STEPWISE_KUBECONFIG pointing at the cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="$ROOT/scripts/cluster.sh"

(($# > 0)) || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

export KUBECONFIG="$ROOT/.cluster/kubeconfig"
export STEPWISE_KUBECONFIG="$KUBECONFIG"

if "$CLUSTER" status >/dev/null 2>&1; then
  echo "[with-cluster] using the running cluster (left running afterwards)" >&2
  exec "$@"
fi

child=""
stopped=0
up_failed=0
stop_cluster() {
  # A failed `up` has already stopped what it started and kept its logs.
  ((stopped == 0 && up_failed == 0)) || return 0
  stopped=1
  echo "[with-cluster] stopping the cluster started for this command" >&2
  "$CLUSTER" down >&2 || echo "[with-cluster] warning: 'scripts/cluster.sh down' failed" >&2
}
on_signal() {
  local sig="$1" code="$2"
  trap - INT TERM
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -"$sig" "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit "$code"
}
trap stop_cluster EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

out="$("$CLUSTER" up)" || { up_failed=1; echo "[with-cluster] could not start the cluster; not running: $*" >&2; exit 1; }
printf '%s\n' "$out"
if [[ "$out" == "cluster already running"* ]]; then
  # It came up (or recovered) meanwhile: not ours to stop.
  trap - EXIT
fi

# Run the command in the background (stdin kept) so that a signal sent to
# this script is handled at once and forwarded, not deferred until it ends.
{ exec 3<&0; } 2>/dev/null || exec 3</dev/null  # stdin may be closed (CI)
"$@" <&3 &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=""
exit "$rc"
