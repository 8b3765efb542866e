#!/usr/bin/env bash
# Checks the statuses the operator writes with kstatus itself: the library
# (sigs.k8s.io/cli-utils pkg/kstatus/status) that Flux, kpt and the
# cli-utils applier use to decide whether an applied object is healthy.
#
#   tests/kstatus.sh
#
# Needs the local cluster (make cluster), .tools/bin/kubectl (make tools),
# Go (tests/kstatus is built by scripts/build-kstatus.sh) and cargo (the
# operator is built with `cargo build --bins`; STEPWISE_SKIP_BUILD=1 skips
# that). Starts its own operator for a namespace of its own, drives
# Deployments through each phase, captures the live object at that phase
# (kubectl get -o yaml) and asks kstatus-check for kstatus's verdict:
#
#   fresh (no status written yet)           InProgress
#   Running, Retrying                       InProgress
#   Succeeded                               Current
#   Failed (for good)                       Failed
#   WaitingForDecision (guided failure)     Failed
#
# Prints one line per check and ends with "kstatus: N passed, M failed";
# exits non-zero if any check failed. The captured objects stay in
# target/kstatus/<namespace>/ for inspection.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KUBECTL_BIN="$ROOT/.tools/bin/kubectl"
KSTATUS_BIN="$ROOT/.tools/bin/kstatus-check"
KUBECONFIG_FILE="${STEPWISE_KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
export KUBECONFIG="$KUBECONFIG_FILE"
TIMEOUT="${STEPWISE_KSTATUS_TIMEOUT:-90}"

k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

die() {
  printf 'kstatus: error: %s\n' "$*" >&2
  printf 'kstatus: 0 passed, 1 failed\n'
  exit 1
}

# ------------------------------------------------------------ prerequisites

[[ -x "$KUBECTL_BIN" ]] || die "no kubectl in .tools/bin: run make tools"
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required (to pick free ports)"
[[ -f "$KUBECONFIG_FILE" ]] ||
  die "no local cluster: $KUBECONFIG_FILE does not exist; run make cluster"
k get --raw=/readyz >/dev/null 2>&1 ||
  die "the local cluster is not reachable through $KUBECONFIG_FILE; run make cluster"

