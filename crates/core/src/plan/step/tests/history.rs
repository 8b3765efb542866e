//! Schedules, retry decisions, wiped statuses rebuilt, long histories kept
//! small, foreign Jobs and refused creates.

use super::*;

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
