//! A decision or approval annotated on a `Deployment` goes to the step
//! that waits for one, so a person or a GitOps tool can act on the release
//! itself; the same rules then apply on the Step. Nothing waiting for it:
//! removed with a Warning Event, never ignored silently.

use super::{EventReason, PlannedEvent};
use crate::api::{ANNOTATION_APPROVAL, ANNOTATION_DECISION, DeploymentStatus, Phase};

/// What to do with one annotation on a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// Set `key=value` on Step `step`, then remove it from the Deployment.
    Pass {
        key: &'static str,
        value: String,
        step: String,
    },
    /// Remove it from the Deployment and publish the event.
    Ignore {
        key: &'static str,
        event: PlannedEvent,
    },
}

impl Handoff {
    pub fn key(&self) -> &'static str {
        match self {
            Handoff::Pass { key, .. } | Handoff::Ignore { key, .. } => key,
        }
    }
}

/// Where each annotation goes, given the release's status as planned now.
pub fn handoffs(
    status: &DeploymentStatus,
    decision: Option<&str>,
    approval: Option<&str>,
) -> Vec<Handoff> {
    [
        (
            ANNOTATION_DECISION,
            decision,
            Phase::WaitingForDecision,
            EventReason::DecisionIgnored,
            "a decision",
        ),
        (
            ANNOTATION_APPROVAL,
            approval,
            Phase::WaitingForApproval,
            EventReason::ApprovalIgnored,
            "an approval",
        ),
    ]
    .into_iter()
    .filter_map(|(key, value, waits, reason, what)| {
        let value = value?;
        Some(match waiting_step(status, waits) {
            Some(step) => Handoff::Pass {
                key,
                value: value.to_string(),
                step,
            },
            None => Handoff::Ignore {
                key,
                event: PlannedEvent::warning(
                    reason,
                    format!(
                        "{key}={value:?} ignored: no step of this release is waiting for {what}"
                    ),
                ),
            },
        })
    })
    .collect()
}

/// The Step object of the release's current step, if it waits in `phase`.
fn waiting_step(status: &DeploymentStatus, phase: Phase) -> Option<String> {
    if status.phase != Some(phase) {
        return None;
    }
    let current = status.current_step.as_deref()?;
    let summary = status.steps.iter().find(|s| s.name == current)?;
    (summary.phase == phase)
        .then(|| summary.step_ref.clone())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StepSummary;

    fn status(phase: Phase) -> DeploymentStatus {
        DeploymentStatus {
            phase: Some(phase),
            current_step: Some("s".into()),
            steps: vec![StepSummary {
                name: "s".into(),
                step_ref: Some("rel-s".into()),
                phase,
                message: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_decision_goes_to_the_step_waiting_for_one() {
        let h = handoffs(&status(Phase::WaitingForDecision), Some("retry"), None);
        assert_eq!(
            h,
            vec![Handoff::Pass {
                key: ANNOTATION_DECISION,
                value: "retry".into(),
                step: "rel-s".into()
            }]
        );
        let h = handoffs(&status(Phase::WaitingForApproval), None, Some("approved"));
        assert!(
            matches!(&h[0], Handoff::Pass { key, step, .. } if *key == ANNOTATION_APPROVAL && step == "rel-s")
        );
    }

    #[test]
    fn nothing_waiting_means_removed_with_a_warning() {
        for phase in [Phase::Running, Phase::Succeeded, Phase::WaitingForApproval] {
            let h = handoffs(&status(phase), Some("abort"), None);
            match &h[..] {
                [Handoff::Ignore { key, event }] => {
                    assert_eq!(*key, ANNOTATION_DECISION);
                    assert!(event.warning && event.reason == EventReason::DecisionIgnored);
                    assert!(event.note.contains("abort"));
                }
                other => panic!("{phase:?}: {other:?}"),
            }
        }
        let h = handoffs(&status(Phase::Retrying), None, Some("approved"));
        assert!(
            matches!(&h[0], Handoff::Ignore { event, .. } if event.reason == EventReason::ApprovalIgnored)
        );
        assert!(handoffs(&status(Phase::Running), None, None).is_empty());
    }
}
