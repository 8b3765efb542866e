#!/usr/bin/env bash
# Builds tests/kstatus (kstatus-check: prints kstatus's verdict for objects)
# into the tools cache, keyed by a hash of its sources, and links it into
# .tools/bin/kstatus-check. A warm run only hashes and relinks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/kstatus"
TAG=kstatus
# shellcheck source=scripts/lib/gobuild.sh
source "$ROOT/scripts/lib/gobuild.sh"
for f in go.mod go.sum main.go; do [[ -f "$SRC/$f" ]] || die "missing $SRC/$f"; done

hash="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
dir="$CACHE/kstatus-check-$hash"
if ! built "$dir"; then
  rm -rf "$dir"; mkdir -p "$dir/bin"
  log "building kstatus-check ($hash)"
  started=$SECONDS
  (cd "$SRC" && GOFLAGS="-buildvcs=false -mod=readonly" gorun go build -trimpath -ldflags "-s -w" -o "$dir/bin/kstatus-check" .)
  touch "$dir/.done"
  log "kstatus-check built in $((SECONDS - started)) s"
fi
ln -sfn "$dir/bin/kstatus-check" "$BIN/kstatus-check"
