#!/usr/bin/env bash
# GitOps for real: Flux's source-controller and kustomize-controller (built
# from Go modules by scripts/build-flux.sh, run by scripts/gitops.sh) pull
# releases from a git repository served on 127.0.0.1, apply them, and wait on
# their health with kstatus, while the Stepwise operator runs them.
#
#   tests/gitops.sh
#
# Needs the local cluster (make cluster; this script fails if it is missing),
# .tools/bin/{kubectl,source-controller,kustomize-controller} (make tools),
# git, jq, python3, curl and cargo (STEPWISE_SKIP_BUILD=1 skips `cargo build
# --bins`). Starts scripts/gitops.sh when it is not running, and stops it
# again afterwards (STEPWISE_KEEP_GITOPS=1 keeps it).
#
# The repository it commits to has the layout of examples/gitops (a
# "flux-system" Kustomization, as `flux bootstrap` makes, applies
# clusters/production: the CRDs Kustomization and the releases Kustomization
# that dependsOn it), plus one Kustomization per scenario, each with
# `wait: true`:
#
#   ok       a release whose action runs 12 s
#   flaky    an action that fails once and is retried after 8 s
#   broken   an action that fails for good (exit code 1, no retries)
#   guided   guided failure: waits for a decision, then kubectl stepwise retry
#   approval a manual intervention step: waits for approval, then approved
#   releases examples/gitops/releases as shipped
#
# A monitor samples every Kustomization's Ready condition and then the phase
# of the Deployments it applied, every ~0.3 s from before Flux sees the
# repository; the ordering checks run on that timeline. Flux's health checks
# poll every 5 s: every wait here is for a condition, with a deadline.
#
# Prints one line per check and ends with "gitops: N passed, M failed"; exits
# non-zero if any check failed. Artifacts (timeline, operator and test logs,
# the git working copy) stay in target/gitops/<namespace>/.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KUBECTL_BIN="$ROOT/.tools/bin/kubectl"
KUBECONFIG_FILE="${STEPWISE_KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
export KUBECONFIG="$KUBECONFIG_FILE"
TIMEOUT="${STEPWISE_GITOPS_TEST_TIMEOUT:-180}"

k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

die() {
  printf 'gitops: error: %s\n' "$*" >&2
  printf 'gitops: 0 passed, 1 failed\n'
  exit 1
}

# ------------------------------------------------------------ prerequisites

[[ -x "$KUBECTL_BIN" ]] || die "no kubectl in .tools/bin: run make tools"
for t in git jq python3 curl; do command -v "$t" >/dev/null || die "'$t' is required on PATH"; done
[[ -f "$KUBECONFIG_FILE" ]] ||
  die "no local cluster: $KUBECONFIG_FILE does not exist; run make cluster"
k get --raw=/readyz >/dev/null 2>&1 ||
  die "the local cluster is not reachable through $KUBECONFIG_FILE; run make cluster"

