//! The phases: each runs in namespaces of its own (labelled
//! `stepwise.dev/bench`), with one operator process scoped to each, and
//! deletes them (and waits) before the next phase starts.

mod handoff;
mod peers;
mod retry;
mod shards;
mod throughput;
mod writes;

use std::time::Duration;

use kube::Client;
use stepwise::api::Deployment;
use stepwise_testkit::TestNamespace;

pub use handoff::phase_handoff;
pub use peers::phase_peers;
pub use retry::phase_retry;
pub use shards::phase_shards;
pub use throughput::phase_throughput;

use crate::raw::create_all;
use crate::settings::Settings;
use crate::stats::log;

/// Label of the bench's namespaces (scripts/bench.sh removes leftovers).
const BENCH_LABEL: &str = "stepwise.dev/bench";

/// A fresh namespace for one run of a phase (deleted on drop if the phase panics).
async fn namespace(s: &Settings, client: &Client, prefix: &str) -> TestNamespace {
    TestNamespace::create(client.clone(), s.kubeconfig.clone(), prefix, &[BENCH_LABEL]).await
}

/// Deletes the namespace and waits (bounded) until it is gone, so that the
/// garbage it leaves does not load the next phase. Returns seconds waited.
async fn remove(ns: TestNamespace, timeout: Duration) -> f64 {
    let name = ns.name.clone();
    let (waited, gone) = ns.delete_and_wait(timeout).await;
    let waited = waited.as_secs_f64();
    if gone {
        log(format!("namespace {name} deleted in {waited:.1} s"));
    } else {
        log(format!(
            "warning: namespace {name} still terminating after {waited:.0} s; going on"
        ));
    }
    waited
}

/// Creates the bench's releases; every one must be accepted.
async fn create_releases(s: &Settings, ns: &TestNamespace, objs: Vec<Deployment>) {
    let refused = create_all(&ns.api::<Deployment>(), objs, s.create_concurrency).await;
    assert_eq!(
        refused, 0,
        "the API server refused {refused} of the bench's Deployments"
    );
}
