//! The imperative shell: watches, caches, and the two reconcilers. Each
//! reconcile gathers state from the caches, asks `plan` what to do, and applies it.

pub mod annotations;
pub mod deployment;
pub mod step;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, future, stream};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ObjectReference, Pod},
};
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
    /// When the watches first delivered each Job's failure.
    pub failures_seen: Arc<FailureClock>,
    pub steps: Store<Step>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// True once every cache has been filled (see [`Context::synced`]).
    pub synced: tokio::sync::watch::Receiver<bool>,
    pub step_status: Written<crate::api::StepStatus>,
    pub deployment_status: Written<crate::api::DeploymentStatus>,
    /// Job creates refused for now, per Step (for their backoff).
    pub refusals: step::Refusals,
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
    let failures_seen = Arc::new(FailureClock::default());
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
            .modify(crate::view::trim_pod),
    );
    // A Job or pod wakes the Step named in its labels when what `job_view`
    // reads of it (its outcome) changes, or when it vanishes; the other
    // updates of their lives (scheduled, ready, counters) do not.
    let (mut job_outcomes, mut pod_outcomes) = (Changes::default(), Changes::default());
    let wake_steps = stream::select(
        job_events.filter_map({
            let clock = failures_seen.clone();
            move |event| {
                let woken = match logged(event) {
                    Some(watcher::Event::Delete(job)) => {
                        // Later events of a failed Job can stamp it again after
                        // its Step recorded the failure; its deletion ends that.
                        clock.forget(&job.namespace().unwrap_or_default(), &job.name_any());
                        Some(job)
                    }
                    Some(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                        if crate::view::job_failed(&job) {
                            clock.saw(job.namespace(), Some(job.name_any()));
                        }
                        Some(job).filter(|j| job_outcomes.changed(j, crate::view::job_trigger(j)))
                    }
                    _ => None,
                };
                future::ready(woken.and_then(|j| step_of(&j)))
            }
        }),
        pod_events.filter_map({
            let index = pods_by_job.clone();
            let clock = failures_seen.clone();
            move |event| {
                let woken = match logged(event) {
                    Some(watcher::Event::Delete(pod)) => Some(pod),
                    Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        index.add(&pod);
                        let outcome = crate::view::pod_trigger(&pod);
                        if crate::view::pod_view(&pod).phase.as_deref() == Some("Failed") {
                            clock.saw(
                                pod.namespace(),
                                pod.labels().get(PodIndex::JOB_LABEL).cloned(),
                            );
                        }
                        let changed = pod_outcomes.changed(&pod, outcome);
                        Some(pod).filter(|_| changed)
                    }
                    _ => None,
                };
                future::ready(woken.and_then(|p| step_of(&p)))
            }
        }),
    );

    // One Step watch and one store serve both controllers. The store is
    // updated before an event is passed on, so a reconcile never reads a
    // Step older than the change that triggered it.
    let (steps_seen, step_writer) = reflector::store::<Step>();
    let (ask_step, step_asked) = futures::channel::mpsc::unbounded::<ObjectRef<Step>>();
    let step_events = reflector::reflector(
        step_writer,
        watcher(steps.clone(), watcher::Config::default())
            .default_backoff()
            .modify(|s: &mut Step| s.managed_fields_mut().clear()),
    );
    // A Step wakes on its own spec and annotations (decisions, approvals),
    // and when its status is gone (wiped, or restored from a backup without
    // it); otherwise its status is the operator's own write, and its Jobs
    // wake it. A Deployment wakes only when what it mirrors of a Step changes
    // (its phase, or its detail while it needs attention).
    let (mut asked, mut mirrored) = (Changes::default(), Changes::default());
    let wake_deployments = step_events.filter_map(move |event| {
        let woken = match logged(event) {
            // A Step deleted by hand: its Deployment creates it again unless
            // its step had finished (then it only notes the deletion).
            Some(watcher::Event::Delete(s)) => Some(s),
            Some(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                // "Gone" includes the CRD's default `{observedGeneration: -1}`
                // that the API server puts in place of a wiped status.
                let gone = s.status.as_ref().and_then(|st| st.phase).is_none();
                let asks = (s.metadata.generation, s.annotations(), gone);
                if asked.changed(&s, asks)
                    && let Some(ns) = s.namespace()
                {
                    // Only fails once the Step controller has stopped.
                    let _ = ask_step.unbounded_send(ObjectRef::new(&s.name_any()).within(&ns));
                }
                Some(s).filter(|s| mirrored.changed(s, deployment::view(s).mirrored()))
            }
            _ => None,
        };
        future::ready(woken.and_then(|s| deployment_of(&s)))
    });

    let (deployments_seen, deployment_writer) = reflector::store::<Deployment>();
    let deployment_events = reflector::reflector(
        deployment_writer,
        watcher(deployments, watcher::Config::default())
            .default_backoff()
            .modify(|d: &mut Deployment| {
                d.managed_fields_mut().clear();
                // kubectl's client-side apply keeps a second copy of the spec here.
                d.annotations_mut().remove(LAST_APPLIED);
            }),
    );
    // A Deployment wakes on creation, its annotations and a missing status
    // (its spec is immutable); its status is the operator's own write, and its
    // Steps wake it. A deleted one leaves the phase gauge here: there is
    // nothing left to reconcile.
    let mut deployment_asked = Changes::default();
    let gauges = metrics.clone();
    let deployment_triggers = deployment_events.filter_map(move |event| {
        let asked = match logged(event) {
            Some(watcher::Event::Delete(d)) => {
                let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
                gauges.deployment_phase(key, None);
                None
            }
            Some(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => Some(d).filter(|d| {
                let gone = d.status.as_ref().and_then(|st| st.phase).is_none();
                let asks = (d.metadata.generation, d.annotations(), gone);
                deployment_asked.changed(d, asks)
            }),
            _ => None,
        };
        future::ready(asked.map(Ok::<_, watcher::Error>))
    });

    let config = ControllerConfig::default().concurrency(settings.concurrency);
    let step_controller = Controller::for_stream(stream::pending(), steps_seen.clone())
        .with_config(config.clone())
        .reconcile_on(step_asked)
        .reconcile_on(wake_steps);
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let reporter = Reporter {
        controller: "stepwise".into(),
        instance: settings.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        jobs: jobs.clone(),
        pods: pods.clone(),
        pods_by_job,
        failures_seen,
        steps: steps_seen,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        step_status: Written::default(),
        deployment_status: Written::default(),
        refusals: step::Refusals::default(),
        synced: synced_rx,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let step_run = step_controller
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(step::reconcile, step::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    let deployment_run = Controller::for_stream(deployment_triggers, deployments_seen)
        .with_config(config)
        .reconcile_on(wake_deployments)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(deployment::reconcile, deployment::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));

    // Stopped watches never fill their caches: readiness gives up on shutdown.
    let readiness = {
        let ctx = ctx.clone();
        let stopping = stopped(stop_rx.clone());
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
                        let _ = synced_tx.send(true);
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
        if !*ctx.synced.borrow() {
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

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Passes an object on only when a projection of it changed since it was
/// last passed on. Entries are keyed by uid, so a re-created object starts afresh;
/// the map is pruned of objects not seen for an hour as it grows.
struct Changes {
    seen: std::collections::HashMap<String, (u64, Instant)>,
    pruned: Instant,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            seen: std::collections::HashMap::new(),
            pruned: Instant::now(),
        }
    }
}

impl Changes {
    const FORGET_AFTER: Duration = Duration::from_secs(3600);

    fn changed<K: Resource, P: std::hash::Hash>(&mut self, obj: &K, projection: P) -> bool {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&projection);
        let now = Instant::now();
        if now.duration_since(self.pruned) > Self::FORGET_AFTER {
            self.seen
                .retain(|_, (_, at)| now.duration_since(*at) < Self::FORGET_AFTER);
            self.pruned = now;
        }
        let uid = obj.meta().uid.clone().unwrap_or_default();
        self.seen.insert(uid, (hash, now)).map(|(h, _)| h) != Some(hash)
    }
}

/// When the watches first delivered each Job's failure (its pod Failed, or
/// its Failed condition), by (namespace, Job name). An entry is dropped once
/// the Step's status records the failure, and when the Job is deleted.
#[derive(Default)]
pub struct FailureClock {
    first_seen: std::sync::Mutex<std::collections::HashMap<(String, String), jiff::Timestamp>>,
}

impl FailureClock {
    fn saw(&self, ns: Option<String>, job: Option<String>) {
        let (Some(ns), Some(job)) = (ns, job) else {
            return;
        };
        if let Ok(mut m) = self.first_seen.lock() {
            m.entry((ns, job)).or_insert_with(now);
        }
    }

    pub fn get(&self, ns: &str, job: &str) -> Option<jiff::Timestamp> {
        let m = self.first_seen.lock().ok()?;
        m.get(&(ns.to_string(), job.to_string())).copied()
    }

    pub fn forget(&self, ns: &str, job: &str) {
        if let Ok(mut m) = self.first_seen.lock() {
            m.remove(&(ns.to_string(), job.to_string()));
        }
    }
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
    pub const JOB_LABEL: &'static str = "batch.kubernetes.io/job-name";

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

    /// The newest pod in `store` of the Job named `job` whose uid is
    /// `job_uid`: a Job deleted and made again under the same name (a
    /// re-created Step's attempt) must not read its predecessor's pod.
    pub fn newest(
        &self,
        store: &Store<Pod>,
        ns: &str,
        job: &str,
        job_uid: Option<&str>,
    ) -> Option<Arc<Pod>> {
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
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == job_uid)
            })
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