scripts/build-flux.sh || die "could not build the Flux controllers (scripts/build-flux.sh)"
if [[ "${STEPWISE_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --quiet --bins || die "cargo build --bins failed"
fi
OPERATOR="$ROOT/target/debug/stepwise"
PLUGIN="$ROOT/target/debug/kubectl-stepwise"
[[ -x "$OPERATOR" && -x "$PLUGIN" ]] || die "no target/debug/stepwise or kubectl-stepwise: run cargo build --bins"

STARTED_GITOPS=0
if ! scripts/gitops.sh status >/dev/null 2>&1; then
  scripts/gitops.sh up || die "scripts/gitops.sh up failed (logs in .cluster/logs/)"
  STARTED_GITOPS=1
fi
# shellcheck disable=SC1091
source "$ROOT/.cluster/gitops.env" || die "no .cluster/gitops.env"

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

NS="gitops-$(date +%s)-$RANDOM"
SHOP="$NS-shop" # the example's own namespace (its releases/namespace.yaml)
OUT="$ROOT/target/gitops/$NS"
WORK="$OUT/platform"
mkdir -p "$OUT"
KS_LOG="$ROOT/.cluster/logs/flux-kustomize-controller.log"
OP_PIDS=()
MONITOR_PID=""
TIMELINE="$OUT/timeline.tsv"

cleanup() {
  local p
  [[ -n "$MONITOR_PID" ]] && kill "$MONITOR_PID" 2>/dev/null
  # Flux first (its finalizers need its controllers), then the namespaces.
  k -n "$NS" delete kustomizations.kustomize.toolkit.fluxcd.io --all --wait=true --timeout=90s >/dev/null 2>&1
  k -n "$NS" delete gitrepositories.source.toolkit.fluxcd.io --all --wait=true --timeout=30s >/dev/null 2>&1
  for p in "${OP_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${OP_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  k delete namespace "$NS" "$SHOP" --wait=false >/dev/null 2>&1
  rm -rf "$GIT_REPOS/$NS-platform.git" "$GIT_REPOS/$NS-stepwise.git"
  rm -f "$LOG"
  if ((STARTED_GITOPS == 1)) && [[ "${STEPWISE_KEEP_GITOPS:-}" != 1 ]]; then
    scripts/gitops.sh down >/dev/null 2>&1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_operator() { # NAMESPACE
  local log="$OUT/operator-$1.log" probe metrics i
  probe="$(free_port)"; metrics="$(free_port)"
  RUST_LOG="info,stepwise=debug" "$OPERATOR" controller --namespace "$1" \
    --metrics-bind-address "127.0.0.1:$metrics" --health-probe-bind-address "127.0.0.1:$probe" \
    </dev/null >"$log" 2>&1 &
  OP_PIDS+=($!)
  for ((i = 0; i < 300; i++)); do
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$probe/readyz" 2>/dev/null && return 0
    kill -0 "${OP_PIDS[-1]}" 2>/dev/null || { echo "the operator for $1 exited; see $log"; return 1; }
    sleep 0.2
  done
  echo "the operator for $1 did not become ready in 60 s; see $log"
  return 1
}

KS=kustomizations.kustomize.toolkit.fluxcd.io

# ks_ready NAME -> "Status Reason" of a Kustomization's Ready condition
ks_ready() {
  k -n "$NS" get "$KS" "$1" -o json 2>/dev/null |
    jq -r '(.status.conditions // []) | map(select(.type == "Ready")) | .[0] // {} | "\(.status // "-") \(.reason // "-")"'
}
ks_message() {
  k -n "$NS" get "$KS" "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}'
}

# wait_ks NAME STATUS [REASON] [TIMEOUT]: until the Ready condition matches.
wait_ks() {
  local name="$1" want="$2" reason="${3:-}" deadline=$((SECONDS + ${4:-$TIMEOUT})) got
  while :; do
    got="$(ks_ready "$name")"
    if [[ "${got%% *}" == "$want" && (-z "$reason" || "${got#* }" == "$reason") ]]; then
      echo "Kustomization $name: Ready=$got after $((SECONDS - ${5:-$T0})) s"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "Kustomization $name did not reach Ready=$want${reason:+ ($reason)}; it is: $got"
      ks_message "$name"; echo
      k -n "$NS" get "$KS,gitrepositories.source.toolkit.fluxcd.io,swd" -o wide 2>&1 | sed 's/^/  /'
      return 1
    fi
    sleep 0.3
  done
}

# wait_phase NAMESPACE NAME PHASE [TIMEOUT]
wait_phase() {
  local deadline=$((SECONDS + ${4:-$TIMEOUT})) got
  while :; do
    got="$(k -n "$1" get swd "$2" -o jsonpath='{.status.phase}' 2>/dev/null)"
    [[ "$got" == "$3" ]] && return 0
    if ((SECONDS >= deadline)); then
      echo "swd/$2 in $1 did not reach phase $3 (it is: ${got:-none})"
      return 1
    fi
    sleep 0.3
  done
}

# reconcile KIND NAME: what `flux reconcile` does; prints the token.
reconcile() {
  local token
  token="$(date +%s%N)"
  k -n "$NS" annotate --overwrite "$1" "$2" "reconcile.fluxcd.io/requestedAt=$token" >/dev/null
  echo "$token"
}

# wait_handled KIND NAME TOKEN: until the controller has handled that request.
wait_handled() {
  local deadline=$((SECONDS + TIMEOUT)) got
  while :; do
    got="$(k -n "$NS" get "$1" "$2" -o jsonpath='{.status.lastHandledReconcileAt}' 2>/dev/null)"
    [[ "$got" == "$3" ]] && return 0
    ((SECONDS < deadline)) || { echo "$1/$2 did not handle reconcile request $3"; return 1; }
    sleep 0.3
  done
}

git_w() { git -C "$WORK" -c user.name="Stepwise Tests" -c user.email=tests@stepwise.invalid "$@"; }

# commit MESSAGE: commits everything in the working copy and pushes it.
commit() {
  git_w add -A && git_w commit -q -m "$1" && git_w push -q origin HEAD:main 2>&1 &&
    git_w rev-parse HEAD
}

# An action whose simulated pod follows sim.stepwise.dev/* annotations.
#   action NAME [KEY=VALUE...]
action() {
  local name="$1" ann="" kv
  shift
  for kv in "$@"; do ann+="sim.stepwise.dev/${kv%%=*}: \"${kv#*=}\", "; done
  printf '{name: %s, template: {metadata: {annotations: {%s}}, spec: {containers: [{name: main, image: busybox}]}}}' \
    "$name" "${ann%, }"
}

# release FILE NAME SPEC-LINES STEP ACTION
release() {
  mkdir -p "$(dirname "$1")"
  cat >"$1" <<EOF
apiVersion: stepwise.dev/v1alpha1
kind: Deployment
metadata:
  name: $2
spec:
$3
  steps:
  - name: $4
    actions: [$5]
EOF
}

# ------------------------------------------------- the repositories in git

k create namespace "$NS" >/dev/null || die "cannot create namespace $NS"
k label namespace "$NS" stepwise.dev/test=true >/dev/null

# What the platform team points Flux at: the Stepwise repository (for its
# CRDs, at a tag) ...
STEPWISE_WORK="$OUT/stepwise"
mkdir -p "$STEPWISE_WORK/crds"
git init -q --bare -b main "$GIT_REPOS/$NS-stepwise.git" || die "git init failed"
cp crds/stepwise.dev.yaml "$STEPWISE_WORK/crds/"
(
  cd "$STEPWISE_WORK" && git init -q -b main && git add -A &&
    git -c user.name=t -c user.email=t@stepwise.invalid commit -q -m "Stepwise v0.1.0" &&
    git tag v0.1.0 && git push -q "$GIT_REPOS/$NS-stepwise.git" main v0.1.0
) || die "cannot create the Stepwise repository"

# ... and its own repository with examples/gitops's layout.
git init -q --bare -b main "$GIT_REPOS/$NS-platform.git" || die "git init failed"
mkdir -p "$WORK"
git_w init -q -b main && git_w remote add origin "$GIT_REPOS/$NS-platform.git"
mkdir -p "$WORK/clusters/production" "$WORK/releases"
for f in examples/gitops/clusters/production/*.yaml; do
  sed -e "s#https://github.com/stepwise-dev/stepwise.git#$GIT_URL/$NS-stepwise.git#" \
    -e "s/namespace: flux-system/namespace: $NS/" \
    -e "s/targetNamespace: shop/targetNamespace: $SHOP/" \
    "$f" >"$WORK/clusters/production/$(basename "$f")"
done
cp examples/gitops/releases/*.yaml "$WORK/releases/"
sed -i "s/^  name: shop\$/  name: $SHOP/" "$WORK/releases/namespace.yaml"

# One Kustomization per scenario, shaped like the example's releases one.
for s in ok flaky broken guided approval; do
  cat <<EOF
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: $s
  namespace: $NS
spec:
  dependsOn:
    - name: stepwise-crds
  interval: 10m
  retryInterval: 10s
  sourceRef:
    kind: GitRepository
    name: flux-system
  path: ./scenarios/$s
  targetNamespace: $NS
  prune: true
  wait: true
  timeout: 3m
EOF
done >"$WORK/clusters/production/scenarios.yaml"

release "$WORK/scenarios/ok/ok-1.yaml" ok-1 "" deploy "$(action web duration=12s)"
release "$WORK/scenarios/flaky/flaky-1.yaml" flaky-1 "  retries: {limit: 2, delaySeconds: 8}" deploy \
  "$(action web fail-attempts=1)"
release "$WORK/scenarios/broken/broken-1.yaml" broken-1 "  retries: {enabled: false}" migrate \
  "$(action db-schema exit-code=1)"
release "$WORK/scenarios/guided/guided-1.yaml" guided-1 "  guidedFailure: true
  retries: {limit: 0}" rollout "$(action web fail-attempts=1)"
mkdir -p "$WORK/scenarios/approval"
cat >"$WORK/scenarios/approval/approval-1.yaml" <<EOF
apiVersion: stepwise.dev/v1alpha1
kind: Deployment
metadata:
  name: approval-1
spec:
  steps:
  - name: gate
    type: ManualIntervention
    instructions: Check the canary dashboard, then approve.
  - name: deploy
    actions: [$(action web)]
EOF
REV1="$(commit "Releases: ok-1, flaky-1, broken-1, guided-1, approval-1, shop-2026-06-01")" || die "cannot push to $NS-platform.git"

# --------------------------------------------------------------- monitor

# Each sample reads the Kustomizations first and the Deployments second: a
# Deployment that has Succeeded stays Succeeded, so "Ready=True in this
# sample" with "not Succeeded in this same sample" is a real violation.
monitor() {
  local ks d now
  while :; do
    now="$(date +%s.%N)"
    ks="$(k -n "$NS" get "$KS" -o json 2>/dev/null)" || { sleep 0.3; continue; }
    d="$(k get swd -A -l "kustomize.toolkit.fluxcd.io/namespace=$NS" -o json 2>/dev/null)" || { sleep 0.3; continue; }
    jq -rn --argjson ks "$ks" --argjson d "$d" --arg t "${now:0:14}" '
      $ks.items[] | .metadata.name as $n |
      ((.status.conditions // []) | map(select(.type == "Ready")) | .[0] // {}) as $r |
      [ $d.items[] | select(.metadata.labels["kustomize.toolkit.fluxcd.io/name"] == $n) |
        "\(.metadata.name)=\(.status.phase // "none")" ] as $ph |
      [$t, $n, ($r.status // "-"), ($r.reason // "-"), ($ph | join(","))] | @tsv'
    sleep 0.3
  done >>"$TIMELINE"
}
: >"$TIMELINE"
monitor &
MONITOR_PID=$!

# ---------------------------------------------------------------- bootstrap

# What `flux bootstrap` creates: the source for this repository and the
# Kustomization that applies clusters/production from it.
T0=$SECONDS
k apply -f - >/dev/null <<EOF || die "cannot create the flux-system GitRepository/Kustomization"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: $NS
spec:
  interval: 10s
  url: $GIT_URL/$NS-platform.git
  ref:
    branch: main
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: $NS
spec:
  interval: 10m
  sourceRef:
    kind: GitRepository
    name: flux-system
  path: ./clusters/production
  prune: true
EOF

# ------------------------------------------------------------------ checks

check_bootstrap() {
  wait_ks flux-system True ReconciliationSucceeded
  local rev
  rev="$(k -n "$NS" get gitrepositories.source.toolkit.fluxcd.io flux-system -o jsonpath='{.status.artifact.revision}')"
  echo "source revision: $rev"
  [[ "$rev" == *"$REV1"* ]] || { echo "expected revision $REV1"; return 1; }
  wait_ks stepwise-crds True ReconciliationSucceeded
  k get crd deployments.stepwise.dev -o jsonpath='{.metadata.labels.kustomize\.toolkit\.fluxcd\.io/name}{"\n"}'
}
check "Flux clones the repository over HTTP and applies the CRDs (stepwise-crds Ready)" check_bootstrap

# The Deployments are applied as soon as the CRDs are Ready. No operator
# runs yet: Flux's first health checks see objects without any status of
# the operator's (only the schema default observedGeneration: -1).
ALL_RELEASES=("$NS"/ok-1 "$NS"/flaky-1 "$NS"/broken-1 "$NS"/guided-1 "$NS"/approval-1 "$SHOP"/shop-2026-06-01)
ALL_KS=(ok flaky broken guided approval releases)
check_fresh() {
  local deadline=$((SECONDS + TIMEOUT)) d ns name phase s r
  # Flux applies each scenario's Deployment once stepwise-crds is Ready and
  # starts polling its health right after.
  for d in "${ALL_RELEASES[@]}"; do
    ns="${d%/*}" name="${d#*/}"
    until k -n "$ns" get swd "$name" >/dev/null 2>&1; do
      ((SECONDS < deadline)) || { echo "Flux did not apply $d"; return 1; }
      sleep 0.3
    done
  done
  echo "Flux applied all ${#ALL_RELEASES[@]} Deployments; no operator of this test runs yet"
  k -n "$NS" get swd ok-1 -o jsonpath='ok-1 status: {.status}{"\n"}'
  # Over one full Flux poll period (it polls at the start of a health check,
  # then every 5 s) no Kustomization may turn Ready and nothing may run.
  local until=$((SECONDS + 6))
  while ((SECONDS < until)); do
    for d in "${ALL_RELEASES[@]}"; do
      phase="$(k -n "${d%/*}" get swd "${d#*/}" -o jsonpath='{.status.phase}')"
      if [[ -n "$phase" ]]; then
        echo "$d is $phase although this test started no operator yet: another Stepwise operator"
        echo "watches $NS (one started without --namespace?). Stop it; it breaks these checks."
        return 1
      fi
    done
    for s in "${ALL_KS[@]}"; do
      r="$(ks_ready "$s")"
      [[ "${r%% *}" != True ]] || { echo "$s turned Ready before the operator ran anything: $r"; return 1; }
    done
    sleep 0.5
  done
  for s in "${ALL_KS[@]}"; do printf '  %-9s Ready=%s\n' "$s" "$(ks_ready "$s")"; done
  echo "none turned Ready over one Flux poll period (5 s) while the Deployments had no status but the schema default"
}
check "fresh Deployments (no status from the operator yet) keep every Kustomization not Ready" check_fresh

# In this shell, not in a check's subshell: cleanup stops them by pid.
start_operator "$NS" >&2 || die "cannot start the operator for $NS"
start_operator "$SHOP" >&2 || die "cannot start the operator for $SHOP"
echo "ok   the operator runs (namespaces $NS and $SHOP)"
passed=$((passed + 1))
T_OP=$SECONDS

check_ok() {
  wait_ks ok True ReconciliationSucceeded "$TIMEOUT" "$T_OP"
  k -n "$NS" get swd ok-1 -o wide
  [[ "$(k -n "$NS" get swd ok-1 -o jsonpath='{.status.phase}')" == Succeeded ]]
  k -n "$NS" get jobs -l stepwise.dev/deployment=ok-1 --no-headers | wc -l | grep -qv '^0$'
  ks_message ok; echo
}
check "a release committed to git is applied by Flux, run by the operator, and ok turns Ready" check_ok

# assert_order KS: over the whole timeline, whenever KS was Ready=True, every
# Deployment it applied was Succeeded in the same sample; and KS was seen not
# Ready while its Deployment existed and had not succeeded.
# Until the monitor has taken a sample that started after now.
sync_timeline() {
  local now i
  now="$(date +%s.%N)"; now="${now:0:14}"
  for ((i = 0; i < 100; i++)); do
    [[ "$(tail -n 1 "$TIMELINE" | cut -f1)" > "$now" ]] && return 0
    sleep 0.2
  done
  echo "the monitor took no sample for 20 s"
  return 1
}

assert_order() {
  local ks="$1"
  sync_timeline
  awk -F'\t' -v ks="$ks" '
    $2 != ks { next }
    {
      ok = ($5 != ""); n = split($5, d, ",")
      for (i = 1; i <= n; i++) if (d[i] !~ /=Succeeded$/) ok = 0
    }
    $3 == "True" && !ok { bad++; if (bad < 5) print "VIOLATION: Ready=True while " ($5 == "" ? "no Deployment" : $5) " at " $1 }
    $3 == "True" && first_ready == "" { first_ready = $1 }
    ok && first_ok == "" { first_ok = $1 }
    $3 != "True" && $5 != "" && !ok { waiting++ }
    $3 != "True" && $5 ~ /=none/ { fresh++ }
    END {
      printf "%s: %d samples not Ready while its Deployments had not all succeeded (%d before the operator wrote a phase); all Succeeded at %s, first Ready at %s\n", ks, waiting, fresh, first_ok, first_ready
      if (bad) exit 1
      if (first_ready == "") { print "never Ready"; exit 1 }
      if (waiting == 0) { print "never saw it not Ready while a release ran"; exit 1 }
      if (first_ready < first_ok) { print "Ready before Succeeded"; exit 1 }
    }' "$TIMELINE"
}

# The API server's own times: Ready on the Kustomization turned True no
# earlier than Ready on the Deployment.
assert_transition_order() { # KS NAMESPACE DEPLOYMENT
  local kt dt
  kt="$(k -n "$NS" get "$KS" "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].lastTransitionTime}')"
  dt="$(k -n "$2" get swd "$3" -o jsonpath='{.status.conditions[?(@.type=="Ready")].lastTransitionTime}')"
  echo "Ready transitions: swd/$3 $dt, Kustomization $1 $kt"
  [[ -n "$kt" && -n "$dt" && ! "$kt" < "$dt" ]]
}

