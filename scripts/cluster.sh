#!/usr/bin/env bash
# The local Kubernetes control plane that the tests, the demo and the
# benchmarks run against: real etcd, kube-apiserver, kube-controller-manager
# and kube-scheduler (built by scripts/tools.sh), plus kwok playing the
# kubelets of two fake nodes (see scripts/kwok-stages.yaml for how simulated
# pods behave). Everything listens on 127.0.0.1 only, on free ports.
#
#   scripts/cluster.sh up       start it (idempotent); prints how long it took
#   scripts/cluster.sh down     stop exactly what `up` started, remove .cluster/
#   scripts/cluster.sh status   show the components; exit 0 only if it is up
#
# State lives in .cluster/: kubeconfig (admin), pki/, logs/<component>.log,
# pids/<component>.pid, etcd/ (data), ports.env.
#
# Port overrides (default: a free port chosen at start):
#   STEPWISE_ETCD_PORT STEPWISE_ETCD_PEER_PORT STEPWISE_APISERVER_PORT
#   STEPWISE_CONTROLLER_MANAGER_PORT STEPWISE_SCHEDULER_PORT STEPWISE_KWOK_PORT
# Timeouts: STEPWISE_CLUSTER_TIMEOUT (seconds per component to become
# healthy, default 90).
# STEPWISE_REAL_NODE=0 leaves out the real kubelet node (scripts/node.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.tools/bin"
# STEPWISE_CLUSTER_STATE puts a second cluster beside the checkout's own (tests).
STATE="${STEPWISE_CLUSTER_STATE:-$ROOT/.cluster}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_OUT="$STATE/kubeconfig"
STAGES="$ROOT/scripts/kwok-stages.yaml"
TIMEOUT="${STEPWISE_CLUSTER_TIMEOUT:-90}"
NODES=(kwok-node-1 kwok-node-2)

# Start order; `down` stops them in reverse (clients first, etcd last).
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }

# Phase timings for the startup summary: `phase NAME` closes the current one.
PHASES=""
PHASE_T=0
phase() {
  local t
  t="$(now_ms)"
  PHASES+="${PHASES:+, }$1 $(fmt_ms $((t - PHASE_T)))"
  PHASE_T="$t"
}
fmt_ms() { printf '%d.%01d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# ---------------------------------------------------------------- processes

# shellcheck source=scripts/lib/proc.sh
source "$ROOT/scripts/lib/proc.sh"

# Stops one component by its recorded pid: SIGTERM, wait, SIGKILL.
stop_component() {
  stop_pid "$1" "${2:-15}" log || die "could not stop $1 (pid $(pid_of "$1" || echo '?'))"
}

# Stops all components that are still alive, clients first, etcd last.
stop_all() {
  local c f pids=()
  # Processes started next to the cluster (the demo's operator, Flux, the git
  # server) record their pids here too: they go first.
  for f in "$PIDS"/*.pid; do
    [[ -e "$f" ]] || continue
    c="$(basename "$f" .pid)"
    [[ " ${COMPONENTS[*]} " == *" $c "* ]] || stop_component "$c" 10
  done
  # The clients do not depend on one another: stop them together.
  for c in kwok kube-scheduler kube-controller-manager; do
    stop_component "$c" 10 &
    pids+=($!)
  done
  for c in "${pids[@]}"; do wait "$c" || true; done
  stop_component kube-apiserver 20
  stop_component etcd 15
}

# Launches a component detached from our session (so the cluster outlives
# the shell that started it), logging to logs/<name>.log.
declare -A LAUNCHED_WITH=()
launch() {
  local name="$1"; shift
  LAUNCHED_WITH[$name]="$(printf '%q ' "$@")"
  local env=()
  while [[ "$1" == *=* && "$1" != -* ]]; do env+=("$1"); shift; done
  : >"$LOGS/$name.log"
  (
    # Keep no inherited descriptor (our lock, make's jobserver, a caller's
    # pipe): a daemon holding one would block whoever waits on it.
    for fd in /proc/$BASHPID/fd/*; do
      fd="${fd##*/}"
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    # Test hook: a launcher that is slow to exec (tests/cluster_start.rs).
    if [[ -n "${STEPWISE_CLUSTER_EXEC_DELAY:-}" ]]; then sleep "$STEPWISE_CLUSTER_EXEC_DELAY"; fi
    exec env "${env[@]}" setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1
  ) &
  # Recorded by pid and start time: the forked subshell is already the
  # process that will run the binary, so it counts as ours from here on.
  pid_record "$name" "$!"
  STARTED+=("$name")
}

