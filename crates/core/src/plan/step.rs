//! What a Step does next.
//!
//! The Step's Jobs are the source of truth; its status adds only what Jobs
//! cannot say (when the operator first saw a failure, which decisions a person
//! made). The actions are walked in order; the first one that is not done
//! decides the step:
//!
//! | action's latest attempt            | condition                               | result                                                  |
//! |------------------------------------|-----------------------------------------|---------------------------------------------------------|
//! | none                               |                                         | create attempt 1; Running                               |
//! | Running                            | its Job exists                          | Running, nothing to do                                  |
//! | Running                            | its Job is gone                         | attempt Failed (JobDeleted), then as Failed below       |
//! | Running                            | cannot start, or no pod; now < start + startTimeout | Running; requeue at start + startTimeout |
//! | Running                            | cannot start, or no pod; now >= start + startTimeout | attempt Failed (the cause, e.g. ImagePullBackOff, else StartTimeout), its Job annotated and suspended; then as Failed below |
//! | Succeeded                          |                                         | next action (all done: step Succeeded)                  |
//! | Failed k                           | retryable, k < 1 + limit, now < due     | Retrying; `nextAttemptAt` = first seen + delay; requeue |
//! | Failed k                           | retryable, k < 1 + limit, now >= due    | create attempt k + 1; Running                           |
//! | Failed k                           | recorded decision Retry for k, no annotation | create attempt k + 1; Running                      |
//! | Failed k                           | k was run by a Retry decision on k - 1  | no automatic retry, whatever `retryOn` says: as exhausted |
//! | Failed k                           | recorded decision Ignore for k          | action Ignored; next action                             |
//! | Failed k                           | recorded decision Abort for k           | step Failed (Aborted)                                   |
//! | Failed k                           | exhausted, guided failure off           | step Failed (RetriesExhausted)                          |
//! | Failed k                           | exhausted, guided, no decision          | WaitingForDecision, GuidedFailure=True                  |
//! | Failed k                           | exhausted, guided, valid annotation     | record decision for k, remove annotation, requeue       |
//! | Failed k                           | exhausted, guided, unknown annotation   | WaitingForDecision, message names the bad value         |
//! | Failed k                           | exhausted, guided, no valid decision, `guidedFailureTimeout`, now < seen + seconds | WaitingForDecision; `decisionDeadline` = seen + seconds; requeue then |
//! | Failed k                           | exhausted, guided, no valid decision, now >= deadline | record the default decision for k `by: timeout`; Warning `DecisionTimedOut`; requeue |
//! | any                                | decision annotation, nothing to decide  | remove annotation, Warning event                        |
//! | any (Run step)                     | approval annotation                     | remove it, Warning `ApprovalIgnored`                    |
//! | attempt k to create                | a Job not owned by this Step has its name | no Job; Running, message names the Job and its owner; Warning `JobNameTaken`; look again soon |
//! | attempt k to create                | its create was refused for now (403, 409, 429, 5xx, timeout) | no Job; Running, message quotes the API server; Warning `JobCreateFailed`; try again at the backoff's time |
//!
//! A recorded decision is acted on only once its annotation is gone, and an
//! annotation met while the failure already has a recorded decision is removed
//! unread: a crash between recording and removing can neither lose a decision
//! nor apply it twice.
//!
//! ManualIntervention steps: recorded approval decides; else a valid
//! `stepwise.dev/approval` annotation is recorded (approved: Succeeded,
//! rejected: Failed) and removed; else, with `approvalTimeout` and now at or
//! past creationTimestamp + seconds, the default is recorded `by: timeout`
//! (Warning `DecisionTimedOut`); else WaitingForApproval, with
//! `decisionDeadline` and a requeue at it when there is a timeout.

use std::collections::BTreeMap;

use jiff::Timestamp;

mod bounds;
mod cancel;
mod deadline;
mod gates;
mod merge;
mod messages;
mod observation;
mod records;
mod start;
mod walk;

pub use bounds::{ATTEMPTS_KEPT, DECISIONS_KEPT, MESSAGE_CAP, capped};
pub use cancel::REASON_CANCELLED;
pub use deadline::deadline;
pub use observation::{ForeignJob, JobState, JobView, Refused, StepObservation};
pub use records::{JobDecision, RecordDecision};
pub use start::{REASON_CANNOT_START, REASON_START_TIMEOUT, StartProblem, Waiting};

