# shellcheck shell=bash
# Shared by the scripts that build tools from Go modules into the cache
# outside the repo (tools.sh, build-flux.sh, build-kstatus.sh). The caller
# sets ROOT and TAG (its log prefix) before sourcing.

CACHE="${STEPWISE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepwise}"
BIN="$ROOT/.tools/bin"
mkdir -p "$CACHE" "$BIN"

export GOFLAGS="-buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

log() { printf '[%s] %s\n' "$TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$TAG" "$*" >&2; exit 1; }

command -v go >/dev/null || die "the Go toolchain is not on PATH (need Go >= 1.26)"

# Runs a go command quietly; on failure shows its output and names the
# cause in a sentence (proxy unreachable, module not served, Go too old).
gorun() {
  local out missing
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    if grep -qE 'dial tcp|no such host|connection refused|i/o timeout|TLS handshake' <<<"$out"; then
      die "the Go module proxy ($(go env GOPROXY)) cannot be reached; check the network or set GOPROXY"
    fi
    if grep -qE 'requires go >=|toolchain not available' <<<"$out"; then
      die "this build needs a newer Go than $(go env GOVERSION)"
    fi
    missing="$(grep -oE '[a-zA-Z0-9./_-]+@v[0-9][^:]*: (reading|verifying|invalid version)[^$]*' <<<"$out" | head -1 || true)"
    [[ -n "$missing" ]] && die "a module is not served by the proxy: $missing"
    die "'$*' failed (output above)"
  fi
  return 0
}

# Whether DIR holds a finished build: a .done marker (a killed build lacks
# it) and every binary in DIR/bin still a whole Go binary (a cache copied or
# cut short is rebuilt rather than crashing the cluster later).
built() {
  local dir="$1" f
  [[ -f "$dir/.done" ]] || return 1
  for f in "$dir"/bin/*; do
    if ! go version -m "$f" >/dev/null 2>&1; then
      log "$f is not a whole Go binary; rebuilding ${dir##*/}"
      rm -f "$dir/.done"
      return 1
    fi
  done
}
