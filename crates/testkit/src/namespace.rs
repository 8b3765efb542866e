//! A namespace of its own per test (or bench phase), deleted when dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, Resource};

use crate::client::{client, kubeconfig_path, try_client_at};
use crate::wait::wait_for;

/// Label put on every namespace a test creates
/// (`kubectl delete ns -l stepwise.dev/test=true` removes leftovers).
pub const TEST_NAMESPACE_LABEL: &str = "stepwise.dev/test";

/// Set to keep the namespaces of failed tests for a look afterwards.
const KEEP_ENV: &str = "STEPWISE_KEEP_NAMESPACES";

/// How long a fresh namespace may take to get its `default` ServiceAccount.
const NAMESPACE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A namespace of its own for one test. Dropping it deletes the namespace in
/// the background, also when the test panics (unless
/// `STEPWISE_KEEP_NAMESPACES` is set); [`TestNamespace::cleanup`] and
/// [`TestNamespace::delete_and_wait`] do it explicitly.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    /// Where a fresh client comes from when the namespace is dropped: the
    /// test's own client lives on the test's runtime, which is blocked then.
    kubeconfig: PathBuf,
    deleted: bool,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>`, labelled `stepwise.dev/test=true`,
    /// and waits until its `default` ServiceAccount exists (pods cannot be
    /// created before).
    pub async fn new(prefix: &str) -> TestNamespace {
        TestNamespace::create(client().await, kubeconfig_path(), prefix, &[]).await
    }

    /// Like [`TestNamespace::new`], with `client` (from the kubeconfig at
    /// `kubeconfig`) and more labels.
    pub async fn create(
        client: Client,
        kubeconfig: PathBuf,
        prefix: &str,
        labels: &[&str],
    ) -> TestNamespace {
        let name = unique_name(prefix);
        let mut all = serde_json::Map::new();
        for label in labels.iter().chain([&TEST_NAMESPACE_LABEL]) {
            all.insert(label.to_string(), "true".into());
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": all },
        }))
        .expect("namespace manifest");
        Api::<Namespace>::all(client.clone())
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
        TestNamespace {
            client,
            name,
            kubeconfig,
            deleted: false,
        }
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
    pub async fn cleanup(mut self) {
        self.deleted = true;
        if let Err(e) = self.delete().await {
            eprintln!("warning: cannot delete test namespace {}: {e}", self.name);
        }
    }

    /// Deletes the namespace and waits (up to `timeout`) until it is gone, so
    /// that what it leaves behind does not load what runs next. Returns how
    /// long it waited, and whether the namespace is gone.
    pub async fn delete_and_wait(mut self, timeout: Duration) -> (Duration, bool) {
        self.deleted = true;
        let started = Instant::now();
        if let Err(e) = self.delete().await {
            eprintln!("warning: cannot delete namespace {}: {e}", self.name);
            return (started.elapsed(), false);
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        loop {
            if matches!(api.get_opt(&self.name).await, Ok(None)) {
                return (started.elapsed(), true);
            }
            if started.elapsed() >= timeout {
                return (started.elapsed(), false);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn delete(&self) -> Result<(), kube::Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(&self.name, &DeleteParams::background())
            .await
            .map(|_| ())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        if std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty()) {
            eprintln!("{KEEP_ENV}: keeping namespace {}", self.name);
            return;
        }
        // Drop cannot await, and the test's runtime is busy running this
        // drop: a thread with a runtime and a client of its own deletes it.
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = try_client_at(&kubeconfig).await?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot delete test namespace {}: {e}", self.name),
            Err(_) => eprintln!("warning: deleting test namespace {} panicked", self.name),
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
