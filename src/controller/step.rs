//! The Step reconciler: gather the Step's Jobs and pods, plan, apply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, info_span};

mod counts;
mod gather;
pub mod lane;
mod stuck;

use super::writes::{refused_for_good, reject, rejected_message};
use super::{Context, now, observe, publish, requeue_at, retry_later};
use crate::api::{
    ANNOTATION_APPROVAL, ANNOTATION_CANCEL, ANNOTATION_DECIDED_BY, ANNOTATION_DECISION,
    ANNOTATION_RECORDED_APPROVAL, ANNOTATION_RECORDED_DECISION, Outcome, Phase, Step, StepStatus,
};
use crate::plan::rejected;
use crate::plan::step::{Refused, StepObservation, StepPlan, plan};
use crate::view::{foreign_job, job_view};
use crate::{Error, KubeContext, Result, jobs, retry};

pub async fn reconcile(step: Arc<Step>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", kind = "Step", namespace = step.namespace().unwrap_or_default(), name = %step.name_any());
    let started = Instant::now();
    let result = reconcile_inner(step, &ctx).instrument(span).await;
    observe(&ctx.metrics, "step", started, &result);
    result
}

pub fn error_policy(_step: Arc<Step>, error: &Error, _ctx: Arc<Context>) -> Action {
    retry_later(error)
}

async fn reconcile_inner(cached: Arc<Step>, ctx: &Arc<Context>) -> Result<Action> {
    ctx.synced().await?;
    let summary = crate::view::is_summary_step(&cached);
    let Some(whole) = super::whole(&ctx.client, cached, summary).await? else {
        return Ok(Action::await_change());
    };
    let step = &*whole;
    if step.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = step
        .namespace()
        .ok_or_else(|| Error::Invalid("Step without a namespace".into()))?;
    let name = step.name_any();
    let uid = step.uid().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut observation = observation(step, ctx, &jobs_api, &name, &uid).await?;
    let previous = observation.previous.clone();
    let now = now();
    let mut planned = plan(&step.spec, &observation, now);
    tracing::debug!(phase = ?planned.status.phase, create = ?planned.create, requeue_at = ?planned.requeue_at, "planned");
    let mut created_at = now;
    if let Some(create) = planned.create {
        let key = (
            step.spec.actions[create.action].name.clone(),
            create.attempt,
        );
        match create_job(step, &ctx.client, &jobs_api, create, now).await? {
            Created::Ours(at) => {
                ctx.refusals.clear(&ns, &name);
                created_at = at;
            }
            // An unusable object: no requeue until the Step changes.
            Created::Rejected(message) => {
                let failed =
                    rejected::step(&planned, &previous, step.metadata.generation, &message, now);
                reject::<_, _, Job>(ctx, &ctx.step_status, step, failed).await?;
                return Ok(Action::await_change());
            }
            // Plan again knowing why the Job could not be created.
            Created::Foreign(job) => {
                observation.foreign.insert(key, job);
                planned = plan(&step.spec, &observation, now);
            }
            Created::Refused(message) => {
                let refusals = ctx.refusals.count(&ns, &name);
                observation.refused = Some(Refused {
                    action: key.0,
                    attempt: key.1,
                    message,
                    retry_at: now + retry::refusal_backoff(refusals),
                });
                planned = plan(&step.spec, &observation, now);
            }
        }
    }
    apply(step, ctx, &previous, &mut planned, created_at).await
}