scripts/build-kstatus.sh || die "could not build kstatus-check (scripts/build-kstatus.sh)"
if [[ "${STEPWISE_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --quiet --bins || die "cargo build --bins failed"
fi
OPERATOR="$ROOT/target/debug/stepwise"
PLUGIN="$ROOT/target/debug/kubectl-stepwise"
[[ -x "$OPERATOR" && -x "$PLUGIN" ]] || die "no target/debug/stepwise or kubectl-stepwise: run cargo build --bins"

# ------------------------------------------------------------------ harness

passed=0
failed=0
LOG="$(mktemp)"

check() { # NAME FUNCTION [ARGS...]: the first failing command fails the check
  local name="$1" rc
  shift
  (set -e; "$@") >"$LOG" 2>&1
  rc=$?
  if ((rc == 0)); then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
    sed 's/^/     | /' "$LOG"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$name"
    tail -n 60 "$LOG" | sed 's/^/     | /'
  fi
}

NS="kstatus-$(date +%s)-$RANDOM"
OUT="$ROOT/target/kstatus/$NS"
mkdir -p "$OUT"
OP_PID=""

cleanup() {
  if [[ -n "$OP_PID" ]] && kill -0 "$OP_PID" 2>/dev/null; then
    kill "$OP_PID" 2>/dev/null
    wait "$OP_PID" 2>/dev/null
  fi
  k delete namespace "$NS" --wait=false >/dev/null 2>&1
  rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# An action whose simulated pod follows the given sim.stepwise.dev/* annotations.
#   action NAME [KEY=VALUE...]
action() {
  local name="$1" ann="" kv
  shift
  for kv in "$@"; do ann+="sim.stepwise.dev/${kv%%=*}: \"${kv#*=}\", "; done
  printf '{name: %s, template: {metadata: {annotations: {%s}}, spec: {containers: [{name: main, image: busybox}]}}}' \
    "$name" "${ann%, }"
}

# release NAME SPEC-EXTRA ACTION: one Run step named "deploy" with one action.
release() {
  k -n "$NS" create -f - <<EOF
apiVersion: stepwise.dev/v1alpha1
kind: Deployment
metadata:
  name: $1
spec:
  $2
  steps:
  - name: deploy
    actions: [$3]
EOF
}

# capture NAME PHASE: waits until the live object is in PHASE and leaves
# that object, as kubectl prints it, in $OUT/NAME-PHASE.yaml. The phase is
# checked on the captured text itself, so nothing can change in between.
capture() {
  local name="$1" phase="$2" f="$OUT/$1-$2.yaml" deadline=$((SECONDS + TIMEOUT))
  while :; do
    if k -n "$NS" get swd "$name" -o yaml >"$f" 2>/dev/null && grep -qx "  phase: $phase" "$f"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "swd/$name did not reach phase $phase within ${TIMEOUT}s; last seen:"
      sed -n '/^status:/,$p' "$f"
      echo "operator log: $OP_LOG"
      return 1
    fi
    sleep 0.2
  done
}

# expect_kstatus FILE STATUS: kstatus's verdict for the object in FILE.
expect_kstatus() {
  local verdict got
  verdict="$("$KSTATUS_BIN" "$1")"
  got="$(cut -f3 <<<"$verdict")"
  printf 'kstatus: %s\n' "$verdict"
  if [[ "$got" != "$2" ]]; then
    echo "want $2, got $got for:"
    sed -n '/^status:/,$p' "$1"
    return 1
  fi
}

# condition FILE TYPE: the status ("True", "False", ...) of a top-level
# status condition in an object captured as kubectl prints YAML.
condition() {
  awk -v want="$2" '
    function flush() { if (type == want) print st; type = ""; st = "" }
    /^  conditions:/ { in_c = 1; next }
    in_c && /^  [^ -]/ { flush(); in_c = 0 }
    in_c && /^  - / { flush() }
    in_c {
      line = $0; sub(/^  [- ] /, "", line)
      if (line ~ /^type: /) type = substr(line, 7)
      if (line ~ /^status: /) { st = substr(line, 9); gsub(/"/, "", st) }
    }
    END { if (in_c) flush() }
  ' "$1"
}

# ------------------------------------------------------------------ setup

k create namespace "$NS" >/dev/null || die "cannot create namespace $NS"
k label namespace "$NS" stepwise.dev/test=true >/dev/null
k apply --server-side --force-conflicts --field-manager stepwise-tests -f crds/stepwise.dev.yaml >/dev/null ||
  die "cannot apply crds/stepwise.dev.yaml"
k wait --for=condition=Established --timeout=30s crd/deployments.stepwise.dev crd/steps.stepwise.dev >/dev/null ||
  die "the CRDs did not become established"

# --------------------------------------------------------------- the checks

# Before any operator runs: the object as the API server returns it on create.
check_fresh() {
  release fresh "" "$(action run)" >/dev/null
  k -n "$NS" get swd fresh -o yaml >"$OUT/fresh-created.yaml"
  sed -n '/^status:/,$p' "$OUT/fresh-created.yaml"
  grep -qx '  observedGeneration: -1' "$OUT/fresh-created.yaml" ||
    { echo "status.observedGeneration is not the schema default -1"; return 1; }
  expect_kstatus "$OUT/fresh-created.yaml" InProgress
}
check "a fresh Deployment (no status written yet) is InProgress" check_fresh

OP_LOG="$OUT/operator.log"
METRICS_PORT="$(free_port)"
PROBE_PORT="$(free_port)"
RUST_LOG="info,stepwise=debug" "$OPERATOR" controller --namespace "$NS" \
  --metrics-bind-address "127.0.0.1:$METRICS_PORT" --health-probe-bind-address "127.0.0.1:$PROBE_PORT" \
  </dev/null >"$OP_LOG" 2>&1 &
OP_PID=$!
for ((i = 0; i < 300; i++)); do
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$PROBE_PORT/readyz" 2>/dev/null && break
  kill -0 "$OP_PID" 2>/dev/null || die "the operator exited during startup; see $OP_LOG"
  sleep 0.2
done
curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$PROBE_PORT/readyz" 2>/dev/null ||
  die "the operator did not become ready in 60 s; see $OP_LOG"

release running "" "$(action run duration=20s)" >/dev/null
release retrying "retries: {delaySeconds: 20, limit: 2}" "$(action run fail-attempts=1)" >/dev/null
release succeeded "" "$(action run)" >/dev/null
release failed "retries: {enabled: false}" "$(action run exit-code=1)" >/dev/null
release guided "guidedFailure: true
  retries: {limit: 0}" "$(action run fail-attempts=1)" >/dev/null

check_running() {
  capture running Running
  [[ "$(condition "$OUT/running-Running.yaml" Reconciling)" == True ]] || { echo "Reconciling is not True"; return 1; }
  expect_kstatus "$OUT/running-Running.yaml" InProgress
}
check "Running is InProgress" check_running

check_retrying() {
  capture retrying Retrying
  expect_kstatus "$OUT/retrying-Retrying.yaml" InProgress
}
check "Retrying (an action failed, next attempt in 20 s) is InProgress" check_retrying

check_wait_ready() {
  # Started while the 20 s action still runs: returns once it has succeeded.
  local t0=$SECONDS
  k -n "$NS" wait --for=condition=Ready swd/running --timeout="${TIMEOUT}s"
  echo "kubectl wait returned after $((SECONDS - t0)) s"
  k -n "$NS" get swd running -o yaml >"$OUT/running-after-wait.yaml"
  grep -qx '  phase: Succeeded' "$OUT/running-after-wait.yaml" || { echo "returned before Succeeded"; return 1; }
  expect_kstatus "$OUT/running-after-wait.yaml" Current
  k -n "$NS" wait --for=condition=Ready swd/succeeded --timeout=10s
}
check "kubectl wait --for=condition=Ready returns for a succeeded Deployment" check_wait_ready

check_succeeded() {
  capture succeeded Succeeded
  expect_kstatus "$OUT/succeeded-Succeeded.yaml" Current
}
check "Succeeded is Current" check_succeeded

check_failed() {
  capture failed Failed
  [[ "$(condition "$OUT/failed-Failed.yaml" Stalled)" == True ]] || { echo "Stalled is not True"; return 1; }
  expect_kstatus "$OUT/failed-Failed.yaml" Failed
}
check "Failed for good (exit code 1, no retries) is Failed" check_failed

check_guided() {
  capture guided WaitingForDecision
  expect_kstatus "$OUT/guided-WaitingForDecision.yaml" Failed
}
check "WaitingForDecision (guided failure) is Failed" check_guided

check_fresh_ran() {
  capture fresh Succeeded
  expect_kstatus "$OUT/fresh-Succeeded.yaml" Current
}
check "the fresh one, once the operator ran it, is Current" check_fresh_ran

check_retried() {
  capture retrying Succeeded
  expect_kstatus "$OUT/retrying-Succeeded.yaml" Current
}
check "the retried one, once attempt 2 succeeded, is Current" check_retried

check_wait_not_ready() {
  if k -n "$NS" wait --for=condition=Ready swd/failed --timeout=3s; then
    echo "kubectl wait said a failed Deployment is Ready"
    return 1
  fi
  echo "(as expected: kubectl wait timed out on a Failed Deployment)"
}
check "kubectl wait --for=condition=Ready does not return for a failed one" check_wait_not_ready

check_guided_resolved() {
  "$PLUGIN" retry guided -n "$NS"
  capture guided Succeeded
  expect_kstatus "$OUT/guided-Succeeded.yaml" Current
}
check "after kubectl stepwise retry, the guided one succeeds and is Current" check_guided_resolved

printf 'kstatus: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
