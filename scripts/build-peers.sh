#!/usr/bin/env bash
# Builds the bench's peers from their Go modules (pinned below), caches each
# build outside the repo and links the binaries into .tools/bin and their
# CRDs and config YAML into .tools/peers/<peer>/ (taken from the module's own
# files in the Go module cache; nothing of the peers is committed here).
#
#   scripts/build-peers.sh               Tekton Pipelines and Argo Workflows
#   scripts/build-peers.sh tekton        one of them (tekton | argo)
#
# Each is built through a throwaway module that requires it, copies its
# non-local replaces and adds the pins below (the latest versions the proxy
# resolves do not build against these releases).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/versions.sh
[[ -f "$ROOT/scripts/versions.sh" ]] && source "$ROOT/scripts/versions.sh"
TEKTON_VERSION="${TEKTON_VERSION:-v1.9.0}"
ARGO_WORKFLOWS_VERSION="${ARGO_WORKFLOWS_VERSION:-v3.7.9}"

TAG=peers
# shellcheck source=scripts/lib/gobuild.sh
source "$ROOT/scripts/lib/gobuild.sh"

link() { # peer binary
  local dir="$CACHE/$1" out="$ROOT/.tools/peers/$2"
  ln -sfn "$dir/bin/$2" "$BIN/$2"
  mkdir -p "$ROOT/.tools/peers"
  ln -sfn "$dir/yaml" "$out"
}

# Sets args to -replace flags for every module-target replace in a go.mod.
module_replaces() { # go.mod
  local old new
  args=()
  while read -r old new; do
    [[ -n "$old" ]] && args+=("-replace=$old=$new")
  done < <(go mod edit -json "$1" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if new["Path"].startswith((".", "/")):
        continue
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print(old, new["Path"] + "@" + new["Version"])
')
}

# build NAME MODULE VERSION PKG BINARY YAMLFN [extra go mod edit flags...]
build() {
  local name="$1" mod="$2" v="$3" pkg="$4" bin="$5" yamlfn="$6"
  shift 6
  local dir="$CACHE/$name-$v"
  if built "$dir"; then link "$name-$v" "$bin"; return; fi
  rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin" "$dir/yaml"
  log "building $name $v (cold: about 3 minutes, at nice 10)"
  local started=$SECONDS
  (
    cd "$dir/src"
    printf 'module stepwise.local/%s\n\ngo 1.26\n' "$name" >go.mod
    local info gomod srcdir
    info="$(go mod download -json "$mod@$v" 2>&1)" || { printf '%s\n' "$info" >&2; die "cannot download $mod@$v"; }
    gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$info")"
    srcdir="$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$info")"
    [[ -f "$gomod" && -d "$srcdir" ]] || die "$mod@$v is not served by the Go module proxy"
    module_replaces "$gomod"
    args+=("$@")
    ((${#args[@]} == 0)) || go mod edit "${args[@]}"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
    gorun go get "$mod@$v"
    # go get may raise pinned requires again; re-apply the pins after it.
    ((${#args[@]} == 0)) || go mod edit "${args[@]}"
    gorun nice -n 10 go mod tidy -e
    gorun nice -n 10 go build -trimpath -ldflags "-s -w" -o "$dir/bin/$bin" "$pkg"
    "$yamlfn" "$srcdir" "$dir/yaml"
  )
  touch "$dir/.done"
  link "$name-$v" "$bin"
  log "$name $v built in $((SECONDS - started)) s"
}

tekton_yaml() { # srcdir out: CRDs (without spec.conversion) and config-* ConfigMaps
  local f
  for f in "$1"/config/300-crds/*.yaml; do cp "$f" "$2/crd-$(basename "$f")"; done
  for f in "$1"/config/config-*.yaml; do cp "$f" "$2/$(basename "$f")"; done
  chmod u+w "$2"/*.yaml
}

argo_yaml() { # srcdir out: the full CRDs
  local f
  for f in "$1"/manifests/base/crds/full/*.yaml; do
    # Its kustomization.yaml is no CRD: `kubectl apply` would refuse it.
    [[ "$(basename "$f")" == kustomization.yaml ]] && continue
    cp "$f" "$2/crd-$(basename "$f")"
  done
  chmod u+w "$2"/*.yaml
}

if [[ $# -eq 0 ]]; then set -- tekton argo; fi
for p in "$@"; do
  case "$p" in
    tekton)
      build tekton github.com/tektoncd/pipeline "$TEKTON_VERSION" \
        github.com/tektoncd/pipeline/cmd/controller tekton-controller tekton_yaml \
        -replace=github.com/aws/aws-sdk-go-v2/service/ecr=github.com/aws/aws-sdk-go-v2/service/ecr@v1.27.3 \
        -replace=github.com/aws/aws-sdk-go-v2/service/ecrpublic=github.com/aws/aws-sdk-go-v2/service/ecrpublic@v1.23.3
      ;;
    argo)
      build argo github.com/argoproj/argo-workflows/v3 "$ARGO_WORKFLOWS_VERSION" \
        github.com/argoproj/argo-workflows/v3/cmd/workflow-controller argo-workflow-controller argo_yaml \
        -replace=github.com/olekukonko/tablewriter=github.com/olekukonko/tablewriter@v0.0.5
      ;;
    *) die "unknown peer '$p' (tekton|argo)" ;;
  esac
done
log "peers ready in $BIN (YAML in .tools/peers/)"
