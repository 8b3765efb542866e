#!/usr/bin/env bash
# Tests of how Stepwise ships: the Helm chart (charts/stepwise), the kubectl
# manifests generated from it (deploy/), the Dockerfile and the Argo CD
# health check. Needs the local cluster (make cluster) for the checks that
# ask the API server, .tools/bin/{helm,kubectl} (make tools), lua5.4 (apt)
# and python3 with venv (hadolint is installed from PyPI by scripts/hadolint.sh).
#
#   tests/chart.sh
#
# Prints one line per check and ends with "chart: N passed, M failed"; exits
# non-zero if any check failed. Everything it creates in the cluster lives in
# two namespaces of its own (labelled stepwise.dev/test=true) and two Helm
# releases, removed at the end; the CRDs it applies stay (every suite needs them).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELM_BIN="$ROOT/.tools/bin/helm"
KUBECTL_BIN="$ROOT/.tools/bin/kubectl"
KUBECONFIG_FILE="${STEPWISE_KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
CHART=charts/stepwise

h() { "$HELM_BIN" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

die() {
  printf 'chart: error: %s\n' "$*" >&2
  printf 'chart: 0 passed, 1 failed\n'
  exit 1
}

# ------------------------------------------------------------ prerequisites

[[ -x "$HELM_BIN" && -x "$KUBECTL_BIN" ]] || die "no helm or kubectl in .tools/bin: run make tools"
command -v lua5.4 >/dev/null || die "lua5.4 is not installed: apt-get install lua5.4"
command -v jq >/dev/null || die "jq is not installed: apt-get install jq"
[[ -f "$KUBECONFIG_FILE" ]] ||
  die "no local cluster: $KUBECONFIG_FILE does not exist; run make cluster"
k get --raw=/readyz >/dev/null 2>&1 ||
  die "the local cluster is not reachable through $KUBECONFIG_FILE; run make cluster"

# ------------------------------------------------------------------ harness

passed=0
failed=0
failures=()
LOG="$(mktemp)"

# check NAME FUNCTION [ARGS...]: runs the function in a subshell with errexit,
# so the first failing command fails the check; shows its output on failure.
check() {
  local name="$1" rc
  shift
  (set -e; "$@") >"$LOG" 2>&1
  rc=$?
  if ((rc == 0)); then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf 'FAIL %s\n' "$name"
    tail -n 80 "$LOG" | sed 's/^/     | /'
  fi
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
  if [[ "$2" != "$3" ]]; then
    printf '%s:\n  got:  %s\n  want: %s\n' "$1" "$2" "$3"
    return 1
  fi
}

# expect_has WHAT TEXT LINE: TEXT has a line equal to LINE (leading blanks ignored).
expect_has() {
  # grep -c reads all its input: with pipefail, grep -q could fail the
  # pipeline by closing it early (SIGPIPE to sed).
  if ! sed 's/^[[:space:]]*//' <<<"$2" | grep -cxF -- "$3" >/dev/null; then
    printf '%s: no line %q\n' "$1" "$3"
    return 1
  fi
}

expect_lacks() {
  if sed 's/^[[:space:]]*//' <<<"$2" | grep -cxF -- "$3" >/dev/null; then
    printf '%s: unexpected line %q\n' "$1" "$3"
    return 1
  fi
}

# --------------------------------------------------------------- test state

suffix="$(printf '%04x%04x' "$RANDOM" "$RANDOM")"
NS="chart-$suffix"          # the releases live here
WATCHED="chart-$suffix-w"   # the namespaced release watches this one
REL="stepwise-$suffix"      # all-namespaces release (ClusterRole)
REL_NS="stepwise-$suffix-ns" # namespaced release (Role in $WATCHED)

cleanup() {
  local r
  for r in "$REL" "$REL_NS"; do
    if h status "$r" -n "$NS" >/dev/null 2>&1; then
      h uninstall "$r" -n "$NS" >/dev/null 2>&1 || true
    fi
  done
  k delete namespace "$NS" "$WATCHED" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  rm -f "$LOG"
}
trap cleanup EXIT

# ----------------------------------------------------- (a) lint and schema

lint_default() { h lint --strict "$CHART"; }
lint_namespaced() { h lint --strict "$CHART" --set watchNamespace=team-a; }
lint_everything_on() {
  h lint --strict "$CHART" --set replicaCount=2 --set serviceMonitor.enabled=true \
    --set pdb.enabled=true --set 'serviceMonitor.labels.release=prometheus'
}

# schema_rejects WHAT ARGS...: helm template must fail on the schema.
schema_rejects() {
  local out
  if out="$(h template t "$CHART" "$@" 2>&1)"; then
    echo "helm template $* succeeded; the schema should have refused it"
    return 1
  fi
  grep -q "values don't meet the specifications of the schema" <<<"$out" || {
    echo "helm template $* failed, but not on the schema:"
    echo "$out"
    return 1
  }
}
schema_rejects_bad_values() {
  schema_rejects --set replicaCount=-1
  schema_rejects --set replicaCount=two
  schema_rejects --set image.pullPolicy=Sometimes
  schema_rejects --set logFormat=xml
  schema_rejects --set watchNamespace=Team_A
  schema_rejects --set leaderElection.leaseDuration=soon
  schema_rejects --set metricsPort=70000
  schema_rejects --set noSuchValue=1
  schema_rejects --set pdb.maxUnavailable=half
  schema_rejects --set hostNetwork=yes
}

refuses_replicas_without_leader_election() {
  local out
  if out="$(h template t "$CHART" --set replicaCount=2 --set leaderElection.enabled=false 2>&1)"; then
    echo "replicaCount=2 without leader election rendered"
    return 1
  fi
  grep -q "needs leaderElection.enabled=true" <<<"$out"
}

# ------------------------------------------------------ rendering (no API)

render() { h template stepwise "$CHART" --namespace stepwise-system "$@"; }

renders_default_mode() {
  local out
  out="$(render)"
  expect_has "default args" "$out" "- --leader-elect"
  expect_has "default args" "$out" "- --leader-election-namespace=stepwise-system"
  expect_has "default args" "$out" "- --leader-election-id=stepwise"
  expect_has "default args" "$out" "- --lease-duration=15s"
  expect_has "default args" "$out" "- --metrics-bind-address=0.0.0.0:8080"
  expect_has "default args" "$out" "- --health-probe-bind-address=0.0.0.0:8081"
  expect_has "default args" "$out" "- controller"
  expect_has "kinds" "$out" "kind: ClusterRole"
  expect_has "kinds" "$out" "kind: ClusterRoleBinding"
  expect_lacks "kinds" "$out" "kind: ServiceMonitor"
  expect_lacks "kinds" "$out" "kind: PodDisruptionBudget"
  if grep -q -- "--namespace=" <<<"$out"; then
    echo "default mode must watch all namespaces (no --namespace)"
    return 1
  fi
  # Exactly one Role: the one for the Lease.
  expect_eq "Roles" "$(grep -c '^kind: Role$' <<<"$out")" 1
}

# The admission policies (who decided, who may): on by default, scoped to
# the watched namespace in namespaced mode, left out when disabled.
renders_admission_policies() {
  local out
  out="$(render)"
  for kind in MutatingAdmissionPolicy MutatingAdmissionPolicyBinding \
    ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding; do
    expect_has "kinds" "$out" "kind: $kind"
  done
  expect_eq "operator exempt" "$(grep -c 'system:serviceaccount:stepwise-system:stepwise\\"' <<<"$out")" 2
  out="$(render --set watchNamespace=team-a)"
  expect_eq "namespace selectors" "$(grep -c 'kubernetes.io/metadata.name: team-a$' <<<"$out")" 2
  out="$(render --set admissionPolicies.enabled=false)"
  expect_lacks "kinds" "$out" "kind: MutatingAdmissionPolicy"
  expect_lacks "kinds" "$out" "kind: ValidatingAdmissionPolicy"
}

# `shards: [a, b]`: one more Deployment per shard with --shard and its own
# Lease (allowed by the lease Role); the main one has no --shard.
renders_shards() {
  local out
  out="$(render --set 'shards={a,b}')"
  expect_eq "Deployments" "$(grep -c '^kind: Deployment$' <<<"$out")" 3
  for s in a b; do
    expect_has "shard $s" "$out" "name: stepwise-$s"
    expect_has "shard $s" "$out" "- --shard=$s"
    expect_has "shard $s" "$out" "- --leader-election-id=stepwise-$s"
    expect_has "shard $s lease" "$out" "- \"stepwise-$s\""
  done
  expect_eq "--shard args" "$(grep -c -- '- --shard=' <<<"$out")" 2
  out="$(render)"
  expect_eq "Deployments without shards" "$(grep -c '^kind: Deployment$' <<<"$out")" 1
  expect_lacks "no shard" "$out" "stepwise.dev/operator-shard: \"a\""
}

renders_namespaced_mode() {
  local out role
  out="$(render --set watchNamespace=team-a)"
  expect_has "namespaced args" "$out" "- --namespace=team-a"
  expect_lacks "kinds" "$out" "kind: ClusterRole"
  expect_lacks "kinds" "$out" "kind: ClusterRoleBinding"
  role="$(h template stepwise "$CHART" --namespace stepwise-system --set watchNamespace=team-a \
    --show-only templates/rbac.yaml)"
  expect_eq "Roles in rbac.yaml" "$(grep -c '^kind: Role$' <<<"$role")" 1
  expect_eq "RoleBindings in rbac.yaml" "$(grep -c '^kind: RoleBinding$' <<<"$role")" 1
  expect_eq "their namespace" "$(grep -c '^  namespace: team-a$' <<<"$role")" 2
}

# hostNetwork: loopback binds on kernel-chosen ports, no (host) ports, exec
# probes of the replica's own address; the default render has none of it.
renders_host_network_mode() {
  local out dep
  out="$(render --set hostNetwork=true --set replicaCount=2)"
  dep="$(h template stepwise "$CHART" --namespace stepwise-system --set hostNetwork=true \
    --show-only templates/deployment.yaml)"
  expect_has "hostNetwork" "$out" "hostNetwork: true"
  expect_has "args" "$out" "- --metrics-bind-address=127.0.0.1:0"
  expect_has "args" "$out" "- --health-probe-bind-address=127.0.0.1:0"
  expect_has "args" "$out" "- --bound-addresses-dir=/run/stepwise"
  expect_has "readiness" "$out" 'command: ["/stepwise", "probe", "--address-file=/run/stepwise/probes.addr", "/readyz"]'
  expect_has "liveness" "$out" 'command: ["/stepwise", "probe", "--address-file=/run/stepwise/probes.addr", "/healthz"]'
  expect_has "volume" "$out" "mountPath: /run/stepwise"
  expect_lacks "ports" "$dep" "ports:"
  expect_lacks "bind" "$out" "- --metrics-bind-address=0.0.0.0:8080"
  if grep -q "0\.0\.0\.0" <<<"$dep"; then echo "hostNetwork binds 0.0.0.0"; return 1; fi
  out="$(render)"
  expect_lacks "default" "$out" "hostNetwork: true"
  expect_lacks "default" "$out" "- --bound-addresses-dir=/run/stepwise"
}

renders_without_leader_election() {
  local out
  out="$(render --set leaderElection.enabled=false)"
  if grep -q -- "--leader-elect" <<<"$out"; then
    echo "--leader-elect rendered with leaderElection.enabled=false"
    return 1
  fi
  if grep -q "leader-election" <<<"$out"; then
    echo "a leader-election Role rendered with leaderElection.enabled=false"
    return 1
  fi
}

renders_servicemonitor_and_pdb_when_enabled() {
  local sm pdb
  sm="$(render --set serviceMonitor.enabled=true --set serviceMonitor.labels.release=prom \
    --show-only templates/servicemonitor.yaml)"
  expect_has "ServiceMonitor" "$sm" "kind: ServiceMonitor"
  expect_has "ServiceMonitor" "$sm" "apiVersion: monitoring.coreos.com/v1"
  expect_has "ServiceMonitor" "$sm" "- port: metrics"
  expect_has "ServiceMonitor" "$sm" "path: /metrics"
  expect_has "ServiceMonitor" "$sm" "release: prom"
  pdb="$(render --set pdb.enabled=true --show-only templates/pdb.yaml)"
  expect_has "PDB" "$pdb" "kind: PodDisruptionBudget"
  expect_has "PDB" "$pdb" "maxUnavailable: 1"
  pdb="$(render --set pdb.enabled=true --set pdb.minAvailable=1 --set pdb.maxUnavailable=null \
    --show-only templates/pdb.yaml)"
  expect_has "PDB" "$pdb" "minAvailable: 1"
  expect_lacks "PDB" "$pdb" "maxUnavailable: 1"
}

# Every RBAC rule carries a comment saying why; no wildcard, no Secrets.
rbac_rules_are_commented_and_minimal() {
  local mode out bad
  for mode in "" "--set watchNamespace=team-a"; do
    # shellcheck disable=SC2086
    out="$(render $mode --show-only templates/rbac.yaml --show-only templates/leader-election-rbac.yaml)"
    bad="$(awk '
      /^[[:space:]]*- apiGroups:/ { if (prev !~ /^[[:space:]]*#/) print "rule without a comment before line " NR ": " $0 }
      { prev = $0 }' <<<"$out")"
    [[ -z "$bad" ]] || { echo "$bad"; return 1; }
    [[ "$(grep -c -- '- apiGroups:' <<<"$out")" -ge 9 ]] || { echo "fewer rules than expected"; return 1; }
    if grep -nE "\"\*\"|'\*'|\[\*\]|- \*$" <<<"$out"; then
      echo "wildcard in RBAC"
      return 1
    fi
    if grep -nE '"(secrets|configmaps|serviceaccounts|roles|rolebindings|clusterroles|clusterrolebindings)"' <<<"$out"; then
      echo "RBAC grants a resource the operator does not use"
      return 1
    fi
  done
}

security_context_is_restricted() {
  local out
  out="$(render --show-only templates/deployment.yaml)"
  expect_has "pod" "$out" "runAsNonRoot: true"
  expect_has "container" "$out" "readOnlyRootFilesystem: true"
  expect_has "container" "$out" "allowPrivilegeEscalation: false"
  expect_has "container" "$out" "- ALL"
  expect_has "seccomp" "$out" "type: RuntimeDefault"
  expect_has "liveness" "$out" "path: /healthz"
  expect_has "readiness" "$out" "path: /readyz"
  expect_has "POD_NAME" "$out" "- name: POD_NAME"
  expect_has "POD_NAME" "$out" "fieldPath: metadata.name"
}

# ------------------------------------------ (d) generated files are current

chart_crds_match() {
  cmp crds/stepwise.dev.yaml "$CHART/crds/stepwise.dev.yaml" || {
    echo "charts/stepwise/crds/ differs from crds/: run scripts/gen-deploy.sh"
    return 1
  }
}
generated_files_are_current() { scripts/gen-deploy.sh --check; }

# --------------------------------------------- (e) Dockerfile, (f) Argo CD

# The image build sees only what .dockerignore lets in (an allow-list of
# "!path" lines): cargo must be able to load the crate from exactly that,
# e.g. a [[bench]] declared in Cargo.toml needs benches/ in the context.
docker_context_is_enough_for_cargo() {
  command -v cargo >/dev/null || { echo "cargo is not installed"; return 1; }
  local ctx p
  ctx="$(mktemp -d)"
  sed -n 's/^!//p' .dockerignore >"$ctx.paths"
  while read -r p; do
    if [[ -e "$p" ]]; then cp -r "$p" "$ctx/"; fi
  done <"$ctx.paths"
  rm -f "$ctx.paths"
  (cd "$ctx" && cargo fetch --locked --target x86_64-unknown-linux-musl) || {
    rm -rf "$ctx"
    echo "cargo cannot load the crate from the Docker build context; see .dockerignore"
    return 1
  }
  rm -rf "$ctx"
}
hadolint_dockerfile() { scripts/hadolint.sh --no-color --failure-threshold info Dockerfile; }
argocd_health_lua() { lua5.4 tests/argocd/health_test.lua; }

# ------------------------------------------------------------ cluster setup

setup_cluster() {
  # The same field manager as the Rust suites, forced, so that whichever
  # applies last owns the whole CRD and no stale field survives.
  k apply --server-side --force-conflicts --field-manager=stepwise-tests -f crds/
  k wait --for condition=Established --timeout=60s \
    crd/deployments.stepwise.dev crd/steps.stepwise.dev
  local ns
  for ns in "$NS" "$WATCHED"; do
    k create namespace "$ns"
    # The operator's pod must meet the restricted Pod Security Standard:
    # enforce it, and warn on workload objects (Deployments) too.
    k label namespace "$ns" stepwise.dev/test=true \
      pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
  done
}

# --------------------------------------------- (b) server-side dry runs

# dry_run: applies stdin with --dry-run=server; fails on any PodSecurity warning.
dry_run() {
  local out
  out="$(k apply --dry-run=server -f - 2>&1)" || { echo "$out"; return 1; }
  echo "$out"
  if grep -i "would violate PodSecurity" <<<"$out"; then
    return 1
  fi
}

dry_run_default() {
  h template "$REL" "$CHART" --namespace "$NS" | dry_run
}
dry_run_namespaced() {
  h template "$REL_NS" "$CHART" --namespace "$NS" --set watchNamespace="$WATCHED" | dry_run
}
dry_run_everything_on_but_servicemonitor() {
  h template "$REL" "$CHART" --namespace "$NS" --set replicaCount=2 --set pdb.enabled=true | dry_run
}
# deploy/ as `kubectl apply -f crds/ -f deploy/` would apply it, moved to the
# test namespace (stepwise-system may be in use by someone else).
dry_run_deploy_dir() {
  local files=(deploy/*.yaml)
  ((${#files[@]} > 0)) || { echo "deploy/ is empty"; return 1; }
  cat "${files[@]}" | sed "s/stepwise-system/$NS/g" | dry_run
}

argocd_cm_patch_applies() {
  k create configmap argocd-cm -n "$NS"
  k patch configmap argocd-cm -n "$NS" --type merge --patch-file "$CHART/argocd/argocd-cm-patch.yaml"
  local kind
  for kind in Deployment Step; do
    k get configmap argocd-cm -n "$NS" -o json |
      jq -j --arg key "resource.customizations.health.stepwise.dev_$kind" '.data[$key]' >"$LOG.lua"
    diff -u "$CHART/argocd/health.lua" "$LOG.lua"
  done
  rm -f "$LOG.lua"
}

# ------------------------------------------------ (c) helm install, for real

install_default() {
  h install "$REL" "$CHART" --namespace "$NS"
}
install_namespaced() {
  h install "$REL_NS" "$CHART" --namespace "$NS" --set watchNamespace="$WATCHED"
}

# The Deployment object the API server accepted: args, probes, security.
installed_deployment_is_right() {
  local d c
  d="$(k get deployment "$REL" -n "$NS" -o json)"
  c="$(jq '.spec.template.spec.containers[0]' <<<"$d")"
  expect_eq "replicas" "$(jq -r '.spec.replicas' <<<"$d")" 1
  expect_eq "serviceAccountName" "$(jq -r '.spec.template.spec.serviceAccountName' <<<"$d")" "$REL"
  expect_eq "image" "$(jq -r '.image' <<<"$c")" "stepwise:0.1.0"
  expect_eq "args" "$(jq -c '.args' <<<"$c")" \
    "[\"controller\",\"--metrics-bind-address=0.0.0.0:8080\",\"--health-probe-bind-address=0.0.0.0:8081\",\"--log-format=json\",\"--concurrency=16\",\"--leader-elect\",\"--leader-election-namespace=$NS\",\"--leader-election-id=$REL\",\"--lease-duration=15s\"]"
  expect_eq "POD_NAME" "$(jq -r '.env[] | select(.name == "POD_NAME") | .valueFrom.fieldRef.fieldPath' <<<"$c")" \
    metadata.name
  expect_eq "pod runAsNonRoot" "$(jq -r '.spec.template.spec.securityContext.runAsNonRoot' <<<"$d")" true
  expect_eq "pod seccomp" "$(jq -r '.spec.template.spec.securityContext.seccompProfile.type' <<<"$d")" RuntimeDefault
  expect_eq "container security" "$(jq -c '.securityContext | {allowPrivilegeEscalation, readOnlyRootFilesystem, runAsNonRoot, capabilities, seccomp: .seccompProfile.type}' <<<"$c")" \
    '{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"runAsNonRoot":true,"capabilities":{"drop":["ALL"]},"seccomp":"RuntimeDefault"}'
  expect_eq "liveness" "$(jq -c '.livenessProbe.httpGet | {path, port}' <<<"$c")" '{"path":"/healthz","port":"health"}'
  expect_eq "readiness" "$(jq -c '.readinessProbe.httpGet | {path, port}' <<<"$c")" '{"path":"/readyz","port":"health"}'
  expect_eq "ports" "$(jq -c '[.ports[] | {name, containerPort}]' <<<"$c")" \
    '[{"name":"metrics","containerPort":8080},{"name":"health","containerPort":8081}]'
  expect_eq "resources set" "$(jq -c '.resources | [has("requests"), has("limits")]' <<<"$c")" '[true,true]'
  expect_eq "metrics Service port" \
    "$(k get service "$REL-metrics" -n "$NS" -o jsonpath='{.spec.ports[0].name}={.spec.ports[0].port}')" metrics=8080
}

installed_rbac_objects_exist() {
  k get serviceaccount "$REL" -n "$NS" -o name
  k get clusterrole "$REL" -o name
  expect_eq "ClusterRoleBinding subject" \
    "$(k get clusterrolebinding "$REL" -o jsonpath='{.roleRef.kind}/{.roleRef.name} {.subjects[0].kind}/{.subjects[0].namespace}/{.subjects[0].name}')" \
    "ClusterRole/$REL ServiceAccount/$NS/$REL"
  expect_eq "lease Role" "$(k get role "$REL-leader-election" -n "$NS" -o jsonpath='{.rules[1].resourceNames[0]}')" "$REL"
  expect_eq "lease RoleBinding subject" \
    "$(k get rolebinding "$REL-leader-election" -n "$NS" -o jsonpath='{.subjects[0].namespace}/{.subjects[0].name}')" "$NS/$REL"
}

# can SA_NAMESPACE SA ARGS...: what `kubectl auth can-i` answers for the SA.
# Prints yes or no; anything else (an error) is printed as it came.
can() {
  local ns="$1" sa="$2" out
  shift 2
  out="$(k auth can-i "$@" --as="system:serviceaccount:$ns:$sa" 2>&1)" || true
  case "$(tail -n 1 <<<"$out")" in
    yes) echo yes ;;
    no) echo no ;;
    *) echo "error: $out" ;;
  esac
}

# expect_can SA YES|NO ARGS...: one line per question, fails at the end.
expect_can() {
  local sa="$1" want="$2" got
  shift 2
  got="$(can "$NS" "$sa" "$@")"
  if [[ "$got" != "$want" ]]; then
    echo "can-i $* as $sa: $got, want $want"
    return 1
  fi
}

# Each verb the operator uses is allowed (all namespaces).
default_rbac_allows_what_the_operator_does() {
  local sa="$REL" ns="$WATCHED" bad=0 q
  set -f # the questions hold a literal *
  while read -r q; do
    [[ -n "$q" ]] || continue
    # shellcheck disable=SC2086
    expect_can "$sa" yes $q || bad=1
  done <<EOF
list deployments.stepwise.dev -A
watch deployments.stepwise.dev -A
get deployments.stepwise.dev -n $ns
list steps.stepwise.dev -A
watch steps.stepwise.dev -A
create steps.stepwise.dev -n $ns
patch steps.stepwise.dev -n $ns
patch deployments.stepwise.dev -n $ns
patch jobs.batch -n $ns
patch deployments.stepwise.dev --subresource=status -n $ns
patch steps.stepwise.dev --subresource=status -n $ns
update deployments.stepwise.dev --subresource=finalizers -n $ns
create jobs.batch -n $ns
get jobs.batch -n $ns
list jobs.batch -A
watch jobs.batch -A
list pods -A
watch pods -A
get namespaces/$ns
create events.events.k8s.io -n $ns
patch events.events.k8s.io -n $ns
create leases.coordination.k8s.io -n $NS
get leases.coordination.k8s.io/$sa -n $NS
patch leases.coordination.k8s.io/$sa -n $NS
EOF
  return "$bad"
}

# ...and nothing else that matters.
default_rbac_denies_the_rest() {
  local sa="$REL" ns="$WATCHED" bad=0 q
  set -f # the questions hold a literal *
  while read -r q; do
    [[ -n "$q" ]] || continue
    # shellcheck disable=SC2086
    expect_can "$sa" no $q || bad=1
  done <<EOF
* *
get secrets -n $NS
list secrets -A
list configmaps -A
update deployments.stepwise.dev -n $ns
delete deployments.stepwise.dev -n $ns
update steps.stepwise.dev -n $ns
delete steps.stepwise.dev -n $ns
update steps.stepwise.dev --subresource=status -n $ns
delete jobs.batch -n $ns
update jobs.batch -n $ns
create pods -n $ns
delete pods -n $ns
create pods --subresource=exec -n $ns
list namespaces
patch namespaces/$ns
delete namespaces/$ns
create events -n $ns
delete events.events.k8s.io -n $ns
get leases.coordination.k8s.io/someone-else -n $NS
patch leases.coordination.k8s.io/someone-else -n $NS
create leases.coordination.k8s.io -n $ns
delete leases.coordination.k8s.io/$sa -n $NS
create rolebindings.rbac.authorization.k8s.io -n $ns
create clusterroles.rbac.authorization.k8s.io
create serviceaccounts --subresource=token -n $NS
EOF
  return "$bad"
}

namespaced_install_is_right() {
  local args
  args="$(k get deployment "$REL_NS" -n "$NS" -o jsonpath='{.spec.template.spec.containers[0].args}')"
  grep -qF -- "\"--namespace=$WATCHED\"" <<<"$args" || { echo "no --namespace=$WATCHED in $args"; return 1; }
  expect_eq "Role" "$(k get role "$REL_NS" -n "$WATCHED" -o name)" "role.rbac.authorization.k8s.io/$REL_NS"
  expect_eq "RoleBinding subject" \
    "$(k get rolebinding "$REL_NS" -n "$WATCHED" -o jsonpath='{.roleRef.kind}/{.roleRef.name} {.subjects[0].namespace}/{.subjects[0].name}')" \
    "Role/$REL_NS $NS/$REL_NS"
  k get role "$REL_NS-leader-election" -n "$NS" -o name
  if k get clusterrole "$REL_NS" -o name 2>/dev/null; then
    echo "namespaced mode created a ClusterRole"
    return 1
  fi
  if k get clusterrolebinding "$REL_NS" -o name 2>/dev/null; then
    echo "namespaced mode created a ClusterRoleBinding"
    return 1
  fi
}

namespaced_rbac_is_confined() {
  local sa="$REL_NS" bad=0 q
  set -f
  while read -r q; do
    [[ -n "$q" ]] || continue
    # shellcheck disable=SC2086
    expect_can "$sa" yes $q || bad=1
  done <<EOF
list deployments.stepwise.dev -n $WATCHED
watch steps.stepwise.dev -n $WATCHED
create steps.stepwise.dev -n $WATCHED
patch steps.stepwise.dev --subresource=status -n $WATCHED
create jobs.batch -n $WATCHED
watch pods -n $WATCHED
create events.events.k8s.io -n $WATCHED
create leases.coordination.k8s.io -n $NS
patch leases.coordination.k8s.io/$sa -n $NS
EOF
  while read -r q; do
    [[ -n "$q" ]] || continue
    # shellcheck disable=SC2086
    expect_can "$sa" no $q || bad=1
  done <<EOF
list deployments.stepwise.dev -A
list deployments.stepwise.dev -n $NS
create jobs.batch -n $NS
list pods -A
list pods -n default
get secrets -n $WATCHED
create leases.coordination.k8s.io -n $WATCHED
EOF
  return "$bad"
}

# The ReplicaSet's pods get past the restricted Pod Security admission
# (they cannot really run on the fake nodes; only the API objects count).
pods_pass_restricted_admission() {
  local i n
  for ((i = 0; i < 60; i++)); do
    n="$(k get pods -n "$NS" -l "app.kubernetes.io/instance=$REL" -o name | wc -l)"
    ((n > 0)) && return 0
    sleep 1
  done
  echo "no pod of $REL after 60s; ReplicaSet conditions:"
  k get replicasets -n "$NS" -l "app.kubernetes.io/instance=$REL" -o jsonpath='{range .items[*]}{.status.conditions}{"\n"}{end}'
  k get events -n "$NS" --field-selector reason=FailedCreate
  return 1
}

upgrade_to_two_replicas() {
  h upgrade "$REL" "$CHART" --namespace "$NS" --reuse-values --set replicaCount=2 --set pdb.enabled=true
  expect_eq "replicas" "$(k get deployment "$REL" -n "$NS" -o jsonpath='{.spec.replicas}')" 2
  expect_eq "PDB" "$(k get pdb "$REL" -n "$NS" -o jsonpath='{.spec.maxUnavailable}')" 1
}

uninstall_removes_everything() {
  local r left
  for r in "$REL" "$REL_NS"; do
    h uninstall "$r" --namespace "$NS" --wait --timeout 60s
  done
  if k get clusterrole "$REL" -o name 2>/dev/null; then echo "ClusterRole left"; return 1; fi
  if k get clusterrolebinding "$REL" -o name 2>/dev/null; then echo "ClusterRoleBinding left"; return 1; fi
  left="$(k get role,rolebinding -n "$WATCHED" -o name)"
  [[ -z "$left" ]] || { echo "left in $WATCHED: $left"; return 1; }
  left="$(k get deployment,service,serviceaccount,role,rolebinding,pdb -n "$NS" \
    -l app.kubernetes.io/part-of=stepwise -o name)"
  [[ -z "$left" ]] || { echo "left in $NS: $left"; return 1; }
  # The CRDs stay: Helm never deletes a chart's crds/.
  k get crd deployments.stepwise.dev -o name
  k delete namespace "$NS" "$WATCHED" --wait=false
}

# --------------------------------------------------------------------- run

echo "chart: cluster $(k config view --minify -o jsonpath='{.clusters[0].cluster.server}'), namespaces $NS $WATCHED"

check "helm lint (all namespaces)" lint_default
check "helm lint (watchNamespace)" lint_namespaced
check "helm lint (2 replicas, ServiceMonitor, PDB)" lint_everything_on
check "values.schema.json rejects bad values" schema_rejects_bad_values
check "refuses replicaCount > 1 without leader election" refuses_replicas_without_leader_election
check "renders all-namespaces mode" renders_default_mode
check "renders namespaced mode (Role, --namespace)" renders_namespaced_mode
check "renders the admission policies (on by default, off by a value)" renders_admission_policies
check "renders hostNetwork mode (127.0.0.1:0, exec probes, no ports)" renders_host_network_mode
check "renders without leader election" renders_without_leader_election
check "renders one Deployment per shard (--shard, own Lease)" renders_shards
check "renders ServiceMonitor and PDB when enabled" renders_servicemonitor_and_pdb_when_enabled
check "RBAC rules are commented, no wildcards, no Secrets" rbac_rules_are_commented_and_minimal
check "restricted securityContext, probes, POD_NAME" security_context_is_restricted
check "chart crds/ is a copy of crds/" chart_crds_match
check "deploy/, chart crds/ and argocd-cm patch are generated (drift)" generated_files_are_current
check "hadolint Dockerfile" hadolint_dockerfile
check "Docker build context holds what cargo needs" docker_context_is_enough_for_cargo
check "Argo CD health check (lua5.4)" argocd_health_lua

check "cluster: CRDs applied, test namespaces created" setup_cluster
if ((failed > 0)) && [[ "${failures[-1]}" == "cluster: CRDs applied, test namespaces created" ]]; then
  printf 'chart: %d passed, %d failed\n' "$passed" "$failed"
  exit 1
fi
check "dry-run=server: chart, all namespaces" dry_run_default
check "dry-run=server: chart, watchNamespace" dry_run_namespaced
check "dry-run=server: chart, 2 replicas + PDB" dry_run_everything_on_but_servicemonitor
check "dry-run=server: deploy/ (kubectl apply -f deploy/)" dry_run_deploy_dir
check "argocd-cm patch applies and carries health.lua" argocd_cm_patch_applies
check "helm install (all namespaces)" install_default
check "installed Deployment: args, securityContext, probes, Service" installed_deployment_is_right
check "installed ServiceAccount, ClusterRole(Binding), lease Role(Binding)" installed_rbac_objects_exist
check "RBAC allows every call the operator makes" default_rbac_allows_what_the_operator_does
check "RBAC denies everything else checked" default_rbac_denies_the_rest
check "pods pass restricted Pod Security admission" pods_pass_restricted_admission
check "helm install (watchNamespace)" install_namespaced
check "namespaced install: Role in the watched namespace, no ClusterRole" namespaced_install_is_right
check "namespaced RBAC is confined to the watched namespace" namespaced_rbac_is_confined
check "helm upgrade to 2 replicas with a PDB" upgrade_to_two_replicas
check "helm uninstall removes everything but the CRDs" uninstall_removes_everything

if ((failed > 0)); then
  printf '\nfailed checks:\n'
  printf '  %s\n' "${failures[@]}"
fi
printf 'chart: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
