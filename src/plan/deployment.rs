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
//! | Failed                 | Failed, Stalled=True; later steps never start                 |
//!
//! The Deployment mirrors only what [`StepView::mirrored`] keeps: every
//! step's phase, and the action, attempt and message of a step that needs a
//! person's attention. A running step's progress stays on its Step, so a
//! release's status is written at step boundaries rather than on every
//! attempt (as Tekton's minimal PipelineRun status does).

use jiff::Timestamp;

use super::PlannedEvent;
use crate::api::{DeploymentSpec, DeploymentStatus, Phase, StepSpec, StepSummary, StepType};
use crate::status::{GuidedFailure, Health, conditions};

/// What the controller saw of one step's `Step` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StepView {
    pub name: String,
    pub phase: Phase,
    pub message: Option<String>,
    pub current_action: Option<String>,
    pub attempt: Option<u32>,
}

impl StepView {
    /// The part of a Step the Deployment's status depends on; the Step
    /// watch wakes a Deployment only when this changes.
    pub fn mirrored(mut self) -> Self {
        // A Step that exists is under way: its few milliseconds of Pending
        // before its first reconcile are not worth a write.
        if self.phase == Phase::Pending {
            self.phase = Phase::Running;
        }
        if !needs_attention(self.phase) {
            self.message = None;
            self.current_action = None;
            self.attempt = None;
        }
        self
    }
}

/// Phases in which the action, attempt and message matter to whoever looks
/// at the release (`kubectl get swd` shows them).
fn needs_attention(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Retrying | Phase::WaitingForDecision | Phase::WaitingForApproval | Phase::Failed
    )
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentPlan {
    /// Index of the step whose `Step` object to create.
    pub create_step: Option<usize>,
    pub status: DeploymentStatus,
    pub events: Vec<PlannedEvent>,
}

/// The Step object's name for a deployment's step.
pub fn step_name(deployment: &str, step: &str) -> String {
    format!("{deployment}-{step}")
}

/// The Step spec for step `index`: its own retries, else the deployment's
/// default (never on a ManualIntervention step), and the deployment's guided failure.
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
    })
}