check_ok_order() { assert_order ok && assert_transition_order ok "$NS" ok-1; }
check "ok: Ready=True only after its Deployment Succeeded, never before (timeline from the first second)" check_ok_order

check_flaky() {
  wait_ks flaky True ReconciliationSucceeded "$TIMEOUT" "$T_OP"
  local attempts
  attempts="$(k -n "$NS" get step flaky-1-deploy -o jsonpath='{.status.actions[0].attempts[*].outcome}')"
  echo "attempts: $attempts"
  [[ "$attempts" == "Failed Succeeded" ]] || { echo "expected attempt 1 Failed, attempt 2 Succeeded"; return 1; }
  grep -P '\tflaky\t' "$TIMELINE" | grep -q '=Retrying' || { echo "never sampled it Retrying"; return 1; }
  echo "sampled Retrying while the Kustomization was not Ready"
  assert_order flaky
  assert_transition_order flaky "$NS" flaky-1
}
check "flaky: fails once, retried, Ready only after the retry succeeded" check_flaky

check_broken() {
  wait_ks broken False HealthCheckFailed "$TIMEOUT" "$T_OP"
  local msg dmsg
  msg="$(ks_message broken)"
  echo "Kustomization broken, Ready=False: $msg"
  [[ "$msg" == *"Deployment/$NS/broken-1 status: 'Failed'"* ]] || { echo "the message does not name the Deployment"; return 1; }
  [[ "$msg" == *"failed early due to stalled resources"* ]] || { echo "not Flux's fail-fast (Stalled) path"; return 1; }
  dmsg="$(k -n "$NS" get swd broken-1 -o jsonpath='{.status.message}')"
  echo "swd/broken-1 (named there) says: $dmsg"
  [[ "$dmsg" == *"db-schema"* ]] || { echo "the Deployment's message does not name the failing action"; return 1; }
  ! grep -P '\tbroken\tTrue\t' "$TIMELINE" | grep -q . || { echo "broken was Ready at some point"; return 1; }
}
check "broken: the Kustomization fails fast (Stalled) and names the failed Deployment, whose message names the action" check_broken

