//! The Step reconciler: gather the Step's Jobs and pods, plan, apply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info_span};

use super::{Context, now, observe, publish, requeue_at, retry_later};
use crate::api::{
    ANNOTATION_APPROVAL, ANNOTATION_CREATED_AT, ANNOTATION_DECISION, Outcome, Phase, Step,
    StepStatus,
};
use crate::plan::PlannedEvent;
use crate::plan::step::{AttemptKey, JobState, JobView, StepObservation, StepPlan, plan};
use crate::{Error, KubeContext, Result, jobs, retry};

pub async fn reconcile(step: Arc<Step>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", kind = "Step", namespace = step.namespace().unwrap_or_default(), name = %step.name_any());
    let started = Instant::now();
    let result = reconcile_inner(&step, &ctx).instrument(span).await;
    observe(&ctx.metrics, "step", started, &result);
    result
}

pub fn error_policy(_step: Arc<Step>, error: &Error, _ctx: Arc<Context>) -> Action {
    retry_later(error)
}

async fn reconcile_inner(step: &Step, ctx: &Context) -> Result<Action> {
    ctx.synced().await?;
    if step.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = step
        .namespace()
        .ok_or_else(|| Error::Invalid("Step without a namespace".into()))?;
    let name = step.name_any();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = ctx.step_status.freshest(
        &ns,
        &name,
        step.metadata.resource_version.as_deref(),
        step.status.clone().unwrap_or_default(),
    );

    let mut views = gather(step, ctx, &previous, &ns, &name);
    // A Job recorded as running but missing from the cache may be newer than
    // the cache: ask the API server before calling it deleted.
    for action in &previous.actions {
        for attempt in action
            .attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Running)
        {
            let key = (action.name.clone(), attempt.number);
            if views.contains_key(&key) || attempt.job.is_empty() {
                continue;
            }
            let found = jobs_api
                .get_opt(&attempt.job)
                .await
                .context(|| format!("reading Job {ns}/{}", attempt.job))?;
            if let Some(job) = found.filter(|j| jobs::owned_by(j, step)) {
                views.insert(key, job_view(&job, None, None));
            }
        }
    }

    let uid = step.uid().unwrap_or_default();
    let observation = StepObservation {
        step_name: &name,
        generation: step.metadata.generation,
        seed: &uid,
        previous: previous.clone(),
        jobs: views,
        decision_annotation: step
            .annotations()
            .get(ANNOTATION_DECISION)
            .map(String::as_str),
        approval_annotation: step
            .annotations()
            .get(ANNOTATION_APPROVAL)
            .map(String::as_str),
    };
    let now = now();
    let mut planned = plan(&step.spec, &observation, now);
    tracing::debug!(phase = ?planned.status.phase, create = ?planned.create, requeue_at = ?planned.requeue_at, "planned");
    apply(step, ctx, &jobs_api, &previous, &mut planned, now).await
}

/// The Step's Jobs from the cache, each with its pod when the pod already
/// tells the outcome (about a second before the Job controller does).
fn gather(
    step: &Step,
    ctx: &Context,
    previous: &StepStatus,
    ns: &str,
    name: &str,
) -> BTreeMap<AttemptKey, JobView> {
    // Job names are a function of (step, action, attempt): look each one up
    // by name instead of scanning the cache. Past the attempts status knows,
    // keep going while Jobs exist (created before a lost status write).
    let mut views = BTreeMap::new();
    for action in &step.spec.actions {
        let known = previous
            .actions
            .iter()
            .find(|a| a.name == action.name)
            .and_then(|a| a.attempts.iter().map(|x| x.number).max())
            .unwrap_or(0);
        for attempt in 1u32.. {
            let job_name = jobs::job_name(name, &action.name, attempt);
            let job = ctx
                .jobs
                .get(&ObjectRef::new(&job_name).within(ns))
                .filter(|j| jobs::owned_by(j, step));
            let Some(job) = job else {
                if attempt > known {
                    break;
                }
                continue;
            };
            let pod = ctx.pods_by_job.newest(&ctx.pods, ns, &job_name);
            let seen = ctx.failures_seen.get(ns, &job_name);
            views.insert(
                (action.name.clone(), attempt),
                job_view(&job, pod.as_deref(), seen),
            );
        }
    }
    views
}

/// The Job's condition of type `t` when it is True.
fn true_condition<'a>(job: &'a Job, t: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == t && c.status == "True"))
}

/// Whether the Job has failed (or is about to: `FailureTarget`), as `job_view` reads it.
pub(super) fn job_failed(job: &Job) -> bool {
    true_condition(job, "Failed")
        .or_else(|| true_condition(job, "FailureTarget"))
        .is_some()
}

/// Reads one attempt's outcome from its Job, or earlier from its pod;
/// `seen` is when the watches first delivered its failure.
pub fn job_view(job: &Job, pod: Option<&Pod>, seen: Option<jiff::Timestamp>) -> JobView {
    let condition = |t: &str| true_condition(job, t);
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
    JobView {
        name: job.name_any(),
        created_at: job
            .annotations()
            .get(ANNOTATION_CREATED_AT)
            .and_then(|t| t.parse().ok())
            .or_else(|| job.creation_timestamp().map(|t| t.0)),
        state,
    }
}

