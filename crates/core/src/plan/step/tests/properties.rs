//! Properties over random scripts, and what a container that cannot start shows.

use super::*;

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