check_guided_failing() {
  wait_phase "$NS" guided-1 WaitingForDecision
  wait_ks guided False HealthCheckFailed "$TIMEOUT" "$T_OP"
  local msg
  msg="$(ks_message guided)"
  echo "while waiting for a decision, Flux shows Ready=False HealthCheckFailed: $msg"
  [[ "$msg" == *"Deployment/$NS/guided-1 status: 'Failed'"* ]]
  k -n "$NS" get swd guided-1 -o jsonpath='{.status.message}{"\n"}'
}
check "guided: waiting for a decision shows as a failed health check (Stalled -> kstatus Failed)" check_guided_failing

check_guided_recovers() {
  local t0=$SECONDS
  "$PLUGIN" retry guided-1 -n "$NS"
  wait_phase "$NS" guided-1 Succeeded
  # No manual reconcile: Flux retries a failed health check every
  # retryInterval (10 s here).
  wait_ks guided True ReconciliationSucceeded "$TIMEOUT" "$t0"
  assert_order guided
  assert_transition_order guided "$NS" guided-1
}
check "guided: after kubectl stepwise retry and success, the Kustomization recovers to Ready on its own" check_guided_recovers

check_approval() {
  wait_phase "$NS" approval-1 WaitingForApproval
  # Waiting for a person is not a failure: kstatus InProgress, so Flux keeps
  # polling (Ready=Unknown, Progressing) until approval or its timeout.
  local until=$((SECONDS + 6)) r
  while ((SECONDS < until)); do
    r="$(ks_ready approval)"
    [[ "$r" == "Unknown Progressing" ]] || { echo "while waiting for approval: Ready=$r"; return 1; }
    sleep 0.5
  done
  echo "WaitingForApproval over one Flux poll period: Ready=$r"
  k -n "$NS" get "$KS" approval -o jsonpath='{.status.conditions[?(@.type=="Reconciling")].message}{"\n"}'
  "$PLUGIN" approve approval-1 -n "$NS"
  wait_ks approval True ReconciliationSucceeded "$TIMEOUT" "$SECONDS"
  assert_order approval
  assert_transition_order approval "$NS" approval-1
}
check "approval: waiting for approval keeps Flux waiting (Progressing, not failed); approved -> Ready" check_approval

