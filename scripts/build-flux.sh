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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/versions.sh
[[ -f "$ROOT/scripts/versions.sh" ]] && source "$ROOT/scripts/versions.sh"
# v1.10.x does not build from the proxy here (some dependencies are not served).
FLUX_CONTROLLERS_VERSION="${FLUX_CONTROLLERS_VERSION:-v1.9.3}"

TAG=flux
# shellcheck source=scripts/lib/gobuild.sh
source "$ROOT/scripts/lib/gobuild.sh"
CRDS="$ROOT/.tools/flux/crds"
mkdir -p "$CRDS"

link() { # name controller
  local dir="$CACHE/$1" f
  ln -sfn "$dir/bin/$2" "$BIN/$2"
  for f in "$dir"/crds/*.yaml; do ln -sfn "$f" "$CRDS/$(basename "$f")"; done
}

build() { # controller (source-controller | kustomize-controller)
  local ctl="$1" mod="github.com/fluxcd/$1" v="$FLUX_CONTROLLERS_VERSION"
  local name="flux-$ctl-$v" dir
  dir="$CACHE/$name"
  if built "$dir"; then link "$name" "$ctl"; return; fi
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
