#!/usr/bin/env bash
# Flux for real, next to the local control plane: source-controller and
# kustomize-controller (built by scripts/build-flux.sh) run out of cluster
# against .cluster/kubeconfig, plus a local git server (git http-backend
# behind scripts/git-http-server.py) that they clone from. Everything
# listens on 127.0.0.1 only, on free ports.
#
#   scripts/gitops.sh up       start them (idempotent); needs a running cluster
#   scripts/gitops.sh down     stop what `up` started (by pid), keep the logs
#   scripts/gitops.sh status   exit 0 only if all three run and answer
#   scripts/gitops.sh env      print the ports/URLs (.cluster/gitops.env)
#
# State: .cluster/gitops.env (ports, git URL), .cluster/gitops/repos/ (bare
# repositories served at $GIT_URL/<name>.git), .cluster/gitops/storage/
# (source-controller's artifacts), logs in .cluster/logs/, pids in
# .cluster/pids/ (flux-source-controller, flux-kustomize-controller,
# git-http). `scripts/cluster.sh down` removes .cluster/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
FLUX_CRDS="$ROOT/.tools/flux/crds"
STATE="$ROOT/.cluster"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
GITOPS="$STATE/gitops"
ENVFILE="$STATE/gitops.env"
KUBECONFIG_FILE="$STATE/kubeconfig"
TIMEOUT="${STEPWISE_GITOPS_TIMEOUT:-60}"
# The namespace Flux's controllers call their own (events, RUNTIME_NAMESPACE).
FLUX_NAMESPACE=flux-system

COMPONENTS=(git-http flux-source-controller flux-kustomize-controller)

log() { printf '[gitops] %s\n' "$*" >&2; }
die() { printf '[gitops] error: %s\n' "$*" >&2; exit 1; }

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

# shellcheck source=scripts/lib/proc.sh
source "$ROOT/scripts/lib/proc.sh"

stop_component() { stop_pid "$1" 10 log || log "could not stop $1"; }

stop_all() {
  local c
  for c in flux-kustomize-controller flux-source-controller git-http; do stop_component "$c"; done
}

# launch NAME ARGV0 [VAR=VALUE...] PROGRAM ARGS...: detached (own session, no
# inherited descriptors), logging to logs/NAME.log, recorded by pid and start
# time. ARGV0 is a path under .cluster/, so `ps` says whose process it is.
launch() {
  local name="$1" argv0="$2"; shift 2
  : >"$LOGS/$name.log"
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd="${fd##*/}"
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    while [[ "$1" == [A-Z]*=* ]]; do export "${1?}"; shift; done
    cd "$GITOPS"
    # shellcheck disable=SC2016 # expanded by the inner bash
    exec setsid bash -c 'exec -a "$0" "$@"' "$argv0" "$@" </dev/null >>"$LOGS/$name.log" 2>&1
  ) &
  pid_record "$name" "$!"
  STARTED+=("$name")
}

# wait_healthy NAME URL: until URL answers 2xx, the process dies, or timeout.
wait_healthy() {
  local name="$1" url="$2" deadline=$((SECONDS + TIMEOUT))
  while :; do
    if ! live_pid "$name" >/dev/null; then
      if grep -qiE 'address already in use' "$LOGS/$name.log" 2>/dev/null; then
        fail "$name could not listen: a port it was given is already in use; see $LOGS/$name.log"
      fi
      fail "$name exited during startup; last lines of $LOGS/$name.log:
$(tail -n 15 "$LOGS/$name.log" 2>/dev/null | sed 's/^/    /')"
    fi
    curl -fsS --max-time 3 -o /dev/null "$url" 2>/dev/null && return 0
    ((SECONDS < deadline)) || fail "$name did not answer $url within ${TIMEOUT}s; see $LOGS/$name.log"
    sleep 0.2
  done
}

