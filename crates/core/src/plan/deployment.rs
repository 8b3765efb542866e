//! What a Deployment does next: create its next Step once the one before it
//! succeeded, and report the release's phase from its Steps.
//!
//! | step i's Step          | result                                                        |
//! |------------------------|---------------------------------------------------------------|
//! | Succeeded              | look at step i + 1 (none left: Deployment Succeeded)          |
//! | missing                | create it (every step before it succeeded); Running           |
//! | Pending/Running        | Running                                                       |
//! | Retrying               | Retrying                                                      |
//! | WaitingForApproval     | WaitingForApproval                                            |
//! | WaitingForDecision     | WaitingForDecision, GuidedFailure=True (later steps wait)     |
//! | Failed                 | Failed, Stalled=True; later steps never start (but handlers)   |
//! | missing, recorded Succeeded | stays Succeeded, never created again; Warning `StepDeleted` |
//! | taken by another Deployment | Failed, Stalled=True (`StepNameTaken`), naming the Step    |
//! | taken otherwise (an old owner, none) | Running, waiting until it is gone; never adopted  |
//! | (any) two steps' actions would share Job names | Failed, Stalled=True (`JobNamesClash`), naming both; no Step is created |
//!
//! Failure handlers (`runWhen`) change which steps the walk runs: see
//! [`walk`]. In short, the first failure (or a cancel) is recorded in
//! `status.failure`, the `OnFailure` and `Always` steps after it run in
//! order while the release reads as in progress, and it ends Failed.
//!
//! A release that the status records as Succeeded or Failed is final: its
//! phase, message and conditions stay as they are whatever happens to its
//! Steps (deleted, or their status wiped), and no Step is created again.
//!
//! The Deployment mirrors only what [`StepView::mirrored`] keeps: every
//! step's phase, and the action, attempt and message of a step that needs a
//! person's attention (including a running attempt whose container cannot start). A running step's progress stays on its Step, so a
//! release's status is written at step boundaries rather than on every
//! attempt (as Tekton's minimal PipelineRun status does).

use jiff::Timestamp;

pub use super::Owner;
use super::{EventReason, Finished, PlannedEvent};
use crate::api::{
    DeploymentSpec, DeploymentStatus, Phase, ReleaseFailure, StepSpec, StepSummary, StepType,
};
use crate::status::{GuidedFailure, Health, conditions};
use walk::{Failure, Walked};

#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentPlan {
    /// Index of the step whose `Step` object to create.
    pub create_step: Option<usize>,
    pub status: DeploymentStatus,
    pub events: Vec<PlannedEvent>,
    /// Look again after a while: a Step by the needed name may go away
    /// without anything waking this Deployment.
    pub recheck: bool,
}

/// The Step object's name for a deployment's step.
pub fn step_name(deployment: &str, step: &str) -> String {
    format!("{deployment}-{step}")
}

/// The Step spec for step `index`: its own retries, else the deployment's
/// default (never on a ManualIntervention step), the deployment's guided
/// failure, and its decision deadline (the step's own first).
pub fn step_spec(spec: &DeploymentSpec, index: usize) -> Option<StepSpec> {
    let s = spec.steps.get(index)?;
    let retries = match s.type_ {
        StepType::Run => s.retries.clone().or_else(|| spec.retries.clone()),
        StepType::ManualIntervention => None,
    };
    Some(StepSpec {
        type_: s.type_,
        instructions: s.instructions.clone(),
        retries,
        guided_failure: spec.guided_failure,
        actions: s.actions.clone(),
        approvers: match s.type_ {
            StepType::Run => spec.approvers.clone(),
            StepType::ManualIntervention => s.approvers.clone(),
        },
        // The step's own deadline, else the deployment's default (Run steps
        // under guided failure only: the CRDs refuse it elsewhere).
        guided_failure_timeout: match s.type_ {
            StepType::Run if spec.guided_failure => {
                s.guided_failure_timeout.or(spec.guided_failure_timeout)
            }
            _ => None,
        },
        approval_timeout: match s.type_ {
            StepType::ManualIntervention => s.approval_timeout,
            StepType::Run => None,
        },
    })
}

