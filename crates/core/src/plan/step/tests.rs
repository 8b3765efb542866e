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

#[test]
fn no_retries_condition_means_first_failure_fails() {
    for policy in [
        None,
        Some(RetryPolicy {
            enabled: false,
            ..Default::default()
        }),
    ] {
        let mut w = World::new(spec(&["a"], policy, false));
        w.step(t(0.0));
        w.finish("a", 1, failed(1));
        w.step(t(1.0));
        assert_eq!(w.phase(), Phase::Failed);
        assert_eq!(w.status.conditions[0].reason, "ActionFailed");
    }
}

#[test]
fn retry_on_skips_failures_that_do_not_match() {
    let policy = RetryPolicy {
        retry_on: Some(RetryOn {
            exit_codes: vec![75],
            reasons: vec![],
        }),
        ..Default::default()
    };
    let mut w = World::new(spec(&["a"], Some(policy), false));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    assert_eq!(w.phase(), Phase::Failed);
}

fn exhaust_guided() -> World {
    let mut w = World::new(spec(&["a", "b"], retries(0, 15), true));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    w
}

#[test]
fn exhausted_with_guided_failure_waits_for_a_decision() {
    let mut w = World::new(spec(&["a", "b"], retries(0, 15), true));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    let p = w.step(t(1.0));
    assert_eq!(w.phase(), Phase::WaitingForDecision);
    assert!(is_true(&w.status.conditions, ct::GUIDED_FAILURE));
    assert!(is_true(&w.status.conditions, ct::STALLED));
    let g = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::GUIDED_FAILURE)
        .unwrap();
    assert!(
        g.message
            .contains("action a failed after 1 attempt: exit code 1 (Error)"),
        "{}",
        g.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::GuidedFailure)
    );
    // Waiting is stable: no new event, no Job.
    let p = w.step(t(500.0));
    assert_eq!(p.create, None);
    assert!(p.events.is_empty());
}

#[test]
fn decision_retry_records_then_runs_one_more_attempt() {
    let mut w = exhaust_guided();
    w.decision = Some("retry".into());
    let p = w.step(t(2.0));
    assert_eq!(
        p.create, None,
        "the decision is recorded before it is acted on"
    );
    assert!(p.removes(ANNOTATION_DECISION));
    assert!(p.requeue_now);
    assert_eq!(w.status.decisions.len(), 1);
    assert_eq!(w.status.decisions[0].attempt, 1);
    assert_eq!(w.status.decisions[0].decided_at, t(2.0));
    let p = w.step(t(2.1));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 2
        })
    );
    // It fails again: wait for a decision again, no automatic retry.
    w.finish("a", 2, failed(1));
    w.step(t(3.0));
    assert_eq!(w.phase(), Phase::WaitingForDecision);
    // The second retry decision answers attempt 2 and succeeds.
    w.decision = Some("retry".into());
    w.step(t(4.0));
    w.step(t(4.0));
    w.finish("a", 3, ok());
    let p = w.step(t(5.0));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 1,
            attempt: 1
        })
    );
    let g = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::GUIDED_FAILURE)
        .unwrap();
    assert_eq!(
        (g.status.as_str(), g.reason.as_str()),
        ("False", "DecisionApplied")
    );
}

#[test]
fn decision_ignore_carries_on_with_next_action() {
    let mut w = exhaust_guided();
    w.decision = Some("ignore".into());
    w.step(t(2.0));
    let p = w.step(t(2.1));
    assert_eq!(w.status.actions[0].phase, ActionPhase::Ignored);
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 1,
            attempt: 1
        })
    );
    w.finish("b", 1, ok());
    w.step(t(3.0));
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn decision_abort_fails_with_reason_aborted() {
    let mut w = exhaust_guided();
    w.decision = Some("abort".into());
    w.step(t(2.0));
    let p = w.step(t(2.1));
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.status.conditions[0].reason, "Aborted");
    assert_eq!(p.create, None);
}

#[test]
fn unknown_decision_is_reported_and_ignored() {
    let mut w = exhaust_guided();
    w.decision = Some("yolo".into());
    let p = w.step(t(2.0));
    assert_eq!(p.create, None);
    assert!(p.remove_annotations.is_empty());
    assert_eq!(w.phase(), Phase::WaitingForDecision);
    assert!(
        w.status
            .message
            .clone()
            .unwrap()
            .contains("unknown decision \"yolo\" ignored")
    );
    assert!(w.status.decisions.is_empty());
}

