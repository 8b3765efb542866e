//! Looking a Step's Jobs (and their pods) up in the caches and handing them
//! to the core's views (`stepwise_core::view`): which attempts are this
//! Step's, which names are held by someone else's Job, and how each ended.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{GetParams, ListParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::api::{Step, StepStatus};
use crate::controller::Context;
use crate::plan::step::{AttemptKey, ForeignJob, JobView, StartProblem, Waiting};
use crate::view::{foreign_job, job_view};
use crate::{KubeContext, Result, jobs};

/// The Step's own Jobs, and the Jobs under its attempts' names that are not its own.
#[derive(Default)]
pub struct Gathered {
    pub views: BTreeMap<AttemptKey, JobView>,
    pub foreign: BTreeMap<AttemptKey, ForeignJob>,
    /// Running attempts whose Job has no pod: (attempt, Job name, Job uid).
    pub no_pod: Vec<(AttemptKey, String, String)>,
}

/// How far to harden the Step's next Job: read from its Namespace's labels
/// at each create, so a namespace relabelled `restricted` applies to the
/// next attempt. Read at resourceVersion 0: the API server answers from its
/// watch cache, milliseconds behind etcd, without a quorum read per Job.
/// The error, in the API server's words, is for the Step's message.
pub async fn hardening(client: &kube::Client, step: &Step) -> Result<jobs::Hardening, String> {
    let ns = step.namespace().unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let found = namespaces
        .get_metadata_opt_with(&ns, &GetParams::any())
        .await
        .map_err(|e| format!("reading Namespace {ns}: {e}"))?;
    let labels = found.map(|n| n.labels().clone()).unwrap_or_default();
    Ok(jobs::Hardening::for_namespace(&labels))
}

/// The Step's Jobs from the cache, each with its pod when the pod already
/// tells the outcome (about a second before the Job controller does).
pub fn gather(step: &Step, ctx: &Context, previous: &StepStatus, ns: &str, name: &str) -> Gathered {
    // Job names are a function of (step, action, attempt): look each one up
    // by name instead of scanning the cache. Past the attempts status knows,
    // keep going while Jobs exist (created before a lost status write).
    let mut found = Gathered::default();
    for action in &step.spec.actions {
        let known = previous
            .actions
            .iter()
            .find(|a| a.name == action.name)
            .and_then(|a| a.attempts.iter().map(|x| x.number).max())
            .unwrap_or(0);
        for attempt in 1u32.. {
            let job_name = jobs::job_name(name, &action.name, attempt);
            let job = ctx.jobs.get(&ObjectRef::new(&job_name).within(ns));
            let Some(job) = job else {
                if attempt > known {
                    break;
                }
                continue;
            };
            let key = (action.name.clone(), attempt);
            if !jobs::owned_by(&*job, step) {
                // Never an attempt of this Step, whatever its labels say.
                found.foreign.insert(key, foreign_job(&*job));
                continue;
            }
            let pod = ctx
                .pods_by_job
                .newest(&ctx.pods, ns, &job_name, job.uid().as_deref());
            let seen = ctx.failures_seen.get(ns, &job_name);
            let view = job_view(&job, pod.as_deref(), seen);
            if view.no_pod && view.waiting.is_none() && job_controller_tried(&job) {
                let uid = job.uid().unwrap_or_default();
                found.no_pod.push((key.clone(), job_name, uid));
            }
            found.views.insert(key, view);
        }
    }
    found
}

/// Whether the Job controller has synced the Job: its first sync sets
/// `startTime` in the same status write that counts the pod it created, so a
/// Job with `startTime` and no pod counted (`JobView::no_pod`) had its pod
/// refused, and only then can a `FailedCreate` Event say why. Before
/// that the Job controller is just behind (seconds behind under a burst of
/// creates), and each Event list with a field selector costs the API server
/// a scan of the namespace's Events: a 1,000-release throughput run made
/// 3,449 such lists without this check, and 3,757 with a 2 s grace instead.
fn job_controller_tried(job: &crate::view::CachedJob) -> bool {
    job.status.as_ref().is_some_and(|s| s.start_time.is_some())
}

/// For each running attempt whose Job has no pod, the Job controller's
/// newest `FailedCreate` Warning Event (admission or quota refused the pod),
/// as the attempt's start problem. One list call per such attempt, with a
/// field selector, and only once the Job controller has tried to create it.
pub async fn failed_create(client: &kube::Client, ns: &str, found: &mut Gathered) -> Result<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    for (key, job, uid) in std::mem::take(&mut found.no_pod) {
        let fields = format!(
            "involvedObject.kind=Job,involvedObject.name={job},involvedObject.uid={uid},reason=FailedCreate"
        );
        let list = events
            .list(&ListParams::default().fields(&fields))
            .await
            .context(|| format!("listing the FailedCreate Events of Job {job}"))?;
        let newest = list.items.into_iter().max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        });
        let view = found.views.get_mut(&key);
        if let (Some(e), Some(view)) = (newest, view) {
            view.waiting = Some(Waiting {
                container: None,
                problem: StartProblem::FailedCreate,
                message: e.message.unwrap_or_default(),
            });
        }
    }
    Ok(())
}