use super::{EventReason, Finished, Owner, PlannedEvent, clock};
use crate::api::{
    ANNOTATION_APPROVAL, ANNOTATION_DECIDED_BY, ANNOTATION_DECISION, ActionPhase, ActionStatus,
    Approval, ApprovalRecord, AttemptStatus, DecisionRecord, Outcome, Phase, StepSpec, StepStatus,
    StepType,
};
use crate::reason::FailureReason;
use crate::status::{GuidedFailure, Health, conditions};
pub use crate::view::StartFailure;

/// An attempt is known by its action's name and its 1-based number.
pub type AttemptKey = (String, u32);

/// Ask to create the Job of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateJob {
    pub action: usize,
    pub attempt: u32,
}

impl StepPlan {
    pub fn removes(&self, key: &str) -> bool {
        self.remove_annotations.contains(&key)
    }
}

/// What to do, in the order the controller applies it: create the Job, write
/// the status, remove the annotation, publish the events, requeue.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPlan {
    pub create: Option<CreateJob>,
    pub status: StepStatus,
    /// Annotations to remove, each only if it still holds the value read.
    pub remove_annotations: Vec<&'static str>,
    pub events: Vec<PlannedEvent>,
    /// Wake up at this time even if nothing changes (a retry's due time).
    pub requeue_at: Option<Timestamp>,
    /// Reconcile again right away (a decision was recorded, its effect follows).
    pub requeue_now: bool,
    /// Decisions to record on their failed attempt's Job (after the status write).
    pub record_decisions: Vec<RecordDecision>,
    /// The approval to record on the Step (after the status write).
    pub record_approval: Option<ApprovalRecord>,
    /// Jobs of attempts the start timeout failed, to annotate with their
    /// outcome and suspend (before the status write).
    pub stop_jobs: Vec<StopJob>,
    /// Jobs of a cancelled step to delete (foreground, so their pods go
    /// first), before the status write.
    pub delete_jobs: Vec<String>,
}

/// A stuck Job to stop, and the outcome to keep on it.
#[derive(Clone, Debug, PartialEq)]
pub struct StopJob {
    pub name: String,
    pub record: StartFailure,
}

pub fn plan(spec: &StepSpec, obs: &StepObservation<'_>, now: Timestamp) -> StepPlan {
    let mut p = Planner {
        spec,
        obs,
        now,
        events: Vec::new(),
        create: None,
        remove_annotations: Vec::new(),
        requeue_at: None,
        requeue_now: false,
        decisions: records::merged(
            &obs.previous.decisions,
            obs.previous.earlier_decisions.as_ref(),
            &obs.jobs,
        ),
        approval: obs
            .previous
            .approval
            .clone()
            .or_else(|| obs.recorded_approval.clone()),
    };
    let mut actions = p.merge_attempts();
    if cancel::applies(obs.cancel_annotation, &obs.previous) {
        let (verdict, delete) = p.cancel(&mut actions);
        let mut planned = p.finish(actions, verdict);
        planned.delete_jobs = delete;
        return planned;
    }
    let verdict = match spec.type_ {
        StepType::Run => {
            let v = p.walk(&mut actions);
            // Nothing to decide right now: the annotation is stale or early.
            if obs.decision_annotation.is_some()
                && !p.remove_annotations.contains(&ANNOTATION_DECISION)
                && !v.waiting_for_decision
            {
                p.ignore_decision_annotation();
            }
            if obs.approval_annotation.is_some() {
                p.ignore_approval_annotation();
            }
            v
        }
        StepType::ManualIntervention => p.manual(),
    };
    p.finish(actions, verdict)
}

/// Where the step stands after the walk.
struct Verdict {
    phase: Phase,
    reason: String,
    message: String,
    current: Option<usize>,
    next_attempt_at: Option<Timestamp>,
    waiting_for_decision: bool,
    /// While waiting for a decision or approval with a timeout: when its default applies.
    decision_deadline: Option<Timestamp>,
}

impl Verdict {
    fn new(phase: Phase, reason: &str, message: String, current: Option<usize>) -> Self {
        Self {
            phase,
            reason: reason.to_string(),
            message,
            current,
            next_attempt_at: None,
            waiting_for_decision: false,
            decision_deadline: None,
        }
    }
}