#[test]
fn decision_annotation_left_after_a_crash_is_removed_not_reapplied() {
    let mut w = exhaust_guided();
    w.decision = Some("retry".into());
    let p = w.plan(t(2.0));
    // The status write landed; the annotation removal did not (crash).
    w.status = p.status;
    let p = w.step(t(3.0));
    assert_eq!(
        p.create, None,
        "never act while the annotation is still there"
    );
    assert!(p.removes(ANNOTATION_DECISION));
    assert_eq!(w.status.decisions.len(), 1, "not recorded twice");
    let p = w.step(t(3.1));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 2
        })
    );
}

#[test]
fn decision_annotation_when_nothing_to_decide_is_removed_with_a_warning() {
    let mut w = World::new(spec(&["a"], retries(3, 15), true));
    w.step(t(0.0));
    w.decision = Some("retry".into());
    let p = w.step(t(1.0));
    assert!(p.removes(ANNOTATION_DECISION));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::DecisionIgnored)
    );
    assert!(w.status.decisions.is_empty());
}

#[test]
fn adopts_a_job_created_before_a_lost_status_write() {
    let mut w = World::new(spec(&["a"], None, false));
    w.jobs.insert(
        ("a".into(), 1),
        JobView {
            name: "rel-migrate-a-1".into(),
            created_at: Some(t(0.0)),
            state: JobState::Running,
            decision: None,
            waiting: None,
            no_pod: false,
            start_failure_recorded: false,
        },
    );
    let p = w.step(t(1.0));
    assert_eq!(p.create, None);
    assert_eq!(w.status.actions[0].attempts[0].started_at, Some(t(0.0)));
    assert_eq!(w.phase(), Phase::Running);
}

#[test]
fn recorded_outcome_never_regresses_on_a_stale_cache() {
    let mut w = World::new(spec(&["a"], retries(1, 10), false));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    w.finish("a", 1, JobState::Running); // a cache that is behind
    let p = w.step(t(2.0));
    assert_eq!(w.phase(), Phase::Retrying);
    assert_eq!(p.requeue_at, Some(t(11.0)));
}

#[test]
fn schedule_survives_a_restart() {
    // A restarted operator has only the written status and the Jobs.
    let mut w = World::new(spec(&["a"], retries(2, 15), false));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    let mut restarted = World::new(w.spec.clone());
    restarted.status = w.status.clone();
    restarted.jobs = w.jobs.clone();
    let p = restarted.step(t(9.0));
    assert_eq!(p.create, None);
    assert_eq!(p.requeue_at, Some(t(16.0)));
    assert!(p.events.is_empty(), "nothing new happened");
}

#[test]
fn manual_intervention_waits_then_approved_or_rejected() {
    let mut s = spec(&[], None, false);
    s.type_ = StepType::ManualIntervention;
    s.instructions = Some("Check the dashboards".into());
    let mut w = World::new(s.clone());
    w.step(t(0.0));
    assert_eq!(w.phase(), Phase::WaitingForApproval);
    assert_eq!(
        w.status.message.as_deref(),
        Some("waiting for approval: Check the dashboards")
    );
    assert!(is_true(&w.status.conditions, ct::RECONCILING));
    w.approval = Some("maybe".into());
    w.step(t(1.0));
    assert_eq!(w.phase(), Phase::WaitingForApproval);
    assert!(
        w.status
            .message
            .clone()
            .unwrap()
            .contains("unknown approval")
    );
    w.approval = Some("approved".into());
    let p = w.step(t(2.0));
    assert!(p.removes(ANNOTATION_APPROVAL));
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status.approval.as_ref().unwrap().decided_at, t(2.0));

    let mut w = World::new(s);
    w.approval = Some("rejected".into());
    w.step(t(0.0));
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.status.conditions[0].reason, "Rejected");
    // A later annotation cannot undo a recorded answer, and says so.
    w.approval = Some("approved".into());
    let p = w.step(t(1.0));
    assert_eq!(w.phase(), Phase::Failed);
    assert!(p.removes(ANNOTATION_APPROVAL));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::ApprovalIgnored && e.warning)
    );
}