/// `steps[i]` is what was found under the Step name of `spec.steps[i]`.
/// `cancel`: `stepwise.dev/cancel` is on the Deployment or one of its Steps.
pub fn plan(
    spec: &DeploymentSpec,
    name: &str,
    generation: Option<i64>,
    previous: &DeploymentStatus,
    steps: &[StepSlot],
    cancel: bool,
    now: Timestamp,
) -> DeploymentPlan {
    let finished = previous.phase.is_some_and(Phase::is_terminal);
    let slots: Vec<StepSlot> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let slot = steps.get(i).cloned().unwrap_or_default();
            let StepSlot::Ours(view) = slot else {
                return slot;
            };
            let view = view.mirrored();
            // A finished release reads as it did, whatever its Steps say now.
            match (finished, recorded(previous, &s.name)) {
                (true, Some(was)) => StepSlot::Ours(StepView {
                    phase: was.phase,
                    message: was.message.clone(),
                    ..view
                }),
                _ => StepSlot::Ours(view),
            }
        })
        .collect();
    let mut summaries = summarize(spec, &slots);
    let events = gone(spec, name, previous, &slots, &mut summaries);
    if finished {
        let status = DeploymentStatus {
            steps: summaries,
            ..previous.clone()
        };
        return DeploymentPlan {
            create_step: None,
            status,
            events,
            recheck: false,
        };
    }
    let walked = match clash::job_name_clash(spec) {
        // Refused before any Step runs: the release cannot work as written.
        Some(c) => Walked::refused("JobNamesClash", c.message()),
        None => walk::walk(
            spec,
            name,
            &slots,
            &mut summaries,
            cancel,
            cancelled_before(previous),
        ),
    };

    finish(
        spec, generation, previous, walked, &slots, summaries, events, now,
    )
}

/// Steps whose Step object is gone after they finished read as recorded
/// and never run again (a Warning `StepDeleted` when that is news); a
/// finished release keeps what it said of the steps it never made.
fn gone(
    spec: &DeploymentSpec,
    name: &str,
    previous: &DeploymentStatus,
    slots: &[StepSlot],
    summaries: &mut [StepSummary],
) -> Vec<PlannedEvent> {
    let finished = previous.phase.is_some_and(Phase::is_terminal);
    let mut events = Vec::new();
    for (i, s) in spec.steps.iter().enumerate() {
        if slots[i] != StepSlot::Missing {
            continue;
        }
        let Some(was) = recorded(previous, &s.name) else {
            continue;
        };
        // A step whose Step was never made (a release that failed or was
        // superseded before it, a skipped handler) was not deleted either.
        // One that finished never runs again, even while handlers run.
        if was.step_ref.is_none() {
            // A finished release keeps what it said of it (Pending, Skipped).
            if finished {
                summaries[i] = was.clone();
            }
            continue;
        }
        if !(finished || was.phase.is_terminal()) {
            continue;
        }
        let step_ref = was
            .step_ref
            .clone()
            .unwrap_or_else(|| step_name(name, &s.name));
        let note = deleted_note(&step_ref);
        if was.message.as_deref() != Some(note.as_str()) {
            events.push(
                PlannedEvent::warning(EventReason::StepDeleted, note.clone()).about(&step_ref),
            );
        }
        summaries[i] = StepSummary {
            name: s.name.clone(),
            step_ref: Some(step_ref),
            phase: was.phase,
            message: Some(note),
        };
    }
    events
}

/// The step's summary in the status as last written.
fn recorded<'a>(previous: &'a DeploymentStatus, step: &str) -> Option<&'a StepSummary> {
    previous.steps.iter().find(|s| s.name == step)
}

