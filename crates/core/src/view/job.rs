//! What a Job says about its attempt.

use k8s_openapi::api::batch::v1::JobCondition;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::cached::{CachedJob as Job, CachedPod as Pod};
use super::pod::{PodView, pod_view, raw_kept};
use crate::api::{ANNOTATION_CREATED_AT, ANNOTATION_RECORDED_DECISION, ANNOTATION_START_FAILURE};
use crate::plan::Owner;
use crate::plan::step::{ForeignJob, JobState, JobView};
use crate::reason::FailureReason;

/// The start timeout's outcome, kept on the stuck Job (annotation
/// `stepwise.dev/start-failure`) before the status records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartFailure {
    pub reason: String,
    pub message: String,
    pub at: jiff::Timestamp,
}

/// The outcome the Job carries, if it was stopped by the start timeout.
pub fn start_failure(job: &Job) -> Option<StartFailure> {
    let raw = job.annotations().get(ANNOTATION_START_FAILURE)?;
    serde_json::from_str(raw).ok()
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

/// How many pods the Job controller counts active or terminating.
fn counted(job: &Job) -> i32 {
    job.status
        .as_ref()
        .map_or(0, |s| s.active.unwrap_or(0) + s.terminating.unwrap_or(0))
}

/// Whether a failing attempt has stopped running: the Job has `Failed` (set
/// once its pods are terminated), or its pod is terminal or gone, and the
/// Job counts no active or terminating pod. `FailureTarget` alone is not
/// enough: the Job controller sets it when it *starts* killing the pod
/// (deadline, deletion, eviction), which may run through its grace period;
/// the next attempt must not overlap it.
pub fn attempt_stopped(job: &Job, pod: Option<&Pod>) -> bool {
    let pod_done = pod.is_none_or(|p| pod_view(p).is_terminal());
    counted(job) == 0 && (true_condition(job, "Failed").is_some() || pod_done)
}

/// A Job under one of the Step's names whose controller is something else.
pub fn foreign_job(job: &impl Resource) -> ForeignJob {
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

/// The failure a Job's `Failed` (or `FailureTarget`) condition says, told
/// more precisely by its pod when the pod is still there.
fn job_failure(c: &JobCondition, pod: Option<&PodView>) -> (FailureReason, Option<i32>, String) {
    let raw = c.reason.as_deref().unwrap_or("PodFailed");
    let message = c.message.clone().unwrap_or_default();
    let code = pod.and_then(|p| p.ended.as_ref()).map(|e| e.exit_code);
    let from_pod = pod.and_then(PodView::failure);
    match raw {
        "DeadlineExceeded" => (FailureReason::DeadlineExceeded, code, message),
        // The pod failure policy's FailJob rule on DisruptionTarget (jobs.rs):
        // "Pod ns/name has condition DisruptionTarget matching FailJob rule ...".
        "PodFailurePolicy" if message.contains("DisruptionTarget") => {
            (FailureReason::DisruptionTarget, code, message)
        }
        // The container's reason (Error, OOMKilled) says more than BackoffLimitExceeded.
        _ => from_pod.unwrap_or_else(|| (FailureReason::read(raw), code, raw_kept(raw, message))),
    }
}

/// Reads one attempt's outcome from its Job, or earlier from its pod;
/// `seen` is when the watches first delivered its failure. A failure counts
/// only once the attempt has stopped (`attempt_stopped`); until then it runs.
pub fn job_view(job: &Job, pod: Option<&Pod>, seen: Option<jiff::Timestamp>) -> JobView {
    let condition = |t: &str| true_condition(job, t);
    let stopped = attempt_stopped(job, pod);
    let pv = pod.map(pod_view);
    let phase = pv.as_ref().and_then(|p| p.phase.as_deref());
    let pod_finished = pv
        .as_ref()
        .and_then(|p| p.ended.as_ref())
        .and_then(|e| e.finished_at);
    let recorded = start_failure(job);
    let failed =
        |(reason, exit_code, message): (FailureReason, Option<i32>, String), at| JobState::Failed {
            finished_at: at,
            reason,
            exit_code,
            message,
            seen_at: seen,
        };

    let state = if let Some(c) = condition("Complete").or_else(|| condition("SuccessCriteriaMet")) {
        JobState::Succeeded {
            finished_at: job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0),
        }
    } else if let Some(r) = recorded.as_ref().filter(|_| stopped) {
        // Stopped by the start timeout, its pod gone: the outcome it carries.
        let reason = FailureReason::parse(&r.reason).unwrap_or(FailureReason::StartTimeout);
        JobState::Failed {
            finished_at: Some(r.at),
            reason,
            exit_code: None,
            message: r.message.clone(),
            seen_at: Some(r.at),
        }
    } else if !stopped && (job_failed(job) || phase != Some("Succeeded")) {
        // A succeeded pod runs nothing more: read it as early as before.
        JobState::Running
    } else if let Some(c) = condition("Failed").or_else(|| condition("FailureTarget")) {
        let at = c.last_transition_time.as_ref().map(|t| t.0);
        failed(job_failure(c, pv.as_ref()), at.or(pod_finished))
    } else if phase == Some("Succeeded") {
        JobState::Succeeded {
            finished_at: pod_finished,
        }
    } else if phase == Some("Failed") {
        let why = pv.as_ref().and_then(PodView::failure);
        let why = why.unwrap_or((FailureReason::PodFailed, None, String::new()));
        failed(why, pod_finished)
    } else {
        JobState::Running
    };
    let running = matches!(state, JobState::Running);
    let waiting = running.then(|| pv.and_then(|p| p.waiting)).flatten();
    JobView {
        waiting,
        // No pod in the cache and none the Job controller counts: not a
        // cache a moment behind a Job that has one.
        no_pod: running && pod.is_none() && counted(job) == 0,
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
        start_failure_recorded: recorded.is_some(),
    }
}

/// The wake-up key of a Job: a hash of what `job_view` reads of it alone,
/// and the pod counts (a failed attempt counts once they fall to 0).
pub fn job_trigger(job: &Job) -> u64 {
    let view = job_view(job, None, None);
    let status = job.status.as_ref();
    super::digest(&(
        view.state,
        view.no_pod,
        view.start_failure_recorded,
        status.and_then(|s| s.active),
        status.and_then(|s| s.terminating),
        job_failed(job),
    ))
}