check_example() {
  wait_ks releases True ReconciliationSucceeded "$TIMEOUT" "$T_OP"
  k -n "$SHOP" get swd -o wide
  assert_order releases
  assert_transition_order releases "$SHOP" shop-2026-06-01
}
check "examples/gitops: the releases Kustomization (dependsOn stepwise-crds) is Ready after its release Succeeded" check_example

# No drift, no fight: the operator writes only status; Flux's own
# dry-run-and-diff finds nothing to change after the run.
check_managed_fields() {
  local ns name bad=0
  for ns in "$NS" "$SHOP"; do
    while read -r name; do
      k -n "$ns" get swd "$name" -o json --show-managed-fields | jq -r --arg n "$ns/$name" '
        .metadata.managedFields[] |
        "\($n)\t\(.manager)\t\(.operation)\t\(.subresource // "-")\t\(.fieldsV1 // {} | keys | join(","))"'
    done < <(k -n "$ns" get swd -o name | cut -d/ -f2)
  done | tee "$OUT/managed-fields.tsv"
  # stepwise: only through the status subresource, only under status.
  if awk -F'\t' '$2 == "stepwise" && ($4 != "status" || $5 != "f:status")' "$OUT/managed-fields.tsv" | grep .; then
    echo "the operator owns fields outside status (above)"; bad=1
  fi
  awk -F'\t' '$2 == "stepwise"' "$OUT/managed-fields.tsv" | grep -q . || { echo "no stepwise manager at all?"; bad=1; }
  # Flux owns the spec, with server-side apply, on every Deployment.
  local total owned
  total="$(cut -f1 "$OUT/managed-fields.tsv" | sort -u | wc -l)"
  owned="$(awk -F'\t' '$2 == "kustomize-controller" && $3 == "Apply" && $5 ~ /f:spec/ {print $1}' "$OUT/managed-fields.tsv" | sort -u | wc -l)"
  echo "$owned of $total Deployments have their spec applied by kustomize-controller"
  ((total > 0 && owned == total)) || { echo "some Deployment's spec is not owned by kustomize-controller (Apply)"; bad=1; }
  return $bad
}
check "field managers: the operator (stepwise) owns only status, Flux (kustomize-controller) owns spec" check_managed_fields

