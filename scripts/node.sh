#!/usr/bin/env bash
# The real node of the local cluster: a kubelet (built by `scripts/tools.sh
# kubelet`) on a private containerd (Debian's containerd + runc), for what a
# real container decides (exit codes, OOMKilled, image pulls, grace periods).
# Runs beside kwok's fake nodes and needs the cluster of scripts/cluster.sh
# (which calls this unless STEPWISE_REAL_NODE=0).
#
#   scripts/node.sh up        start it; waits until the Node is Ready
#   scripts/node.sh down      stop exactly what `up` started and undo what it
#                             added to the host; removes .cluster/node/
#   scripts/node.sh status    exit 0 only if the node runs and is Ready
#   scripts/node.sh apiserver-args | kcm-args
#                             the flags kube-apiserver and
#                             kube-controller-manager need for a real node,
#                             one per line (cluster.sh passes them)
#
# The node is labelled and tainted stepwise.dev/node-kind=real (NoSchedule):
# a pod lands on it only with that nodeSelector and toleration, so kwok-based
# tests are unaffected. Images: stepwise.local/pause:1 (the sandbox) and
# stepwise.local/busybox:<busybox version> (see `node.sh status`; also
# tagged stepwise.local/busybox:stable, which examples/ use), built
# here without a container engine; every other pull fails at once (it is
# sent to a closed port on 127.0.0.1, through containerd's proxy variables,
# with no DNS query). Pods get a network of their own
# (a bridge with no host address, 169.254.123.0/24): they reach nothing but
# themselves; use hostNetwork to reach the API server on 127.0.0.1.
#
# Everything lives in .cluster/node/ (containerd root, state and socket,
# kubelet root, CNI config, images); logs in .cluster/logs/{containerd,kubelet}.log.
# Added to the host, and removed by `down`: a line in /etc/hosts (the node
# name on 127.0.0.1, for the API server's kubectl logs/exec), the cgroup
# /stepwise-node-<id> in each hierarchy, the bridge swbr-<id>, the kubelet's
# fixed device-plugin socket in /var/lib/kubelet/device-plugins/, its
# /var/log/containers/ links, CNI's cache entries in /var/lib/cni/.
#
# Environment: STEPWISE_NODE_TIMEOUT (seconds per wait, default 90),
# STEPWISE_NODE_POD_SUBNET (default 169.254.123.0/24).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
STATE="$ROOT/.cluster"
PKI="$STATE/pki"
LOGS="$STATE/logs"
KUBECONFIG_ADMIN="$STATE/kubeconfig"
NODE="$STATE/node"
PIDS="$NODE/pids"
CTRD="$NODE/containerd"
SOCK="$CTRD/containerd.sock"
KUBELET="$NODE/kubelet"
CNI="$NODE/cni"
IMAGES="$NODE/images"
CACHE="${STEPWISE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepwise}"
TIMEOUT="${STEPWISE_NODE_TIMEOUT:-90}"
SUBNET="${STEPWISE_NODE_POD_SUBNET:-169.254.123.0/24}"

# Names on the host are unique per checkout, so two checkouts' nodes differ.
ID="$(printf '%s' "$ROOT" | md5sum | cut -c1-6)"
NODE_NAME="stepwise-real-$ID"
CGROUP="stepwise-node-$ID"
BRIDGE="swbr-$ID"
CNI_NET="stepwise-$ID"
HOSTS_MARK="# stepwise real node of $ROOT"
LABEL_KEY="stepwise.dev/node-kind"
LABEL_VALUE="real"
PAUSE_IMAGE="stepwise.local/pause:1"
STABLE_IMAGE="stepwise.local/busybox:stable"
# A closed port: every pull not served locally fails at once, with no DNS query.
NO_REGISTRY="https://127.0.0.1:1"
NO_REGISTRY_PROXY="http://127.0.0.1:1"
# The kubelet's device-plugin socket is a fixed path (not under its root dir).
DEVICE_PLUGINS=/var/lib/kubelet/device-plugins

