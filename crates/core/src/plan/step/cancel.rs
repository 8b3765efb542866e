//! A cancel handed to the Step (`stepwise.dev/cancel` on it): the running
//! attempt's Job is deleted, the attempt, its action and the step fail with
//! reason `Cancelled`, and nothing else starts. The annotation stays on the
//! Step as the durable record, so every later reconcile (after a restart,
//! a status wipe) plans the same cancel and never creates a Job again.

use super::{Planner, Verdict};
use crate::api::{ActionPhase, ActionStatus, Outcome, Phase, StepStatus};
use crate::plan::EventReason;
use crate::plan::PlannedEvent;
use crate::reason::FailureReason;

/// The reason of the step's (and the release's) conditions once cancelled.
pub const REASON_CANCELLED: &str = "Cancelled";

/// Whether the step is to be cancelled: asked for, and not finished before
/// the cancel arrived (a finished step is never changed, except one that the
/// cancel itself failed).
pub fn applies(cancel: Option<&str>, previous: &StepStatus) -> bool {
    cancel.is_some() && (!previous.phase.is_some_and(Phase::is_terminal) || was_cancelled(previous))
}

fn was_cancelled(previous: &StepStatus) -> bool {
    previous
        .conditions
        .iter()
        .any(|c| c.reason == REASON_CANCELLED)
}

impl Planner<'_, '_> {
    /// Fails the running (or waiting) action with `Cancelled` and lists the
    /// Jobs still running to delete.
    pub(super) fn cancel(&mut self, actions: &mut [ActionStatus]) -> (Verdict, Vec<String>) {
        let mut delete = Vec::new();
        let mut current = None;
        for (i, action) in actions.iter_mut().enumerate() {
            let before = self.previous_action(&action.name);
            for attempt in action.attempts.iter_mut() {
                let was =
                    before.and_then(|b| b.attempts.iter().find(|a| a.number == attempt.number));
                let cancelled_before = was.is_some_and(|a| {
                    a.reason.as_deref() == Some(FailureReason::Cancelled.as_str())
                });
                if attempt.outcome != Outcome::Running && !cancelled_before {
                    continue;
                }
                if !attempt.job.is_empty() {
                    delete.push(attempt.job.clone());
                }
                match was.filter(|_| cancelled_before) {
                    // Recorded as cancelled already: kept as it was written.
                    Some(was) => *attempt = was.clone(),
                    None => {
                        attempt.outcome = Outcome::Failed;
                        attempt.reason = Some(FailureReason::Cancelled.as_str().to_string());
                        attempt.exit_code = None;
                        attempt.failure_seen_at = None;
                        attempt.message = Some("cancelled: its Job was deleted".to_string());
                        attempt.finished_at = Some(self.now);
                    }
                }
                current.get_or_insert(i);
            }
            let open = !matches!(action.phase, ActionPhase::Succeeded | ActionPhase::Ignored);
            if open && current.is_none_or(|c| c == i) {
                action.phase = ActionPhase::Failed;
                action.next_attempt_at = None;
                current.get_or_insert(i);
            }
        }
        if self.obs.decision_annotation.is_some() {
            self.ignore_decision_annotation();
        }
        let message = match current.and_then(|i| actions.get(i)) {
            Some(a) => format!("cancelled (stepwise.dev/cancel) during action {}", a.name),
            None => "cancelled (stepwise.dev/cancel)".to_string(),
        };
        if !was_cancelled(&self.obs.previous) {
            self.events.push(PlannedEvent::warning(
                EventReason::Cancelled,
                message.clone(),
            ));
        }
        let verdict = Verdict::new(Phase::Failed, REASON_CANCELLED, message, current);
        (verdict, delete)
    }

    fn previous_action(&self, name: &str) -> Option<&ActionStatus> {
        self.obs.previous.actions.iter().find(|a| a.name == name)
    }
}
