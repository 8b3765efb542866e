//! The imperative shell: watches, caches, and the two reconcilers. Each
//! reconcile gathers state from the caches, asks `plan` what to do, and applies it.

pub mod deployment;
pub mod step;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, future, stream};
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{Deployment, LABEL_STEP, Step};
use crate::telemetry::{Health, Metrics};
use crate::{Error, KubeContext, Result};

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    /// Pod names by (namespace, Job name), so a reconcile never scans every pod.
    pub pods_by_job: Arc<PodIndex>,
    pub steps: Store<Step>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub step_status: Written<crate::api::StepStatus>,
    pub deployment_status: Written<crate::api::DeploymentStatus>,
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
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
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

/// Runs both controllers until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let ns = settings.namespace.as_deref();
    check_crds(&client, ns).await?;
    let deployments: Api<Deployment> = api(&client, ns);
    let steps: Api<Step> = api(&client, ns);

    // Only what reconciles read is kept: the caches hold status, labels and owners.
    let managed = watcher::Config::default().labels(LABEL_STEP);
    let (jobs, job_writer) = reflector::store::<Job>();
    let job_events = reflector::reflector(
        job_writer,
        watcher(api::<Job>(&client, ns), managed.clone())
            .default_backoff()
            .modify(|j: &mut Job| {
                j.managed_fields_mut().clear();
                j.spec = None;
            }),
    );
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pods_by_job = Arc::new(PodIndex::default());
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(api::<Pod>(&client, ns), managed)
            .default_backoff()
            .modify(|p: &mut Pod| {
                p.managed_fields_mut().clear();
                p.spec = None;
            }),
    );
    // A Job or pod changing (or vanishing) wakes the Step named in its labels.
    let wake_steps = stream::select(
        job_events
            .touched_objects()
            .filter_map(|r| future::ready(step_of(r))),
        pod_events
            .touched_objects()
            .inspect({
                let index = pods_by_job.clone();
                move |r| {
                    if let Ok(pod) = r {
                        index.add(pod);
                    }
                }
            })
            .filter_map(|r| future::ready(step_of(r))),
    );

    // The Deployment controller reads Steps from the same reflector whose
    // events wake it: the store is updated before the event is seen, so a
    // reconcile never reads a Step older than the change that triggered it.
    let (steps_seen, step_writer) = reflector::store::<Step>();
    let step_events = reflector::reflector(
        step_writer,
        watcher(steps.clone(), watcher::Config::default())
            .default_backoff()
            .modify(|s: &mut Step| s.managed_fields_mut().clear()),
    );
    let wake_deployments = step_events
        .touched_objects()
        .filter_map(|r| future::ready(deployment_of(r)));

    let config = ControllerConfig::default().concurrency(settings.concurrency);
    let step_controller = Controller::new(steps.clone(), watcher::Config::default())
        .with_config(config.clone())
        .reconcile_on(wake_steps);
    let reporter = Reporter {
        controller: "stepwise".into(),
        instance: settings.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        pods_by_job,
        steps: steps_seen,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        step_status: Written::default(),
        deployment_status: Written::default(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let step_run = step_controller
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(step::reconcile, step::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    let deployment_run = Controller::new(deployments, watcher::Config::default())
        .with_config(config)
        .reconcile_on(wake_deployments)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(deployment::reconcile, deployment::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Stopped watches never fill their caches: readiness gives up on shutdown.
    let readiness = {
        let ctx = ctx.clone();
        let stopping = stopped(stop_rx.clone());
        let synced = synced.clone();
        async move {
            let all = futures::future::join3(
                ctx.jobs.wait_until_ready(),
                ctx.pods.wait_until_ready(),
                ctx.steps.wait_until_ready(),
            );
            tokio::select! {
                all = all => {
                    if let (Ok(()), Ok(()), Ok(())) = all {
                        tracing::info!("caches synced; reconciling");
                        synced.store(true, std::sync::atomic::Ordering::SeqCst);
                        health.set_ready(true);
                    }
                }
                _ = stopping => {}
            }
        }
    };
    let running = async {
        tokio::join!(step_run, deployment_run, readiness);
    };
    let stopping = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
        // Before the caches synced nothing can be in flight, and kube's
        // controllers would wait for a sync that will never come: leave now.
        if !synced.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!("reconciles still running {SHUTDOWN_GRACE:?} after SIGTERM; exiting anyway");
    };
    tokio::select! {
        _ = running => {}
        _ = stopping => {}
    }
    Ok(())
}

/// How long in-flight reconciles may take after SIGTERM (Kubernetes' default
/// termination grace period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Pod names by (namespace, Job name). Entries of deleted pods linger until
/// their Job's reconcile finds them gone from the store and drops them.
#[derive(Default)]
pub struct PodIndex {
    names: std::sync::Mutex<std::collections::HashMap<(String, String), Vec<String>>>,
}

impl PodIndex {
    const JOB_LABEL: &'static str = "batch.kubernetes.io/job-name";

    fn add(&self, pod: &Pod) {
        let (Some(ns), Some(job)) = (pod.namespace(), pod.labels().get(Self::JOB_LABEL)) else {
            return;
        };
        if let Ok(mut m) = self.names.lock() {
            let names = m.entry((ns, job.clone())).or_default();
            let name = pod.name_any();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }

    /// The Job's newest pod in `store`.
    pub fn newest(&self, store: &Store<Pod>, ns: &str, job: &str) -> Option<Arc<Pod>> {
        let mut m = self.names.lock().ok()?;
        let key = (ns.to_string(), job.to_string());
        let names = m.get_mut(&key)?;
        let found: Vec<Arc<Pod>> = names
            .iter()
            .filter_map(|n| store.get(&ObjectRef::new(n).within(ns)))
            .collect();
        names.retain(|n| found.iter().any(|p| p.name_any() == *n));
        if names.is_empty() {
            m.remove(&key);
        }
        found
            .into_iter()
            .max_by_key(|p| p.creation_timestamp().map(|t| t.0))
    }
}

/// Fails early and clearly when the CRDs are not installed (or not readable).
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    let deployments: Api<Deployment> = api(client, namespace);
    deployments
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context(|| {
            "checking that the stepwise.dev CRDs are installed (kubectl apply --server-side -f crds/)".into()
        })?;
    Ok(())
}

fn deployment_of(touched: Result<Step, watcher::Error>) -> Option<ObjectRef<Deployment>> {
    let step = logged(touched)?;
    let owner = step
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")?;
    Some(ObjectRef::new(&owner.name).within(step.namespace()?.as_str()))
}

/// Watch errors are retried with backoff by the watcher; they are only logged here.
fn logged<K>(touched: Result<K, watcher::Error>) -> Option<K> {
    touched
        .inspect_err(|e| tracing::warn!(error = %e, "watch error (retrying with backoff)"))
        .ok()
}

fn step_of<K: Resource>(touched: Result<K, watcher::Error>) -> Option<ObjectRef<Step>> {
    let obj = logged(touched)?;
    let step = obj.labels().get(LABEL_STEP)?;
    Some(ObjectRef::new(step).within(obj.namespace()?.as_str()))
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

/// Writes a whole status with server-side apply under the operator's field
/// manager: the operator owns `status` and nothing else. Returns the
/// object's new resourceVersion.
async fn write_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &kube::api::PatchParams::apply(crate::api::FIELD_MANAGER).force(),
            &kube::api::Patch::Apply(&patch),
        )
        .await
        .context(|| format!("writing status of {} {name}", K::kind(&())))?;
    Ok(written.resource_version())
}

/// The status this operator last wrote for each object, with the
/// resourceVersion that write produced. A cache a moment behind our own write
/// would otherwise make the next reconcile redo it: a second status patch and
/// a create that ends in 409.
pub struct Written<S> {
    by_object: std::sync::Mutex<std::collections::HashMap<(String, String), (u64, S)>>,
}

impl<S> Default for Written<S> {
    fn default() -> Self {
        Self {
            by_object: std::sync::Mutex::default(),
        }
    }
}

impl<S: Clone + serde::Serialize> Written<S> {
    /// Writes `status` (see [`write_status`]) and remembers it.
    pub(crate) async fn write<K>(
        &self,
        api: &Api<K>,
        ns: &str,
        name: &str,
        status: &S,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let rv = write_status(api, name, status).await?;
        self.remember(ns, name, rv, status);
        Ok(())
    }

    fn remember(&self, ns: &str, name: &str, resource_version: Option<String>, status: &S) {
        let Some(rv) = resource_version.and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        if let Ok(mut m) = self.by_object.lock() {
            m.insert((ns.to_string(), name.to_string()), (rv, status.clone()));
        }
    }

    /// Our own last write when the cached object predates it, else the cached status.
    pub fn freshest(&self, ns: &str, name: &str, cached_rv: Option<&str>, cached: S) -> S {
        let Ok(mut m) = self.by_object.lock() else {
            return cached;
        };
        let key = (ns.to_string(), name.to_string());
        if let (Some((ours, status)), Some(seen)) =
            (m.get(&key), cached_rv.and_then(|v| v.parse::<u64>().ok()))
            && seen < *ours
        {
            return status.clone();
        }
        m.remove(&key);
        cached
    }
}

/// Publishes planned Events in the background: a reconcile does not wait
/// for them, and a failure to publish is logged, never fatal.
pub(crate) fn publish<K>(ctx: &Context, obj: &K, events: &[crate::plan::PlannedEvent])
where
    K: Resource<DynamicType = ()>,
{
    use kube::runtime::events::{Event, EventType};
    if events.is_empty() {
        return;
    }
    let reference = obj.object_ref(&());
    let recorder = ctx.recorder.clone();
    let events: Vec<Event> = events
        .iter()
        .map(|e| Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.into(),
            note: Some(e.note.chars().take(1000).collect()),
            action: e.reason.into(),
            secondary: None,
        })
        .collect();
    tokio::spawn(async move {
        for event in events {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, reason = %event.reason, "could not publish event");
            }
        }
    });
}
