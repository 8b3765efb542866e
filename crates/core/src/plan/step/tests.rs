//! One test per row of the state table, then properties over random scripts.

use super::*;
use crate::api::{Action, RetryOn, RetryPolicy, condition_types as ct};
use crate::status::is_true;
use jiff::SignedDuration;
use proptest::prelude::*;

const STEP: &str = "rel-migrate";

fn t(secs: f64) -> Timestamp {
    Timestamp::from_millisecond((secs * 1000.0) as i64 + 1_800_000_000_000).unwrap()
}

fn spec(actions: &[&str], retries: Option<RetryPolicy>, guided: bool) -> StepSpec {
    StepSpec {
        type_: StepType::Run,
        instructions: None,
        retries,
        guided_failure: guided,
        actions: actions
            .iter()
            .map(|n| Action {
                name: n.to_string(),
                template: Default::default(),
                timeout_seconds: None,
                start_timeout_seconds: None,
            })
            .collect(),
        approvers: None,
        guided_failure_timeout: None,
        approval_timeout: None,
    }
}

fn retries(limit: u32, delay: u32) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        limit,
        delay_seconds: delay,
        ..Default::default()
    })
}

fn failed(code: i32) -> JobState {
    JobState::Failed {
        finished_at: None,
        reason: FailureReason::Error,
        exit_code: Some(code),
        message: String::new(),
        seen_at: None,
    }
}

fn ok() -> JobState {
    JobState::Succeeded { finished_at: None }
}

/// A small world: a Step, its Jobs, and a clock. `step` plans once and
/// applies the plan the way the controller does.
struct World {
    spec: StepSpec,
    status: StepStatus,
    jobs: BTreeMap<AttemptKey, JobView>,
    decision: Option<String>,
    approval: Option<String>,
    decided_by: Option<String>,
    created: Vec<(String, u32, Timestamp)>,
    foreign: BTreeMap<AttemptKey, ForeignJob>,
    refused: Option<Refused>,
    recorded_approval: Option<ApprovalRecord>,
    created_at: Option<Timestamp>,
    cancel: Option<String>,
}

impl World {
    fn new(spec: StepSpec) -> Self {
        Self {
            spec,
            status: StepStatus::default(),
            jobs: BTreeMap::new(),
            decision: None,
            approval: None,
            decided_by: None,
            created: Vec::new(),
            foreign: BTreeMap::new(),
            refused: None,
            recorded_approval: None,
            created_at: None,
            cancel: None,
        }
    }

    fn plan(&self, now: Timestamp) -> StepPlan {
        let obs = StepObservation {
            step_name: STEP,
            generation: Some(1),
            seed: "uid-1",
            previous: self.status.clone(),
            jobs: self.jobs.clone(),
            decision_annotation: self.decision.as_deref(),
            approval_annotation: self.approval.as_deref(),
            decided_by: self.decided_by.as_deref(),
            cancel_annotation: self.cancel.as_deref(),
            foreign: self.foreign.clone(),
            refused: self.refused.clone(),
            recorded_approval: self.recorded_approval.clone(),
            created_at: self.created_at,
        };
        plan(&self.spec, &obs, now)
    }

    fn step(&mut self, now: Timestamp) -> StepPlan {
        let p = self.plan(now);
        if let Some(c) = p.create {
            let action = self.spec.actions[c.action].name.clone();
            let key = (action.clone(), c.attempt);
            assert!(!self.jobs.contains_key(&key), "duplicate Job for {key:?}");
            self.jobs.insert(
                key,
                JobView {
                    name: crate::jobs::job_name(STEP, &action, c.attempt),
                    created_at: Some(now),
                    state: JobState::Running,
                    decision: None,
                    waiting: None,
                    no_pod: false,
                    start_failure_recorded: false,
                },
            );
            self.created.push((action, c.attempt, now));
        }
        self.status = p.status.clone();
        for r in &p.record_decisions {
            let job = self
                .jobs
                .values_mut()
                .find(|j| j.name == r.job)
                .expect("recorded on an existing Job");
            job.decision = Some(r.record.clone());
        }
        if let Some(a) = &p.record_approval {
            self.recorded_approval = Some(a.clone());
        }
        if p.removes(ANNOTATION_DECISION) {
            self.decision = None;
        }
        if p.removes(ANNOTATION_APPROVAL) {
            self.approval = None;
        }
        if p.removes(ANNOTATION_DECIDED_BY) {
            self.decided_by = None;
        }
        p
    }

    fn finish(&mut self, action: &str, attempt: u32, state: JobState) {
        self.jobs
            .get_mut(&(action.to_string(), attempt))
            .expect("job exists")
            .state = state;
    }

    fn phase(&self) -> Phase {
        self.status.phase.unwrap()
    }
}

// --- rows of the table -------------------------------------------------------

#[test]
fn no_attempt_yet_creates_attempt_one() {
    let mut w = World::new(spec(&["a", "b"], None, false));
    let p = w.step(t(0.0));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 1
        })
    );
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.status.current_action.as_deref(), Some("a"));
    assert_eq!(w.status.attempt, Some(1));
    assert_eq!(w.status.actions[0].attempts[0].job, "rel-migrate-a-1");
    // The Job's creation is the attempt's record: no Event of its own.
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert!(is_true(&w.status.conditions, ct::RECONCILING));
}

#[test]
fn running_job_means_nothing_to_do_and_no_change() {
    let mut w = World::new(spec(&["a"], None, false));
    w.step(t(0.0));
    let before = w.status.clone();
    let p = w.step(t(5.0));
    assert_eq!(p.create, None);
    assert_eq!(
        p.status, before,
        "an unchanged world must not rewrite status"
    );
    assert!(p.events.is_empty());
}