#[test]
fn backoff_jitter_and_cap_shape_the_schedule() {
    let policy = RetryPolicy {
        limit: 3,
        delay_seconds: 2,
        backoff_factor: Some(3.0),
        max_delay_seconds: Some(10),
        ..Default::default()
    };
    let mut w = World::new(spec(&["a"], Some(policy), false));
    let mut now = t(0.0);
    w.step(now);
    let mut waits = Vec::new();
    for k in 1..=3 {
        w.finish("a", k, failed(1));
        let p = w.step(now);
        let due = p.requeue_at.unwrap();
        waits.push(due.duration_since(now).as_secs());
        now = due;
        w.step(now);
    }
    assert_eq!(waits, vec![2, 6, 10]);
}

#[test]
fn a_retry_decision_runs_exactly_one_more_attempt_whatever_retry_on_says() {
    let policy = RetryPolicy {
        limit: 3,
        delay_seconds: 0,
        retry_on: Some(RetryOn {
            exit_codes: vec![75],
            reasons: vec![],
        }),
        ..Default::default()
    };
    let mut w = World::new(spec(&["a"], Some(policy), true));
    w.step(t(0.0));
    // Exit 1 is not retryable: wait for a decision.
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    assert_eq!(w.phase(), Phase::WaitingForDecision);
    w.decision = Some("retry".into());
    w.step(t(2.0));
    let p = w.step(t(2.1));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 2
        })
    );
    // Attempt 2 exits 75, which retryOn matches: still no automatic retry.
    w.finish("a", 2, failed(75));
    for later in [3.0, 4.0, 60.0] {
        let p = w.step(t(later));
        assert_eq!(p.create, None, "at {later}");
        assert_eq!(w.phase(), Phase::WaitingForDecision);
    }
    assert_eq!(w.created.len(), 2);
}

#[test]
fn an_approval_on_a_run_step_is_removed_with_a_warning() {
    let mut w = World::new(spec(&["a"], None, false));
    w.approval = Some("approved".into());
    let p = w.step(t(0.0));
    assert!(p.removes(ANNOTATION_APPROVAL));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::ApprovalIgnored && e.warning)
    );
    assert!(w.status.approval.is_none());
}

#[test]
fn a_wiped_status_is_rebuilt_with_its_decisions_and_no_job_runs() {
    let mut w = exhaust_guided();
    w.decision = Some("ignore".into());
    let p = w.step(t(2.0));
    assert_eq!(
        p.record_decisions.len(),
        1,
        "recorded on the failed attempt's Job"
    );
    assert_eq!(p.record_decisions[0].job, "rel-migrate-a-1");
    w.step(t(2.1));
    w.finish("b", 1, ok());
    w.step(t(3.0));
    assert_eq!(w.phase(), Phase::Succeeded);
    let before = w.status.clone();
    // A backup restored without status.
    w.status = StepStatus::default();
    let p = w.step(t(10.0));
    assert_eq!(p.create, None, "no Job runs again");
    assert!(p.record_decisions.is_empty());
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status.actions[0].phase, ActionPhase::Ignored);
    assert_eq!(w.status.decisions, before.decisions);
    assert_eq!(w.status.message, before.message);
}

#[test]
fn a_wiped_approval_is_rebuilt_from_the_step() {
    let mut s = spec(&[], None, false);
    s.type_ = StepType::ManualIntervention;
    let mut w = World::new(s);
    w.step(t(0.0));
    w.approval = Some("approved".into());
    let p = w.step(t(1.0));
    assert!(p.record_approval.is_some());
    assert_eq!(w.phase(), Phase::Succeeded);
    let before = w.status.approval.clone();
    w.status = StepStatus::default();
    let p = w.step(t(5.0));
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.status.approval, before);
    assert!(p.record_approval.is_none());
    assert!(
        p.events.iter().all(|e| e.reason != EventReason::Approved),
        "{:?}",
        p.events
    );
}

/// Each action lists at most the kept attempts, each message capped.
fn assert_bounded(status: &StepStatus) {
    for a in &status.actions {
        assert!(a.attempts.len() <= ATTEMPTS_KEPT);
        let capped = |x: &AttemptStatus| x.message.as_ref().is_none_or(|m| m.len() <= MESSAGE_CAP);
        assert!(a.attempts.iter().all(capped));
    }
}

