#!/usr/bin/env bash
# `make bench`: measures the operator on the running local cluster and writes
# BENCHMARKS.md and bench/results.json (see benches/bench/main.rs for what is
# measured and how). Run it through scripts/with-cluster.sh, which starts the
# cluster when none runs:
#
#   scripts/with-cluster.sh scripts/bench.sh [--phases retry,handoff,throughput] [--releases N]
#
# Environment: BENCH_RELEASES (throughput releases, default 1000),
# BENCH_PHASES, BENCH_PHASE_TIMEOUT_S (default 1800), STEPWISE_BIN (default
# target/release/stepwise, built here when missing or stale).
# The peers phase (`--peers`, BENCH_PHASES=peers, `make bench-peers`; not in
# the default phases) needs scripts/build-peers.sh first and takes
# BENCH_PEERS (drivers, default stepwise,tekton,tekton-tuned,argo,argo-1s,argo-tuned),
# BENCH_PEERS_TWO_STEP (default 20), BENCH_PEERS_RETRY (default 3) and
# BENCH_PEERS_RELEASES (default 300); see benches/bench/phases/peers.rs.
# Profiling runs (results elsewhere, not for BENCHMARKS.md):
#   BENCH_OUT_DIR=/tmp/prof    where bench/results.json and BENCHMARKS.md go
#   BENCH_OPERATOR_ENV="LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT=/tmp/ht.raw"
#   BENCH_OPERATOR_PREFIX="valgrind --tool=massif --massif-out-file=/tmp/massif.out"
#   BENCH_OPERATOR_RUST_LOG=debug
# and `perf record -p <operator pid>` from another shell.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/bin:$HOME/.cargo/bin:$PATH"
export KUBECONFIG="${KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
export STEPWISE_KUBECONFIG="${STEPWISE_KUBECONFIG:-$KUBECONFIG}"

if ! scripts/cluster.sh status >/dev/null 2>&1; then
  echo "bench: no running local cluster; use 'make bench' or 'scripts/with-cluster.sh scripts/bench.sh'" >&2
  scripts/cluster.sh status >&2 || true
  exit 1
fi

if [[ -z "${STEPWISE_BIN:-}" ]]; then
  # A no-op when `make bench` has just built it.
  cargo build --release --bins
fi

# Leftovers of an interrupted run would load the cluster while we measure.
kubectl --kubeconfig "$KUBECONFIG" delete namespace -l stepwise.dev/bench=true \
  --wait=true --timeout=600s --ignore-not-found >/dev/null 2>&1 || true

echo "bench: $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo), $(date -u +%Y-%m-%dT%H:%M:%SZ)" >&2
exec cargo bench --bench bench -- "$@"
