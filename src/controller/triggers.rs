//! What wakes what. Each watch feeds a reflector (its cache) and then a
//! trigger stream, so a reconcile never reads a cache older than the event
//! that woke it. Only changes of what a reconcile reads pass on:
//! - a Job or pod wakes the Step named in its labels when its outcome (what
//!   `step::job_view` reads) changes, or when it vanishes; the other updates
//!   of their lives (scheduled, ready, counters) do not;
//! - a Step wakes itself on its spec, its annotations and a missing status,
//!   and its Deployment when what the Deployment mirrors of it changes;
//! - a Deployment wakes on creation, its annotations and a missing status.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future, stream};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, utils::PredicateConfig, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::sync::Arc;

use super::state::{FailureClock, PodIndex};
use super::{api, deployment};
use crate::api::{Deployment, LABEL_STEP, Step};
use crate::shard;
use crate::telemetry::Metrics;
use crate::view::{CachedJob as Job, CachedPod as Pod};

/// The Job and pod caches, and the Steps their changes wake.
pub(super) struct StepWatches<W> {
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    pub wake_steps: W,
}

/// Watches the Jobs and pods labelled with a Step, keeping only what
/// reconciles read (status, labels and owners: their specs are never
/// deserialised), and stamps failures on the clock.
pub(super) fn job_and_pod_watches(
    client: &Client,
    ns: Option<&str>,
    shard: Option<&str>,
    clock: Arc<FailureClock>,
    index: Arc<PodIndex>,
) -> StepWatches<impl Stream<Item = ObjectRef<Step>> + Send + 'static> {
    let managed = watcher::Config::default().labels(&shard::selector_with(shard, LABEL_STEP));
    let (jobs, job_writer) = reflector::store::<Job>();
    let job_events = reflector::reflector(
        job_writer,
        watcher(api::<Job>(client, ns), managed.clone())
            .default_backoff()
            .modify(|j: &mut Job| crate::view::trim_meta(&mut j.metadata)),
    );
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(api::<Pod>(client, ns), managed)
            .default_backoff()
            .modify(crate::view::trim_pod),
    );
    let mut job_outcomes = Changes::default();
    let job_clock = clock.clone();
    let mut pod_outcomes = Changes::default();
    let wake_steps = stream::select(
        job_events.filter_map(move |event| {
            future::ready(job_woken(event, &job_clock, &mut job_outcomes))
        }),
        pod_events.filter_map(move |event| {
            future::ready(pod_woken(event, &clock, &index, &mut pod_outcomes))
        }),
    );
    StepWatches {
        jobs,
        pods,
        wake_steps,
    }
}

fn job_woken(
    event: watcher::Result<watcher::Event<Job>>,
    clock: &FailureClock,
    outcomes: &mut Changes,
) -> Option<ObjectRef<Step>> {
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
            Some(job).filter(|j| outcomes.changed(j, crate::view::job_trigger(j)))
        }
        _ => None,
    };
    woken.and_then(|j| step_of(&j))
}

fn pod_woken(
    event: watcher::Result<watcher::Event<Pod>>,
    clock: &FailureClock,
    index: &PodIndex,
    outcomes: &mut Changes,
) -> Option<ObjectRef<Step>> {
    let woken = match logged(event) {
        Some(watcher::Event::Delete(pod)) => Some(pod),
        Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
            index.add(&pod);
            let outcome = crate::view::pod_trigger(&pod);
            if crate::view::pod_view(&pod).phase.as_deref() == Some("Failed") {
                clock.saw(
                    pod.namespace(),
                    pod.labels().get(crate::view::JOB_NAME_LABEL).cloned(),
                );
            }
            let changed = outcomes.changed(&pod, outcome);
            Some(pod).filter(|_| changed)
        }
        _ => None,
    };
    woken.and_then(|p| step_of(&p))
}

/// The Step cache (one watch serves both controllers), the Steps to
/// reconcile and the Deployments to reconcile.
pub(super) struct StepWatch<A, D> {
    pub steps: Store<Step>,
    pub asked: A,
    pub wake_deployments: D,
}

pub(super) fn step_watch(
    steps: Api<Step>,
    shard: Option<&str>,
) -> StepWatch<
    impl Stream<Item = ObjectRef<Step>> + Send + 'static,
    impl Stream<Item = ObjectRef<Deployment>> + Send + 'static,