/// Every Job still running ends as `state`.
fn finish_running(w: &mut World, state: &JobState) {
    let running: Vec<AttemptKey> = w
        .jobs
        .iter()
        .filter(|(_, j)| j.state == JobState::Running)
        .map(|(k, _)| k.clone())
        .collect();
    for (action, attempt) in running {
        w.finish(&action, attempt, state.clone());
    }
}

#[test]
fn status_stays_small_with_long_histories() {
    let names: Vec<String> = (0..20).map(|i| format!("action-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = World::new(spec(&refs, retries(10, 0), true));
    let long = JobState::Failed {
        finished_at: None,
        reason: FailureReason::Error,
        exit_code: Some(1),
        message: "x".repeat(4096),
        seen_at: None,
    };
    let mut now = t(0.0);
    let mut decisions = 0;
    for _ in 0..5000 {
        let p = w.step(now);
        if w.phase().is_terminal() {
            break;
        }
        let asks = w
            .status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("waiting for a decision"));
        if asks && w.decision.is_none() {
            // The first action is retried by hand 141 times, then every one is ignored.
            let first = w.status.current_action.as_deref() == Some(names[0].as_str());
            w.decision = Some(
                if first && decisions < 141 {
                    "retry"
                } else {
                    "ignore"
                }
                .into(),
            );
            decisions += 1;
        }
        finish_running(&mut w, &long);
        now += SignedDuration::from_millis(10);
        if let Some(due) = p.requeue_at.filter(|d| *d > now) {
            now = due;
        }
    }
    assert_eq!(w.phase(), Phase::Succeeded, "{:?}", w.status.message);
    assert!(decisions >= 160, "{decisions}");
    assert!(w.decision.is_none(), "every decision annotation removed");
    let bytes = serde_json::to_vec(&w.status).unwrap().len();
    assert!(bytes < 256 * 1024, "status is {bytes} bytes");
    // Every decision is still recorded: listed, summed up, and on its Job.
    let listed = w.status.decisions.len() as u32;
    let earlier = w.status.earlier_decisions.as_ref().map_or(0, |e| e.count);
    assert_eq!((listed + earlier) as usize, decisions);
    assert_eq!(
        w.jobs.values().filter(|j| j.decision.is_some()).count(),
        decisions
    );
    assert_bounded(&w.status);
    assert_eq!(
        w.status.actions[0].earlier_attempts,
        Some(152 - ATTEMPTS_KEPT as u32)
    );
    // The same status comes back from the Jobs after a wipe.
    let before = w.status.clone();
    w.status = StepStatus::default();
    let p = w.step(now);
    assert_eq!(p.create, None);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(
        w.status
            .actions
            .iter()
            .map(|a| a.attempts.len())
            .collect::<Vec<_>>(),
        before
            .actions
            .iter()
            .map(|a| a.attempts.len())
            .collect::<Vec<_>>()
    );
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

#[test]
fn a_foreign_job_is_never_an_attempt_and_is_waited_for() {
    let mut w = World::new(spec(&["a"], retries(3, 1), false));
    w.foreign
        .insert(("a".into(), 1), foreign_job("rel-migrate-a-1"));
    let p = w.step(t(0.0));
    assert_eq!(p.create, None);
    assert_eq!(w.phase(), Phase::Running);
    assert!(w.status.actions[0].attempts.is_empty(), "not an attempt");
    let msg = w.status.message.clone().unwrap();
    assert!(
        msg.contains(
            "Job rel-migrate-a-1 already exists and is owned by Step rel-migrate (uid uid-old)"
        ),
        "{msg}"
    );
    let e = p
        .events
        .iter()
        .find(|e| e.reason == EventReason::JobNameTaken)
        .unwrap();
    assert!(e.warning);
    assert!(p.requeue_at.is_some_and(|at| at > t(0.0)));
    // Still there a moment later: no new Event, no JobDeleted.
    let p = w.step(t(1.0));
    assert!(p.events.is_empty(), "{:?}", p.events);
    // Gone: attempt 1 starts.
    w.foreign.clear();
    let p = w.step(t(2.0));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 1
        })
    );
}

