//! Reading a Step's Jobs (and their pods) from the caches into the
//! planner's views: which attempts are this Step's, which names are held by
//! someone else's Job, and how each attempt ended.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::api::{ANNOTATION_CREATED_AT, ANNOTATION_RECORDED_DECISION, Step, StepStatus};
use crate::controller::Context;
use crate::jobs;
use crate::plan::Owner;
use crate::plan::step::{AttemptKey, ForeignJob, JobState, JobView, StartProblem, Waiting};

/// The Step's own Jobs, and the Jobs under its attempts' names that are not its own.
#[derive(Default)]
pub struct Gathered {
    pub views: BTreeMap<AttemptKey, JobView>,
    pub foreign: BTreeMap<AttemptKey, ForeignJob>,
}

/// How far to harden the Step's next Job: read from its Namespace at each
/// create, so a namespace relabelled `restricted` applies to the next attempt.
/// The error, in the API server's words, is for the Step's message.
pub async fn hardening(client: &kube::Client, step: &Step) -> Result<jobs::Hardening, String> {
    let ns = step.namespace().unwrap_or_default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let found = namespaces
        .get_opt(&ns)
        .await
        .map_err(|e| format!("reading Namespace {ns}: {e}"))?;
    let labels = found.map(|n| n.labels().clone()).unwrap_or_default();
    Ok(jobs::Hardening::for_namespace(&labels))
}

/// A Job under one of the Step's names whose controller is something else.
pub fn foreign_job(job: &Job) -> ForeignJob {
    let owner = job
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        });
    ForeignJob {
        name: job.name_any(),
        owner,
    }
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
            if !jobs::owned_by(&job, step) {
                // Never an attempt of this Step, whatever its labels say.
                found.foreign.insert(key, foreign_job(&job));
                continue;
            }
            let pod = ctx
                .pods_by_job
                .newest(&ctx.pods, ns, &job_name, job.uid().as_deref());
            let seen = ctx.failures_seen.get(ns, &job_name);
            found
                .views
                .insert(key, job_view(&job, pod.as_deref(), seen));
        }
    }
    found
}

/// The Job's condition of type `t` when it is True.
fn true_condition<'a>(job: &'a Job, t: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == t && c.status == "True"))
}

/// Whether the Job has failed (or is about to: `FailureTarget`), as `job_view` reads it.
pub fn job_failed(job: &Job) -> bool {
    true_condition(job, "Failed")
        .or_else(|| true_condition(job, "FailureTarget"))
        .is_some()
}

/// Whether a failing attempt has stopped running: the Job has `Failed` (set
/// once its pods are terminated), or its pod is terminal or gone, and the
/// Job counts no active or terminating pod. `FailureTarget` alone is not
/// enough: the Job controller sets it when it *starts* killing the pod
/// (deadline, deletion, eviction), which may run through its grace period;
/// the next attempt must not overlap it.
pub fn attempt_stopped(job: &Job, pod: Option<&Pod>) -> bool {
    let status = job.status.as_ref();
    let none_left =
        status.is_none_or(|s| s.active.unwrap_or(0) == 0 && s.terminating.unwrap_or(0) == 0);
    let pod_done = match pod {
        None => true,
        Some(p) => matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        ),
    };
    none_left && (true_condition(job, "Failed").is_some() || pod_done)
}

/// The first container (init containers first) that the kubelet cannot start.
pub fn start_problem(pod: &Pod) -> Option<Waiting> {
    let status = pod.status.as_ref()?;
    let all = status.init_container_statuses.iter().flatten();
    all.chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(Waiting {
                container: c.name.clone(),
                problem: StartProblem::from_reason(w.reason.as_deref()?)?,
                message: w.message.clone().unwrap_or_default(),
            })
        })
}

/// Reads one attempt's outcome from its Job, or earlier from its pod;
/// `seen` is when the watches first delivered its failure. A failure counts
/// only once the attempt has stopped (`attempt_stopped`); until then it runs.
pub fn job_view(job: &Job, pod: Option<&Pod>, seen: Option<jiff::Timestamp>) -> JobView {
    let condition = |t: &str| true_condition(job, t);
    let stopped = attempt_stopped(job, pod);
    let terminated = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .max_by_key(|t| t.exit_code != 0)
        });
    let pod_phase = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref());
    let exit_code = terminated.map(|t| t.exit_code);
    let pod_finished = terminated.and_then(|t| t.finished_at.as_ref()).map(|t| t.0);

    let state = if let Some(c) = condition("Complete").or_else(|| condition("SuccessCriteriaMet")) {
        JobState::Succeeded {
            finished_at: job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0),
        }
    } else if !stopped && (job_failed(job) || pod_phase != Some("Succeeded")) {
        // A succeeded pod runs nothing more: read it as early as before.
        JobState::Running
    } else if let Some(c) = condition("Failed").or_else(|| condition("FailureTarget")) {
        let job_reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
        // The container's reason (Error, OOMKilled) says more than BackoffLimitExceeded.
        let reason = match (
            job_reason.as_str(),
            terminated.and_then(|t| t.reason.clone()),
        ) {
            ("DeadlineExceeded", _) => job_reason.clone(),
            (_, Some(r)) => r,
            _ => job_reason.clone(),
        };
        JobState::Failed {
            finished_at: c
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or(pod_finished),
            reason,
            exit_code,
            message: c.message.clone().unwrap_or_default(),
            seen_at: seen,
        }
    } else if pod_phase == Some("Succeeded") {
        JobState::Succeeded {
            finished_at: pod_finished,
        }
    } else if pod_phase == Some("Failed") {
        let reason = terminated
            .and_then(|t| t.reason.clone())
            .or_else(|| pod.and_then(|p| p.status.as_ref()?.reason.clone()))
            .unwrap_or_else(|| "PodFailed".into());
        let message = terminated
            .and_then(|t| t.message.clone())
            .or_else(|| pod.and_then(|p| p.status.as_ref()?.message.clone()))
            .unwrap_or_default();
        JobState::Failed {
            finished_at: pod_finished,
            reason,
            exit_code,
            message,
            seen_at: seen,
        }
    } else {
        JobState::Running
    };
    let running = matches!(state, JobState::Running);
    let waiting = running.then(|| pod.and_then(start_problem)).flatten();
    // No pod in the cache and none the Job controller counts: not a cache
    // a moment behind a Job that has one.
    let counted = job
        .status
        .as_ref()
        .map_or(0, |s| s.active.unwrap_or(0) + s.terminating.unwrap_or(0));
    JobView {
        waiting,
        no_pod: running && pod.is_none() && counted == 0,
        name: job.name_any(),
        created_at: job
            .annotations()
            .get(ANNOTATION_CREATED_AT)
            .and_then(|t| t.parse().ok())
            .or_else(|| job.creation_timestamp().map(|t| t.0)),
        state,
        decision: job
            .annotations()
            .get(ANNOTATION_RECORDED_DECISION)
            .and_then(|v| serde_json::from_str(v).ok()),
    }
}

#[cfg(test)]
mod tests;
