//! An object the API server refuses for good (see the shell's
//! `writes::refused_for_good` for which answers are): the Step or
//! Deployment that asked for it cannot work as written, so it is Failed and
//! Stalled with the server's words, and a Warning Event says so. Both
//! planners' statuses are finished here, so the shell builds none by hand.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::step::StepPlan;
use super::{EventReason, PlannedEvent};
use crate::api::{ActionPhase, DeploymentStatus, Phase, StepStatus};
use crate::status::failed;

/// The Step's status once its planned Job was refused: the attempt that
/// never started is dropped and its action Failed.
pub fn step(
    planned: &StepPlan,
    previous: &StepStatus,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> (StepStatus, PlannedEvent) {
    let reason = EventReason::JobRejected;
    let mut status = planned.status.clone();
    if let Some(c) = planned.create
        && let Some(a) = status.actions.get_mut(c.action)
    {
        a.attempts.retain(|x| x.number != c.attempt);
        a.phase = ActionPhase::Failed;
    }
    status.phase = Some(Phase::Failed);
    status.message = Some(message.to_string());
    let (conditions, event) = refused(reason, &previous.conditions, generation, message, now);
    status.conditions = conditions;
    (status, event)
}

/// The Deployment's status once its next Step was refused.
pub fn deployment(
    planned: &DeploymentStatus,
    previous: &DeploymentStatus,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> (DeploymentStatus, PlannedEvent) {
    let reason = EventReason::StepRejected;
    let mut status = planned.clone();
    status.phase = Some(Phase::Failed);
    status.message = Some(message.to_string());
    let (conditions, event) = refused(reason, &previous.conditions, generation, message, now);
    status.conditions = conditions;
    (status, event)
}

/// What a refusal makes of either object: Failed and Stalled conditions
/// with the server's words, and the Warning Event that says so.
fn refused(
    reason: EventReason,
    previous: &[Condition],
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> (Vec<Condition>, PlannedEvent) {
    let conditions = failed(reason.as_str(), message, previous, generation, now);
    (conditions, PlannedEvent::warning(reason, message))
}