/// What the Step's Jobs, pods and annotations say now, from the status it
/// last wrote (`name` and `uid` are the Step's).
async fn observation<'a>(
    step: &'a Step,
    ctx: &Context,
    jobs_api: &Api<Job>,
    name: &'a str,
    uid: &'a str,
) -> Result<StepObservation<'a>> {
    let ns = step.namespace().unwrap_or_default();
    let previous = ctx.step_status.freshest(
        &ns,
        name,
        step.metadata.resource_version.as_deref(),
        step.status.clone().unwrap_or_default(),
    );
    let mut found = gather::gather(step, ctx, &previous, &ns, name);
    confirm_running(step, jobs_api, &previous, &mut found).await?;
    gather::failed_create(&ctx.client, &ns, &mut found).await?;
    Ok(StepObservation {
        step_name: name,
        generation: step.metadata.generation,
        seed: uid,
        previous,
        jobs: found.views,
        decision_annotation: annotation(step, ANNOTATION_DECISION),
        approval_annotation: annotation(step, ANNOTATION_APPROVAL),
        decided_by: annotation(step, ANNOTATION_DECIDED_BY),
        cancel_annotation: annotation(step, ANNOTATION_CANCEL),
        foreign: found.foreign,
        refused: None,
        recorded_approval: annotation(step, ANNOTATION_RECORDED_APPROVAL)
            .and_then(|v| serde_json::from_str(v).ok()),
        created_at: step.creation_timestamp().map(|t| t.0),
    })
}

fn annotation<'a>(step: &'a Step, key: &str) -> Option<&'a str> {
    step.annotations().get(key).map(String::as_str)
}