# How a component's process ended (a silent death with an empty log is
# usually a signal: OOM killer, SIGSEGV). Sets HOW; not a $(...) function, as
# `wait` only sees this shell's children. Never waits on a live process.
exit_status() {
  local pid
  pid="$(pid_of "$1")" || { HOW="unknown exit status"; return; }
  reap_status "$pid"
}

# Explains why a component died, pointing at its log.
explain_death() {
  local name="$1" how="$2"
  local logf="$LOGS/$name.log"
  if grep -qiE 'address already in use|bind: .*in use' "$logf" 2>/dev/null; then
    printf '%s could not listen: a port it was given is already in use (%s). Free the port or set the STEPWISE_*_PORT override; see %s\n' \
      "$name" "$(grep -iE 'address already in use' "$logf" | grep -oE '127\.0\.0\.1:[0-9]+' | head -1)" "$logf"
  else
    printf '%s exited during startup (%s); last lines of %s:\n%s\n' "$name" "$how" "$logf" \
      "$(tail -n 15 "$logf" 2>/dev/null | sed 's/^/    /')"
    printf 'memory: %s\n' "$(free -m 2>/dev/null | awk '/^Mem:/ {print $7 " MiB available of " $2}')"
  fi
}

# Waits until `curl ARGS` succeeds, the process dies, or the timeout passes.
wait_healthy() {
  local name="$1" what="$2"; shift 2
  local deadline=$(($(date +%s) + TIMEOUT)) attempt=1
  while :; do
    if ! live_pid "$name" >/dev/null; then
      exit_status "$name"
      # A component that dies before writing a line (seen once in CI, cause
      # unknown) is started again, twice at most; a port clash is not.
      if ((attempt < 3)) && ! grep -qiE 'in use' "$LOGS/$name.log" 2>/dev/null; then
        log "$name exited during startup ($HOW; log: $(wc -l <"$LOGS/$name.log") lines, last: $(tail -n 1 "$LOGS/$name.log")); starting it again (attempt $((attempt + 1)) of 3)"
        cp "$LOGS/$name.log" "$LOGS/$name.attempt-$attempt.log" 2>/dev/null || true
        attempt=$((attempt + 1))
        eval "launch $name ${LAUNCHED_WITH[$name]}"
        continue
      fi
      fail "$(explain_death "$name" "$HOW")"
    fi
    if curl -fsS --max-time 3 -o /dev/null "$@" 2>/dev/null; then
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      fail "$name did not report healthy ($what) within ${TIMEOUT}s; see $LOGS/$name.log"
    fi
    sleep 0.2
  done
}

# A failed start exits non-zero; the EXIT trap set by `up` then stops
# whatever this run started and keeps the logs.
fail() {
  printf '[cluster] error: %s\n' "$*" >&2
  exit 1
}

