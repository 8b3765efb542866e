#!/usr/bin/env bash
# Every test suite, against the running local cluster (see scripts/with-cluster.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"
# Integration tests run several operators and simulated Jobs at once; more
# threads than cores is fine, they mostly wait on the cluster.
# tests/real_node.rs, tests/real_outcomes.rs, tests/real_starts.rs and tests/in-cluster.sh need the real node, which the
# cluster has unless it was started with STEPWISE_REAL_NODE=0; then they are
# left out, and said so.
targets=(--tests)
if [[ "${STEPWISE_REAL_NODE:-1}" == 0 ]]; then
  targets=()
  for f in tests/*.rs; do
    name="$(basename "$f" .rs)"
    [[ "$name" == real_node || "$name" == real_outcomes || "$name" == real_starts ]] || targets+=(--test "$name")
  done
  echo "[test] not running tests/real_node.rs, tests/real_outcomes.rs and tests/real_starts.rs: STEPWISE_REAL_NODE=0 (a cluster without the real node)" >&2
fi
cargo test --workspace --lib --bins "${targets[@]}" --no-fail-fast -- --test-threads=8
for suite in tests/*.sh; do
  [[ -x "$suite" ]] || continue
  # tests/in-cluster.sh runs the operator's image on the real node.
  if [[ "$suite" == tests/in-cluster.sh && "${STEPWISE_REAL_NODE:-1}" == 0 ]]; then
    echo "[test] not running $suite: STEPWISE_REAL_NODE=0 (a cluster without the real node)" >&2
    continue
  fi
  echo "=== $suite"
  "$suite"
done