#[test]
fn a_running_attempt_under_a_foreign_job_is_dropped_not_job_deleted() {
    let mut w = World::new(spec(&["a"], retries(3, 1), false));
    w.step(t(0.0));
    // The status says attempt 1 runs, but the Job under its name is not ours.
    w.jobs.clear();
    w.foreign
        .insert(("a".into(), 1), foreign_job("rel-migrate-a-1"));
    let p = w.step(t(1.0));
    assert_eq!(p.create, None);
    assert!(w.status.actions[0].attempts.is_empty());
    assert!(
        p.events
            .iter()
            .all(|e| e.reason != EventReason::AttemptFailed)
    );
}

#[test]
fn a_refused_create_waits_with_the_servers_words_and_counts_nothing() {
    let mut w = World::new(spec(&["a"], retries(0, 1), false));
    w.refused = Some(Refused {
        action: "a".into(),
        attempt: 1,
        message: "jobs.batch \"x\" is forbidden: exceeded quota: q".into(),
        retry_at: t(4.0),
    });
    let p = w.step(t(0.0));
    assert_eq!(p.create, None);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(p.requeue_at, Some(t(4.0)));
    assert!(w.status.actions[0].attempts.is_empty());
    let msg = w.status.message.clone().unwrap();
    assert!(
        msg.contains("exceeded quota: q") && msg.contains("trying again at"),
        "{msg}"
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::JobCreateFailed && e.warning)
    );
    w.refused = None;
    let p = w.step(t(4.0));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 1
        })
    );
}

// --- properties ---------------------------------------------------------------

