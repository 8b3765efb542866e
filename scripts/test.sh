#!/usr/bin/env bash
# Every test suite, against the running local cluster (see scripts/with-cluster.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"
# Integration tests run several operators and simulated Jobs at once; more
# threads than cores is fine, they mostly wait on the cluster.
cargo test --lib --bins --tests --no-fail-fast -- --test-threads=8
for suite in tests/*.sh; do
  [[ -x "$suite" ]] || continue
  echo "=== $suite"
  "$suite"
done
