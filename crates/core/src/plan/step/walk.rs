//! The Run step's walk: its actions in order, each latest attempt read
//! against the retry policy and the recorded decisions, until one action
//! decides the step (the rows of the state table in the parent module).

use super::messages;
use super::{Planner, Verdict};
use crate::api::{
    ANNOTATION_DECISION, ActionPhase, ActionStatus, AttemptStatus, Decision, DecisionRecord,
    Outcome, Phase, RetryPolicy,
};
use crate::plan::{EventReason, PlannedEvent};
use crate::retry;
use jiff::Timestamp;

/// The decision annotation as read, and what it parses to.
type Annotated<'a> = Option<(&'a str, Option<Decision>)>;

impl Planner<'_, '_> {
    pub(super) fn walk(&mut self, actions: &mut [ActionStatus]) -> Verdict {
        let decision = self
            .obs
            .decision_annotation
            .map(|v| (v, Decision::parse(v)));
        let total = actions.len();
        for (i, action) in actions.iter_mut().enumerate() {
            if let Some(v) = self.walk_action(i, total, action, decision) {
                return v;
            }
        }
        Verdict::new(
            Phase::Succeeded,
            "Succeeded",
            messages::all_done(total),
            None,
        )
    }

    /// The step's verdict if this action decides it; `None` when the action
    /// is done and the walk goes on.
    fn walk_action(
        &mut self,
        i: usize,
        total: usize,
        action: &mut ActionStatus,
        decision: Annotated<'_>,
    ) -> Option<Verdict> {
        let name = action.name.clone();
        if self.decided(&name, Decision::Ignore).is_some() {
            action.phase = ActionPhase::Ignored;
            if decision.is_some() && self.answered_last(action) {
                // The recorded ignore's annotation, still there after a crash.
                self.remove(ANNOTATION_DECISION);
            }
            return None;
        }
        // A running attempt past its start timeout fails here, then
        // reads as any failed attempt below.
        self.start_timeout(i, action);
        let Some(last) = action.attempts.last().cloned() else {
            return Some(self.start(action, i, 1));
        };
        match last.outcome {
            Outcome::Running => {
                action.phase = ActionPhase::Running;
                let head = format!("action {name} ({}/{total})", i + 1);
                let v = self.running(&name, head, &last);
                Some(Verdict {
                    current: Some(i),
                    ..v
                })
            }
            Outcome::Succeeded => {
                action.phase = ActionPhase::Succeeded;
                None
            }
            Outcome::Failed => self.after_failure(i, action, &last, decision),
        }
    }

    /// The last attempt failed: retry, act on a recorded decision, fail the
    /// step, or wait for a decision.
    fn after_failure(
        &mut self,
        i: usize,
        action: &mut ActionStatus,
        last: &AttemptStatus,
        decision: Annotated<'_>,
    ) -> Option<Verdict> {
        let (name, k) = (action.name.clone(), last.number);
        let policy = self.spec.retries.as_ref();
        // An attempt a person asked for is one more attempt, not a new
        // round of automatic retries: if it fails, ask again.
        let allowed = if k > 1 && self.answer_for(&name, k - 1) == Some(Decision::Retry) {
            k
        } else {
            retry::automatic_attempts(policy, last)
        };
        if let (true, Some(policy)) = (k < allowed, policy) {
            return Some(self.retry(i, action, last, policy, allowed));
        }
        if let Some(d) = self.answer_for(&name, k) {
            return self.answered(i, action, last, d, decision.is_some());
        }
        action.phase = ActionPhase::Failed;
        if !self.spec.guided_failure {
            let reason = if k > 1 {
                "RetriesExhausted"
            } else {
                "ActionFailed"
            };
            let msg = messages::failed(&name, last);
            return Some(Verdict::new(Phase::Failed, reason, msg, Some(i)));
        }
        action.phase = ActionPhase::WaitingForDecision;
        Some(self.guided(i, action, last, decision))
    }

    /// Retries are left: start the next attempt once it is due, else wait.
    fn retry(
        &mut self,
        i: usize,
        action: &mut ActionStatus,
        last: &AttemptStatus,
        policy: &RetryPolicy,
        allowed: u32,
    ) -> Verdict {
        let (name, k) = (action.name.clone(), last.number);
        let due = retry::due(policy, last, self.obs.seed, &name, self.now);
        if self.now >= due {
            return self.start(action, i, k + 1);
        }
        action.phase = ActionPhase::Retrying;
        action.next_attempt_at = Some(due);
        self.requeue_at = Some(due);
        if self
            .obs
            .previous
            .actions
            .iter()
            .all(|a| a.name != name || a.next_attempt_at != Some(due))
        {
            let note = messages::retry_scheduled(&name, k + 1, due);
            self.events
                .push(PlannedEvent::normal(EventReason::RetryScheduled, note).about(&last.job));
        }
        let msg = messages::retrying(last, allowed, due);
        let mut v = Verdict::new(Phase::Retrying, "Retrying", msg, Some(i));
        v.next_attempt_at = Some(due);
        v
    }

