#!/usr/bin/env bash
# The operator running in the cluster from its own image, installed by
# `helm install` from charts/stepwise, on the local cluster's real node
# (scripts/node.sh: a real kubelet on containerd; no registry).
#
#   tests/in-cluster.sh
#
# Builds the image from the debug binary (target/debug/stepwise, which
# `make test` builds; a stripped copy keeps the image small, no release
# build) with scripts/operator-image.sh and imports it into the node's
# containerd, then installs the chart with 2 replicas, leader election,
# hostNetwork (the node's pod network reaches nothing but itself), the API
# server's address in KUBERNETES_SERVICE_HOST/PORT, and the real node's
# nodeSelector and toleration. Proves: both replicas turn Ready through the
# kubelet's own probes of /readyz (`kubectl rollout status`), exactly one
# holds the Lease, a release runs on the real node and succeeds, deleting the
# leader's pod hands the Lease to the other replica and a second release
# succeeds, `helm upgrade --wait` rolls both replicas and finishes, and
# `helm uninstall` plus the namespaces' deletion leave nothing.
#
# Needs the local cluster WITH its real node (scripts/cluster.sh up; fails,
# saying so, without one), .tools/bin/{helm,kubectl} (make tools), jq,
# strip (binutils) and cargo (`cargo build --bins`; STEPWISE_SKIP_BUILD=1
# skips that). Prints one line per check and ends with
# "in-cluster: N passed, M failed"; exits non-zero if any check failed.
# Everything lives in two namespaces of its own (labelled
# stepwise.dev/test=true) and one Helm release, removed at the end.
# STEPWISE_IN_CLUSTER_TIMEOUT: seconds per wait (default 120).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELM_BIN="$ROOT/.tools/bin/helm"
KUBECTL_BIN="$ROOT/.tools/bin/kubectl"
KUBECONFIG_FILE="${STEPWISE_KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
CHART=charts/stepwise
TIMEOUT="${STEPWISE_IN_CLUSTER_TIMEOUT:-120}"
NODE_LABEL=stepwise.dev/node-kind
NODE_KIND=real

