//! The Step controller's metrics, from what a written status says happened.

use kube::ResourceExt;

use crate::api::{Outcome, Step, StepStatus};
use crate::controller::Context;
use crate::plan::EventReason;
use crate::plan::step::{CreateJob, StepPlan};
use crate::retry;

/// Metrics follow what the written status says happened, once.
/// `created_at` is when the create of the planned Job returned.
pub(super) fn count(
    ctx: &Context,
    step: &Step,
    previous: &StepStatus,
    planned: &StepPlan,
    created_at: jiff::Timestamp,
) {
    let m = &ctx.metrics;
    if planned.create.is_some() {
        m.attempt("started");
    }
    for e in &planned.events {
        match e.reason {
            EventReason::AttemptFailed => m.attempt("failed"),
            EventReason::RetryScheduled => {
                m.retries_scheduled.inc();
            }
            EventReason::GuidedFailure => {
                m.guided_failures.inc();
            }
            _ => {}
        }
    }
    // New decisions (the list is bounded: compare by what they answered).
    for d in planned.status.decisions.iter().filter(|d| {
        !previous
            .decisions
            .iter()
            .any(|p| p.action == d.action && p.attempt == d.attempt)
    }) {
        if planned
            .events
            .iter()
            .any(|e| e.reason == EventReason::DecisionApplied)
        {
            m.decision(d.decision);
        }
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
    if let Some(c) = planned.create {
        retry_delay(ctx, step, &planned.status, c, created_at);
    }
}

/// How late a retry's Job came compared with its schedule.
pub(super) fn retry_delay(
    ctx: &Context,
    step: &Step,
    status: &StepStatus,
    c: CreateJob,
    created_at: jiff::Timestamp,
) {
    let m = &ctx.metrics;
    if let Some(policy) = step.spec.retries.as_ref() {
        let action = &status.actions[c.action];
        let failed = action
            .attempts
            .iter()
            .find(|a| a.number + 1 == c.attempt)
            .filter(|a| retry::automatic_attempts(Some(policy), a) > a.number);
        if let Some(failed) = failed.filter(|a| a.failure_seen_at.is_some()) {
            let due = retry::due(
                policy,
                failed,
                &step.uid().unwrap_or_default(),
                &action.name,
                created_at,
            );
            m.retry_delay_error
                .observe(created_at.duration_since(due).as_secs_f64());
        }
    }
}
