//! Decision deadlines (`guidedFailureTimeout`, `approvalTimeout`): a pure
//! function of recorded times, so a restarted operator finds the same
//! deadline. A guided failure waits from when the operator first saw the
//! failure that exhausted the retries (`failureSeenAt`, in status); a
//! ManualIntervention step from its creation (`creationTimestamp`). Before
//! the deadline the step requeues at it; at or after it the default is
//! recorded exactly as a person's annotation would be, `by: timeout`.

use jiff::{SignedDuration, Timestamp};

use super::{Planner, messages};
use crate::api::{
    Approval, ApprovalRecord, AttemptStatus, DECIDED_BY_TIMEOUT, Decision, DecisionRecord,
};
use crate::plan::{EventReason, PlannedEvent};

/// When the default applies: `since` plus the timeout.
pub fn deadline(since: Timestamp, after: SignedDuration) -> Timestamp {
    since.saturating_add(after).unwrap_or(since)
}

impl Planner<'_, '_> {
    /// The guided-failure deadline of the failed attempt `last`, if any.
    pub(super) fn decision_deadline(&self, last: &AttemptStatus) -> Option<Timestamp> {
        let t = self.spec.guided_failure_timeout?;
        Some(deadline(
            last.failure_seen_at.unwrap_or(self.now),
            t.after(),
        ))
    }

    /// The deadline has passed: the default decision for `last`, recorded as
    /// a person's would be (the caller reports it recorded and requeues).
    pub(super) fn time_out_decision(&mut self, name: &str, last: &AttemptStatus) -> Decision {
        let d = self
            .spec
            .guided_failure_timeout
            .map_or(Decision::Abort, |t| t.decision);
        self.decisions.push(DecisionRecord {
            action: name.to_string(),
            attempt: last.number,
            decision: d,
            decided_at: self.now,
            by: Some(DECIDED_BY_TIMEOUT.into()),
        });
        self.requeue_now = true;
        let seconds = self.spec.guided_failure_timeout.map_or(0, |t| t.seconds);
        let note = messages::decision_timed_out(d, name, last.number, seconds);
        self.events
            .push(PlannedEvent::warning(EventReason::DecisionTimedOut, note).about(&last.job));
        let note = messages::decision_applied(d, name, last.number);
        self.events
            .push(PlannedEvent::normal(EventReason::DecisionApplied, note).about(&last.job));
        d
    }

    /// A ManualIntervention step with no answer yet: apply the default once
    /// its deadline passed (returns `None`), else the deadline to wait for.
    pub(super) fn approval_deadline(&mut self) -> Option<Timestamp> {
        let t = self.spec.approval_timeout?;
        if self.approval.is_some() {
            return None;
        }
        // Without a creation time (never on the cluster) the deadline written
        // last stands, so waiting does not push it on.
        let at = match self.obs.created_at {
            Some(created) => deadline(created, t.after()),
            None => self
                .obs
                .previous
                .decision_deadline
                .unwrap_or_else(|| deadline(self.now, t.after())),
        };
        if self.now < at {
            self.requeue_at = Some(at);
            return Some(at);
        }
        self.approval = Some(ApprovalRecord {
            approval: t.decision,
            decided_at: self.now,
            by: Some(DECIDED_BY_TIMEOUT.into()),
        });
        let note = messages::approval_timed_out(t.decision, t.seconds);
        self.events
            .push(PlannedEvent::warning(EventReason::DecisionTimedOut, note));
        let (reason, word) = match t.decision {
            Approval::Approved => (EventReason::Approved, "approved"),
            Approval::Rejected => (EventReason::Rejected, "rejected"),
        };
        self.events.push(PlannedEvent::normal(
            reason,
            format!("manual intervention {word} by timeout"),
        ));
        None
    }
}
