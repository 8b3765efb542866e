//! A cancel handed to the Step: the running Job goes, the step fails with
//! `Cancelled`, and no Job is ever created again.

use super::*;

fn cancelled(w: &World) -> bool {
    w.phase() == Phase::Failed
        && w.status
            .conditions
            .iter()
            .any(|c| c.reason == REASON_CANCELLED)
}

#[test]
fn a_running_attempt_is_deleted_and_the_step_fails_cancelled() {
    let mut w = World::new(spec(&["a", "b"], retries(3, 15), false));
    w.step(t(0.0));
    w.cancel = Some("true".into());
    let p = w.step(t(1.0));
    assert_eq!(p.create, None);
    assert_eq!(p.delete_jobs, vec!["rel-migrate-a-1".to_string()]);
    assert!(cancelled(&w));
    let a = &w.status.actions[0];
    assert_eq!(a.phase, ActionPhase::Failed);
    assert_eq!(a.attempts[0].outcome, Outcome::Failed);
    assert_eq!(a.attempts[0].reason.as_deref(), Some("Cancelled"));
    assert!(p.events.iter().any(|e| e.reason == EventReason::Cancelled));
    // Its Job is gone now: still cancelled, no retry, nothing rewritten.
    w.jobs.clear();
    let before = w.status.clone();
    let p = w.step(t(2.0));
    assert_eq!(p.create, None);
    assert_eq!(p.status, before);
    assert!(p.events.iter().all(|e| e.reason != EventReason::Cancelled));
}

#[test]
fn a_waiting_retry_fails_at_once_and_creates_no_job() {
    let mut w = World::new(spec(&["a"], retries(3, 15), false));
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    assert_eq!(w.phase(), Phase::Retrying);
    w.cancel = Some("true".into());
    let p = w.step(t(2.0));
    assert!(cancelled(&w));
    assert_eq!(w.status.next_attempt_at, None);
    assert!(p.delete_jobs.is_empty());
    // Past the retry's due time: still nothing.
    let p = w.step(t(100.0));
    assert_eq!(p.create, None);
    assert_eq!(w.created.len(), 1);
}

#[test]
fn a_finished_step_is_not_changed_by_a_cancel() {
    let mut w = World::new(spec(&["a"], None, false));
    w.step(t(0.0));
    w.finish("a", 1, ok());
    w.step(t(1.0));
    assert_eq!(w.phase(), Phase::Succeeded);
    w.cancel = Some("true".into());
    let before = w.status.clone();
    let p = w.step(t(2.0));
    assert_eq!(p.status, before);
    assert!(p.delete_jobs.is_empty());
}

proptest! {
    /// Whatever happened before, once cancelled no Job is created again.
    #[test]
    fn cancel_never_starts_anything(fails in 0u32..4, cancel_at in 0u32..6, later in 1u32..6) {
        let mut w = World::new(spec(&["a", "b"], retries(3, 1), false));
        let mut now = 0.0;
        for i in 0..cancel_at {
            w.step(t(now));
            now += 2.0;
            if let Some(((action, n), j)) = w.jobs.iter().next_back()
                && j.state == JobState::Running
            {
                let (action, n) = (action.clone(), *n);
                w.finish(&action, n, if i < fails { failed(1) } else { ok() });
            }
        }
        let created = w.created.len();
        let was_finished = w.status.phase.is_some_and(Phase::is_terminal);
        w.cancel = Some("true".into());
        for _ in 0..later {
            let p = w.step(t(now));
            prop_assert_eq!(p.create, None);
            now += 30.0;
        }
        prop_assert_eq!(w.created.len(), created);
        prop_assert!(was_finished || cancelled(&w));
    }
}
