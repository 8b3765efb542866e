#!/usr/bin/env bash
# Builds tests/kstatus (kstatus-check: prints kstatus's verdict for objects)
# into the tools cache, keyed by a hash of its sources, and links it into
# .tools/bin/kstatus-check. A warm run only hashes and relinks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/kstatus"
CACHE="${STEPWISE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepwise}"
BIN="$ROOT/.tools/bin"

log() { printf '[kstatus] %s\n' "$*" >&2; }
die() { printf '[kstatus] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "the Go toolchain is not on PATH"
for f in go.mod go.sum main.go; do [[ -f "$SRC/$f" ]] || die "missing $SRC/$f"; done

hash="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
dir="$CACHE/kstatus-check-$hash"
mkdir -p "$BIN"
if [[ ! -f "$dir/.done" ]]; then
  rm -rf "$dir"; mkdir -p "$dir/bin"
  log "building kstatus-check ($hash)"
  started=$SECONDS
  if ! out="$(cd "$SRC" && GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0 GOTOOLCHAIN=local \
    go build -trimpath -ldflags "-s -w" -o "$dir/bin/kstatus-check" . 2>&1)"; then
    printf '%s\n' "$out" >&2
    if grep -qE 'dial tcp|no such host|connection refused|i/o timeout|TLS handshake' <<<"$out"; then
      die "the Go module proxy ($(go env GOPROXY)) cannot be reached; check the network or set GOPROXY"
    fi
    die "go build in tests/kstatus failed (output above)"
  fi
  touch "$dir/.done"
  log "kstatus-check built in $((SECONDS - started)) s"
fi
ln -sfn "$dir/bin/kstatus-check" "$BIN/kstatus-check"