log() { printf '[node] %s\n' "$*" >&2; }
die() { printf '[node] error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
fmt_ms() { printf '%d.%01d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout 10s "$@"; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

busybox_version() { /bin/busybox 2>/dev/null | head -n 1 | sed -n 's/^BusyBox v\([0-9.]*\).*/\1/p' || true; }

# Waits until `cmd...` succeeds; fails naming WHAT after the timeout. (The
# checks keep their own stderr quiet, so a check that dies is heard.)
wait_for() {
  local what="$1" deadline=$(($(date +%s) + TIMEOUT)); shift
  until "$@" >/dev/null; do
    if (($(date +%s) >= deadline)); then
      die "timed out after ${TIMEOUT}s waiting for $what"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- processes

# The pid of a daemon we started, if it is alive and ours (its command line
# names .cluster/node/), else nothing.
live_node_pid() {
  local f="$PIDS/$1.pid" pid cmd
  [[ -f "$f" ]] || return 1
  pid="$(<"$f")"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]] || return 1
  cmd="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
  [[ "$cmd" == *"$NODE/"* ]] || return 1
  printf '%s\n' "$pid"
}

# Starts a daemon detached from our session, logging to logs/<name>.log.
start_daemon() {
  local name="$1"; shift
  : >"$LOGS/$name.log"
  (
    # Keep no inherited descriptor (cluster.sh's lock, a caller's pipe).
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1
  ) &
  local pid=$! i
  printf '%s\n' "$pid" >"$PIDS/$name.pid"
  # Until the subshell has exec'd the daemon, its pid does not look like ours.
  for ((i = 0; i < 100; i++)); do
    if live_node_pid "$name" >/dev/null || ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
}

# Stops a daemon by its recorded pid: SIGTERM, then SIGKILL after GRACE s.
stop_daemon() {
  local name="$1" grace="${2:-15}" pid i
  pid="$(live_node_pid "$name")" || { rm -f "$PIDS/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    live_node_pid "$name" >/dev/null || break
    sleep 0.1
  done
  if live_node_pid "$name" >/dev/null; then
    log "$name (pid $pid) did not stop within ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      live_node_pid "$name" >/dev/null || break
      sleep 0.1
    done
  fi
  live_node_pid "$name" >/dev/null && die "could not stop $name (pid $pid)"
  rm -f "$PIDS/$name.pid"
}

# The pids of processes left in our cgroups (containers) and of our
# containerd's shims (they outlive containerd by design).
leftover_pids() {
  local f p cmd
  for f in /sys/fs/cgroup/*/"$CGROUP"; do
    [[ -d "$f" ]] || continue
    find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done
  for p in /proc/[0-9]*; do
    cmd="$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" || continue
    [[ "$cmd" == *containerd-shim*" -address $SOCK"* ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

# ---------------------------------------------------------------- host

install_packages() {
  local want=(containerd runc containernetworking-plugins busybox-static) missing=() p
  for p in "${want[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  ((EUID == 0)) || die "missing Debian packages ${missing[*]}; install them as root (apt-get install ${missing[*]})"
  log "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$LOGS/apt.log" 2>&1 ||
    die "apt-get update failed; see $LOGS/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
    die "apt-get install ${missing[*]} failed; see $LOGS/apt.log"
}

need() {
  local t
  [[ -f "$KUBECONFIG_ADMIN" && -f "$PKI/ca.key" ]] ||
    die "no local cluster in $STATE (start it with scripts/cluster.sh up)"
  [[ -x "$BIN/kubelet" ]] || die "missing $BIN/kubelet; run \`scripts/tools.sh kubelet\`"
  [[ -x "$BIN/kubectl" ]] || die "missing $BIN/kubectl; run \`scripts/tools.sh\`"
  ((EUID == 0)) || die "the real node needs root (cgroups, mounts, network namespaces)"
  for t in containerd containerd-shim-runc-v2 ctr runc /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback \
    /bin/busybox openssl python3 setsid ip go curl; do
    command -v "$t" >/dev/null || die "'$t' is required"
  done
  kctl get --raw /readyz >/dev/null 2>&1 || die "the API server of $STATE does not answer (scripts/cluster.sh status)"
  [[ -f "$PKI/apiserver-kubelet-client.crt" ]] ||
    log "warning: this cluster's API server was started without the real node's flags (STEPWISE_REAL_NODE=1 scripts/cluster.sh up): kubectl logs/exec will not reach the node"
  local p cmd
  for p in /proc/[0-9]*; do
    cmd="$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" || continue
    if [[ "$cmd" == */kubelet\ * && "$cmd" != *"$NODE/"* ]]; then
      log "warning: another kubelet runs on this machine (pid ${p#/proc/}); both use the fixed device-plugin socket $DEVICE_PLUGINS/kubelet.sock"
      break
    fi
  done
}