/// A script: for each action, how many attempts fail before one succeeds.
fn script() -> impl Strategy<Value = (Vec<u32>, u32, u32, bool)> {
    (
        prop::collection::vec(0u32..6, 1..4),
        0u32..5,  // limit
        0u32..20, // delay seconds
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn runs_as_the_policy_says((fails, limit, delay, guided) in script(), jitter in 0u32..50, step_ms in 1i64..5000) {
        let names: Vec<String> = (0..fails.len()).map(|i| format!("a{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let policy = RetryPolicy { limit, delay_seconds: delay, jitter_percent: Some(jitter), ..Default::default() };
        let mut w = World::new(spec(&refs, Some(policy.clone()), guided));
        let mut now = t(0.0);
        for _ in 0..400 {
            let before = w.status.clone();
            let decision_before = w.decision.clone();
            let jobs_before = w.jobs.clone();
            let p = w.step(now);
            // Same observation, same plan.
            let mut again = World::new(w.spec.clone());
            again.status = before;
            again.jobs = jobs_before;
            again.decision = decision_before;
            prop_assert_eq!(again.plan(now), p.clone());

            if let Some(c) = p.create {
                // Earlier actions never run again once a later one started.
                prop_assert!(w.created.iter().all(|(a, _, _)| names.iter().position(|n| n == a).unwrap() <= c.action));
                // Never a Job before its time.
                if c.attempt > 1 {
                    let prev = w.status.actions[c.action].attempts.iter().find(|a| a.number == c.attempt - 1).expect("the previous attempt is listed");
                    if prev.failure_seen_at.is_some() && w.status.decisions.iter().all(|d| d.attempt != c.attempt - 1) {
                        let due = prev.failure_seen_at.unwrap() + crate::retry::delay_after(&policy, c.attempt - 1, "uid-1", &names[c.action]);
                        prop_assert!(now >= due, "attempt {} at {now} before {due}", c.attempt);
                        prop_assert!(now.duration_since(prev.failure_seen_at.unwrap()) >= SignedDuration::from_secs(i64::from(delay)));
                    }
                }
            }
            match w.phase() {
                Phase::Succeeded | Phase::Failed => break,
                Phase::WaitingForDecision
                    if w.decision.is_none() && w.status.decisions.iter().all(|d| d.decided_at != now) =>
                {
                    w.decision = Some("retry".into());
                }
                _ => {}
            }
            // Finish running Jobs as the script says.
            let running: Vec<AttemptKey> = w.jobs.iter().filter(|(_, j)| j.state == JobState::Running).map(|(k, _)| k.clone()).collect();
            for (action, attempt) in running {
                let i = names.iter().position(|n| *n == action).unwrap();
                let state = if attempt > fails[i] { ok() } else { failed(1) };
                w.finish(&action, attempt, state);
            }
            now += SignedDuration::from_millis(step_ms);
            // The operator wakes at a retry's due time.
            if let Some(due) = p.requeue_at.filter(|d| *d > now) {
                now = due;
            }
        }
        prop_assert!(w.phase().is_terminal(), "did not finish: {:?}", w.status);
        // A Succeeded step is never planned again.
        if w.phase() == Phase::Succeeded {
            for later in 0..20 {
                let p = w.step(now + SignedDuration::from_secs(later * 60));
                prop_assert_eq!(p.create, None);
                prop_assert_eq!(w.phase(), Phase::Succeeded);
            }
        }
        for (i, n) in names.iter().enumerate() {
            let attempts = w.created.iter().filter(|(a, _, _)| a == n).count() as u32;
            let decisions = w.status.decisions.iter().filter(|d| &d.action == n).count() as u32;
            // Never more than limit + 1 attempts without a decision.
            prop_assert!(attempts <= limit + 1 + decisions);
            if w.phase() == Phase::Succeeded {
                prop_assert_eq!(attempts, fails[i] + 1);
            }
        }
        if !guided {
            let expect_success = fails.iter().all(|f| *f <= limit);
            prop_assert_eq!(w.phase() == Phase::Succeeded, expect_success);
        } else {
            prop_assert_eq!(w.phase(), Phase::Succeeded, "every guided failure was answered retry");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever foreign Jobs hold the names, none of them is ever an attempt,
    /// reported failed, or created over.
    #[test]
    fn a_foreign_job_is_never_an_attempt(held in prop::collection::btree_set((0usize..3, 1u32..4), 0..6), fails in 0u32..3) {
        let names = ["a0", "a1", "a2"];
        let mut w = World::new(spec(&names, retries(3, 0), false));
        for (a, k) in &held {
            let job = crate::jobs::job_name(STEP, names[*a], *k);
            w.foreign.insert((names[*a].to_string(), *k), foreign_job(&job));
        }
        let mut now = t(0.0);
        for _ in 0..60 {
            let p = w.step(now);
            if let Some(c) = p.create {
                prop_assert!(!w.foreign.contains_key(&(names[c.action].to_string(), c.attempt)));
            }
            prop_assert!(p.events.iter().all(|e| !e.note.contains("was deleted")));
            for a in &w.status.actions {
                for at in &a.attempts {
                    prop_assert!(!w.foreign.contains_key(&(a.name.clone(), at.number)), "{:?}", at);
                }
            }
            let running: Vec<AttemptKey> = w.jobs.iter().filter(|(_, j)| j.state == JobState::Running).map(|(k, _)| k.clone()).collect();
            for (action, attempt) in running {
                let state = if attempt > fails { ok() } else { failed(1) };
                w.finish(&action, attempt, state);
            }
            now += SignedDuration::from_secs(1);
        }
    }
}

#[test]
fn a_container_that_cannot_start_is_in_the_message_and_one_warning() {
    let mut w = World::new(spec(&["a"], retries(1, 10), false));
    w.step(t(0.0));
    let job = w.jobs.get_mut(&("a".into(), 1)).unwrap();
    job.waiting = Some(Waiting {
        container: Some("main".into()),
        problem: StartProblem::ImagePullBackOff,
        message: "Back-off pulling image \"x:1\"".into(),
    });
    let p = w.step(t(1.0));
    let msg = w.status.message.clone().unwrap_or_default();
    assert!(
        msg.contains("attempt 1 cannot start: container main: ImagePullBackOff: Back-off pulling"),
        "{msg}"
    );
    assert_eq!(
        w.phase(),
        Phase::Running,
        "still its attempt: no failure yet"
    );
    let warned: Vec<_> = p
        .events
        .iter()
        .filter(|e| e.reason == EventReason::AttemptCannotStart && e.warning)
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", p.events);
    assert!(
        w.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == REASON_CANNOT_START)
    );
    // The same problem again: no new Event.
    let p = w.step(t(2.0));
    assert!(
        p.events
            .iter()
            .all(|e| e.reason != EventReason::AttemptCannotStart)
    );
    // It starts after all: the message says running again.
    w.jobs.get_mut(&("a".into(), 1)).unwrap().waiting = None;
    w.step(t(3.0));
    assert!(
        w.status
            .message
            .unwrap_or_default()
            .ends_with("attempt 1 running")
    );
}

mod cancel;
mod deadlines;
mod decided_by;
mod start_timeout;