#[test]
fn success_moves_to_next_action_then_step_succeeds() {
    let mut w = World::new(spec(&["a", "b"], None, false));
    w.step(t(0.0));
    w.finish("a", 1, ok());
    let p = w.step(t(1.0));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 1,
            attempt: 1
        })
    );
    assert_eq!(w.status.actions[0].phase, ActionPhase::Succeeded);
    w.finish("b", 1, ok());
    let p = w.step(t(2.0));
    assert_eq!(p.create, None);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert!(is_true(&w.status.conditions, ct::READY));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::StepSucceeded)
    );
}

#[test]
fn failure_schedules_retry_of_that_action_only() {
    let mut w = World::new(spec(&["a", "b"], retries(3, 15), false));
    w.step(t(0.0));
    w.finish("a", 1, ok());
    w.step(t(1.0));
    w.finish("b", 1, failed(1));
    let p = w.step(t(2.5));
    assert_eq!(p.create, None);
    assert_eq!(w.phase(), Phase::Retrying);
    assert_eq!(p.requeue_at, Some(t(17.5)));
    assert_eq!(w.status.next_attempt_at, Some(t(17.5)));
    assert_eq!(w.status.actions[1].next_attempt_at, Some(t(17.5)));
    assert_eq!(
        w.status.actions[1].attempts[0].failure_seen_at,
        Some(t(2.5))
    );
    let msg = w.status.message.clone().unwrap();
    assert!(
        msg.contains("attempt 1 of 4 failed: exit code 1 (Error); retrying at"),
        "{msg}"
    );
    for reason in [EventReason::AttemptFailed, EventReason::RetryScheduled] {
        let e = p.events.iter().find(|e| e.reason == reason).unwrap();
        assert_eq!(
            e.related.as_deref(),
            Some(w.status.actions[1].attempts[0].job.as_str())
        );
    }
    // Reconciles before the due time change nothing.
    let p = w.step(t(17.499));
    assert_eq!(p.create, None);
    assert!(p.events.is_empty());
    // At the due time, only b is run again.
    let p = w.step(t(17.5));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 1,
            attempt: 2
        })
    );
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.status.attempt, Some(2));
    assert_eq!(w.created.iter().filter(|c| c.0 == "a").count(), 1);
}

#[test]
fn retry_delay_counts_from_when_the_watch_saw_the_failure() {
    let mut w = World::new(spec(&["a"], retries(3, 2), false));
    w.step(t(0.0));
    let mut seen = failed(1);
    if let JobState::Failed { seen_at, .. } = &mut seen {
        *seen_at = Some(t(1.0));
    }
    w.finish("a", 1, seen.clone());
    // The reconcile ran late; the schedule does not move.
    let p = w.step(t(1.4));
    assert_eq!(p.requeue_at, Some(t(3.0)));
    assert_eq!(
        w.status.actions[0].attempts[0].failure_seen_at,
        Some(t(1.0))
    );
    // A stamp from the future (clock skew between threads) is clamped to now.
    let mut w = World::new(spec(&["a"], retries(3, 2), false));
    w.step(t(0.0));
    if let JobState::Failed { seen_at, .. } = &mut seen {
        *seen_at = Some(t(9.0));
    }
    w.finish("a", 1, seen);
    let p = w.step(t(1.4));
    assert_eq!(p.requeue_at, Some(t(3.4)));
}

#[test]
fn deleted_running_job_is_a_failure_and_retried() {
    let mut w = World::new(spec(&["a"], retries(1, 2), false));
    w.step(t(0.0));
    w.jobs.clear();
    let p = w.step(t(1.0));
    let attempt = &w.status.actions[0].attempts[0];
    assert_eq!(attempt.reason.as_deref(), Some("JobDeleted"));
    assert_eq!(w.phase(), Phase::Retrying);
    assert_eq!(p.requeue_at, Some(t(3.0)));
}

#[test]
fn exhausted_without_guided_failure_fails_the_step() {
    let mut w = World::new(spec(&["a", "b"], retries(1, 0), false));
    w.step(t(0.0));
    w.finish("a", 1, failed(2));
    w.step(t(1.0));
    w.step(t(1.0)); // delay 0: attempt 2 now
    w.finish("a", 2, failed(2));
    let p = w.step(t(2.0));
    assert_eq!(w.phase(), Phase::Failed);
    assert!(is_true(&w.status.conditions, ct::STALLED));
    assert!(
        !w.status
            .conditions
            .iter()
            .any(|c| c.type_ == ct::GUIDED_FAILURE)
    );
    assert_eq!(
        w.status.message.as_deref(),
        Some("action a failed after 2 attempts: exit code 2 (Error)")
    );
    assert!(p.events.iter().any(|e| e.reason == EventReason::StepFailed));
    assert_eq!(w.status.conditions[0].reason, "RetriesExhausted");
    // Nothing after a final failure, ever.
    let p = w.step(t(100.0));
    assert_eq!(p.create, None);
    assert!(w.created.iter().all(|c| c.0 == "a"));
}

fn exhaust_guided() -> World {
    let mut w = World::new(spec(&["a", "b"], retries(0, 15), true));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    w
}

fn foreign_job(name: &str) -> ForeignJob {
    ForeignJob {
        name: name.into(),
        owner: Some(Owner {
            kind: "Step".into(),
            name: STEP.into(),
            uid: "uid-old".into(),
        }),
    }
}

mod cancel;
mod deadlines;
mod decided_by;
mod guided;
mod history;
mod properties;
mod start_timeout;