check_no_drift() {
  local s before after token ns name
  declare -A rv
  for s in ok:"$NS":ok-1 flaky:"$NS":flaky-1 guided:"$NS":guided-1 releases:"$SHOP":shop-2026-06-01; do
    IFS=: read -r ks ns name <<<"$s"
    rv[$name]="$(k -n "$ns" get swd "$name" -o jsonpath='{.metadata.resourceVersion}/{.metadata.generation}')"
  done
  local lines_before
  lines_before="$(wc -l <"$KS_LOG")"
  for s in ok flaky guided releases; do
    token="$(reconcile "$KS" "$s")"
    wait_handled "$KS" "$s" "$token"
    wait_ks "$s" True ReconciliationSucceeded 60 "$SECONDS" >/dev/null
  done
  # kustomize-controller logs, per reconcile, what its dry-run apply + diff
  # decided for every object: created, configured or unchanged.
  tail -n +"$((lines_before + 1))" "$KS_LOG" |
    jq -c --arg ns "$NS" 'select(.msg == "server-side apply completed" and .namespace == $ns) | {name, output}' |
    tee "$OUT/flux-apply.jsonl"
  [[ "$(grep -c . "$OUT/flux-apply.jsonl")" -ge 4 ]] || { echo "expected an apply result for each of the 4 Kustomizations"; return 1; }
  if jq -r '.output | to_entries[] | select(.value != "unchanged") | "\(.key): \(.value)"' "$OUT/flux-apply.jsonl" | grep .; then
    echo "Flux found drift (above)"; return 1
  fi
  for s in ok:"$NS":ok-1 flaky:"$NS":flaky-1 guided:"$NS":guided-1 releases:"$SHOP":shop-2026-06-01; do
    IFS=: read -r ks ns name <<<"$s"
    after="$(k -n "$ns" get swd "$name" -o jsonpath='{.metadata.resourceVersion}/{.metadata.generation}')"
    echo "swd/$name resourceVersion/generation: ${rv[$name]} -> $after"
    [[ "$after" == "${rv[$name]}" ]] || { echo "the object changed"; return 1; }
  done
}
check "no drift: Flux's re-apply (dry-run + diff) reports every object unchanged and writes nothing" check_no_drift

