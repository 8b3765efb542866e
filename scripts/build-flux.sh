#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller from their Go
# modules (pinned below), caches each build outside the repo and links the
# binaries into .tools/bin and their CRDs into .tools/flux/crds.
#
#   scripts/build-flux.sh                        both controllers
#   scripts/build-flux.sh source-controller      one of them
#
# Both repositories keep `replace` directives in their go.mod (a local
# `=> ./api` and a few pinned forks), so `go install module@version` refuses
# them. Instead each is built through a throwaway module that requires it,
# copies its non-local replaces, and leaves `/api` to the published module.
# A .done marker makes a half-finished (killed) build start over.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/versions.sh
[[ -f "$ROOT/scripts/versions.sh" ]] && source "$ROOT/scripts/versions.sh"
# v1.10.x does not build from the proxy here (some dependencies are not served).
FLUX_CONTROLLERS_VERSION="${FLUX_CONTROLLERS_VERSION:-v1.9.3}"

CACHE="${STEPWISE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepwise}"
BIN="$ROOT/.tools/bin"
CRDS="$ROOT/.tools/flux/crds"
mkdir -p "$CACHE" "$BIN" "$CRDS"

export GOFLAGS="-buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

log() { printf '[flux] %s\n' "$*" >&2; }
die() { printf '[flux] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "the Go toolchain is not on PATH (need Go >= 1.26 for Flux $FLUX_CONTROLLERS_VERSION)"

# Runs a go command quietly; on failure shows its output and names the cause.
gorun() {
  local out
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    if grep -qE 'dial tcp|no such host|connection refused|i/o timeout|TLS handshake' <<<"$out"; then
      die "the Go module proxy ($(go env GOPROXY)) cannot be reached; check the network or set GOPROXY"
    fi
    if grep -qE 'requires go >=|toolchain not available' <<<"$out"; then
      die "Flux $FLUX_CONTROLLERS_VERSION needs a newer Go than $(go env GOVERSION)"
    fi
    die "'$*' failed (output above)"
  fi
  return 0
}

link() { # name controller
  local dir="$CACHE/$1" f
  ln -sfn "$dir/bin/$2" "$BIN/$2"
  for f in "$dir"/crds/*.yaml; do ln -sfn "$f" "$CRDS/$(basename "$f")"; done
}

build() { # controller (source-controller | kustomize-controller)
  local ctl="$1" mod="github.com/fluxcd/$1" v="$FLUX_CONTROLLERS_VERSION"
  local name="flux-$ctl-$v" dir
  dir="$CACHE/$name"
  if [[ -f "$dir/.done" ]]; then link "$name" "$ctl"; return; fi
  rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin" "$dir/crds"
  log "building $ctl $v (cold: a few minutes)"
  local started=$SECONDS
  (
    cd "$dir/src"
    printf 'module stepwise.local/%s\n\ngo 1.26\n' "$ctl" >go.mod
    local info gomod srcdir
    info="$(go mod download -json "$mod@$v" 2>&1)" || { printf '%s\n' "$info" >&2; die "cannot download $mod@$v"; }
    gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$info")"
    srcdir="$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$info")"
    [[ -f "$gomod" && -d "$srcdir" ]] || die "$mod@$v is not served by the Go module proxy"

    # Copy every replace whose target is a module (not a ./ or ../ path).
    local args=() old new
    while read -r old new; do
      [[ -n "$old" ]] && args+=("-replace=$old=$new")
    done < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if new["Path"].startswith((".", "/")):
        continue  # local replace: the published module is used instead
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print(old, new["Path"] + "@" + new["Version"])
')
    ((${#args[@]} == 0)) || go mod edit "${args[@]}"

    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$mod" >tools.go
    gorun go get "$mod@$v"
    gorun go mod tidy -e
    gorun go build -trimpath -ldflags "-s -w" -o "$dir/bin/$ctl" "$mod"
    cp "$srcdir"/config/crd/bases/*.yaml "$dir/crds/"
  )
  touch "$dir/.done"
  link "$name" "$ctl"
  log "$ctl $v built in $((SECONDS - started)) s"
}

if [[ $# -eq 0 ]]; then set -- source-controller kustomize-controller; fi
for c in "$@"; do
  case "$c" in
    source-controller | kustomize-controller) build "$c" ;;
    *) die "unknown controller '$c' (source-controller|kustomize-controller)" ;;
  esac
done
log "flux controllers $FLUX_CONTROLLERS_VERSION ready in $BIN (CRDs in ${CRDS#"$ROOT"/})"
