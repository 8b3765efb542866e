#!/usr/bin/env bash
# The bench's peers (Tekton Pipelines, Argo Workflows) as local processes
# against the local cluster, like the operator in the bench. Their pods land
# on the kwok fake nodes; nothing runs inside the pods.
#
#   scripts/peers.sh setup PEER NS     install PEER's CRDs (cluster-wide) and its
#                                      ConfigMaps into namespace NS
#   scripts/peers.sh run PEER NS       exec PEER's controller, scoped to NS
#
# PEER is tekton, tekton-tuned (-kube-api-qps 200 -kube-api-burst 400
# -threads-per-controller 16), argo, argo-1s (DEFAULT_REQUEUE_TIME=1s) or
# argo-tuned (1 s requeue, --qps 400 --burst 800). The
# binaries and YAML come from scripts/build-peers.sh (.tools/bin, .tools/peers).
# Tekton runs with its CRDs' spec.conversion removed (no webhook), -disable-ha
# and dummy -*-image flags; Argo with LEADER_ELECTION_DISABLE=true and a
# workflow-controller-configmap with metrics off.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBECONFIG="${STEPWISE_KUBECONFIG:-${KUBECONFIG:-$ROOT/.cluster/kubeconfig}}"
export KUBECONFIG
PEERS="$ROOT/.tools/peers"
BIN="$ROOT/.tools/bin"
die() { printf '[peers] error: %s\n' "$*" >&2; exit 1; }
kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

# Rewrites YAML documents: drops CRDs' spec.conversion, puts namespaced
# objects into $1, and prints them (for kubectl apply -f -).
rewrite() { # ns files...
  python3 - "$@" <<'PY'
import sys, yaml
ns, files = sys.argv[1], sys.argv[2:]
out = []
for f in files:
    for d in yaml.safe_load_all(open(f)):
        if not d:
            continue
        if d.get("kind") == "CustomResourceDefinition":
            d.get("spec", {}).pop("conversion", None)
        elif "namespace" in d.get("metadata", {}):
            d["metadata"]["namespace"] = ns
        out.append(d)
print(yaml.safe_dump_all(out))
PY
}

setup() { # peer ns
  local peer="${1%%-*}" ns="$2" dir
  dir="$PEERS/${peer/argo/argo-workflow-controller}"
  [[ "$peer" == tekton ]] && dir="$PEERS/tekton-controller"
  [[ -d "$dir" ]] || die "$dir missing: run scripts/build-peers.sh $peer"
  rewrite "$ns" "$dir"/crd-*.yaml | kc apply --server-side --force-conflicts -f - >/dev/null
  local crd
  for crd in $(rewrite "$ns" "$dir"/crd-*.yaml | sed -n 's/^  name: \(.*\.\(tekton.dev\|argoproj.io\)\)$/\1/p'); do
    kc wait --for=condition=Established --timeout=60s "crd/$crd" >/dev/null \
      || die "CRD $crd not Established after 60 s"
  done
  if [[ "$peer" == tekton ]]; then
    rewrite "$ns" "$dir"/config-*.yaml | kc apply -n "$ns" -f - >/dev/null
  else
    kc apply -n "$ns" -f - >/dev/null <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: workflow-controller-configmap
data:
  metricsConfig: |
    enabled: false
  telemetryConfig: |
    enabled: false
YAML
  fi
}

run() { # peer ns
  local peer="$1" ns="$2"
  case "$peer" in
    tekton | tekton-tuned)
      local tuned=()
      [[ "$peer" == tekton-tuned ]] \
        && tuned=(-kube-api-qps 200 -kube-api-burst 400 -threads-per-controller 16)
      export SYSTEM_NAMESPACE="$ns" METRICS_DOMAIN=tekton.dev/pipeline \
        CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging \
        CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags \
        CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire \
        PROBES_PORT="${PEER_PROBES_PORT:-18090}" KUBERNETES_MIN_VERSION=v1.28.0
      exec "$BIN/tekton-controller" -kubeconfig "$KUBECONFIG" -namespace "$ns" -disable-ha \
        -entrypoint-image bench.invalid/entrypoint -nop-image bench.invalid/nop \
        -sidecarlogresults-image bench.invalid/sidecarlogresults \
        -workingdirinit-image bench.invalid/workingdirinit \
        -shell-image bench.invalid/shell -shell-image-win bench.invalid/shell-win "${tuned[@]}"
      ;;
    argo | argo-1s | argo-tuned)
      local tuned=()
      export LEADER_ELECTION_DISABLE=true
      [[ "$peer" != argo ]] && export DEFAULT_REQUEUE_TIME=1s
      [[ "$peer" == argo-tuned ]] && tuned=(--qps 400 --burst 800)
      exec "$BIN/argo-workflow-controller" --kubeconfig "$KUBECONFIG" --namespace "$ns" \
        --namespaced --managed-namespace "$ns" --executor-image bench.invalid/argoexec \
        --configmap workflow-controller-configmap --loglevel warn "${tuned[@]}"
      ;;
    *) die "unknown peer '$peer' (tekton|tekton-tuned|argo|argo-1s|argo-tuned)" ;;
  esac
}

case "${1:-}" in
  setup) setup "${2:?peer}" "${3:?namespace}" ;;
  run) run "${2:?peer}" "${3:?namespace}" ;;
  *) die "usage: $0 setup|run PEER NS" ;;
esac
