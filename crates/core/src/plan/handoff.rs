//! A decision or approval annotated on a `Deployment` goes to the step
//! that waits for one, so a person or a GitOps tool can act on the release
//! itself; the same rules then apply on the Step. Nothing waiting for it:
//! removed with a Warning Event, never ignored silently. Who set it
//! (`stepwise.dev/decided-by`) goes along with it, and is removed from the
//! Deployment with it.

use super::{EventReason, PlannedEvent};
use crate::api::{
    ANNOTATION_APPROVAL, ANNOTATION_CANCEL, ANNOTATION_DECIDED_BY, ANNOTATION_DECISION,
    DeploymentStatus, Phase,
};

/// What to do with one annotation on a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// Set `key=value` on Step `step` (and `decided-by` to `by`, or remove
    /// it there when `None`), then remove it from the Deployment.
    Pass {
        key: &'static str,
        value: String,
        step: String,
        by: Option<String>,
    },
    /// Remove it from the Deployment: it has done its part.
    Drop { key: &'static str },
    /// Remove it from the Deployment and publish the event.
    Ignore {
        key: &'static str,
        event: PlannedEvent,
    },
}

impl Handoff {
    pub fn key(&self) -> &'static str {
        match self {
            Handoff::Pass { key, .. } | Handoff::Ignore { key, .. } | Handoff::Drop { key } => key,
        }
    }

    /// The annotations a `Pass` sets on its Step (`None`: remove). Who
    /// decided goes along with a decision or approval (none: a stale name
    /// goes); a cancel is no decision and leaves `decided-by` alone.
    pub fn step_annotations(&self) -> Vec<(&'static str, Option<&str>)> {
        let Handoff::Pass { key, value, by, .. } = self else {
            return Vec::new();
        };
        let mut values = vec![(*key, Some(value.as_str()))];
        if *key != ANNOTATION_CANCEL {
            values.push((ANNOTATION_DECIDED_BY, by.as_deref()));
        }
        values
    }
}

/// Where each annotation goes, given the release's status as planned now;
/// `decided_by` is the Deployment's `stepwise.dev/decided-by`.
pub fn handoffs(
    status: &DeploymentStatus,
    decision: Option<&str>,
    approval: Option<&str>,
    decided_by: Option<&str>,
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
                by: decided_by.map(String::from),
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

/// The annotations to remove from the Deployment once `planned` is done:
/// each handed-off key, and `decided-by` with them when the Deployment has
/// one and no decision or approval annotation is left behind.
pub fn removals(planned: &[Handoff], decided_by: Option<&str>) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = planned.iter().map(Handoff::key).collect();
    if decided_by.is_some() && !keys.is_empty() {
        keys.push(ANNOTATION_DECIDED_BY);
    }
    keys
}