check_immutable() {
  local before rev msg
  before="$(k -n "$NS" get swd ok-1 -o jsonpath='{.metadata.generation} {.spec.steps[0].actions[0].template.spec.containers[0].image}')"
  sed -i 's/image: busybox/image: busybox:1.37/' "$WORK/scenarios/ok/ok-1.yaml"
  rev="$(commit "ok-1: change the image in place (not allowed)")"
  echo "pushed $rev"
  wait_handled gitrepositories.source.toolkit.fluxcd.io flux-system "$(reconcile gitrepositories.source.toolkit.fluxcd.io flux-system)"
  local deadline=$((SECONDS + TIMEOUT))
  while :; do
    msg="$(ks_message ok)"
    [[ "$(ks_ready ok)" == False* && "$msg" == *"spec is immutable"* ]] && break
    ((SECONDS < deadline)) || { echo "ok did not fail on the new revision: $(ks_ready ok): $msg"; return 1; }
    sleep 0.3
  done
  echo "Kustomization ok: $(ks_ready ok): $msg"
  [[ "$msg" == *"spec is immutable: a new release is a new Deployment"* ]] || { echo "the message lacks the immutable rule's message"; return 1; }
  [[ "$(k -n "$NS" get swd ok-1 -o jsonpath='{.metadata.generation} {.spec.steps[0].actions[0].template.spec.containers[0].image}')" == "$before" ]] ||
    { echo "the live Deployment changed"; return 1; }
  echo "the live ok-1 is unchanged ($before) and still $(k -n "$NS" get swd ok-1 -o jsonpath='{.status.phase}')"
}
check "a commit that edits a release's spec is refused; the Kustomization's Ready condition says why" check_immutable

