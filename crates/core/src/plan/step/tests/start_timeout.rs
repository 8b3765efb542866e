//! The start timeout: an attempt whose container cannot start, or whose Job
//! has no pod, fails with the cause (`StartTimeout` when none is known) once
//! start + startTimeout is reached.

use super::*;

/// One action `a` with a start timeout of `secs` seconds.
fn with_timeout(secs: i64, retries: Option<RetryPolicy>, guided: bool) -> StepSpec {
    let mut s = spec(&["a"], retries, guided);
    s.actions[0].start_timeout_seconds = Some(secs);
    s
}

fn on_start_timeout(limit: u32, delay: u32) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        limit,
        delay_seconds: delay,
        retry_on: Some(RetryOn {
            exit_codes: vec![],
            reasons: vec![REASON_START_TIMEOUT.into()],
        }),
        ..Default::default()
    })
}

fn pull_error() -> Waiting {
    Waiting {
        container: Some("main".into()),
        problem: StartProblem::ErrImagePull,
        message: "connection refused".into(),
    }
}

impl World {
    fn cannot_pull(&mut self, attempt: u32) {
        self.job(attempt).waiting = Some(pull_error());
    }

    fn job(&mut self, attempt: u32) -> &mut JobView {
        self.jobs
            .get_mut(&("a".into(), attempt))
            .expect("job exists")
    }

    fn attempt(&self, k: u32) -> &AttemptStatus {
        let a = &self.status.actions[0].attempts;
        a.iter().find(|x| x.number == k).expect("attempt listed")
    }
}

#[test]
fn before_the_deadline_the_attempt_runs_and_the_step_wakes_at_it() {
    let mut w = World::new(with_timeout(5, None, false));
    w.step(t(0.0));
    w.cannot_pull(1);
    let p = w.step(t(4.9));
    assert_eq!(p.requeue_at, Some(t(5.0)));
    assert_eq!(w.attempt(1).outcome, Outcome::Running);
    assert!(p.stop_jobs.is_empty());
    assert_eq!(w.phase(), Phase::Running);
}

#[test]
fn at_the_deadline_a_container_that_cannot_start_fails_the_attempt() {
    let mut w = World::new(with_timeout(5, None, false));
    w.step(t(0.0));
    w.cannot_pull(1);
    let p = w.step(t(5.0));
    let a = w.attempt(1);
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(
        a.reason.as_deref(),
        Some("ImagePullBackOff"),
        "the kubelet's cause"
    );
    let message = "did not start within 5 s: container main: ErrImagePull: connection refused";
    assert_eq!(a.message.as_deref(), Some(message));
    assert_eq!(a.failure_seen_at, Some(t(5.0)));
    let record = StartFailure {
        reason: "ImagePullBackOff".into(),
        message: message.into(),
        at: t(5.0),
    };
    let stop = StopJob {
        name: "rel-migrate-a-1".into(),
        record,
    };
    assert_eq!(p.stop_jobs, vec![stop]);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::AttemptFailed)
    );
    assert_eq!(w.phase(), Phase::Failed);
}

#[test]
fn a_job_with_no_pod_at_all_fails_at_the_deadline() {
    let mut w = World::new(with_timeout(5, None, false));
    w.step(t(0.0));
    w.job(1).no_pod = true;
    // Looked at again soon, for the Job controller's FailedCreate Event.
    assert_eq!(w.step(t(1.0)).requeue_at, Some(t(3.0)));
    assert_eq!(w.step(t(4.0)).requeue_at, Some(t(5.0)));
    w.step(t(6.0));
    let a = w.attempt(1);
    assert_eq!(a.reason.as_deref(), Some(REASON_START_TIMEOUT));
    assert!(a.message.as_deref().unwrap().contains("no pod"), "{a:?}");
}

#[test]
fn a_container_that_started_never_times_out() {
    let mut w = World::new(with_timeout(5, None, false));
    w.step(t(0.0));
    let p = w.step(t(10_000.0));
    assert_eq!(w.attempt(1).outcome, Outcome::Running);
    assert_eq!(p.requeue_at, None);
    assert!(p.stop_jobs.is_empty());
}

#[test]
fn the_deadline_counts_from_each_attempts_start_and_retry_on_applies() {
    let mut w = World::new(with_timeout(5, on_start_timeout(1, 1), false));
    w.step(t(0.0));
    w.cannot_pull(1);
    w.step(t(5.0));
    assert_eq!(w.phase(), Phase::Retrying, "StartTimeout is in retryOn");
    assert_eq!(w.step(t(6.0)).create.map(|c| c.attempt), Some(2));
    w.cannot_pull(2);
    assert_eq!(w.step(t(10.9)).requeue_at, Some(t(11.0)));
    assert_eq!(w.attempt(2).outcome, Outcome::Running);
    w.step(t(11.0));
    assert_eq!(w.attempt(2).reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.status.actions[0].attempts.len(), 2);
}

#[test]
fn guided_failure_applies_to_a_start_timeout() {
    let mut w = World::new(with_timeout(5, None, true));
    w.step(t(0.0));
    w.cannot_pull(1);
    w.step(t(5.0));
    assert_eq!(w.phase(), Phase::WaitingForDecision);
}

#[test]
fn the_stuck_job_is_stopped_until_it_carries_the_outcome_and_stays_failed() {
    let mut w = World::new(with_timeout(5, None, false));
    w.step(t(0.0));
    w.job(1).no_pod = true;
    let p = w.step(t(5.0));
    assert_eq!(w.attempt(1).reason.as_deref(), Some(REASON_START_TIMEOUT));
    // Until the Job carries the outcome, every plan asks to stop it again.
    assert_eq!(w.step(t(5.5)).stop_jobs, p.stop_jobs);
    w.job(1).start_failure_recorded = true;
    assert!(w.step(t(6.0)).stop_jobs.is_empty());
    // Deleted by someone: still the start timeout, never run again.
    w.jobs.clear();
    let p = w.step(t(7.0));
    assert!(p.stop_jobs.is_empty());
    assert_eq!(p.create, None, "no attempt runs again");
    assert_eq!(w.attempt(1).reason.as_deref(), Some(REASON_START_TIMEOUT));
    assert_eq!(w.phase(), Phase::Failed);
}

proptest! {
    #[test]
    fn never_a_start_timeout_before_start_plus_timeout(
        limit in 1i64..600,
        start in 0.0f64..100.0,
        looks in proptest::collection::vec(0.0f64..1200.0, 1..8),
        no_pod in any::<bool>(),
    ) {
        let mut w = World::new(with_timeout(limit, on_start_timeout(3, 0), false));
        w.step(t(start));
        if no_pod { w.job(1).no_pod = true } else { w.cannot_pull(1) }
        let mut looks = looks;
        looks.sort_by(f64::total_cmp);
        for at in looks.into_iter().map(|d| start + d) {
            w.step(t(at));
            let a = w.attempt(1);
            let due = t(at) >= t(start) + SignedDuration::from_secs(limit);
            prop_assert_eq!(a.outcome == Outcome::Failed, due, "at {} {:?}", at, a);
            if due { break }
        }
    }
}