struct Planner<'s, 'o> {
    spec: &'s StepSpec,
    obs: &'o StepObservation<'o>,
    now: Timestamp,
    events: Vec<PlannedEvent>,
    create: Option<CreateJob>,
    remove_annotations: Vec<&'static str>,
    requeue_at: Option<Timestamp>,
    requeue_now: bool,
    decisions: Vec<DecisionRecord>,
    approval: Option<ApprovalRecord>,
}

impl Planner<'_, '_> {
    fn finish(mut self, mut actions: Vec<ActionStatus>, mut v: Verdict) -> StepPlan {
        v.message = bounds::capped(v.message);
        let before = self.obs.previous.phase;
        self.events.extend(PlannedEvent::finished(
            Finished::Step,
            v.phase,
            before,
            &v.message,
        ));
        let previous = &self.obs.previous;
        let idle = if self.decisions.is_empty() {
            "NotTriggered"
        } else {
            "DecisionApplied"
        };
        let guided_failure = self
            .spec
            .guided_failure
            .then(|| GuidedFailure::of(v.waiting_for_decision, idle, &v.message));
        let health = Health {
            phase: v.phase,
            reason: v.reason,
            message: v.message.clone(),
            guided_failure,
        };
        self.remove_decided_by();
        // Every decision on its Job before the list is trimmed.
        let record_decisions = records::unrecorded(&self.decisions, &self.obs.jobs);
        let stop_jobs = start::stuck_jobs(&actions, &self.obs.jobs);
        actions.iter_mut().for_each(bounds::trim_attempts);
        let mut earlier_decisions = previous.earlier_decisions.clone();
        bounds::trim_decisions(&mut self.decisions, &mut earlier_decisions, &actions);
        let current = v.current.and_then(|i| actions.get(i));
        let status = StepStatus {
            phase: Some(v.phase),
            observed_generation: self.obs.generation,
            conditions: conditions(&health, &previous.conditions, self.obs.generation, self.now),
            current_action: current.map(|a| a.name.clone()),
            attempt: current.and_then(|a| a.attempts.last()).map(|a| a.number),
            next_attempt_at: v.next_attempt_at,
            message: Some(v.message),
            decisions: self.decisions,
            earlier_decisions,
            approval: self.approval,
            decision_deadline: v.decision_deadline,
            actions,
        };
        let record_approval = records::unrecorded_approval(
            status.approval.as_ref(),
            self.obs.recorded_approval.as_ref(),
        );
        StepPlan {
            create: self.create,
            status,
            remove_annotations: self.remove_annotations,
            events: self.events,
            requeue_at: self.requeue_at,
            requeue_now: self.requeue_now,
            record_decisions,
            record_approval,
            stop_jobs,
            delete_jobs: Vec::new(),
        }
    }
}

impl Planner<'_, '_> {
    /// `decided-by` goes with the decision or approval it names: once every
    /// such annotation on the Step is removed, it is removed too.
    fn remove_decided_by(&mut self) {
        let present = [
            (ANNOTATION_DECISION, self.obs.decision_annotation),
            (ANNOTATION_APPROVAL, self.obs.approval_annotation),
        ];
        let removed_one = present
            .iter()
            .any(|(k, v)| v.is_some() && self.remove_annotations.contains(k));
        let kept_one = present
            .iter()
            .any(|(k, v)| v.is_some() && !self.remove_annotations.contains(k));
        if self.obs.decided_by.is_some() && removed_one && !kept_one {
            self.remove_annotations.push(ANNOTATION_DECIDED_BY);
        }
    }
}

/// How soon to look again at a Job name held by a foreign Job (its
/// deletion wakes the Step only when it carries this Step's label).
const FOREIGN_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);

/// "exit code 1 (Error)" or the reason and message when no code is known.
pub fn describe(a: &AttemptStatus) -> String {
    let reason = a.reason.as_deref().unwrap_or("Failed");
    match (a.exit_code, a.message.as_deref()) {
        (Some(code), _) => format!("exit code {code} ({reason})"),
        (None, Some(m)) if !m.is_empty() => format!("{reason}: {m}"),
        _ => reason.to_string(),
    }
}

/// Pod and Job times have whole seconds: never report an end before the start.
fn not_before(t: Timestamp, start: Option<Timestamp>) -> Option<Timestamp> {
    Some(start.map_or(t, |s| t.max(s)))
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests;