STARTED=()
UP_DONE=0
fail() {
  printf '[gitops] error: %s\n' "$*" >&2
  exit 1
}
cleanup_failed_up() {
  local rc=$?
  ((UP_DONE == 0 && ${#STARTED[@]} > 0)) || return 0
  log "startup failed: stopping what this run started (logs stay in $LOGS)"
  stop_all
  return "$rc"
}

# Free loopback ports, held together while choosing so none repeats.
free_ports() {
  python3 -S - "$1" <<'EOF'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

all_alive() {
  local c
  for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null || return 1; done
}

healthy() {
  [[ -f "$ENVFILE" ]] || return 1
  # shellcheck disable=SC1090
  source "$ENVFILE"
  all_alive &&
    curl -fsS --max-time 3 -o /dev/null "http://127.0.0.1:$SOURCE_HEALTH_PORT/readyz" &&
    curl -fsS --max-time 3 -o /dev/null "http://127.0.0.1:$KUSTOMIZE_HEALTH_PORT/readyz" &&
    curl -fsS --max-time 3 -o /dev/null "$GIT_URL/healthz"
}

take_lock() {
  command -v flock >/dev/null || return 0
  local lock
  lock="${TMPDIR:-/tmp}/stepwise-gitops-$(printf '%s' "$ROOT" | md5sum | cut -c1-12).lock"
  exec 8>"$lock"
  flock -w 300 8 || die "another scripts/gitops.sh is still running for $ROOT (lock $lock)"
}

cmd_up() {
  take_lock
  local t
  for t in kubectl source-controller kustomize-controller; do
    [[ -x "$BIN/$t" ]] || die "missing .tools/bin/$t: run \`make tools\` (or scripts/build-flux.sh)"
  done
  compgen -G "$FLUX_CRDS/*.yaml" >/dev/null || die "no Flux CRDs in ${FLUX_CRDS#"$ROOT"/}: run scripts/build-flux.sh"
  for t in git python3 curl setsid; do command -v "$t" >/dev/null || die "'$t' is required on PATH"; done
  { [[ -f "$KUBECONFIG_FILE" ]] && kctl get --raw=/readyz >/dev/null 2>&1; } ||
    die "no local cluster answers through ${KUBECONFIG_FILE#"$ROOT"/}: run \`scripts/cluster.sh up\` (make cluster) first"

  if healthy 2>/dev/null; then
    echo "gitops already running (git $GIT_URL; flux controllers healthy)"
    return 0
  fi
  local c leftover=()
  for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null && leftover+=("$c"); done
  ((${#leftover[@]} == 0)) || log "restarting a partly running gitops stack (running: ${leftover[*]})"
  stop_all

  local t0=$SECONDS
  mkdir -p "$LOGS" "$PIDS" "$GITOPS/repos" "$GITOPS/storage" "$GITOPS/tmp"
  read -r GIT_PORT SOURCE_METRICS_PORT SOURCE_HEALTH_PORT SOURCE_STORAGE_PORT \
    KUSTOMIZE_METRICS_PORT KUSTOMIZE_HEALTH_PORT <<<"$(free_ports 6)"
  cat >"$ENVFILE" <<EOF
GIT_PORT=$GIT_PORT
GIT_URL=http://127.0.0.1:$GIT_PORT
GIT_REPOS=$GITOPS/repos
SOURCE_METRICS_PORT=$SOURCE_METRICS_PORT
SOURCE_HEALTH_PORT=$SOURCE_HEALTH_PORT
SOURCE_STORAGE_PORT=$SOURCE_STORAGE_PORT
KUSTOMIZE_METRICS_PORT=$KUSTOMIZE_METRICS_PORT
KUSTOMIZE_HEALTH_PORT=$KUSTOMIZE_HEALTH_PORT
EOF
  GIT_URL="http://127.0.0.1:$GIT_PORT"

  # Flux's CRDs and its runtime namespace.
  kctl apply --server-side --force-conflicts --field-manager stepwise-gitops -f "$FLUX_CRDS" >/dev/null ||
    die "could not apply the Flux CRDs from $FLUX_CRDS"
  kctl wait --for=condition=Established --timeout=60s -f "$FLUX_CRDS" >/dev/null ||
    die "the Flux CRDs did not become established"
  kctl get namespace "$FLUX_NAMESPACE" >/dev/null 2>&1 || kctl create namespace "$FLUX_NAMESPACE" >/dev/null

  trap cleanup_failed_up EXIT
  trap 'fail "interrupted"' INT TERM

  launch git-http "$GITOPS/git-http" python3 "$ROOT/scripts/git-http-server.py" \
    --root "$GITOPS/repos" --port "$GIT_PORT" --bind 127.0.0.1

  local common=(--log-level=info --log-encoding=json --enable-leader-election=false --watch-all-namespaces=true)
  launch flux-source-controller "$GITOPS/source-controller" \
    KUBECONFIG="$KUBECONFIG_FILE" RUNTIME_NAMESPACE="$FLUX_NAMESPACE" TMPDIR="$GITOPS/tmp" \
    "$BIN/source-controller" "${common[@]}" \
    --metrics-addr "127.0.0.1:$SOURCE_METRICS_PORT" --health-addr "127.0.0.1:$SOURCE_HEALTH_PORT" \
    --storage-addr "127.0.0.1:$SOURCE_STORAGE_PORT" --storage-adv-addr "127.0.0.1:$SOURCE_STORAGE_PORT" \
    --storage-path "$GITOPS/storage"
  # --requeue-dependency: how soon a Kustomization whose dependsOn is not
  # Ready yet looks again (default 30 s). --concurrent: a Kustomization with
  # `wait: true` holds one worker for as long as its health check runs (a
  # whole release), so the default 4 workers starve a fifth Kustomization.
  launch flux-kustomize-controller "$GITOPS/kustomize-controller" \
    KUBECONFIG="$KUBECONFIG_FILE" RUNTIME_NAMESPACE="$FLUX_NAMESPACE" TMPDIR="$GITOPS/tmp" \
    "$BIN/kustomize-controller" "${common[@]}" \
    --metrics-addr "127.0.0.1:$KUSTOMIZE_METRICS_PORT" --health-addr "127.0.0.1:$KUSTOMIZE_HEALTH_PORT" \
    --requeue-dependency 5s --concurrent 16

  wait_healthy git-http "$GIT_URL/healthz"
  wait_healthy flux-source-controller "http://127.0.0.1:$SOURCE_HEALTH_PORT/readyz"
  wait_healthy flux-kustomize-controller "http://127.0.0.1:$KUSTOMIZE_HEALTH_PORT/readyz"
  UP_DONE=1
  trap - EXIT INT TERM
  printf 'gitops up in %d s: git %s (repos in %s), source-controller storage http://127.0.0.1:%s, logs in %s\n' \
    $((SECONDS - t0)) "$GIT_URL" "${GITOPS#"$ROOT"/}/repos" "$SOURCE_STORAGE_PORT" "${LOGS#"$ROOT"/}"
}

cmd_down() {
  take_lock
  local c alive=()
  for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null && alive+=("$c"); done
  stop_all
  rm -f "$ENVFILE"
  rm -rf "$GITOPS/storage" "$GITOPS/tmp"
  if ((${#alive[@]} > 0)); then echo "gitops stopped (${alive[*]})"; else echo "gitops was not running"; fi
}

cmd_status() {
  local c pid ok=0
  for c in "${COMPONENTS[@]}"; do
    if pid="$(live_pid "$c")"; then
      printf '  %-26s running  pid %s\n' "$c" "$pid"
    else
      printf '  %-26s NOT RUNNING (log: %s)\n' "$c" "$LOGS/$c.log"
      ok=1
    fi
  done
  if ((ok == 0)) && healthy 2>/dev/null; then
    echo "  git $GIT_URL; controllers ready"
  else
    ok=1
  fi
  return $ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) if [[ -f "$ENVFILE" ]]; then cat "$ENVFILE"; else die "gitops is not running (scripts/gitops.sh up)"; fi ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
