//! The local cluster's kubeconfig and a client for it.
//!
//! A caller that needs the cluster and finds none fails with a message saying
//! how to start one: it is never skipped silently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long the API server may take to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkout this kit was built from (it lives in `crates/testkit`).
pub fn workspace_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| kit.to_path_buf())
}

/// The kubeconfig of the local cluster: `$STEPWISE_KUBECONFIG`, or
/// `<checkout>/.cluster/kubeconfig` as written by `scripts/cluster.sh up`.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("STEPWISE_KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".cluster").join("kubeconfig"),
    }
}

fn no_cluster(why: impl std::fmt::Display) -> String {
    format!(
        "no local Kubernetes cluster: {why}. Start one with `make cluster` \
         (or run `make test`, which starts it)"
    )
}

/// Loads the kubeconfig at `path` and checks that its API server answers.
/// The error says what is missing and how to start the cluster.
pub async fn try_client_at(path: impl AsRef<Path>) -> Result<Client, String> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(no_cluster(format_args!(
            "kubeconfig {} does not exist",
            path.display()
        )));
    }
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
        no_cluster(format_args!(
            "cannot read kubeconfig {}: {e}",
            path.display()
        ))
    })?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| no_cluster(format_args!("invalid kubeconfig {}: {e}", path.display())))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| no_cluster(format_args!("cannot build a client for {server}: {e}")))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(no_cluster(format_args!(
            "the API server {server} (from {}) does not answer: {e}",
            path.display()
        ))),
        Err(_) => Err(no_cluster(format_args!(
            "the API server {server} (from {}) did not answer within {CONNECT_TIMEOUT:?}",
            path.display()
        ))),
    }
}

/// A client for the local cluster; panics with how to start one if there is
/// none.
pub async fn client() -> Client {
    client_at(kubeconfig_path()).await
}

/// A client for the cluster of the kubeconfig at `path`; panics with how to
/// start the local cluster if it does not answer.
pub async fn client_at(path: impl AsRef<Path>) -> Client {
    match try_client_at(path).await {
        Ok(client) => client,
        Err(why) => panic!("{why}"),
    }
}