/// `steps[i]` is the Step of `spec.steps[i]` if it exists.
pub fn plan(
    spec: &DeploymentSpec,
    name: &str,
    generation: Option<i64>,
    previous: &DeploymentStatus,
    steps: &[Option<StepView>],
    now: Timestamp,
) -> DeploymentPlan {
    let steps: Vec<Option<StepView>> = steps
        .iter()
        .map(|v| v.clone().map(StepView::mirrored))
        .collect();
    let total = spec.steps.len();
    let mut create_step = None;
    let mut events = Vec::new();
    let mut summaries: Vec<StepSummary> = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let view = steps.get(i).and_then(Option::as_ref);
            StepSummary {
                name: s.name.clone(),
                step_ref: view.map(|v| v.name.clone()),
                phase: view.map_or(Phase::Pending, |v| v.phase),
                message: view.and_then(|v| v.message.clone()),
            }
        })
        .collect();

    let mut current: Option<usize> = None;
    let (phase, reason, message) = 'walk: {
        for (i, s) in spec.steps.iter().enumerate() {
            let Some(view) = steps.get(i).and_then(Option::as_ref) else {
                create_step = Some(i);
                current = Some(i);
                summaries[i].step_ref = Some(step_name(name, &s.name));
                // Written as it will read once the Step exists, so that
                // the Step's appearance changes nothing here.
                summaries[i].phase = Phase::Running;
                break 'walk (
                    Phase::Running,
                    "Running".to_string(),
                    format!("step {} ({}/{total}) running", s.name, i + 1),
                );
            };
            if view.phase == Phase::Succeeded {
                continue;
            }
            current = Some(i);
            let msg = match &view.message {
                Some(detail) => format!("step {} ({}/{total}): {detail}", s.name, i + 1),
                None => format!("step {} ({}/{total}) running", s.name, i + 1),
            };
            let reason = match view.phase {
                Phase::Failed => "StepFailed",
                Phase::WaitingForDecision => "GuidedFailure",
                Phase::WaitingForApproval => "WaitingForApproval",
                Phase::Retrying => "Retrying",
                _ => "Running",
            };
            let phase = match view.phase {
                Phase::Pending => Phase::Running,
                p => p,
            };
            break 'walk (phase, reason.to_string(), msg);
        }
        (
            Phase::Succeeded,
            "Succeeded".to_string(),
            format!("all {total} steps succeeded"),
        )
    };

    if phase.is_terminal() && previous.phase != Some(phase) {
        events.push(if phase == Phase::Succeeded {
            PlannedEvent::normal("DeploymentSucceeded", message.clone())
        } else {
            PlannedEvent::warning("DeploymentFailed", message.clone())
        });
    }
    let waiting = phase == Phase::WaitingForDecision;
    let health = Health {
        phase,
        reason,
        message: message.clone(),
        guided_failure: spec.guided_failure.then(|| GuidedFailure {
            active: waiting,
            reason: if waiting {
                "RetriesExhausted"
            } else {
                "NotTriggered"
            }
            .into(),
            message: if waiting {
                message.clone()
            } else {
                String::new()
            },
        }),
    };
    let view = current.and_then(|i| steps.get(i).and_then(Option::as_ref));
    let status = DeploymentStatus {
        phase: Some(phase),
        observed_generation: generation,
        conditions: conditions(&health, &previous.conditions, generation, now),
        current_step: current.map(|i| spec.steps[i].name.clone()),
        current_action: view.and_then(|v| v.current_action.clone()),
        attempt: view.and_then(|v| v.attempt),
        message: Some(message),
        steps: summaries,
    };
    DeploymentPlan {
        create_step,
        status,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, DeploymentStep, RetryPolicy, condition_types as ct};
    use crate::status::is_true;

    fn spec(n: usize, guided: bool) -> DeploymentSpec {
        DeploymentSpec {
            guided_failure: guided,
            retries: Some(RetryPolicy::default()),
            steps: (0..n)
                .map(|i| DeploymentStep {
                    name: format!("s{i}"),
                    type_: StepType::Run,
                    instructions: None,
                    retries: None,
                    actions: vec![Action {
                        name: "a".into(),
                        template: Default::default(),
                        timeout_seconds: None,
                    }],
                })
                .collect(),
        }
    }

    fn view(i: usize, phase: Phase) -> Option<StepView> {
        Some(StepView {
            name: format!("d-s{i}"),
            phase,
            message: Some(format!("m{i}")),
            current_action: Some("a".into()),
            attempt: Some(1),
        })
    }

    fn run(spec: &DeploymentSpec, steps: &[Option<StepView>]) -> DeploymentPlan {
        plan(
            spec,
            "d",
            Some(1),
            &DeploymentStatus::default(),
            steps,
            Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn creates_first_step_then_waits() {
        let p = run(&spec(2, false), &[None, None]);
        assert_eq!(p.create_step, Some(0));
        assert_eq!(p.status.phase, Some(Phase::Running));
        let p = run(&spec(2, false), &[view(0, Phase::Running), None]);
        assert_eq!(p.create_step, None);
        assert_eq!(p.status.current_step.as_deref(), Some("s0"));
    }

    #[test]
    fn next_step_only_after_success() {
        let p = run(&spec(3, false), &[view(0, Phase::Succeeded), None, None]);
        assert_eq!(p.create_step, Some(1));
        for blocking in [
            Phase::Retrying,
            Phase::Failed,
            Phase::WaitingForDecision,
            Phase::WaitingForApproval,
        ] {
            let p = run(&spec(3, false), &[view(0, blocking), None, None]);
            assert_eq!(p.create_step, None, "{blocking:?}");
            assert_eq!(p.status.phase, Some(blocking));
        }
    }

    #[test]
    fn all_succeeded_is_ready() {
        let p = run(
            &spec(2, false),
            &[view(0, Phase::Succeeded), view(1, Phase::Succeeded)],
        );
        assert_eq!(p.status.phase, Some(Phase::Succeeded));
        assert!(is_true(&p.status.conditions, ct::READY));
        assert!(p.events.iter().any(|e| e.reason == "DeploymentSucceeded"));
    }

    #[test]
    fn failure_stalls_and_guided_failure_shows() {
        let p = run(&spec(2, false), &[view(0, Phase::Failed), None]);
        assert!(is_true(&p.status.conditions, ct::STALLED));
        assert!(
            !p.status
                .conditions
                .iter()
                .any(|c| c.type_ == ct::GUIDED_FAILURE)
        );
        let p = run(&spec(2, true), &[view(0, Phase::WaitingForDecision), None]);
        assert!(is_true(&p.status.conditions, ct::GUIDED_FAILURE));
        assert!(p.status.message.unwrap().contains("m0"));
    }

    #[test]
    fn mirrors_progress_only_when_a_step_needs_attention() {
        let s = spec(2, true);
        let running = run(&s, &[view(0, Phase::Running), None]);
        assert_eq!(running.status.current_step.as_deref(), Some("s0"));
        assert_eq!(running.status.current_action, None);
        assert_eq!(running.status.attempt, None);
        assert_eq!(running.status.steps[0].message, None);
        assert_eq!(
            running.status.message.as_deref(),
            Some("step s0 (1/2) running")
        );
        // A running step's progress never changes the Deployment's status.
        let mut later = view(0, Phase::Running).unwrap();
        later.current_action = Some("b".into());
        later.attempt = Some(2);
        later.message = Some("other".into());
        assert_eq!(run(&s, &[Some(later), None]).status, running.status);

        for attention in [
            Phase::Retrying,
            Phase::WaitingForDecision,
            Phase::WaitingForApproval,
            Phase::Failed,
        ] {
            let p = run(&s, &[view(0, attention), None]);
            assert_eq!(
                p.status.current_action.as_deref(),
                Some("a"),
                "{attention:?}"
            );
            assert_eq!(p.status.attempt, Some(1));
            assert_eq!(p.status.steps[0].message.as_deref(), Some("m0"));
        }
    }

    #[test]
    fn a_new_step_reads_as_it_will_once_its_step_exists() {
        let s = spec(2, false);
        let creating = run(&s, &[view(0, Phase::Succeeded), None]);
        assert_eq!(creating.create_step, Some(1));
        for appeared in [Phase::Pending, Phase::Running] {
            let p = run(&s, &[view(0, Phase::Succeeded), view(1, appeared)]);
            assert_eq!(p.create_step, None);
            assert_eq!(p.status, creating.status, "{appeared:?}");
        }
        assert!(creating.events.is_empty(), "{:?}", creating.events);
    }

    #[test]
    fn step_spec_resolves_retries() {
        let mut s = spec(2, true);
        s.steps[1].type_ = StepType::ManualIntervention;
        s.steps[1].actions.clear();
        s.steps[0].retries = Some(RetryPolicy {
            limit: 1,
            ..Default::default()
        });
        let first = step_spec(&s, 0).unwrap();
        assert_eq!(first.retries.unwrap().limit, 1);
        assert!(first.guided_failure);
        assert_eq!(step_spec(&s, 1).unwrap().retries, None);
        s.steps[0].retries = None;
        assert_eq!(
            step_spec(&s, 0).unwrap().retries,
            Some(RetryPolicy::default())
        );
        assert!(step_spec(&s, 9).is_none());
    }
}
