//! Harness for integration tests against the local control plane
//! (`make cluster`, or `make test`, which starts it when none runs).
//!
//! A test that needs the cluster and finds none fails with a message saying
//! how to start one: it is never skipped silently.
#![allow(dead_code)]

pub mod events;
pub mod manifests;
pub mod operator;
pub mod release;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Label put on every namespace a test creates
/// (`kubectl delete ns -l stepwise.dev/test=true` removes leftovers).
pub const TEST_NAMESPACE_LABEL: &str = "stepwise.dev/test";

/// How long a fresh namespace may take to get its `default` ServiceAccount.
const NAMESPACE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the API server may take to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between polls in [`wait_for`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The kubeconfig of the local cluster: `$STEPWISE_KUBECONFIG`, or
/// `<crate>/.cluster/kubeconfig` as written by `scripts/cluster.sh up`.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("STEPWISE_KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".cluster")
            .join("kubeconfig"),
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
    match try_client_at(kubeconfig_path()).await {
        Ok(client) => client,
        Err(why) => panic!("{why}"),
    }
}

/// A namespace of its own for one test.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>`, labelled `stepwise.dev/test=true`,
    /// and waits until its `default` ServiceAccount exists (pods cannot be
    /// created before).
    pub async fn new(prefix: &str) -> TestNamespace {
        let client = client().await;
        let name = unique_name(prefix);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { TEST_NAMESPACE_LABEL: "true" } },
        }))
        .expect("namespace manifest");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create test namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_for(
            &sas,
            "default",
            NAMESPACE_READY_TIMEOUT,
            &format!("the default ServiceAccount of namespace {name} (kube-controller-manager)"),
            |_| true,
        )
        .await;
        TestNamespace { client, name }
    }

    /// An `Api` for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (and so everything in it) in the background.
    pub async fn cleanup(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if let Err(e) = namespaces
            .delete(&self.name, &DeleteParams::background())
            .await
        {
            eprintln!("warning: cannot delete test namespace {}: {e}", self.name);
        }
    }
}

/// `<prefix>-<suffix>`: a valid DNS label, unique across tests and runs.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(50);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0) as u64;
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser: spreads the bits so suffixes differ everywhere.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let suffix: String = (0..8)
        .map(|i| ALPHABET[((x >> (i * 6)) % 36) as usize] as char)
        .collect();
    format!("{clean}-{suffix}")
}

/// Polls `name` until `cond` holds for it and returns it; panics on timeout
/// with `what` and the last object (or error) seen.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, timeout: Duration, what: &str, cond: F) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    <K as Resource>::DynamicType: Default,
    F: Fn(&K) -> bool,
{
    let started = Instant::now();
    let mut last;
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) => {
                if cond(&obj) {
                    return obj;
                }
                last = describe(&obj);
            }
            Ok(None) => last = format!("{name} does not exist"),
            Err(e) => last = format!("error getting {name}: {e}"),
        }
        if started.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what} ({} {name}); last seen:\n{last}",
                K::kind(&Default::default()),
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls until `cond` holds (checked at least once); panics on timeout with
/// `what` and the last description returned by `cond`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let last = match cond().await {
            Ok(()) => return,
            Err(last) => last,
        };
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Pretty JSON of an object, without the noisy managedFields.
pub fn describe<K: Serialize>(obj: &K) -> String {
    let mut value = serde_json::to_value(obj).unwrap_or(serde_json::Value::Null);
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| "<unprintable>".into())
}

/// Whether the Job has condition `type_` with status True
/// ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget", ...).
pub fn job_has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// "Complete" or "Failed" once the Job has finished, else None.
pub fn job_outcome(job: &Job) -> Option<&'static str> {
    if job_has_condition(job, "Complete") {
        Some("Complete")
    } else if job_has_condition(job, "Failed") {
        Some("Failed")
    } else {
        None
    }
}
