//! The bench's own watcher: local receive times of Job and pod events (and,
//! for operator runs, of Deployments, Steps and the operator's Events).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stepwise::api::{Deployment, Phase, Step};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::stats::{log, wall_ms};

#[derive(Clone, Debug)]
pub struct JobSeen {
    /// Local time the bench first saw the Job (ms since the epoch).
    pub seen_ms: f64,
    /// metadata.creationTimestamp, whole seconds since the epoch.
    pub created_s: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct PodDone {
    pub seen_ms: f64,
    /// The container's terminated.finishedAt, whole seconds since the epoch.
    pub finished_s: Option<i64>,
}

#[derive(Default)]
pub struct Seen {
    pub jobs: HashMap<String, JobSeen>,
    /// Job name -> first time its Complete/Failed condition was seen.
    pub jobs_done: HashMap<String, f64>,
    /// Job name -> first time its pod was seen in a terminal phase.
    pub pods_done: HashMap<String, PodDone>,
    /// Deployment name -> first time it was seen Succeeded.
    pub deployments_succeeded: HashMap<String, f64>,
    pub deployment_events: u64,
    pub step_events: u64,
    pub steps_seen: HashSet<String>,
    pub operator_events: u64,
}

impl Seen {
    /// When the Job was first seen done: its pod terminal or its condition.
    pub fn done_ms(&self, job: &str) -> Option<f64> {
        let p = self.pods_done.get(job).map(|p| p.seen_ms);
        let j = self.jobs_done.get(job).copied();
        match (p, j) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

pub fn job_finished(job: &Job) -> bool {
    ["Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"]
        .iter()
        .any(|c| stepwise_testkit::job_has_condition(job, c))
}

pub fn pod_job_name(pod: &Pod) -> Option<String> {
    let labels = pod.labels();
    labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
        .cloned()
}

/// Some(failed) once the pod is terminal.
pub fn pod_terminal(pod: &Pod) -> Option<bool> {
    match pod.status.as_ref()?.phase.as_deref()? {
        "Succeeded" => Some(false),
        "Failed" => Some(true),
        _ => None,
    }
}

fn pod_finished_s(pod: &Pod) -> Option<i64> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|f| f.0.as_second())
        .max()
}

/// Watches one kind in a namespace and calls `on` with each object, its
/// local receive time and whether it came with the initial list; resolves
/// the returned receiver once the initial list is done.
pub fn spawn_watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    mut on: F,
) -> (JoinHandle<()>, oneshot::Receiver<()>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Clone + Eq + std::hash::Hash,
    F: FnMut(&K, f64, bool) + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let t = wall_ms();
            match event {
                Ok(watcher::Event::Apply(o)) => on(&o, t, false),
                Ok(watcher::Event::InitApply(o)) => on(&o, t, true),
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => log(format!("watch error (retrying): {e}")),
            }
        }
    });
    (task, rx)
}

/// The bench's measuring watcher for one namespace; stops when dropped.
pub struct Recorder {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The watch tasks being started and their "listed" signals.
struct Watches {
    client: Client,
    ns: String,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<JoinHandle<()>>,
    ready: Vec<oneshot::Receiver<()>>,
}

impl Watches {
    fn add<K, F>(&mut self, mut on: F)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K::DynamicType: Default + Clone + Eq + std::hash::Hash,
        F: FnMut(&mut Seen, &K, f64, bool) + Send + 'static,
    {
        let seen = self.seen.clone();
        let (task, ready) = spawn_watch(
            Api::<K>::namespaced(self.client.clone(), &self.ns),
            watcher::Config::default(),
            move |o: &K, t, init| on(&mut lock(&seen), o, t, init),
        );
        self.tasks.push(task);
        self.ready.push(ready);
    }
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    // A watch callback that panicked leaves the data as it was: still usable.
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

fn on_job(s: &mut Seen, job: &Job, t: f64, _: bool) {
    let name = job.name_any();
    s.jobs.entry(name.clone()).or_insert_with(|| JobSeen {
        seen_ms: t,
        created_s: job.creation_timestamp().map(|c| c.0.as_second()),
    });
    if job_finished(job) {
        s.jobs_done.entry(name).or_insert(t);
    }
}

fn on_pod(s: &mut Seen, pod: &Pod, t: f64, _: bool) {
    let (Some(job), Some(_failed)) = (pod_job_name(pod), pod_terminal(pod)) else {
        return;
    };
    let finished_s = pod_finished_s(pod);
    s.pods_done.entry(job).or_insert(PodDone {
        seen_ms: t,
        finished_s,
    });
}

fn on_deployment(s: &mut Seen, d: &Deployment, t: f64, init: bool) {
    if !init {
        s.deployment_events += 1;
    }
    if d.status.as_ref().and_then(|st| st.phase) == Some(Phase::Succeeded) {
        s.deployments_succeeded.entry(d.name_any()).or_insert(t);
    }
}

fn on_step(s: &mut Seen, st: &Step, _: f64, init: bool) {
    if !init {
        s.step_events += 1;
        s.steps_seen.insert(st.name_any());
    }
}

fn on_event(s: &mut Seen, e: &KubeEvent, _: f64, init: bool) {
    if !init && e.reporting_controller.as_deref() == Some("stepwise") {
        s.operator_events += 1;
    }
}

impl Recorder {
    /// Starts watching Jobs and pods (and, with `crs`, Deployments, Steps and
    /// the operator's Events) and returns once every watch has listed.
    pub async fn start(client: &Client, ns: &str, crs: bool) -> Recorder {
        let mut w = Watches {
            client: client.clone(),
            ns: ns.to_string(),
            seen: Arc::new(Mutex::new(Seen::default())),
            tasks: Vec::new(),
            ready: Vec::new(),
        };
        w.add(on_job);
        w.add(on_pod);
        if crs {
            w.add(on_deployment);
            w.add(on_step);
            w.add(on_event);
        }
        for r in w.ready {
            let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
        }
        Recorder {
            seen: w.seen,
            tasks: w.tasks,
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&lock(&self.seen))
    }
}
