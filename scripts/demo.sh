#!/usr/bin/env bash
# `make demo`: the local cluster, the CRDs, the operator, and sample releases
# whose actions run as real containers on the cluster's real node: one whose
# action fails once and is retried after 15 s, one that runs out of retries
# into guided failure and is resolved with `kubectl stepwise retry`, one whose
# approval times out into its default, and three that share a concurrency
# key and run one at a time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/target/debug:$ROOT/.tools/bin:$PATH"
export KUBECONFIG="$ROOT/.cluster/kubeconfig"
NS=stepwise-demo
started=$SECONDS

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "local control plane"
scripts/cluster.sh up

say "CRDs"
run kubectl apply --server-side -f crds/
# The operator checks the CRDs are served before it starts: a fresh CRD is
# only served once Established (a second or so; here at most 60 s).
run kubectl wait --for=condition=Established --timeout=60s crd/deployments.stepwise.dev crd/steps.stepwise.dev

say "operator (logs: .cluster/logs/operator.log)"
mkdir -p .cluster/logs .cluster/pids
PIDS="$ROOT/.cluster/pids"
# shellcheck source=scripts/lib/proc.sh
source "$ROOT/scripts/lib/proc.sh"
stop_pid operator 25 echo || { echo "the previous demo operator (pid $(pid_of operator)) would not stop" >&2; exit 1; }
# By absolute path: `make cluster-down` stops the pids recorded in .cluster/pids.
"$ROOT/target/debug/stepwise" controller --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 \
  >.cluster/logs/operator.log 2>&1 &
pid_record operator "$!"
ready=0
for _ in $(seq 150); do
  curl -fsS --max-time 2 http://127.0.0.1:18081/readyz >/dev/null 2>&1 && { ready=1; break; }
  live_pid operator >/dev/null || break
  sleep 0.2
done
if ((ready == 0)); then
  echo "the operator did not become ready within 30 s (or exited); last lines of .cluster/logs/operator.log:" >&2
  tail -20 .cluster/logs/operator.log >&2
  exit 1
fi
echo "operator ready (pid $(pid_of operator))"

say "releases in namespace $NS"
kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null ||
  { echo "namespace $NS from an earlier demo was not deleted within 120 s" >&2; exit 1; }
run kubectl create namespace "$NS"
for _ in $(seq 150); do kubectl -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
kubectl -n "$NS" get serviceaccount default >/dev/null ||
  { echo "namespace $NS got no default ServiceAccount within 30 s (kube-controller-manager; see .cluster/logs)" >&2; exit 1; }
run kubectl -n "$NS" apply -f examples/retry-once.yaml -f examples/guided-failure.yaml

say "shop-1-4-2: the schema migration fails once and is retried 15 s later"
# Bounded: the release takes ~20 s; a hung watch must not hang the demo.
run timeout 180 kubectl stepwise -n "$NS" status -w shop-1-4-2 ||
  { echo "shop-1-4-2 did not finish within 180 s; see .cluster/logs/operator.log" >&2; exit 1; }
say "what the real containers said (kubectl logs, through the real node's kubelet)"
run kubectl -n "$NS" logs job/shop-1-4-2-migrate-schema-1
run kubectl -n "$NS" logs job/shop-1-4-2-migrate-schema-2
run kubectl -n "$NS" get pods -l stepwise.dev/deployment=shop-1-4-2 -o wide

say "shop-1-4-3: the smoke test exhausts its retry and waits for a decision"
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=WaitingForDecision swd/shop-1-4-3 --timeout=90s >/dev/null
run kubectl stepwise -n "$NS" status shop-1-4-3
run kubectl -n "$NS" get swd shop-1-4-3 -o jsonpath='{range .status.conditions[?(@.type=="GuidedFailure")]}{.type}={.status}: {.message}{"\n"}{end}'
say "a person decides: retry"
run kubectl stepwise -n "$NS" retry shop-1-4-3
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=WaitingForApproval swd/shop-1-4-3 --timeout=60s >/dev/null
run kubectl stepwise -n "$NS" status shop-1-4-3
say "and approves the release"
run kubectl stepwise -n "$NS" approve shop-1-4-3
run kubectl -n "$NS" wait --for=condition=Ready swd/shop-1-4-3 --timeout=60s
run kubectl stepwise -n "$NS" status shop-1-4-3

say "search-3-1-0: a production gate with a deadline: nobody decides within 20 s, so it is approved by timeout"
run kubectl -n "$NS" apply -f examples/deadline.yaml
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=WaitingForApproval swd/search-3-1-0 --timeout=30s >/dev/null ||
  { echo "search-3-1-0 did not wait for approval within 30 s; see .cluster/logs/operator.log" >&2; exit 1; }
run kubectl -n "$NS" get swd search-3-1-0
run kubectl stepwise -n "$NS" status search-3-1-0
run kubectl -n "$NS" wait --for=condition=Ready swd/search-3-1-0 --timeout=90s
run kubectl -n "$NS" get sws search-3-1-0-approve-production -o jsonpath='{.status.approval}{"\n"}'
run kubectl -n "$NS" get events --field-selector reason=DecisionTimedOut -o custom-columns='REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message'

say "cart-2-0-1, -2, -3: three releases of one app at once share a concurrency key: one runs, two wait"
run kubectl -n "$NS" apply -f examples/queue.yaml
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Queued swd/cart-2-0-3 --timeout=30s >/dev/null ||
  { echo "cart-2-0-3 was not Queued within 30 s; see .cluster/logs/operator.log" >&2; exit 1; }
run kubectl -n "$NS" get swd cart-2-0-1 cart-2-0-2 cart-2-0-3 -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,MESSAGE:.status.message'
run kubectl -n "$NS" wait --for=condition=Ready swd/cart-2-0-1 swd/cart-2-0-2 swd/cart-2-0-3 --timeout=120s
say "they ran one after the other, oldest first"
run kubectl -n "$NS" get jobs -l 'stepwise.dev/deployment in (cart-2-0-1,cart-2-0-2,cart-2-0-3)' --sort-by=.metadata.creationTimestamp -o custom-columns='JOB:.metadata.name,CREATED:.metadata.creationTimestamp,COMPLETED:.status.completionTime'

say "billing-5-2-0: its rollout fails, so its failure handlers run: rollback (OnFailure), then notify (Always)"
run kubectl -n "$NS" apply -f examples/handlers.yaml
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Failed swd/billing-5-2-0 --timeout=120s >/dev/null ||
  { echo "billing-5-2-0 did not finish within 120 s; see .cluster/logs/operator.log" >&2; exit 1; }
run kubectl -n "$NS" get swd billing-5-2-0 -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,FAILED-STEP:.status.failure.step,MESSAGE:.status.message'
run kubectl stepwise -n "$NS" status billing-5-2-0

say "summary"
run kubectl -n "$NS" get swd,sws
run kubectl -n "$NS" get jobs -L stepwise.dev/action,stepwise.dev/attempt
printf '\ndemo finished in %d s. The cluster and the operator keep running: try\n' "$((SECONDS - started))"
printf '  export KUBECONFIG=%s PATH=%s/target/debug:%s/.tools/bin:$PATH\n' "$KUBECONFIG" "$ROOT" "$ROOT"
printf '  kubectl stepwise -n %s status shop-1-4-2\n' "$NS"
printf 'and stop everything with: make cluster-down\n'
