#!/usr/bin/env bash
# Packs the operator's release binary as an OCI image, without a container
# engine, in the layout the Dockerfile makes (distroless static nonroot):
# /stepwise as entrypoint with `controller` as its command, user and group
# 65532 (nonroot, home /home/nonroot), /tmp, CA certificates, ports 8080 and
# 8081. Imports it into the real node's containerd when that runs
# (scripts/node.sh).
#
#   scripts/operator-image.sh          build target/oci/stepwise-<version>.tar and import it
#   scripts/operator-image.sh --no-import
#   scripts/operator-image.sh --binary PATH [--tag TAG]
#                                      pack that binary instead (e.g. a stripped
#                                      copy of target/debug/stepwise, as
#                                      tests/in-cluster.sh does: no release build),
#                                      as stepwise.local/stepwise:TAG
#
# Without --binary, the binary is the first present of: target/x86_64-unknown-linux-musl/release/
# (as the Dockerfile builds it), target/x86_64-unknown-linux-gnu/release/
# (static glibc, no musl toolchain needed:
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu --bin stepwise
# ), target/release/ (`cargo build --release`). A dynamically linked one gets
# its shared libraries (as ldd lists them) beside it, at the same paths, so
# the image still runs on its own.
# The image is stepwise.local/stepwise:<version>; use it with
# imagePullPolicy: IfNotPresent (the node pulls nothing). Pods on the real
# node reach the API server only with hostNetwork: true and
# KUBERNETES_SERVICE_HOST=127.0.0.1, KUBERNETES_SERVICE_PORT=<APISERVER_PORT
# of .cluster/ports.env> (no kube-proxy); so run, the controller turned Ready
# through the kubelet's probe on /readyz.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOCK="$ROOT/.cluster/node/containerd/containerd.sock"
OUT_DIR="$ROOT/target/oci"

log() { printf '[operator-image] %s\n' "$*" >&2; }
die() { printf '[operator-image] error: %s\n' "$*" >&2; exit 1; }

usage() { echo "usage: $0 [--no-import] [--binary PATH] [--tag TAG]" >&2; exit 2; }
import=1
bin=""
tag=""
while (($# > 0)); do
  case "$1" in
    --no-import) import=0 ;;
    --binary) (($# > 1)) || usage; bin="$2"; shift ;;
    --tag) (($# > 1)) || usage; tag="$2"; shift ;;
    *) usage ;;
  esac
  shift
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
[[ -n "$version" ]] || die "cannot read the version from Cargo.toml"
tag="${tag:-$version}"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag $tag is not a valid image tag"
ref="stepwise.local/stepwise:$tag"

if [[ -n "$bin" ]]; then
  [[ -x "$bin" ]] || die "--binary $bin is not an executable file"
else
  for b in "$ROOT/target/x86_64-unknown-linux-musl/release/stepwise" "$ROOT/target/x86_64-unknown-linux-gnu/release/stepwise" \
    "$ROOT/target/release/stepwise"; do
    if [[ -x "$b" ]]; then bin="$b"; break; fi
  done
fi
[[ -n "$bin" ]] || die "no release binary: run \`cargo build --release --bin stepwise\` first"
"$bin" version >/dev/null 2>&1 || die "$bin does not run (\`$bin version\` failed)"

work="$(mktemp -d "${TMPDIR:-/tmp}/stepwise-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/home/nonroot" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
chown 65532:65532 "$rootfs/home/nonroot"
chmod 700 "$rootfs/home/nonroot"
install -m 0755 "$bin" "$rootfs/stepwise"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

linkage=static
headers="$(readelf -l "$bin" 2>/dev/null || true)"
if [[ "$headers" == *"Requesting program interpreter"* ]]; then
  linkage=dynamic
  # ldd prints "name => /path (addr)" or "/path (addr)" per library.
  libs="$(ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }')"
  for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  log "note: $bin is dynamically linked; packed with its libraries ($(tr '\n' ' ' <<<"$libs"))"
fi

cat >"$work/config.json" <<EOF
{
  "User": "65532:65532",
  "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
  "Entrypoint": ["/stepwise"],
  "Cmd": ["controller"],
  "WorkingDir": "/",
  "ExposedPorts": {"8080/tcp": {}, "8081/tcp": {}},
  "Labels": {
    "org.opencontainers.image.title": "stepwise",
    "org.opencontainers.image.description": "Kubernetes operator that runs releases as ordered steps of Jobs, with step retries and guided failure",
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.version": "$version"
  }
}
EOF
mkdir -p "$OUT_DIR"
out="$OUT_DIR/stepwise-$tag.tar"
digest="$(python3 "$ROOT/scripts/lib/oci-archive.py" "$out" "$ref" "$rootfs" "$work/config.json")"
echo "built $ref ($linkage binary, manifest $digest): ${out#"$ROOT"/} ($(du -h "$out" | cut -f1))"

((import == 1)) || exit 0
if [[ ! -S "$SOCK" ]]; then
  log "no real node running (no $SOCK): not imported. Start one with STEPWISE_REAL_NODE=1 scripts/cluster.sh up"
  exit 0
fi
ctr --address "$SOCK" --namespace k8s.io images import "$out" >/dev/null || die "ctr could not import $out"
listed="$(ctr --address "$SOCK" --namespace k8s.io images ls -q)"
[[ "$listed" == *"$ref"* ]] || die "imported $out but the node's containerd does not list $ref"
echo "imported $ref into the real node's containerd"