check_new_release() {
  local rev t0=$SECONDS
  git_w checkout -q HEAD~1 -- scenarios/ok/ok-1.yaml
  release "$WORK/scenarios/ok/ok-2.yaml" ok-2 "" deploy "$(action web duration=5s)"
  sed -i 's/image: busybox}/image: busybox:1.37}/' "$WORK/scenarios/ok/ok-2.yaml"
  rev="$(commit "ok-2: the change as a new release; ok-1 as it was")"
  echo "pushed $rev"
  wait_handled gitrepositories.source.toolkit.fluxcd.io flux-system "$(reconcile gitrepositories.source.toolkit.fluxcd.io flux-system)"
  wait_ks ok True ReconciliationSucceeded "$TIMEOUT" "$t0"
  [[ "$(k -n "$NS" get "$KS" ok -o jsonpath='{.status.lastAppliedRevision}')" == *"$rev"* ]]
  k -n "$NS" get swd ok-1 ok-2 -o wide
  [[ "$(k -n "$NS" get swd ok-2 -o jsonpath='{.status.phase}')" == Succeeded ]]
  assert_order ok
}
check "the documented way: the change as a new Deployment (ok-2); ok turns Ready after ok-2 Succeeded" check_new_release

kill "$MONITOR_PID" 2>/dev/null
MONITOR_PID=""
echo "timeline: $TIMELINE ($(wc -l <"$TIMELINE") samples)"
printf 'gitops: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
