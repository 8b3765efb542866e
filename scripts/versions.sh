# Pinned versions of everything the local control plane is built from.
# Bumping one here rebuilds only that component (the cache is keyed by version).
KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.14
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4
FLUX_CONTROLLERS_VERSION=v1.9.3
TEKTON_VERSION=v1.9.0
ARGO_WORKFLOWS_VERSION=v3.7.9
