//! The imperative shell: watches, caches, and the two reconcilers. Each
//! reconcile gathers state from the caches, asks `plan` what to do, and applies it.
//!
//! - `run`: assembly only (watches, context, controllers, readiness, shutdown);
//! - `triggers`: what wakes what;
//! - `state`: what is remembered between reconciles (failure clock, pod index,
//!   own writes, refusals);
//! - `writes`: the status patch and Events both reconcilers use (`events`: how an Event is made);
//! - `step`, `deployment`: the two reconcilers; `annotations`: guarded annotation writes.

pub mod annotations;
pub mod deployment;
pub mod events;
mod queue;
mod run;
mod state;
pub mod step;
mod triggers;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

pub use run::{check_crds, run};
pub use state::{FailureClock, PodIndex, Refusals, Written};
pub(crate) use writes::publish;

use crate::api::{Deployment, Step};
use crate::telemetry::Metrics;
use crate::view::{CachedJob, CachedPod};
use crate::{Error, Result};

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub jobs: Store<CachedJob>,
    pub pods: Store<CachedPod>,
    /// Pod names by (namespace, Job name), so a reconcile never scans every pod.
    pub pods_by_job: Arc<PodIndex>,
    /// When the watches first delivered each Job's failure.
    pub failures_seen: Arc<FailureClock>,
    pub steps: Store<Step>,
    /// Every Deployment, for the concurrency queue (see `queue`).
    pub deployments: Store<Deployment>,
    pub events: events::EventWriter,
    pub metrics: Arc<Metrics>,
    /// True once every cache has been filled (see [`Context::synced`]).
    pub synced: tokio::sync::watch::Receiver<bool>,
    pub step_status: Written<crate::api::StepStatus>,
    pub deployment_status: Written<crate::api::DeploymentStatus>,
    /// Job creates refused for now, per Step (for their backoff).
    pub refusals: Refusals,
    /// Retries falling due, each created by a task of its own (`step::lane`).
    pub lane: step::lane::Lane,
}

impl Context {
    /// Waits until every cache has been filled by its first list. A reconcile
    /// that read a half-filled cache would take a Step for missing and write
    /// a finished release back to Running (and GitOps tools would see it flap).
    /// (Not `Store::wait_until_ready` here: it wakes only the last of several
    /// concurrent waiters, and the others would hang.)
    pub(crate) async fn synced(&self) -> Result<()> {
        let mut synced = self.synced.clone();
        synced
            .wait_for(|s| *s)
            .await
            .map(|_| ())
            .map_err(|_| Error::CacheStopped("operator"))
    }
}

/// What `stepwise controller` was asked to watch and how hard to work.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch one namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconciles in flight per controller.
    pub concurrency: u16,
    /// Identifies this replica in Events.
    pub instance: Option<String>,
    /// The shard this process runs (`stepwise.dev/shard`); `None`: the unlabelled releases.
    pub shard: Option<String>,
}

pub(crate) fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The object itself, or, when the cache holds only a summary of it
/// (`view::trim_finished_step`, `view::trim_finished_deployment`), the whole
/// object as the API server has it (`None`: gone since, and its deletion
/// event follows): a reconcile plans from the whole object only.
pub(crate) async fn whole<K>(
    client: &Client,
    cached: Arc<K>,
    summary: bool,
) -> Result<Option<Arc<K>>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    use crate::KubeContext;
    use kube::ResourceExt;
    if !summary {
        return Ok(Some(cached));
    }
    let (ns, name) = (cached.namespace().unwrap_or_default(), cached.name_any());
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let found = api
        .get_opt(&name)
        .await
        .context(|| format!("reading {} {ns}/{name}", K::kind(&())))?;
    Ok(found.map(Arc::new))
}

/// Times a reconcile and counts its result.
pub(crate) fn observe(
    metrics: &Metrics,
    controller: &'static str,
    started: Instant,
    result: &Result<Action>,
) {
    let label = match result {
        Ok(a) if *a != Action::await_change() => "requeue_after",
        Ok(_) => "success",
        Err(_) => "error",
    };
    metrics.reconciled(controller, label, started.elapsed());
}

/// Transient errors retry with a short delay; the controller's own trigger
/// backoff spaces repeated failures.
pub(crate) fn retry_later(error: &Error) -> Action {
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

pub(crate) fn now() -> jiff::Timestamp {
    let t = jiff::Timestamp::now();
    // Millisecond precision: enough for timing, and stable when round-tripped.
    jiff::Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

pub(crate) fn requeue_at(due: jiff::Timestamp) -> Action {
    let wait = due.duration_since(now());
    let ms = u64::try_from(wait.as_millis()).unwrap_or(0);
    Action::requeue(Duration::from_millis(ms))
}