> {
    let (store, step_writer) = reflector::store::<Step>();
    let (ask_step, step_asked) = futures::channel::mpsc::unbounded::<ObjectRef<Step>>();
    let step_events = reflector::reflector(
        step_writer,
        watcher(
            steps,
            watcher::Config::default().labels(&shard::selector(shard)),
        )
        .default_backoff()
        .modify(|s: &mut Step| {
            s.managed_fields_mut().clear();
            crate::view::trim_finished_step(s);
        }),
    );
    let (mut asked, mut mirrored) = (Changes::default(), Changes::default());
    let wake_deployments = step_events.filter_map(move |event| {
        let woken = match logged(event) {
            // A Step deleted by hand: its Deployment creates it again unless
            // its step had finished (then it only notes the deletion).
            Some(watcher::Event::Delete(s)) => Some(s),
            Some(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                // Its status is otherwise the operator's own write, and its Jobs wake it.
                let gone = s.status.as_ref().and_then(|st| st.phase).is_none();
                if asked.changed(&s, asks(&s, gone))
                    && let Some(ns) = s.namespace()
                {
                    // Only fails once the Step controller has stopped.
                    let _ = ask_step.unbounded_send(ObjectRef::new(&s.name_any()).within(&ns));
                }
                // Its phase, or its detail while it needs attention.
                Some(s).filter(|s| mirrored.changed(s, deployment::view(s).mirrored()))
            }
            _ => None,
        };
        future::ready(woken.and_then(|s| deployment_of(&s)))
    });
    StepWatch {
        steps: store,
        asked: step_asked,
        wake_deployments,
    }
}

/// What an object asks of its reconciler: its spec (generation), its
/// annotations (decisions, approvals), and a status gone (wiped, or restored
/// from a backup without it). "Gone" includes the CRD's default
/// `{observedGeneration: -1}` that the API server puts in place of a wiped status.
fn asks<K: Resource>(obj: &K, status_gone: bool) -> impl std::hash::Hash + '_ {
    (obj.meta().generation, obj.annotations(), status_gone)
}

/// The Deployment cache and the Deployments whose changes ask for a
/// reconcile. A deleted one leaves the phase gauge here: there is nothing
/// left to reconcile.
pub(super) fn deployment_watch(
    deployments: Api<Deployment>,
    shard: Option<&str>,
    gauges: Arc<Metrics>,
) -> (
    Store<Deployment>,
    impl Stream<Item = Result<Deployment, watcher::Error>> + Send + 'static,
    impl Stream<Item = ObjectRef<Deployment>> + Send + 'static,
) {
    let (store, writer) = reflector::store::<Deployment>();
    let events = reflector::reflector(
        writer,
        watcher(
            deployments,
            watcher::Config::default().labels(&shard::selector(shard)),
        )
        .default_backoff()
        .modify(|d: &mut Deployment| {
            d.managed_fields_mut().clear();
            // kubectl's client-side apply keeps a second copy of the spec here.
            d.annotations_mut().remove(LAST_APPLIED);
            crate::view::trim_finished_deployment(d);
        }),
    );
    // A release arriving, starting, finishing or going wakes the others of its
    // concurrency key (see `queue`).
    let (wake_queue, queue_woken) = futures::channel::mpsc::unbounded();
    let mut queue_wakes = super::queue::Wakes::new(store.clone(), wake_queue);
    let triggers = events
        .inspect(move |event| match event {
            Ok(e) => {
                queue_wakes.saw(e);
                if let watcher::Event::Delete(d) = e {
                    let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
                    gauges.deployment_phase(key, None);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watch error (retrying with backoff)"),
        })
        .applied_objects()
        // kube-runtime's own filter: per object (name and uid), only when
        // what the reconcile reads changed.
        .predicate_filter(
            |d: &Deployment| {
                let gone = d.status.as_ref().and_then(|st| st.phase).is_none();
                Some(projection_hash(&asks(d, gone)))
            },
            PredicateConfig::default(),
        );
    (store, triggers, queue_woken)
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Passes an object on only when a projection of it changed since it was
/// last passed on: kube-runtime's `predicate_filter` for the streams that
/// also act on deletions or read two projections of one event (Jobs, pods,
/// Steps), which its filter (applied objects only, one predicate) cannot. Entries are keyed by uid, so a re-created object starts afresh;
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

fn projection_hash<P: std::hash::Hash>(projection: &P) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(projection)
}

impl Changes {
    const FORGET_AFTER: Duration = Duration::from_secs(3600);

    fn changed<K: Resource, P: std::hash::Hash>(&mut self, obj: &K, projection: P) -> bool {
        let hash = projection_hash(&projection);
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
}