STARTED=()
UP_DONE=0
cleanup_failed_up() {
  local rc=$?
  ((UP_DONE == 0 && ${#STARTED[@]} > 0)) || return 0
  log "startup failed: stopping the components started so far (their logs stay in $LOGS until the next 'up' or 'down')"
  stop_all
  return "$rc"
}

# ---------------------------------------------------------------- ports

# The components' ports, in this order; "0" asks for a free one.
PORT_VARS=(ETCD_PORT ETCD_PEER_PORT APISERVER_PORT CONTROLLER_MANAGER_PORT SCHEDULER_PORT KWOK_PORT)

who_has_port() {
  command -v ss >/dev/null || return 0
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -oE 'users:\(\("[^"]+",pid=[0-9]+' | head -1 |
    sed 's/users:(("/ (held by /;s/",pid=/, pid /;s/$/)/'
}

# Sets each of PORT_VARS from STEPWISE_<VAR> or a free port on 127.0.0.1;
# fails clearly when a requested port is taken. (SO_REUSEADDR as Go's
# listeners use it: only a live listener makes a port count as taken.)
pick_ports() {
  local v want=() seen=" " out
  for v in "${PORT_VARS[@]}"; do
    local o="STEPWISE_$v"
    local p="${!o:-0}"
    [[ "$p" =~ ^[0-9]+$ ]] && ((p < 65536)) || die "$o=$p is not a port number"
    if ((p != 0)); then
      [[ "$seen" != *" $p "* ]] || die "port $p is requested for two components (check the STEPWISE_*_PORT variables)"
      seen+="$p "
    fi
    want+=("$p")
  done
  out="$(python3 -S - "${want[@]}" <<'EOF'
import socket, sys
held, ports = [], []
for i, want in enumerate(sys.argv[1:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(want)))
    except OSError:
        print("taken %d %s" % (i, want))
        sys.exit(0)
    held.append(s)
    ports.append(str(s.getsockname()[1]))
print("ok " + " ".join(ports))
EOF
)" || die "python3 could not pick ports"
  local words
  read -r -a words <<<"$out"
  if [[ "${words[0]}" == taken ]]; then
    local var="${PORT_VARS[${words[1]}]}" port="${words[2]}"
    die "port $port on 127.0.0.1 (wanted for ${var%_PORT}) is already in use$(who_has_port "$port"); free it or choose another with STEPWISE_$var"
  fi
  local i
  for i in "${!PORT_VARS[@]}"; do printf -v "${PORT_VARS[$i]}" '%s' "${words[$((i + 1))]}"; done
}

# ---------------------------------------------------------------- pki

# Issues a key and a certificate signed by our CA.
#   issue NAME SUBJECT (server|client) [SAN]
issue() {
  local name="$1" subj="$2" kind="$3" san="${4:-}" ext="$PKI/$1.ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ "$kind" == server ]]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$ext" \
    -out "$PKI/$name.crt" 2>/dev/null || die "openssl could not sign the $name certificate"
  rm -f "$PKI/$name.csr" "$ext"
}

make_pki() {
  mkdir -p "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=stepwise-local-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null || die "openssl could not create the CA"
  local san="DNS:localhost,IP:127.0.0.1" jobs=() j
  # Independent of one another: issue them in parallel.
  issue apiserver "/CN=kube-apiserver" server \
    "$san,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1" &
  jobs+=($!)
  issue controller-manager-serving "/CN=kube-controller-manager" server "$san" & jobs+=($!)
  issue scheduler-serving "/CN=kube-scheduler" server "$san" & jobs+=($!)
  issue admin "/O=system:masters/CN=stepwise-admin" client & jobs+=($!)
  issue controller-manager "/CN=system:kube-controller-manager" client & jobs+=($!)
  issue scheduler "/CN=system:kube-scheduler" client & jobs+=($!)
  # kwok plays every kubelet at once; the Node authorizer binds one identity
  # to one node, so it acts as an administrator instead.
  issue kwok "/O=system:masters/CN=kwok-controller" client & jobs+=($!)
  # Service-account token signing key pair (ES256).
  {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/sa.key" 2>/dev/null &&
      openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  } & jobs+=($!)
  for j in "${jobs[@]}"; do wait "$j" || die "creating the certificates in $PKI failed"; done
  chmod 600 "$PKI"/*.key
}

# kubeconfig NAME FILE: a kubeconfig with embedded credentials for NAME.
kubeconfig() {
  local name="$1" out="$2"
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: stepwise-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI/$name.key")
contexts:
- name: stepwise-local
  context:
    cluster: stepwise-local
    user: $name
current-context: stepwise-local
EOF
  chmod 600 "$out"
}

# ---------------------------------------------------------------- checks

need_tools() {
  local t missing=()
  for t in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [[ -x "$BIN/$t" ]] || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "missing in .tools/bin: ${missing[*]}. Run \`make tools\` (builds them from pinned Go modules)"
  for t in openssl curl python3 setsid base64; do
    command -v "$t" >/dev/null || die "'$t' is required on PATH"
  done
  [[ -f "$STAGES" ]] || die "missing $STAGES"
}

apiserver_ready() {
  [[ -f "$STATE/ports.env" && -f "$PKI/admin.crt" ]] || return 1
  # shellcheck disable=SC1091
  local port
  port="$(sed -n 's/^APISERVER_PORT=//p' "$STATE/ports.env")"
  curl -fsS --max-time 3 -o /dev/null --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$port/readyz" 2>/dev/null
}

all_alive() {
  local c
  for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null || return 1; done
}

kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" --request-timeout=15s "$@"; }

# Waits until `cmd...` succeeds or the timeout passes.
wait_for() {
  local what="$1" deadline=$(($(date +%s) + TIMEOUT)); shift
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      fail "timed out after ${TIMEOUT}s waiting for $what; logs in $LOGS"
    fi
    sleep 0.2
  done
}

nodes_ready() {
  local n ready
  ready="$(kctl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')" || return 1
  for n in "${NODES[@]}"; do grep -qx "$n=True" <<<"$ready" || return 1; done
}

# ---------------------------------------------------------------- real node

# A real kubelet node beside the fake ones (scripts/node.sh: private
# containerd, kubelet, locally built images), for what a real container
# decides; STEPWISE_REAL_NODE=0 leaves it out (the start test's second
# cluster: the kubelet's device-plugin socket allows one per machine).
# node.sh says which flags the API server and the controller manager need.
REAL_NODE="${STEPWISE_REAL_NODE:-1}"
NODE_SH="$ROOT/scripts/node.sh"
APISERVER_NODE_ARGS=()
KCM_NODE_ARGS=()
real_node_args() {
  # The controller manager creates its flex-volume directory, by default in
  # /usr/libexec: keep it in our state, with or without a real node.
  KCM_NODE_ARGS=("--flex-volume-plugin-dir=$STATE/kcm-flexvolume")
  [[ "$REAL_NODE" == 1 ]] || return 0
  [[ -x "$BIN/kubelet" ]] || die "the real node needs .tools/bin/kubelet: run \`make tools-cluster\` (or STEPWISE_REAL_NODE=0 for a cluster without it)"
  local out
  out="$("$NODE_SH" apiserver-args)" || die "scripts/node.sh apiserver-args failed"
  mapfile -t APISERVER_NODE_ARGS <<<"$out"
  out="$("$NODE_SH" kcm-args)" || die "scripts/node.sh kcm-args failed"
  mapfile -t KCM_NODE_ARGS <<<"$out"
}
# Stops the real node if one was started (whatever STEPWISE_REAL_NODE says
# now), before the control plane; a failure keeps .cluster/ for a retry.
real_node_down() {
  [[ -d "$STATE/node" ]] || return 0
  "$NODE_SH" down || die "scripts/node.sh down failed; .cluster/ is kept so that it can be retried"
}

# ---------------------------------------------------------------- lock

# One `up`/`down` at a time for this checkout (the lock file lives outside
# .cluster/, which `down` removes).
take_lock() {
  command -v flock >/dev/null || return 0
  local lock="${TMPDIR:-/tmp}/stepwise-cluster-$(printf '%s' "$STATE" | md5sum | cut -c1-12).lock"
  exec 9>"$lock"
  if ! flock -w 300 9; then die "another scripts/cluster.sh is still running for $ROOT (lock $lock)"; fi
}

# ---------------------------------------------------------------- commands

cmd_up() {
  take_lock
  need_tools

  if [[ -d "$STATE" ]]; then
    if all_alive; then
      # A busy API server may answer slowly: give it a while before
      # deciding it is broken and restarting everything under its clients.
      local i
      for ((i = 0; i < 20; i++)); do
        if apiserver_ready; then
          echo "cluster already running (kubeconfig: $KUBECONFIG_OUT)"
          return 0
        fi
        sleep 1
      done
    fi
    local c dead=() alive=()
    for c in "${COMPONENTS[@]}"; do
      if live_pid "$c" >/dev/null; then alive+=("$c"); elif [[ -f "$PIDS/$c.pid" ]]; then dead+=("$c"); fi
    done
    if ((${#dead[@]} > 0)); then
      log "found stale state in .cluster/ from a run that crashed or was killed (not running: ${dead[*]}); cleaning it up"
    elif ((${#alive[@]} > 0)); then
      log "found a cluster in .cluster/ whose API server does not answer (running: ${alive[*]}); restarting it"
    else
      log "found leftover .cluster/ with no running components (an interrupted or failed start); cleaning it up"
    fi
    real_node_down
    stop_all
    rm -rf "$STATE"
  fi

  local t0 t1
  t0="$(now_ms)"
  PHASE_T="$t0"
  pick_ports
  mkdir -p "$STATE" "$LOGS" "$PIDS" "$STATE/etcd" "$STATE/kwok"
  chmod 700 "$STATE" "$STATE/etcd"
  cat >"$STATE/ports.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
CONTROLLER_MANAGER_PORT=$CONTROLLER_MANAGER_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KWOK_PORT=$KWOK_PORT
EOF
  make_pki
  kubeconfig admin "$KUBECONFIG_OUT"
  kubeconfig controller-manager "$STATE/controller-manager.kubeconfig"
  kubeconfig scheduler "$STATE/scheduler.kubeconfig"
  kubeconfig kwok "$STATE/kwok/kubeconfig"
  real_node_args
  phase pki

  trap cleanup_failed_up EXIT
  trap 'fail "interrupted"' INT TERM

  # etcd: fsync off, this is scratch state for tests on loopback.
  launch etcd "$BIN/etcd" \
    --name stepwise --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "stepwise=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn
  wait_healthy etcd "http://127.0.0.1:$ETCD_PORT/health" "http://127.0.0.1:$ETCD_PORT/health"
  phase etcd

  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --disable-admission-plugins TaintNodesByCondition \
    --profiling=false "${APISERVER_NODE_ARGS[@]}"
  wait_healthy kube-apiserver "https://127.0.0.1:$APISERVER_PORT/readyz" \
    --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$APISERVER_PORT/readyz"
  phase apiserver

  local kcm_conf="$STATE/controller-manager.kubeconfig"
  launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$kcm_conf" --authentication-kubeconfig "$kcm_conf" --authorization-kubeconfig "$kcm_conf" \
    --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
    --tls-cert-file "$PKI/controller-manager-serving.crt" --tls-private-key-file "$PKI/controller-manager-serving.key" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials \
    --cluster-name stepwise-local \
    --leader-elect=false \
    --kube-api-qps 500 --kube-api-burst 1000 \
    --concurrent-job-syncs 20 --concurrent-gc-syncs 40 --concurrent-namespace-syncs 10 \
    --profiling=false "${KCM_NODE_ARGS[@]}"

  local sched_conf="$STATE/scheduler.kubeconfig"
  cat >"$STATE/scheduler-config.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $sched_conf
  qps: 500
  burst: 1000
leaderElection:
  leaderElect: false
enableProfiling: false
EOF
  launch kube-scheduler "$BIN/kube-scheduler" \
    --config "$STATE/scheduler-config.yaml" \
    --authentication-kubeconfig "$sched_conf" --authorization-kubeconfig "$sched_conf" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --tls-cert-file "$PKI/scheduler-serving.crt" --tls-private-key-file "$PKI/scheduler-serving.key"

  # kwok reads ~/.kwok/kwok.yaml when it exists: give it a HOME of its own.
  cat >"$STATE/kwok/kwok.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  # A config file given here is not defaulted: spell every option out.
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 2
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: true
  enableProfilingHandler: false
  enableContentionProfiling: false
EOF
  launch kwok HOME="$STATE/kwok" "$BIN/kwok" \
    --kubeconfig "$STATE/kwok/kubeconfig" \
    --config "$STATE/kwok/kwok.yaml" --config "$STAGES" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.240.0.0/16 --node-ip 127.0.0.1 \
    --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:$KWOK_PORT"

  local ca=(--cacert "$PKI/ca.crt")
  wait_healthy kube-controller-manager "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz" "${ca[@]}" "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"
  wait_healthy kube-scheduler "https://127.0.0.1:$SCHEDULER_PORT/healthz" "${ca[@]}" "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  wait_healthy kwok "http://127.0.0.1:$KWOK_PORT/healthz" "http://127.0.0.1:$KWOK_PORT/healthz"
  phase controllers

  local n manifest=""
  for n in "${NODES[@]}"; do
    manifest+="---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec: {}
"
  done
  kctl create -f - <<<"$manifest" >/dev/null 2>"$LOGS/nodes.log" || fail "could not create the fake nodes: $(cat "$LOGS/nodes.log")"

  wait_for "the API server to be ready" apiserver_ready
  wait_for "ServiceAccount default/default (kube-controller-manager's serviceaccount controller; see $LOGS/kube-controller-manager.log)" \
    kctl -n default get serviceaccount default
  phase serviceaccount
  wait_for "nodes ${NODES[*]} to be Ready (kwok; see $LOGS/kwok.log)" nodes_ready
  phase nodes
  if [[ "$REAL_NODE" == 1 ]]; then
    "$NODE_SH" up || fail "the real node did not start (scripts/node.sh up; logs in $LOGS)"
    phase real-node
  fi
  UP_DONE=1
  trap - INT TERM

  t1="$(now_ms)"
  local ms=$((t1 - t0))
  printf 'cluster up in %s s (%s): API server https://127.0.0.1:%s, %d fake nodes Ready\n' \
    "$(fmt_ms "$ms")" "$PHASES" "$APISERVER_PORT" "${#NODES[@]}"
  printf 'kubeconfig: %s   (kubectl --kubeconfig %s get nodes)\n' "$KUBECONFIG_OUT" "${KUBECONFIG_OUT#"$ROOT"/}"
}

cmd_down() {
  take_lock
  if [[ ! -d "$STATE" ]]; then
    echo "no cluster state in .cluster/; nothing to stop"
    return 0
  fi
  local c alive=()
  for c in "${COMPONENTS[@]}"; do live_pid "$c" >/dev/null && alive+=("$c"); done
  real_node_down
  stop_all
  rm -rf "$STATE"
  if ((${#alive[@]} > 0)); then
    echo "cluster stopped (${alive[*]}); removed .cluster/"
  else
    echo "no component was running; removed .cluster/"
  fi
}

cmd_status() {
  if [[ ! -d "$STATE" ]]; then
    echo "no cluster (start one with \`make cluster\`)"
    return 1
  fi
  local c pid ok=0
  for c in "${COMPONENTS[@]}"; do
    if pid="$(live_pid "$c")"; then
      local rss
      rss="$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status" 2>/dev/null || true)"
      printf '  %-24s running  pid %-7s rss %6s MiB\n' "$c" "$pid" "${rss:-?}"
    else
      printf '  %-24s NOT RUNNING (log: %s)\n' "$c" "$LOGS/$c.log"
      ok=1
    fi
  done
  if apiserver_ready; then
    echo "  API server ready at https://127.0.0.1:$(sed -n 's/^APISERVER_PORT=//p' "$STATE/ports.env"); kubeconfig $KUBECONFIG_OUT"
  else
    echo "  API server not ready"
    ok=1
  fi
  if [[ -d "$STATE/node" ]]; then "$NODE_SH" status || ok=1; fi
  return $ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
