//! Guided failure, decisions and approvals: waiting, each decision, stale
//! and misplaced annotations, adoption after a lost write, restarts.

use super::*;

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