fn deployment_of(step: &Step) -> Option<ObjectRef<Deployment>> {
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

fn step_of<K: Resource>(obj: &K) -> Option<ObjectRef<Step>> {
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
/// for them, and a failure to publish is logged, never fatal. An Event's
/// related object is an `R` (a Step's Job, a Deployment's Step).
pub(crate) fn publish<K, R>(ctx: &Context, obj: &K, events: &[crate::plan::PlannedEvent])
where
    K: Resource<DynamicType = ()>,
    R: Resource<DynamicType = ()>,
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
            secondary: e.related.as_ref().map(|name| ObjectReference {
                api_version: Some(R::api_version(&()).into()),
                kind: Some(R::kind(&()).into()),
                name: Some(name.clone()),
                namespace: reference.namespace.clone(),
                ..Default::default()
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(uid: &str, generation: i64) -> Step {
        let mut s = Step::new("s", Default::default());
        s.metadata.uid = Some(uid.into());
        s.metadata.generation = Some(generation);
        s
    }

    #[test]
    fn changes_pass_an_object_once_per_projection() {
        let mut c = Changes::default();
        let a = step("u1", 1);
        assert!(c.changed(&a, 1), "first sight");
        assert!(!c.changed(&a, 1), "same projection");
        assert!(c.changed(&a, 2), "projection changed");
        // A re-created object (new uid) with the same name is new.
        assert!(c.changed(&step("u2", 1), 2));
    }

    #[test]
    fn failure_clock_keeps_the_first_sighting_until_forgotten() {
        let clock = FailureClock::default();
        clock.saw(Some("ns".into()), Some("j".into()));
        let first = clock.get("ns", "j").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        clock.saw(Some("ns".into()), Some("j".into()));
        assert_eq!(clock.get("ns", "j"), Some(first));
        clock.forget("ns", "j");
        assert_eq!(clock.get("ns", "j"), None);
        clock.saw(None, Some("j".into()));
        assert_eq!(clock.get("ns", "j"), None);
    }
}