/// Where a cancel goes: to the release's current Step while it runs (the
/// Step keeps it, the durable record of the cancel); removed with a Warning
/// `CancelIgnored` when the release had already finished (`previous` is the
/// status before this reconcile, `status` the one planned now). While no
/// Step runs yet it stays on the Deployment, which fails without starting
/// one and keeps it while its failure handlers run. A cancel that arrives
/// once the release has failed is removed with `CancelIgnored`: it does not
/// stop failure handlers.
pub fn cancel_handoff(
    previous: &DeploymentStatus,
    status: &DeploymentStatus,
    cancel: Option<&str>,
) -> Option<Handoff> {
    let value = cancel?;
    if previous.phase.is_some_and(Phase::is_terminal) {
        return Some(Handoff::Ignore {
            key: ANNOTATION_CANCEL,
            event: PlannedEvent::warning(
                EventReason::CancelIgnored,
                format!("{ANNOTATION_CANCEL}={value:?} ignored: the release has already finished"),
            ),
        });
    }
    if status.phase.is_some_and(Phase::is_terminal) {
        return Some(Handoff::Drop {
            key: ANNOTATION_CANCEL,
        });
    }
    if let Some(failed) = status.failure.as_ref().map(|f| &f.step) {
        let summary = status.steps.iter().find(|s| &s.name == failed);
        // A cancel that failed the release before a step started is kept
        // (its record) until the failure handlers are done.
        if summary.is_some_and(|s| s.step_ref.is_none()) {
            return None;
        }
        return Some(Handoff::Ignore {
            key: ANNOTATION_CANCEL,
            event: PlannedEvent::warning(
                EventReason::CancelIgnored,
                format!(
                    "{ANNOTATION_CANCEL}={value:?} ignored: the release has already failed at step {failed} and a cancel does not stop its failure handlers"
                ),
            ),
        });
    }
    let current = status.current_step.as_deref()?;
    let summary = status.steps.iter().find(|s| s.name == current)?;
    let step = summary.step_ref.clone()?;
    Some(Handoff::Pass {
        key: ANNOTATION_CANCEL,
        value: value.to_string(),
        step,
        by: None,
    })
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
    fn a_decision_carries_who_decided_and_a_cancel_leaves_it_alone() {
        let pass = |key, by: Option<&str>| Handoff::Pass {
            key,
            value: "v".into(),
            step: "rel-s".into(),
            by: by.map(Into::into),
        };
        assert_eq!(
            pass(ANNOTATION_DECISION, Some("alice")).step_annotations(),
            vec![
                (ANNOTATION_DECISION, Some("v")),
                (ANNOTATION_DECIDED_BY, Some("alice"))
            ]
        );
        assert_eq!(
            pass(ANNOTATION_APPROVAL, None).step_annotations(),
            vec![
                (ANNOTATION_APPROVAL, Some("v")),
                (ANNOTATION_DECIDED_BY, None)
            ]
        );
        assert_eq!(
            pass(ANNOTATION_CANCEL, None).step_annotations(),
            vec![(ANNOTATION_CANCEL, Some("v"))]
        );
        assert!(
            Handoff::Drop {
                key: ANNOTATION_CANCEL
            }
            .step_annotations()
            .is_empty()
        );
    }

    #[test]
    fn a_decision_goes_to_the_step_waiting_for_one() {
        let h = handoffs(
            &status(Phase::WaitingForDecision),
            Some("retry"),
            None,
            None,
        );
        assert_eq!(
            h,
            vec![Handoff::Pass {
                key: ANNOTATION_DECISION,
                value: "retry".into(),
                step: "rel-s".into(),
                by: None,
            }]
        );
        let h = handoffs(
            &status(Phase::WaitingForApproval),
            None,
            Some("approved"),
            None,
        );
        assert!(
            matches!(&h[0], Handoff::Pass { key, step, .. } if *key == ANNOTATION_APPROVAL && step == "rel-s")
        );
    }

    #[test]
    fn nothing_waiting_means_removed_with_a_warning() {
        for phase in [Phase::Running, Phase::Succeeded, Phase::WaitingForApproval] {
            let h = handoffs(&status(phase), Some("abort"), None, Some("alice"));
            match &h[..] {
                [Handoff::Ignore { key, event }] => {
                    assert_eq!(*key, ANNOTATION_DECISION);
                    assert!(event.warning && event.reason == EventReason::DecisionIgnored);
                    assert!(event.note.contains("abort"));
                }
                other => panic!("{phase:?}: {other:?}"),
            }
        }
        let h = handoffs(&status(Phase::Retrying), None, Some("approved"), None);
        assert!(
            matches!(&h[0], Handoff::Ignore { event, .. } if event.reason == EventReason::ApprovalIgnored)
        );
        assert!(handoffs(&status(Phase::Running), None, None, None).is_empty());
    }

    #[test]
    fn who_decided_goes_along_and_leaves_with_the_annotation() {
        let by = Some("alice");
        let h = handoffs(&status(Phase::WaitingForDecision), Some("retry"), None, by);
        assert!(
            matches!(&h[..], [Handoff::Pass { by: Some(b), .. }] if b == "alice"),
            "{h:?}"
        );
        assert_eq!(
            removals(&h, by),
            vec![ANNOTATION_DECISION, ANNOTATION_DECIDED_BY]
        );
        // Ignored, it is removed as well: no stale name for the next decision.
        let h = handoffs(&status(Phase::Running), Some("retry"), None, by);
        assert_eq!(
            removals(&h, by),
            vec![ANNOTATION_DECISION, ANNOTATION_DECIDED_BY]
        );
        // Without the policy there is nothing to carry or remove.
        let h = handoffs(
            &status(Phase::WaitingForDecision),
            Some("retry"),
            None,
            None,
        );
        assert!(matches!(&h[..], [Handoff::Pass { by: None, .. }]));
        assert_eq!(removals(&h, None), vec![ANNOTATION_DECISION]);
        // decided-by alone is nobody's decision: left alone.
        assert!(removals(&[], by).is_empty());
    }

    #[test]
    fn a_cancel_goes_to_the_running_step_or_is_ignored_once_finished() {
        for phase in [Phase::Running, Phase::Retrying, Phase::WaitingForDecision] {
            let h = cancel_handoff(&status(phase), &status(phase), Some("true"));
            assert!(
                matches!(&h, Some(Handoff::Pass { key, step, .. }) if *key == ANNOTATION_CANCEL && step == "rel-s"),
                "{phase:?}: {h:?}"
            );
        }
        for phase in [Phase::Succeeded, Phase::Failed] {
            let h = cancel_handoff(&status(phase), &status(phase), Some("true"));
            assert!(
                matches!(&h, Some(Handoff::Ignore { event, .. }) if event.warning && event.reason == EventReason::CancelIgnored),
                "{phase:?}: {h:?}"
            );
        }
        // Failed by this very cancel: removed quietly.
        let h = cancel_handoff(
            &status(Phase::Running),
            &status(Phase::Failed),
            Some("true"),
        );
        assert_eq!(
            h,
            Some(Handoff::Drop {
                key: ANNOTATION_CANCEL
            })
        );
        assert_eq!(
            cancel_handoff(&status(Phase::Running), &status(Phase::Running), None),
            None
        );
    }

    #[test]
    fn a_cancel_leaves_failure_handlers_alone() {
        let handling = |step_ref: Option<&str>| DeploymentStatus {
            failure: Some(crate::api::ReleaseFailure {
                step: "s".into(),
                reason: "StepFailed".into(),
                message: "m".into(),
            }),
            steps: vec![StepSummary {
                name: "s".into(),
                step_ref: step_ref.map(Into::into),
                phase: Phase::Failed,
                message: None,
            }],
            ..status(Phase::Running)
        };
        // The release failed at a step that ran: a cancel now is ignored.
        let ran = handling(Some("rel-s"));
        let h = cancel_handoff(&ran, &ran, Some("true"));
        assert!(
            matches!(&h, Some(Handoff::Ignore { event, .. }) if event.reason == EventReason::CancelIgnored && event.note.contains("failure handlers")),
            "{h:?}"
        );
        // The cancel itself failed it before that step: kept as its record.
        let before = handling(None);
        assert_eq!(cancel_handoff(&before, &before, Some("true")), None);
    }
}