h() { "$HELM_BIN" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

die() {
  printf 'in-cluster: error: %s\n' "$*" >&2
  printf 'in-cluster: 0 passed, 1 failed\n'
  exit 1
}

now_ms() { date +%s%3N; }
secs() { printf '%d.%01d s' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# ------------------------------------------------------------ prerequisites

[[ -x "$HELM_BIN" && -x "$KUBECTL_BIN" ]] || die "no helm or kubectl in .tools/bin: run make tools"
for t in jq strip; do command -v "$t" >/dev/null || die "$t is required (apt-get install jq binutils)"; done
[[ -f "$KUBECONFIG_FILE" ]] || die "no local cluster: $KUBECONFIG_FILE does not exist; run make cluster"
k get --raw=/readyz >/dev/null 2>&1 || die "the local cluster is not reachable through $KUBECONFIG_FILE; run make cluster"
NODE="$(k get nodes -l "$NODE_LABEL=$NODE_KIND" \
  -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
  sed -n 's/=True$//p' | head -n 1)"
[[ -n "$NODE" ]] || die "no Ready real node (label $NODE_LABEL=$NODE_KIND) in the local cluster: start it with \`scripts/cluster.sh up\` without STEPWISE_REAL_NODE=0"
# The API server as a pod on the host network reaches it (no kube-proxy).
SERVER="$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
[[ "$SERVER" =~ ^https://(127\.0\.0\.1):([0-9]+)$ ]] || die "the API server is not on https://127.0.0.1:<port> ($SERVER)"
API_HOST="${BASH_REMATCH[1]}" API_PORT="${BASH_REMATCH[2]}"

if [[ "${STEPWISE_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --quiet --bin stepwise || die "cargo build --bin stepwise failed"
fi
[[ -x target/debug/stepwise ]] || die "no target/debug/stepwise: run cargo build --bins"

# ------------------------------------------------------------------ harness

passed=0
failed=0
failures=()
LOG="$(mktemp)"

# check NAME FUNCTION [ARGS...]: runs the function in a subshell with errexit,
# so the first failing command fails the check. Shows its output (what it
# measured) on success, the last of it on failure.
check() {
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
    failures+=("$name")
    printf 'FAIL %s\n' "$name"
    tail -n 60 "$LOG" | sed 's/^/     | /'
  fi
}

# wait_until WHAT CMD...: until CMD succeeds (output discarded), at most
# TIMEOUT seconds; fails naming WHAT.
wait_until() {
  local what="$1" deadline=$(($(date +%s) + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      echo "timed out after ${TIMEOUT}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

expect_eq() {
  if [[ "$2" != "$3" ]]; then
    printf '%s:\n  got:  %s\n  want: %s\n' "$1" "$2" "$3"
    return 1
  fi
}

# --------------------------------------------------------------- test state

suffix="$(printf '%04x%04x' "$RANDOM" "$RANDOM")"
NS="in-cluster-$suffix"     # the operator's release and its Lease
WNS="in-cluster-$suffix-w"  # the namespace it watches: the releases
REL="stepwise-$suffix"      # release, Deployment, Lease and ServiceAccount name
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
TAG="$VERSION-debug"
IMAGE_REPO=stepwise.local/stepwise
WORK="$(mktemp -d)"
SELECTOR="app.kubernetes.io/instance=$REL"

cleanup() {
  if [[ -f "$WORK/cordoned" ]]; then k uncordon "$NODE" >/dev/null 2>&1 || true; fi
  if h status "$REL" -n "$NS" >/dev/null 2>&1; then
    h uninstall "$REL" -n "$NS" >/dev/null 2>&1 || true
  fi
  k delete namespace "$NS" "$WNS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  rm -rf "$WORK" "$LOG"
}
trap cleanup EXIT

# The operator's pods, one name a line, sorted.
pods() { k get pods -n "$NS" -l "$SELECTOR" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort; }
# The Lease's holder: "<pod name>-<pid>", as the operator names itself.
holder() { k get lease "$REL" -n "$NS" -o jsonpath='{.spec.holderIdentity}'; }
# The pod that holds the Lease, if any of the live ones does.
leader_pod() {
  local hold p
  hold="$(holder 2>/dev/null)" || return 1
  [[ -n "$hold" ]] || return 1
  for p in $(pods); do
    if [[ "$hold" == "$p-"* ]]; then echo "$p"; return 0; fi
  done
  return 1
}
# What one pod's /metrics says of leader_election_master_status (0 or 1),
# read in the pod (its metrics port is on the node's loopback).
master_status() {
  k exec -n "$NS" "$1" -c operator -- /stepwise probe --address-file=/run/stepwise/metrics.addr /metrics |
    sed -n 's/^leader_election_master_status \([01]\)$/\1/p'
}

# ------------------------------------------------------------------- checks

build_and_import_image() {
  local t0 out
  t0="$(now_ms)"
  strip -o "$WORK/stepwise" target/debug/stepwise
  out="$(scripts/operator-image.sh --binary "$WORK/stepwise" --tag "$TAG")"
  echo "$out"
  grep -q "imported $IMAGE_REPO:$TAG into the real node's containerd" <<<"$out"
  echo "binary $(du -h target/debug/stepwise | cut -f1) debug, $(du -h "$WORK/stepwise" | cut -f1) stripped;" \
    "image built and imported in $(secs $(($(now_ms) - t0)))"
}

setup_namespaces() {
  k apply --server-side --force-conflicts --field-manager=stepwise-tests -f crds/
  k wait --for condition=Established --timeout=60s crd/deployments.stepwise.dev crd/steps.stepwise.dev
  # No Pod Security label: a hostNetwork pod is beyond the baseline level.
  k create namespace "$NS"
  k create namespace "$WNS"
  k label namespace "$NS" "$WNS" stepwise.dev/test=true
}

write_values() {
  cat >"$WORK/values.yaml" <<EOF
replicaCount: 2
image:
  repository: $IMAGE_REPO
  tag: "$TAG"
  pullPolicy: IfNotPresent
watchNamespace: $WNS
leaderElection:
  enabled: true
logFormat: json
hostNetwork: true
extraEnv:
  - name: KUBERNETES_SERVICE_HOST
    value: "$API_HOST"
  - name: KUBERNETES_SERVICE_PORT
    value: "$API_PORT"
nodeSelector:
  $NODE_LABEL: $NODE_KIND
tolerations:
  - key: $NODE_LABEL
    operator: Equal
    value: $NODE_KIND
    effect: NoSchedule
terminationGracePeriodSeconds: 10
EOF
}

# Checks run in subshells: the install's start time goes through a file.
helm_install() {
  local t0
  write_values
  t0="$(now_ms)"
  echo "$t0" >"$WORK/t-install"
  h install "$REL" "$CHART" --namespace "$NS" -f "$WORK/values.yaml"
  echo "helm install took $(secs $(($(now_ms) - t0)))"
}

# Why the operator's pods are not running, in a few lines ahead of the
# long describe: the scheduler's verdicts, and what the real node says of
# itself (conditions, taints, cordon, and the pods it holds against maxPods).
why_pending() {
  echo "--- scheduler events in $NS:"
  k get events -n "$NS" --field-selector reason=FailedScheduling \
    -o jsonpath='{range .items[*]}{.involvedObject.name}: {.message}{"\n"}{end}' | tail -n 6
  echo "--- node $NODE:"
  k get node "$NODE" -o json | jq -r '
    "conditions: " + ([.status.conditions[] | "\(.type)=\(.status)" + (if .status == "True" and .type != "Ready" then " (\(.message))" else "" end)] | join(", ")),
    "taints: " + ([.spec.taints[]? | "\(.key)=\(.value // "")/\(.effect)"] | join(", ")),
    "unschedulable: \(.spec.unschedulable // false)",
    "allocatable: cpu \(.status.allocatable.cpu), memory \(.status.allocatable.memory), pods \(.status.allocatable.pods)"'
  local held
  held="$(k get pods -A --field-selector "spec.nodeName=$NODE,status.phase!=Succeeded,status.phase!=Failed" \
    -o custom-columns=NS:.metadata.namespace,POD:.metadata.name,PHASE:.status.phase,DELETING:.metadata.deletionTimestamp --no-headers)"
  echo "--- pods on $NODE not finished: $(grep -c . <<<"$held")"
  head -n 15 <<<"$held"
}

both_ready_through_probes() {
  local t0 d c p addrs=() a
  t0="$(cat "$WORK/t-install")"
  if ! k rollout status "deployment/$REL" -n "$NS" --timeout="${TIMEOUT}s"; then
    echo "kubectl rollout status did not finish within ${TIMEOUT}s; pods:"
    k get pods -n "$NS" -o wide
    why_pending
    k describe pods -n "$NS" -l "$SELECTOR" | tail -n 20
    return 1
  fi
  echo "2/2 Ready $(secs $(($(now_ms) - t0))) after helm install started"
  d="$(k get deployment "$REL" -n "$NS" -o json)"
  expect_eq "ready replicas" "$(jq -r '.status.readyReplicas' <<<"$d")" 2
  c="$(jq '.spec.template.spec.containers[0]' <<<"$d")"
  expect_eq "readiness probe" "$(jq -c '.readinessProbe.exec.command' <<<"$c")" \
    '["/stepwise","probe","--address-file=/run/stepwise/probes.addr","/readyz"]'
  expect_eq "hostNetwork" "$(jq -r '.spec.template.spec.hostNetwork' <<<"$d")" true
  for p in $(pods); do
    expect_eq "$p node" "$(k get pod "$p" -n "$NS" -o jsonpath='{.spec.nodeName}')" "$NODE"
    expect_eq "$p Ready" "$(k get pod "$p" -n "$NS" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" True
    # The same GET the kubelet's probe makes, in the pod.
    expect_eq "$p /readyz" "$(k exec -n "$NS" "$p" -c operator -- /stepwise probe --address-file=/run/stepwise/probes.addr /readyz)" "200 ready"
    a="$(k logs -n "$NS" "$p" -c operator | jq -rR 'fromjson? | select(.message | test("^serving .*probes$")?) | .address' | tail -n 1)"
    [[ "$a" == 127.0.0.1:* ]] || { echo "$p: no 'serving probes' log line on 127.0.0.1 (got '$a')"; return 1; }
    echo "$p on $NODE: probes on $a"
    addrs+=("$a")
  done
  expect_eq "replicas" "${#addrs[@]}" 2
  [[ "${addrs[0]}" != "${addrs[1]}" ]] || { echo "both replicas serve probes on ${addrs[0]}"; return 1; }
}

exactly_one_leader() {
  local leader p s ones=0
  wait_until "a replica to take the Lease $NS/$REL" leader_pod
  leader="$(leader_pod)"
  echo "Lease $REL held by $(holder) (pod $leader)"
  for p in $(pods); do
    s="$(master_status "$p")"
    echo "$p: leader_election_master_status $s"
    if [[ "$p" == "$leader" ]]; then expect_eq "$p master status" "$s" 1; else expect_eq "$p master status" "$s" 0; fi
    [[ "$s" != 1 ]] || ones=$((ones + 1))
  done
  expect_eq "replicas reporting leader" "$ones" 1
}

# release NAME: a Deployment custom resource whose one action runs on the
# real node (its label, taint and locally built busybox image, as
# examples/retry-once.yaml does).
release() {
  k apply -n "$WNS" -f - <<EOF
apiVersion: stepwise.dev/v1alpha1
kind: Deployment
metadata:
  name: $1
spec:
  steps:
  - name: hello
    actions:
    - name: say
      template:
        spec:
          nodeSelector: {$NODE_LABEL: $NODE_KIND}
          tolerations: [{key: $NODE_LABEL, value: $NODE_KIND, effect: NoSchedule}]
          securityContext: {runAsUser: 65532, runAsGroup: 65532}
          containers:
          - name: say
            image: stepwise.local/busybox:stable
            command: ["sh", "-c", "echo release $1 ran on \$(hostname)"]
EOF
}

release_succeeded() {
  [[ "$(k get deployments.stepwise.dev "$1" -n "$WNS" -o jsonpath='{.status.phase}')" == Succeeded ]]
}

release_succeeds() {
  local name="$1" t0 job
  t0="$(now_ms)"
  release "$name"
  if ! wait_until "release $WNS/$name to succeed" release_succeeded "$name"; then
    k get deployments.stepwise.dev,steps.stepwise.dev,jobs,pods -n "$WNS" -o wide
    k get deployments.stepwise.dev "$name" -n "$WNS" -o jsonpath='{.status.message}{"\n"}'
    k logs -n "$NS" -l "$SELECTOR" -c operator --tail=20
    return 1
  fi
  echo "release $name Succeeded in $(secs $(($(now_ms) - t0)))"
  job="$(k get jobs -n "$WNS" -l "stepwise.dev/step=$name-hello" -o jsonpath='{.items[0].metadata.name}')"
  expect_eq "the action's pod ran on" \
    "$(k get pods -n "$WNS" -l "batch.kubernetes.io/job-name=$job" -o jsonpath='{.items[0].spec.nodeName}')" "$NODE"
  k logs -n "$WNS" "job/$job"
}

other_than() { # POD: the live operator pod that is not POD
  local p
  for p in $(pods); do [[ "$p" == "$1" ]] || { echo "$p"; return 0; }; done
  return 1
}

lease_held_by() { [[ "$(leader_pod 2>/dev/null)" == "$1" ]]; }

# The ReplicaSet replaces the deleted pod at once, and a replacement that
# starts while the Lease is free takes it as fairly as the standby: the node
# is cordoned meanwhile, so the replacement stays Pending and only the
# standby can take over (uncordoned right after, and by cleanup).
leader_deleted_other_takes_over() {
  local old new t0
  old="$(leader_pod)"
  new="$(other_than "$old")"
  echo "leader $old, standby $new"
  touch "$WORK/cordoned"
  k cordon "$NODE"
  t0="$(now_ms)"
  k delete pod "$old" -n "$NS" --wait=false
  if ! wait_until "standby $new to take the Lease from deleted $old" lease_held_by "$new"; then
    echo "Lease holder: $(holder)"
    k logs -n "$NS" "$new" -c operator --tail=20
    k uncordon "$NODE"
    return 1
  fi
  echo "$new took the Lease $(secs $(($(now_ms) - t0))) after $old was deleted (holder $(holder))"
  k uncordon "$NODE"
  rm -f "$WORK/cordoned"
  expect_eq "$new master status" "$(master_status "$new")" 1
}

back_to_two() {
  if ! k rollout status "deployment/$REL" -n "$NS" --timeout="${TIMEOUT}s"; then
    k get pods -n "$NS" -o wide
    why_pending
    return 1
  fi
  expect_eq "pods" "$(pods | wc -l)" 2
  echo "replaced pod Ready: $(pods | tr '\n' ' ')"
}

helm_upgrade_rolls_both() {
  local before after t0 p
  before="$(pods | tr '\n' ' ')"
  t0="$(now_ms)"
  if ! h upgrade "$REL" "$CHART" --namespace "$NS" -f "$WORK/values.yaml" \
    --set-string "podAnnotations.stepwise\.dev/rolled=$suffix" --wait --timeout "${TIMEOUT}s"; then
    k get pods -n "$NS" -o wide
    why_pending
    return 1
  fi
  echo "helm upgrade --wait finished in $(secs $(($(now_ms) - t0)))"
  k rollout status "deployment/$REL" -n "$NS" --timeout="${TIMEOUT}s"
  expect_eq "revision" "$(h status "$REL" -n "$NS" -o json | jq -r '.version')" 2
  expect_eq "ready replicas" "$(k get deployment "$REL" -n "$NS" -o jsonpath='{.status.readyReplicas}')" 2
  after="$(pods | tr '\n' ' ')"
  for p in $after; do
    expect_eq "$p annotation" \
      "$(k get pod "$p" -n "$NS" -o jsonpath='{.metadata.annotations.stepwise\.dev/rolled}')" "$suffix"
    [[ " $before " != *" $p "* ]] || { echo "$p was not replaced"; return 1; }
  done
  wait_until "a new replica to take the Lease after the upgrade" leader_pod
  echo "pods before: $before; after: $after; leader $(leader_pod)"
}

namespace_gone() { ! k get namespace "$1" -o name; }

uninstall_removes_everything() {
  local t0 left
  t0="$(now_ms)"
  h uninstall "$REL" --namespace "$NS" --wait --timeout "${TIMEOUT}s"
  left="$(k get deployment,replicaset,service,serviceaccount,role,rolebinding -n "$NS" -l app.kubernetes.io/part-of=stepwise -o name)"
  [[ -z "$left" ]] || { echo "left in $NS: $left"; return 1; }
  left="$(k get role,rolebinding -n "$WNS" -o name)"
  [[ -z "$left" ]] || { echo "left in $WNS: $left"; return 1; }
  k delete namespace "$NS" "$WNS" --wait=false
  wait_until "namespace $NS to be removed" namespace_gone "$NS"
  wait_until "namespace $WNS to be removed" namespace_gone "$WNS"
  echo "uninstalled and both namespaces removed in $(secs $(($(now_ms) - t0)))"
}

# --------------------------------------------------------------------- run

echo "in-cluster: cluster $SERVER, real node $NODE, namespaces $NS $WNS, release $REL"

check "image from target/debug/stepwise (stripped) imported into the real node" build_and_import_image
check "CRDs applied, test namespaces created" setup_namespaces
if ((failed > 0)); then
  printf 'in-cluster: %d passed, %d failed\n' "$passed" "$failed"
  exit 1
fi
check "helm install: 2 replicas, leader election, hostNetwork, real node" helm_install
check "both replicas Ready through the kubelet's probes of /readyz (rollout status)" both_ready_through_probes
check "exactly one replica holds the Lease" exactly_one_leader
check "a release runs on the real node and succeeds" release_succeeds "hello-$suffix-1"
check "deleting the leader's pod hands the Lease to the other replica" leader_deleted_other_takes_over
check "a second release succeeds under the new leader" release_succeeds "hello-$suffix-2"
check "the Deployment is back at 2/2 Ready" back_to_two
check "helm upgrade --wait rolls both replicas and finishes" helm_upgrade_rolls_both
check "helm uninstall, then both namespaces are removed" uninstall_removes_everything

if ((failed > 0)); then
  printf '\nfailed checks:\n'
  printf '  %s\n' "${failures[@]}"
fi
printf 'in-cluster: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