/// A Job recorded as running but missing from the cache may be newer than
/// the cache: ask the API server before calling it deleted.
async fn confirm_running(
    step: &Step,
    jobs_api: &Api<Job>,
    previous: &StepStatus,
    found: &mut gather::Gathered,
) -> Result<()> {
    for action in &previous.actions {
        for attempt in action
            .attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Running)
        {
            let key = (action.name.clone(), attempt.number);
            if found.views.contains_key(&key)
                || found.foreign.contains_key(&key)
                || attempt.job.is_empty()
            {
                continue;
            }
            let job = jobs_api
                .get_opt(&attempt.job)
                .await
                .context(|| format!("reading Job {}", attempt.job))?;
            match job {
                Some(j) if jobs::owned_by(&j, step) => {
                    found.views.insert(key, job_view(&j.into(), None, None));
                }
                Some(j) => {
                    found.foreign.insert(key, foreign_job(&j));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// How a Job create ended.
enum Created {
    /// Created now (at this time), or found and ours.
    Ours(jiff::Timestamp),
    /// The name is held by a Job whose controller is not this Step.
    Foreign(crate::plan::step::ForeignJob),
    /// Refused for good (`writes::refused_for_good`): the action cannot run as written.
    Rejected(String),
    /// Refused for now, in the API server's words: try again later.
    Refused(String),
}

async fn create_job(
    step: &Step,
    client: &kube::Client,
    jobs_api: &Api<Job>,
    create: crate::plan::step::CreateJob,
    now: jiff::Timestamp,
) -> Result<Created> {
    let hardening = match gather::hardening(client, step).await {
        Ok(h) => h,
        Err(why) => return Ok(Created::Refused(why)),
    };
    let job = jobs::build(step, create.action, create.attempt, now, hardening)?;
    let action = &step.spec.actions[create.action].name;
    let job_name = job.name_any();
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(Created::Ours(super::now())),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Created before a crash or a lost status write, or someone else's:
            // adopt it only if its controller is this very Step.
            match jobs_api.get_opt(&job_name).await {
                Ok(Some(j)) if jobs::owned_by(&j, step) => Ok(Created::Ours(now)),
                Ok(Some(j)) => Ok(Created::Foreign(foreign_job(&j))),
                Ok(None) => Ok(Created::Refused(format!(
                    "Job {job_name} already exists (it is being deleted): {}",
                    e.message
                ))),
                Err(err) => Ok(Created::Refused(format!("reading Job {job_name}: {err}"))),
            }
        }
        Err(kube::Error::Api(e)) if refused_for_good(e.code) => Ok(Created::Rejected(
            rejected_message("Job", &format!("action {action}"), &e.message),
        )),
        Err(kube::Error::Api(e)) => Ok(Created::Refused(format!(
            "{} ({} {})",
            e.message, e.code, e.reason
        ))),
        // A timeout or a broken connection: the create may or may not have
        // happened; the next reconcile finds the Job or tries again.
        Err(e) => Ok(Created::Refused(e.to_string())),
    }
}

async fn apply(
    step: &Step,
    ctx: &Arc<Context>,
    previous: &StepStatus,
    planned: &mut StepPlan,
    created_at: jiff::Timestamp,
) -> Result<Action> {
    let name = step.name_any();
    let api: Api<Step> = Api::namespaced(ctx.client.clone(), &step.namespace().unwrap_or_default());

    // The start timeout's outcomes go on their Jobs first: a status write
    // lost or wiped after this reads them back from the Jobs.
    let ns = step.namespace().unwrap_or_default();
    stuck::stop(
        &Api::namespaced(ctx.client.clone(), &ns),
        &planned.stop_jobs,
    )
    .await?;
    // A cancelled step's Jobs go before its status says Failed: foreground,
    // so each Job stays until its pod is gone.
    for job in &planned.delete_jobs {
        delete_foreground(&Api::namespaced(ctx.client.clone(), &ns), job).await?;
    }
    if planned.status != *previous {
        ctx.step_status
            .write(&api, &ns, &name, &planned.status)
            .await?;
        counts::count(ctx, step, previous, planned, created_at);
        // Status now holds each failure's time: the clock's entries are done.
        for attempt in planned.status.actions.iter().flat_map(|a| &a.attempts) {
            if attempt.failure_seen_at.is_some() {
                ctx.failures_seen.forget(&ns, &attempt.job);
            }
        }
    }

    record(step, ctx, planned).await?;
    // One patch: a decision and its decided-by leave together.
    let changed_meanwhile =
        !super::annotations::remove_all_if_unchanged(&api, step, &planned.remove_annotations)
            .await?;
    publish::<_, Job>(ctx, step, &planned.events);

    Ok(if planned.requeue_now || changed_meanwhile {
        Action::requeue(Duration::from_millis(50))
    } else if let Some(due) = planned.requeue_at {
        if planned.status.phase == Some(Phase::Retrying) && planned.create.is_none() {
            lane::schedule(ctx, step, due);
            requeue_at(due.checked_add(lane::BACKSTOP).unwrap_or(due))
        } else {
            requeue_at(due)
        }
    } else if planned.status.phase.is_some_and(Phase::is_terminal) {
        Action::await_change()
    } else {
        // A safety net only: Job and pod watches wake the Step.
        Action::requeue(Duration::from_secs(300))
    })
}

/// Writes each decision on its failed attempt's Job and the approval on the
/// Step, after the status and before the person's annotation is removed.
async fn record(step: &Step, ctx: &Context, planned: &StepPlan) -> Result<()> {
    let ns = step.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    for r in &planned.record_decisions {
        let value = to_annotation("a recorded decision", &r.record)?;
        match super::annotations::set(&jobs_api, &r.job, ANNOTATION_RECORDED_DECISION, &value).await
        {
            Ok(()) => {}
            // The Job is gone (deleted by hand): status keeps the decision.
            Err(Error::Kube {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(a) = &planned.record_approval {
        let steps: Api<Step> = Api::namespaced(ctx.client.clone(), &ns);
        let value = to_annotation("a recorded approval", a)?;
        super::annotations::set(
            &steps,
            &step.name_any(),
            ANNOTATION_RECORDED_APPROVAL,
            &value,
        )
        .await?;
    }
    Ok(())
}

/// A record as the JSON string an annotation holds.
fn to_annotation<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| Error::Serialize { what, source })
}

/// Deletes a Job and, before it, its pods; a Job already gone is fine.
async fn delete_foreground(jobs: &Api<Job>, name: &str) -> Result<()> {
    let params = kube::api::DeleteParams::foreground();
    match jobs.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).context(|| format!("deleting Job {name}")),
    }
}
