#!/usr/bin/env bash
# Builds the real Kubernetes control plane and its companions from pinned Go
# modules, caches each build outside the repo, and links the binaries into
# .tools/bin. A warm run only checks the cache and relinks.
#
#   scripts/tools.sh            build everything that is missing
#   scripts/tools.sh kubernetes build one component (kubernetes|kubelet|etcd|kwok|helm|flux|kstatus)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/versions.sh
source "$ROOT/scripts/versions.sh"

TAG=tools
# shellcheck source=scripts/lib/gobuild.sh
source "$ROOT/scripts/lib/gobuild.sh"

# A component is built once into $CACHE/<name>-<version>/bin.
have() { built "$CACHE/$1"; }

link() {
  local dir="$CACHE/$1/bin" f
  for f in "$dir"/*; do ln -sfn "$f" "$BIN/$(basename "$f")"; done
}

# Builds commands of k8s.io/kubernetes at KUBERNETES_VERSION into
# $CACHE/NAME/bin, in a throwaway module whose staging modules
# (k8s.io/api, client-go, ...) are replaced by their published tags.
#   build_k8s NAME "WHAT (cold: ~N min)" CMD...
build_k8s() {
  local name="$1" what="$2" dir v="${KUBERNETES_VERSION#v}"; shift 2
  have "$name" && { link "$name"; return; }
  dir="$CACHE/$name"; rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin"
  log "building $what"
  local started=$SECONDS
  (
    cd "$dir/src"
    printf 'module stepwise.local/k8s\n\ngo 1.25\n' >go.mod
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')" ||
      die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION"
    [[ -f "$gomod" ]] || die "k8s.io/kubernetes@$KUBERNETES_VERSION is not served by the Go module proxy"
    # Only the staging modules are required at exactly v0.0.0; anything else
    # (k8s.io/utils, kube-openapi) keeps its real pseudo-version.
    local staging
    staging="$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)"
    [[ -n "$staging" ]] || die "found no staging modules in $gomod"
    local args=()
    for m in $staging; do args+=("-replace=$m=$m@v0.${v#1.}"); done
    go mod edit "${args[@]}"
    local pkgs=() c
    for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    gorun go get "k8s.io/kubernetes@$KUBERNETES_VERSION" "${pkgs[@]/%/@$KUBERNETES_VERSION}"
    local major="${v%%.*}" minor
    minor="$(cut -d. -f2 <<<"$v")"
    local ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
      ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    gorun go build -ldflags "$ld" -o "$dir/bin/" "${pkgs[@]}"
  )
  touch "$dir/.done"; link "$name"
  log "${name%-*} ${name##*-} built in $((SECONDS - started)) s"
}

build_kubernetes() {
  build_k8s "kubernetes-$KUBERNETES_VERSION" \
    "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION (cold: ~4 min)" \
    kube-apiserver kube-controller-manager kube-scheduler kubectl
}

# The kubelet of the real node (scripts/node.sh): cached on its own, so
# adding it rebuilds nothing else.
build_kubelet() {
  build_k8s "kubelet-$KUBERNETES_VERSION" "kubelet $KUBERNETES_VERSION (~75 s with a warm Go cache)" kubelet
}

build_etcd() {
  local name="etcd-$ETCD_VERSION" dir
  have "$name" && { link "$name"; return; }
  dir="$CACHE/$name"; rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin"
  log "building etcd $ETCD_VERSION (cold: ~1 min)"
  local started=$SECONDS
  (
    cd "$dir/src"
    # etcd's own go.mod has local replaces, so `go install` refuses it; a
    # throwaway module that requires it resolves the published siblings.
    printf 'module stepwise.local/etcd\n\ngo 1.25\n' >go.mod
    gorun go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    gorun go build -ldflags "-s -w" -o "$dir/bin/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$dir/.done"; link "$name"
  log "etcd $ETCD_VERSION built in $((SECONDS - started)) s"
}

build_install() { # name version package
  local name="$1-$2" dir
  have "$name" && { link "$name"; return; }
  dir="$CACHE/$name"; rm -rf "$dir"; mkdir -p "$dir/bin"
  log "building $1 $2"
  local started=$SECONDS
  GOBIN="$dir/bin" gorun go install -ldflags "-s -w" "$3@$2"
  touch "$dir/.done"; link "$name"
  log "$1 $2 built in $((SECONDS - started)) s"
}

build_kwok() { build_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok; }
build_helm() {
  build_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

if [[ $# -eq 0 ]]; then set -- kubernetes kubelet etcd kwok helm flux kstatus; fi
for c in "$@"; do
  case "$c" in
    kubernetes|kubelet|etcd|kwok|helm) "build_$c" ;;
    flux) "$ROOT/scripts/build-flux.sh" ;;
    kstatus) "$ROOT/scripts/build-kstatus.sh" ;;
    *) die "unknown component '$c' (kubernetes|kubelet|etcd|kwok|helm|flux|kstatus)" ;;
  esac
done
log "tools ready in $BIN"
