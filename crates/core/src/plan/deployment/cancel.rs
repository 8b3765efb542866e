//! A cancel that finds no Step running: the release fails with `Cancelled`
//! and the Step it was about to create is never made.

use jiff::Timestamp;

use super::DeploymentPlan;
use crate::api::{DeploymentStatus, Phase};
use crate::plan::{EventReason, PlannedEvent};
use crate::status::{GuidedFailure, Health, conditions};

// A cancelled release's conditions read as its step's.
use crate::plan::step::REASON_CANCELLED;

/// `planned` as it reads once cancelled: when it was about to create a
/// Step, it creates none and the release is Failed (Cancelled). A plan that
/// creates nothing is returned as it is (its running Step gets the cancel).
pub fn before_start(
    mut planned: DeploymentPlan,
    guided_failure: bool,
    previous: &DeploymentStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> DeploymentPlan {
    let Some(i) = planned.create_step.take() else {
        return planned;
    };
    let Some(summary) = planned.status.steps.get_mut(i) else {
        return planned;
    };
    summary.phase = Phase::Pending;
    summary.step_ref = None;
    summary.message = None;
    let message = format!(
        "cancelled (stepwise.dev/cancel) before step {} started",
        summary.name
    );
    let health = Health {
        phase: Phase::Failed,
        reason: REASON_CANCELLED.to_string(),
        message: message.clone(),
        guided_failure: guided_failure.then(|| GuidedFailure {
            active: false,
            reason: "NotTriggered".into(),
            message: String::new(),
        }),
    };
    planned.status = DeploymentStatus {
        phase: Some(Phase::Failed),
        observed_generation: generation,
        conditions: conditions(&health, &previous.conditions, generation, now),
        current_action: None,
        attempt: None,
        message: Some(message.clone()),
        ..planned.status
    };
    planned.recheck = false;
    planned
        .events
        .retain(|e| e.reason != EventReason::DeploymentSucceeded);
    planned.events.push(PlannedEvent::warning(
        EventReason::Cancelled,
        message.clone(),
    ));
    planned.events.push(PlannedEvent::warning(
        EventReason::DeploymentFailed,
        message,
    ));
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DeploymentSpec;
    use crate::plan::deployment::{StepSlot, StepView, plan};

    fn spec() -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "steps": [
                {"name": "a", "actions": [{"name": "x", "template": {"spec": {"containers": []}}}]},
                {"name": "b", "actions": [{"name": "y", "template": {"spec": {"containers": []}}}]},
            ]
        }))
        .unwrap()
    }

    #[test]
    fn a_cancel_between_steps_creates_nothing_and_fails_the_release() {
        let spec = spec();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let done = StepSlot::Ours(StepView {
            name: "rel-a".into(),
            phase: Phase::Succeeded,
            ..Default::default()
        });
        let p = plan(
            &spec,
            "rel",
            Some(1),
            &Default::default(),
            &[done, StepSlot::Missing],
            now,
        );
        assert_eq!(p.create_step, Some(1));
        let p = before_start(p, false, &Default::default(), Some(1), now);
        assert_eq!(p.create_step, None);
        assert_eq!(p.status.phase, Some(Phase::Failed));
        assert_eq!(p.status.steps[0].phase, Phase::Succeeded);
        assert_eq!(p.status.steps[1].phase, Phase::Pending);
        assert!(
            p.status
                .conditions
                .iter()
                .any(|c| c.reason == REASON_CANCELLED)
        );
        assert!(p.events.iter().any(|e| e.reason == EventReason::Cancelled));
    }
}
