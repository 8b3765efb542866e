#!/usr/bin/env bash
# Fails when a Rust file in src/ or crates/ is longer than the limit
# (default 400 lines): past it, a module usually holds two concerns.
# Function length is clippy's (too_many_lines, threshold in clippy.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit="${1:-400}"
over="$(find src crates -name '*.rs' -not -path '*/target/*' -print0 |
  xargs -0 wc -l | awk -v max="$limit" '$2 != "total" && $1 > max {print "  " $2 ": " $1 " lines"}')"
if [[ -n "$over" ]]; then
  echo "files over $limit lines (split them by concern):"
  echo "$over"
  exit 1
fi