async fn apply(
    step: &Step,
    ctx: &Context,
    jobs_api: &Api<Job>,
    previous: &StepStatus,
    planned: &mut StepPlan,
    now: jiff::Timestamp,
) -> Result<Action> {
    let name = step.name_any();
    let api: Api<Step> = Api::namespaced(ctx.client.clone(), &step.namespace().unwrap_or_default());

    let mut created_at = now;
    if let Some(create) = planned.create {
        let job = jobs::build(step, create.action, create.attempt, now)?;
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(_) => created_at = super::now(),
            // Created before a crash or a lost status write: the Job is ours, adopt it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 422) => {
                let action = &step.spec.actions[create.action].name;
                let message = format!(
                    "the Job for action {action} was rejected by the API server: {}",
                    e.message
                );
                reject(step, ctx, &api, previous, planned, &message, now).await?;
                return Ok(Action::await_change());
            }
            Err(e) => {
                return Err(e).context(|| {
                    format!("creating Job for step {name} attempt {}", create.attempt)
                });
            }
        }
    }

    if planned.status != *previous {
        let ns = step.namespace().unwrap_or_default();
        ctx.step_status
            .write(&api, &ns, &name, &planned.status)
            .await?;
        count(ctx, step, previous, planned, created_at);
        // Status now holds each failure's time: the clock's entries are done.
        for attempt in planned.status.actions.iter().flat_map(|a| &a.attempts) {
            if attempt.failure_seen_at.is_some() {
                ctx.failures_seen.forget(&ns, &attempt.job);
            }
        }
    }

    if let Some(key) = planned.remove_annotation {
        let patch = json!({ "metadata": { "annotations": { key: null } } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(|| format!("removing annotation {key} from Step {name}"))?;
    }
    publish::<_, Job>(ctx, step, &planned.events);

    Ok(if planned.requeue_now {
        Action::requeue(Duration::from_millis(50))
    } else if let Some(due) = planned.requeue_at {
        requeue_at(due)
    } else if planned.status.phase.is_some_and(Phase::is_terminal) {
        Action::await_change()
    } else {
        // A safety net only: Job and pod watches wake the Step.
        Action::requeue(Duration::from_secs(300))
    })
}

/// An action the API server refuses to run is an unusable object: Failed and
/// Stalled with the server's words, and no requeue until the Step changes.
async fn reject(
    step: &Step,
    ctx: &Context,
    api: &Api<Step>,
    previous: &StepStatus,
    planned: &StepPlan,
    message: &str,
    now: jiff::Timestamp,
) -> Result<()> {
    let mut status = planned.status.clone();
    if let Some(c) = planned.create
        && let Some(a) = status.actions.get_mut(c.action)
    {
        a.attempts.retain(|x| x.number != c.attempt);
        a.phase = crate::api::ActionPhase::Failed;
    }
    status.phase = Some(Phase::Failed);
    status.message = Some(message.to_string());
    status.conditions = crate::status::failed(
        "JobRejected",
        message,
        &previous.conditions,
        step.metadata.generation,
        now,
    );
    let ns = step.namespace().unwrap_or_default();
    ctx.step_status
        .write(api, &ns, &step.name_any(), &status)
        .await?;
    publish::<_, Job>(ctx, step, &[PlannedEvent::warning("JobRejected", message)]);
    Ok(())
}

/// Metrics follow what the written status says happened, once.
/// `created_at` is when the create of the planned Job returned.
fn count(
    ctx: &Context,
    step: &Step,
    previous: &StepStatus,
    planned: &StepPlan,
    created_at: jiff::Timestamp,
) {
    let m = &ctx.metrics;
    for e in &planned.events {
        match e.reason {
            "AttemptStarted" => m.attempt("started"),
            "AttemptFailed" => m.attempt("failed"),
            "RetryScheduled" => {
                m.retries_scheduled.inc();
            }
            "GuidedFailure" => {
                m.guided_failures.inc();
            }
            _ => {}
        }
    }
    for d in planned
        .status
        .decisions
        .iter()
        .skip(previous.decisions.len())
    {
        m.decision(d.decision);
    }
    let succeeded = |s: &StepStatus| {
        s.actions
            .iter()
            .flat_map(|a| &a.attempts)
            .filter(|a| a.outcome == Outcome::Succeeded)
            .count()
    };
    for _ in succeeded(previous)..succeeded(&planned.status) {
        m.attempt("succeeded");
    }
    // How late a retry's Job came compared with its schedule.
    if let (Some(c), Some(policy)) = (planned.create, step.spec.retries.as_ref()) {
        let action = &planned.status.actions[c.action];
        let failed = action
            .attempts
            .iter()
            .find(|a| a.number + 1 == c.attempt)
            .filter(|a| retry::automatic_attempts(Some(policy), a) > a.number);
        if let Some(seen) = failed.and_then(|a| a.failure_seen_at) {
            let due = seen
                + retry::delay_after(
                    policy,
                    c.attempt - 1,
                    &step.uid().unwrap_or_default(),
                    &action.name,
                );
            m.retry_delay_error
                .observe(created_at.duration_since(due).as_secs_f64());
        }
    }
}