add_hosts_entry() {
  local line="127.0.0.1 $NODE_NAME $HOSTS_MARK"
  grep -qxF -- "$line" /etc/hosts 2>/dev/null && return 0
  printf '%s\n' "$line" >>/etc/hosts
}

remove_hosts_entry() {
  local kept
  grep -qF -- "$HOSTS_MARK" /etc/hosts 2>/dev/null || return 0
  kept="$(grep -vF -- "$HOSTS_MARK" /etc/hosts || true)"
  # Written in place: /etc/hosts may be a bind mount that cannot be replaced.
  printf '%s\n' "$kept" >/etc/hosts
}

# The cgroup the kubelet puts its pods under, in every v1 hierarchy.
make_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do
    h="${h%/}"
    [[ -d "$h/$CGROUP" ]] && continue
    mkdir "$h/$CGROUP" 2>/dev/null || continue
    if [[ -f "$h/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" >"$h/$CGROUP/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/$CGROUP/cpuset.mems"
    fi
  done
}

remove_cgroups() {
  local h left=0
  for h in /sys/fs/cgroup/*/"$CGROUP"; do
    [[ -d "$h" ]] || continue
    # Deepest first; a cgroup is removed with rmdir (its files go with it).
    find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$h" ]] && left=1
  done
  ((left == 0)) || log "warning: some of the cgroups /sys/fs/cgroup/*/$CGROUP still hold processes; not removed"
}

# Mount points under .cluster/node/, deepest first.
our_mounts() {
  awk -v p="$NODE/" '{ m = $5; gsub(/\\040/, " ", m); if (index(m "/", p) == 1) print m }' /proc/self/mountinfo |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

unmount_all() {
  local m i
  for ((i = 0; i < 3; i++)); do
    [[ -n "$(our_mounts)" ]] || return 0
    while IFS= read -r m; do
      [[ -n "$m" ]] || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(our_mounts)
  done
  [[ -z "$(our_mounts)" ]] || die "could not unmount: $(our_mounts | tr '\n' ' ')"
}

remove_host_files() {
  local f
  rm -f "$DEVICE_PLUGINS/kubelet.sock" "$DEVICE_PLUGINS/kubelet_internal_checkpoint"
  rmdir "$DEVICE_PLUGINS" /var/lib/kubelet 2>/dev/null || true
  # The kubelet's legacy links to container logs, pointing into our podLogsDir.
  for f in /var/log/containers/*.log; do
    [[ -L "$f" && "$(readlink "$f")" == "$KUBELET/"* ]] && rm -f "$f"
  done
  rmdir /var/log/containers 2>/dev/null || true
  # libcni's cache of results: our network's, and the CRI's loopback
  # network's for our sandboxes (no CNI DEL ran for the pods we killed).
  rm -f /var/lib/cni/results/"$CNI_NET"-*
  local id
  for f in "$CTRD"/root/io.containerd.grpc.v1.cri/sandboxes/* "$CTRD"/state/io.containerd.grpc.v1.cri/sandboxes/* \
    "$CTRD"/state/io.containerd.runtime.v2.task/k8s.io/*; do
    [[ -e "$f" ]] || continue
    id="${f##*/}"
    rm -f /var/lib/cni/results/*-"$id"-*
    # containerd's shims keep their sockets in /run/containerd/s/ whatever
    # the state dir, named sha256(<our socket>/<namespace>/<id>); a killed
    # shim leaves its socket behind.
    rm -f "/run/containerd/s/$(printf '%s' "$SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
  done
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null || true
}

# ---------------------------------------------------------------- pki

issue_client() { # NAME SUBJECT [SAN]: key and certificate signed by the cluster CA
  local name="$1" subj="$2" san="${3:-}" dir="$4" ext
  ext="$dir/$name.ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key" 2>/dev/null
  openssl req -new -key "$dir/$name.key" -subj "$subj" -out "$dir/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$san" ]]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$ext" \
    -out "$dir/$name.crt" 2>/dev/null || die "openssl could not sign the $name certificate"
  rm -f "$dir/$name.csr" "$ext"
  chmod 600 "$dir/$name.key"
}

# ---------------------------------------------------------------- images

# The sandbox image: a static Go binary that waits for SIGTERM, cached by
# the hash of its source.
build_pause() {
  local src="$ROOT/scripts/lib/pause/pause.go" dir
  dir="$CACHE/pause-$(sha256sum "$src" | cut -c1-12)"
  if [[ ! -x "$dir/pause" ]]; then
    mkdir -p "$dir"
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local go build -ldflags "-s -w" -o "$dir/pause.tmp" "$src" ||
      die "could not build the pause binary from $src"
    mv "$dir/pause.tmp" "$dir/pause"
  fi
  local rootfs="$IMAGES/pause.rootfs"
  mkdir -p "$rootfs"
  install -m 0755 "$dir/pause" "$rootfs/pause"
  printf '{"Entrypoint":["/pause"],"User":"65535:65535"}\n' >"$IMAGES/pause.json"
  python3 "$ROOT/scripts/lib/oci-archive.py" "$IMAGES/pause.tar" "$PAUSE_IMAGE" "$rootfs" "$IMAGES/pause.json" >/dev/null
}

# The test image: Debian's static busybox with a link per applet, run as root.
build_busybox() {
  local rootfs="$IMAGES/busybox.rootfs" a
  mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do
    [[ "$a" == busybox ]] || ln -sf busybox "$rootfs/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  printf '{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/"}\n' >"$IMAGES/busybox.json"
  python3 "$ROOT/scripts/lib/oci-archive.py" "$IMAGES/busybox.tar" "$TEST_IMAGE" "$rootfs" "$IMAGES/busybox.json" >/dev/null
}

image_present() { [[ "$(ctr_ images ls -q 2>/dev/null || true)" == *"$1"* ]]; }

import_image() { # TAR REF
  ctr_ images import "$1" >>"$LOGS/containerd.log" 2>&1 || die "ctr could not import $1 (see $LOGS/containerd.log)"
  image_present "$2" || die "imported $1 but containerd does not list $2"
}

# ---------------------------------------------------------------- config

write_containerd_config() {
  mkdir -p "$CTRD/root" "$CTRD/state" "$CTRD/runc" "$CTRD/certs.d/_default"
  cat >"$CTRD/certs.d/_default/hosts.toml" <<EOF
# No registry is reachable: every pull fails at once against a closed port.
server = "$NO_REGISTRY"
EOF
  cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
# /opt/containerd is not ours to write.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$CTRD/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: negative oom_score_adj is refused.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CTRD/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CTRD/certs.d"
EOF
}

write_cni_config() {
  mkdir -p "$CNI/net.d" "$CNI/ipam"
  cat >"$CNI/net.d/10-stepwise.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CNI/ipam",
        "ranges": [[{"subnet": "$SUBNET"}]]
      }
    }
  ]
}
EOF
}

pick_ports() {
  local out
  out="$(python3 -S - <<'EOF'
import socket
held = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
)" || die "python3 could not pick ports"
  read -r KUBELET_PORT KUBELET_HEALTHZ_PORT <<<"$out"
}

write_kubelet_config() {
  mkdir -p "$KUBELET/root" "$KUBELET/pki" "$KUBELET/volume-plugins" "$KUBELET/pod-logs"
  issue_client kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "" "$KUBELET/pki"
  issue_client kubelet-serving "/CN=$NODE_NAME" "DNS:$NODE_NAME,IP:127.0.0.1" "$KUBELET/pki"
  cp "$PKI/ca.crt" "$KUBELET/pki/ca.crt"
  local server
  server="$(sed -n 's/^ *server: //p' "$KUBECONFIG_ADMIN" | head -n 1)"
  cat >"$KUBELET/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: stepwise-local
  cluster:
    server: $server
    certificate-authority: $KUBELET/pki/ca.crt
users:
- name: system:node:$NODE_NAME
  user:
    client-certificate: $KUBELET/pki/kubelet-client.crt
    client-key: $KUBELET/pki/kubelet-client.key
contexts:
- name: stepwise-local
  context:
    cluster: stepwise-local
    user: system:node:$NODE_NAME
current-context: stepwise-local
EOF
  chmod 600 "$KUBELET/kubeconfig"
  cat >"$KUBELET/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1, and containerd 1.6 cannot tell the kubelet its
# cgroup driver.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
containerRuntimeEndpoint: unix://$SOCK
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $KUBELET/pki/kubelet-serving.crt
tlsPrivateKeyFile: $KUBELET/pki/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $KUBELET/pki/ca.crt}
authorization:
  mode: AlwaysAllow
# Nothing outside the kubelet's root: no iptables rules, no plugin or log
# directories of the host.
makeIPTablesUtilChains: false
volumePluginDir: $KUBELET/volume-plugins
podLogsDir: $KUBELET/pod-logs
resolvConf: ""
failSwapOn: false
registerNode: true
registerWithTaints:
- key: $LABEL_KEY
  value: $LABEL_VALUE
  effect: NoSchedule
# The imported images cannot be pulled again: never collect them, never
# evict for disk space on a shared machine. Thresholds are absolute: a
# percentage of a large shared disk (1% of 252G is 2.5G) can be crossed by
# a test run's own build output, and DiskPressure taints the node, so the
# scheduler places nothing on it.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "64Mi"
  nodefs.inodesFree: "1%"
  imagefs.available: "64Mi"
evictionPressureTransitionPeriod: 10s
serializeImagePulls: false
maxPods: 50
EOF
}

# ---------------------------------------------------------------- node

node_ready() {
  [[ "$(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# No not-ready taint left: the node-lifecycle controller lifts it once Ready.
node_schedulable() {
  local taints
  taints="$(kctl get node "$NODE_NAME" -o 'jsonpath={.spec.taints[*].key}' 2>/dev/null)" || return 1
  [[ "$taints" != *node.kubernetes.io/not-ready* ]]
}

kubelet_healthy() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" 2>/dev/null
}

containerd_up() {
  live_node_pid containerd >/dev/null || die "containerd exited during startup; last lines of $LOGS/containerd.log:
$(tail -n 15 "$LOGS/containerd.log" 2>/dev/null | sed 's/^/    /')"
  ctr --address "$SOCK" version 2>/dev/null
}

# ---------------------------------------------------------------- commands

UP_DONE=0
cleanup_failed_up() {
  local rc=$?
  ((UP_DONE == 0)) || return 0
  log "startup failed: undoing it (logs stay in $LOGS)"
  teardown || true
  return "$rc"
}

cmd_up() {
  need_cluster_files
  if [[ -d "$NODE" ]]; then
    if live_node_pid kubelet >/dev/null && live_node_pid containerd >/dev/null && node_ready; then
      echo "real node $NODE_NAME already running"
      return 0
    fi
    log "found stale state in $NODE (a run that crashed or was stopped); cleaning it up"
    teardown
  fi
  mkdir -p "$LOGS"
  install_packages
  need
  TEST_IMAGE="stepwise.local/busybox:$(busybox_version)"
  [[ "$TEST_IMAGE" != *: ]] || die "cannot tell the version of /bin/busybox"

  local t0 t_pkg t_ctrd t_img t_kubelet t_ready
  t0="$(now_ms)"
  trap cleanup_failed_up EXIT
  trap 'die "interrupted"' INT TERM
  mkdir -p "$PIDS" "$IMAGES"
  chmod 700 "$NODE"
  printf '%s\n' "$NODE_NAME" >"$NODE/name"
  write_containerd_config
  write_cni_config
  pick_ports
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\nTEST_IMAGE=%s\n' "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$TEST_IMAGE" >"$NODE/node.env"
  write_kubelet_config
  add_hosts_entry
  make_cgroups
  t_pkg="$(now_ms)"

  # containerd 1.6 ignores certs.d/_default (1.7 reads it): a proxy on the
  # closed port makes every pull fail there, before any name is looked up.
  start_daemon containerd env -u NO_PROXY -u no_proxy -u ALL_PROXY -u all_proxy \
    HTTPS_PROXY="$NO_REGISTRY_PROXY" HTTP_PROXY="$NO_REGISTRY_PROXY" \
    https_proxy="$NO_REGISTRY_PROXY" http_proxy="$NO_REGISTRY_PROXY" \
    containerd --config "$CTRD/config.toml"
  wait_for "containerd to answer on $SOCK (log: $LOGS/containerd.log)" containerd_up
  t_ctrd="$(now_ms)"

  build_pause
  build_busybox
  import_image "$IMAGES/pause.tar" "$PAUSE_IMAGE"
  import_image "$IMAGES/busybox.tar" "$TEST_IMAGE"
  # A name that does not change with Debian's busybox version, for the examples.
  ctr_ images tag --force "$TEST_IMAGE" "$STABLE_IMAGE" >>"$LOGS/containerd.log" 2>&1 ||
    die "ctr could not tag $TEST_IMAGE as $STABLE_IMAGE"
  rm -rf "$IMAGES"/*.rootfs
  t_img="$(now_ms)"

  start_daemon kubelet "$BIN/kubelet" \
    --config "$KUBELET/config.yaml" --kubeconfig "$KUBELET/kubeconfig" \
    --root-dir "$KUBELET/root" --cert-dir "$KUBELET/pki" \
    --hostname-override "$NODE_NAME" \
    --node-labels "$LABEL_KEY=$LABEL_VALUE"
  wait_for "the kubelet's /healthz on 127.0.0.1:$KUBELET_HEALTHZ_PORT (log: $LOGS/kubelet.log)" kubelet_alive_and_healthy
  t_kubelet="$(now_ms)"
  wait_for "Node $NODE_NAME to be Ready (log: $LOGS/kubelet.log)" node_ready
  wait_for "the node-lifecycle controller to lift the not-ready taint of Node $NODE_NAME (kube-controller-manager)" node_schedulable
  t_ready="$(now_ms)"
  UP_DONE=1
  trap - EXIT INT TERM
  printf 'real node %s Ready in %s s (setup %s, containerd %s, images %s, kubelet %s, Ready %s); label %s=%s, image %s\n' \
    "$NODE_NAME" "$(fmt_ms $((t_ready - t0)))" "$(fmt_ms $((t_pkg - t0)))" "$(fmt_ms $((t_ctrd - t_pkg)))" \
    "$(fmt_ms $((t_img - t_ctrd)))" "$(fmt_ms $((t_kubelet - t_img)))" "$(fmt_ms $((t_ready - t_kubelet)))" \
    "$LABEL_KEY" "$LABEL_VALUE" "$TEST_IMAGE"
}

kubelet_alive_and_healthy() {
  live_node_pid kubelet >/dev/null || die "the kubelet exited during startup; last lines of $LOGS/kubelet.log:
$(tail -n 15 "$LOGS/kubelet.log" 2>/dev/null | sed 's/^/    /')"
  kubelet_healthy
}

need_cluster_files() {
  [[ -f "$KUBECONFIG_ADMIN" && -f "$PKI/ca.key" ]] ||
    die "no local cluster in $STATE (start it with scripts/cluster.sh up)"
}

# Removes every pod sandbox and container of our containerd (the CRI's
# namespace k8s.io): kill the tasks, delete them, delete the containers.
remove_containers() {
  live_node_pid containerd >/dev/null || return 0
  ctr --address "$SOCK" version >/dev/null 2>&1 || return 0
  local ids id deadline
  ids="$(ctr_ containers ls -q 2>/dev/null || true)"
  [[ -n "$ids" ]] || return 0
  for id in $ids; do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  deadline=$(($(date +%s) + 15))
  for id in $ids; do
    until ctr_ tasks delete "$id" >/dev/null 2>&1 || [[ "$(ctr_ tasks ls -q 2>/dev/null || true)" != *"$id"* ]]; do
      if (($(date +%s) >= deadline)); then
        log "warning: task $id did not end within 15 s; deleting it by force"
        ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
        break
      fi
      sleep 0.2
    done
    ctr_ containers delete "$id" >/dev/null 2>&1 || log "warning: could not delete container $id"
  done
}

# Undoes `up`, in reverse: kubelet, containers, containerd, strays, mounts,
# cgroups, bridge, host files, .cluster/node.
teardown() {
  local pids p i
  stop_daemon kubelet 15
  remove_containers
  stop_daemon containerd 15
  pids="$(leftover_pids | sort -un)"
  if [[ -n "$pids" ]]; then
    log "killing processes left by the node (shims, containers): $(tr '\n' ' ' <<<"$pids")"
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
      [[ -n "$(leftover_pids)" ]] || break
      sleep 0.1
    done
  fi
  unmount_all
  remove_cgroups
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE" || log "warning: could not delete the bridge $BRIDGE"; fi
  remove_hosts_entry
  remove_host_files
  [[ -z "$(our_mounts)" ]] || die "mounts remain under $NODE; not removing it"
  rm -rf "$NODE"
}

cmd_down() {
  if [[ ! -d "$NODE" ]]; then
    echo "no real node state in .cluster/node; nothing to stop"
    return 0
  fi
  local name alive=()
  name="$(cat "$NODE/name" 2>/dev/null || echo "$NODE_NAME")"
  live_node_pid kubelet >/dev/null && alive+=(kubelet)
  live_node_pid containerd >/dev/null && alive+=(containerd)
  teardown
  # The Node object goes too when the cluster stays up (best effort).
  if [[ -f "$KUBECONFIG_ADMIN" ]]; then
    kctl delete node "$name" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  echo "real node $name stopped (${alive[*]:-nothing was running}); removed .cluster/node and its host entries"
}

cmd_status() {
  if [[ ! -d "$NODE" ]]; then
    echo "  no real node (STEPWISE_REAL_NODE=1 scripts/cluster.sh up starts one)"
    return 1
  fi
  local c pid ok=0 rss
  for c in containerd kubelet; do
    if pid="$(live_node_pid "$c")"; then
      rss="$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status" 2>/dev/null || true)"
      printf '  %-24s running  pid %-7s rss %6s MiB\n' "$c" "$pid" "${rss:-?}"
    else
      printf '  %-24s NOT RUNNING (log: %s)\n' "$c" "$LOGS/$c.log"
      ok=1
    fi
  done
  if node_ready; then
    echo "  Node $NODE_NAME Ready (label $LABEL_KEY=$LABEL_VALUE, image $(sed -n 's/^TEST_IMAGE=//p' "$NODE/node.env" 2>/dev/null))"
  else
    echo "  Node $NODE_NAME not Ready"
    ok=1
  fi
  return $ok
}

# The flags kube-apiserver needs to reach the kubelet (kubectl logs/exec):
# the node name resolves to 127.0.0.1 through /etc/hosts, the kubelet only
# accepts clients of the cluster CA. Issues that client certificate.
cmd_apiserver_args() {
  need_cluster_files
  [[ -f "$PKI/apiserver-kubelet-client.crt" ]] ||
    issue_client apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "" "$PKI"
  printf '%s\n' \
    --kubelet-preferred-address-types=Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP \
    "--kubelet-client-certificate=$PKI/apiserver-kubelet-client.crt" \
    "--kubelet-client-key=$PKI/apiserver-kubelet-client.key" \
    --enable-admission-plugins=NodeRestriction
}

# kube-controller-manager probes a flex-volume directory it creates; keep it
# out of /usr/libexec.
cmd_kcm_args() {
  printf '%s\n' "--flex-volume-plugin-dir=$STATE/kcm-flexvolume"
}

# One `up`/`down` at a time for this checkout's node (the lock file lives
# outside .cluster/, which is removed).
take_lock() {
  command -v flock >/dev/null || return 0
  local lock="${TMPDIR:-/tmp}/stepwise-node-$ID.lock"
  exec 8>"$lock"
  flock -w 120 8 || die "another scripts/node.sh up/down is still running for $ROOT (lock $lock)"
}

case "${1:-}" in
  up) take_lock; cmd_up ;;
  down) take_lock; cmd_down ;;
  status) cmd_status ;;
  apiserver-args) cmd_apiserver_args ;;
  kcm-args) cmd_kcm_args ;;
  *) echo "usage: $0 up|down|status|apiserver-args|kcm-args" >&2; exit 2 ;;
esac