    /// A decision is recorded for this failure: act on it once its
    /// annotation is gone (`annotated`: still there, remove it first).
    fn answered(
        &mut self,
        i: usize,
        action: &mut ActionStatus,
        last: &AttemptStatus,
        d: Decision,
        annotated: bool,
    ) -> Option<Verdict> {
        if annotated {
            self.remove(ANNOTATION_DECISION);
            return Some(recorded(d, &action.name, i));
        }
        match d {
            Decision::Retry => Some(self.start(action, i, last.number + 1)),
            Decision::Abort => {
                action.phase = ActionPhase::Failed;
                let msg = messages::aborted(&action.name, last);
                Some(Verdict::new(Phase::Failed, "Aborted", msg, Some(i)))
            }
            // Ignore was handled at the top of the walk.
            Decision::Ignore => None,
        }
    }

    /// Out of retries in guided failure: record a valid annotation, or the
    /// default once the decision deadline passed, or wait (until it).
    fn guided(
        &mut self,
        i: usize,
        action: &ActionStatus,
        last: &AttemptStatus,
        decision: Annotated<'_>,
    ) -> Verdict {
        let (name, k) = (action.name.clone(), last.number);
        let deadline = self.decision_deadline(last);
        let due = deadline.is_some_and(|at| self.now >= at);
        match decision {
            Some((_, Some(d))) => {
                self.decisions.push(DecisionRecord {
                    action: name.clone(),
                    attempt: k,
                    decision: d,
                    decided_at: self.now,
                    by: self.obs.decided_by.map(String::from),
                });
                self.remove(ANNOTATION_DECISION);
                self.requeue_now = true;
                let note = messages::decision_applied(d, &name, k);
                self.events.push(
                    PlannedEvent::normal(EventReason::DecisionApplied, note).about(&last.job),
                );
                return recorded(d, &name, i);
            }
            // An unknown value is no decision: the deadline still applies.
            Some((raw, None)) if !due => {
                let msg = messages::unknown_decision(&name, last, raw);
                return self.waiting(msg, i, deadline);
            }
            _ if due => {
                let d = self.time_out_decision(&name, last);
                return recorded(d, &name, i);
            }
            _ => {}
        }
        if self.obs.previous.phase != Some(Phase::WaitingForDecision) {
            let note = messages::guided_failure(&name, k);
            self.events
                .push(PlannedEvent::warning(EventReason::GuidedFailure, note).about(&last.job));
        }
        self.waiting(messages::waiting_for_decision(&name, last), i, deadline)
    }

    /// Waiting in guided failure for a decision, until `deadline` if any.
    fn waiting(&mut self, mut msg: String, i: usize, deadline: Option<Timestamp>) -> Verdict {
        if let (Some(at), Some(t)) = (deadline, self.spec.guided_failure_timeout) {
            msg.push_str(&messages::unless_decided(t.decision.as_str(), at));
            self.requeue_at = Some(at);
        }
        let mut v = Verdict::new(Phase::WaitingForDecision, "GuidedFailure", msg, Some(i));
        v.waiting_for_decision = true;
        v.decision_deadline = deadline;
        v
    }

    pub(super) fn answer_for(&self, action: &str, attempt: u32) -> Option<Decision> {
        self.decisions
            .iter()
            .rev()
            .find(|d| d.action == action && d.attempt == attempt)
            .map(|d| d.decision)
    }

    fn answered_last(&self, action: &ActionStatus) -> bool {
        action
            .attempts
            .last()
            .is_some_and(|a| self.answer_for(&action.name, a.number).is_some())
    }

    pub(super) fn decided(&self, action: &str, decision: Decision) -> Option<&DecisionRecord> {
        self.decisions
            .iter()
            .find(|d| d.action == action && d.decision == decision)
    }
}

/// A decision recorded, to be applied on the next reconcile.
fn recorded(d: Decision, name: &str, i: usize) -> Verdict {
    let msg = messages::decision_recorded(d, name);
    Verdict::new(Phase::WaitingForDecision, "DecisionRecorded", msg, Some(i))
}