fn summarize(spec: &DeploymentSpec, slots: &[StepSlot]) -> Vec<StepSummary> {
    spec.steps
        .iter()
        .zip(slots)
        .map(|(s, slot)| {
            let view = match slot {
                StepSlot::Ours(v) => Some(v),
                _ => None,
            };
            StepSummary {
                name: s.name.clone(),
                step_ref: view.map(|v| v.name.clone()),
                phase: view.map_or(Phase::Pending, |v| v.phase),
                message: view.and_then(|v| v.message.clone()),
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn finish(
    spec: &DeploymentSpec,
    generation: Option<i64>,
    previous: &DeploymentStatus,
    w: Walked,
    slots: &[StepSlot],
    summaries: Vec<StepSummary>,
    mut events: Vec<PlannedEvent>,
    now: Timestamp,
) -> DeploymentPlan {
    let (phase, message) = (w.phase, super::step::capped(w.message));
    events.extend(PlannedEvent::finished(
        Finished::Deployment,
        phase,
        previous.phase,
        &message,
    ));
    if let Some(f) = w.failed.as_ref().filter(|_| previous.failure.is_none()) {
        events.extend(failure_events(spec, f, phase));
    }
    let clash = [EventReason::StepNameTaken, EventReason::JobNamesClash]
        .into_iter()
        .find(|r| r.as_str() == w.reason);
    if let Some(reason) = clash.filter(|_| previous.phase != Some(phase)) {
        events.push(PlannedEvent::warning(reason, message.clone()));
    }
    let waiting = phase == Phase::WaitingForDecision;
    let health = Health {
        phase,
        reason: w.reason.to_string(),
        message: message.clone(),
        guided_failure: spec
            .guided_failure
            .then(|| GuidedFailure::of(waiting, "NotTriggered", &message)),
    };
    let view = w.current.and_then(|i| match &slots[i] {
        StepSlot::Ours(v) => Some(v),
        _ => None,
    });
    let status = DeploymentStatus {
        phase: Some(phase),
        observed_generation: generation,
        conditions: conditions(&health, &previous.conditions, generation, now),
        current_step: w.current.map(|i| spec.steps[i].name.clone()),
        current_action: view.and_then(|v| v.current_action.clone()),
        attempt: view.and_then(|v| v.attempt),
        message: Some(message),
        steps: summaries,
        decision_deadline: view
            .filter(|_| matches!(phase, Phase::WaitingForDecision | Phase::WaitingForApproval))
            .and_then(|v| v.decision_deadline),
        failure: w.failed.map(|f| ReleaseFailure {
            step: spec.steps[f.index].name.clone(),
            reason: f.reason.to_string(),
            message: f.message,
        }),
    };
    DeploymentPlan {
        create_step: w.create_step,
        status,
        events,
        recheck: w.recheck,
    }
}

mod clash;
mod slots;
mod walk;

pub use slots::{ForeignStep, StepSlot, StepView, deleted_note};

#[cfg(test)]
mod tests;

/// The Events of a release's first failure, the moment it is seen: a cancel
/// before a step started, and a note that failure handlers run now.
fn failure_events(spec: &DeploymentSpec, f: &Failure, phase: Phase) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    if f.reason == crate::plan::step::REASON_CANCELLED {
        events.push(PlannedEvent::warning(
            EventReason::Cancelled,
            f.message.clone(),
        ));
    }
    if !phase.is_terminal() {
        let handlers: Vec<&str> = spec.steps[f.index..]
            .iter()
            .filter(|s| s.run_when.runs(true))
            .map(|s| s.name.as_str())
            .collect();
        events.push(PlannedEvent::warning(
            EventReason::FailureHandlers,
            format!(
                "{}; running the failure handlers: {}",
                f.message,
                handlers.join(", ")
            ),
        ));
    }
    events
}

/// The step a cancel stopped the release before, as last written.
fn cancelled_before(previous: &DeploymentStatus) -> Option<&str> {
    let f = previous.failure.as_ref()?;
    (f.reason == crate::plan::step::REASON_CANCELLED).then_some(f.step.as_str())
}
