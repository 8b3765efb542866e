//! Decision deadlines: `guidedFailureTimeout` and `approvalTimeout` apply
//! their default once, never before the deadline, and a restarted operator
//! (the same observation) plans the same.

use super::*;
use crate::api::{ApprovalTimeout, DECIDED_BY_TIMEOUT, Decision, GuidedFailureTimeout};

fn guided_with_timeout(seconds: i64, decision: Decision) -> World {
    let mut s = spec(&["a", "b"], retries(0, 15), true);
    s.guided_failure_timeout = Some(GuidedFailureTimeout { seconds, decision });
    World::new(s)
}

fn manual_with_timeout(seconds: i64, decision: Approval) -> World {
    let mut s = spec(&[], None, false);
    s.type_ = StepType::ManualIntervention;
    s.approval_timeout = Some(ApprovalTimeout { seconds, decision });
    let mut w = World::new(s);
    w.created_at = Some(t(0.0));
    w
}

fn timed_out(p: &StepPlan) -> usize {
    p.events
        .iter()
        .filter(|e| e.reason == EventReason::DecisionTimedOut)
        .count()
}

#[test]
fn a_guided_failure_waits_until_its_deadline_then_applies_the_default() {
    let mut w = guided_with_timeout(30, Decision::Ignore);
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    let p = w.step(t(1.0));
    // Seen at 1.0: the deadline is 31.0, shown and requeued at.
    assert_eq!(w.phase(), Phase::WaitingForDecision);
    assert_eq!(w.status.decision_deadline, Some(t(31.0)));
    assert_eq!(p.requeue_at, Some(t(31.0)));
    let msg = w.status.message.clone().unwrap();
    assert!(
        msg.ends_with("; ignore at 08:00:31Z unless decided first"),
        "{msg}"
    );
    let p = w.step(t(30.999));
    assert!(w.status.decisions.is_empty(), "never before its time");
    assert_eq!(timed_out(&p), 0);
    // At the deadline: recorded by timeout, as a person's decision would be.
    let p = w.step(t(31.0));
    assert_eq!(timed_out(&p), 1);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::DecisionApplied)
    );
    assert!(p.requeue_now);
    let d = &w.status.decisions[0];
    assert_eq!((d.decision, d.attempt), (Decision::Ignore, 1));
    assert_eq!(d.by.as_deref(), Some(DECIDED_BY_TIMEOUT));
    assert!(d.decided_at >= t(31.0));
    assert_eq!(p.record_decisions[0].record.by.as_deref(), Some("timeout"));
    // Then applied, once: the next action starts, no second timeout.
    let p = w.step(t(31.1));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 1,
            attempt: 1
        })
    );
    assert_eq!(timed_out(&p), 0);
    assert_eq!(w.status.decision_deadline, None);
    assert_eq!(w.status.decisions.len(), 1);
}

#[test]
fn a_person_before_the_deadline_wins() {
    let mut w = guided_with_timeout(30, Decision::Abort);
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    w.decision = Some("retry".into());
    w.decided_by = Some("alice".into());
    w.step(t(5.0));
    let p = w.step(t(5.1));
    assert_eq!(
        p.create,
        Some(CreateJob {
            action: 0,
            attempt: 2
        })
    );
    // Long after the old deadline, the new attempt runs on.
    let p = w.step(t(100.0));
    assert_eq!(timed_out(&p), 0);
    assert_eq!(w.status.decisions[0].by.as_deref(), Some("alice"));
}

#[test]
fn an_unknown_value_does_not_stop_the_deadline() {
    let mut w = guided_with_timeout(10, Decision::Abort);
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.decision = Some("yolo".into());
    w.step(t(1.0));
    assert_eq!(w.status.decision_deadline, Some(t(11.0)));
    let p = w.step(t(11.0));
    assert_eq!(w.status.decisions[0].decision, Decision::Abort);
    // The bad annotation goes with a warning before the decision is acted on.
    assert!(p.removes(ANNOTATION_DECISION));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::DecisionIgnored)
    );
    w.step(t(11.1));
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.status.conditions[0].reason, "Aborted");
}

#[test]
fn no_timeout_waits_forever() {
    let mut w = exhaust_guided();
    let p = w.step(t(1_000_000.0));
    assert_eq!(w.phase(), Phase::WaitingForDecision);
    assert_eq!(w.status.decision_deadline, None);
    assert_eq!(p.requeue_at, None);
}

#[test]
fn an_approval_times_out_from_the_steps_creation() {
    let mut w = manual_with_timeout(20, Approval::Rejected);
    let p = w.step(t(3.0));
    assert_eq!(w.phase(), Phase::WaitingForApproval);
    assert_eq!(w.status.decision_deadline, Some(t(20.0)));
    assert_eq!(p.requeue_at, Some(t(20.0)));
    w.step(t(19.9));
    assert!(w.status.approval.is_none());
    let p = w.step(t(20.5));
    assert_eq!(timed_out(&p), 1);
    assert!(p.events.iter().any(|e| e.reason == EventReason::Rejected));
    assert_eq!(w.phase(), Phase::Failed);
    let a = w.status.approval.clone().unwrap();
    assert_eq!(a.by.as_deref(), Some(DECIDED_BY_TIMEOUT));
    assert_eq!(a.decided_at, t(20.5));
    assert_eq!(p.record_approval, Some(a));
    assert_eq!(w.status.decision_deadline, None);
    let p = w.step(t(30.0));
    assert_eq!(timed_out(&p), 0, "once");
    // An approval before the deadline wins.
    let mut w = manual_with_timeout(20, Approval::Rejected);
    w.approval = Some("approved".into());
    w.step(t(5.0));
    let p = w.step(t(50.0));
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(timed_out(&p), 0);
}

#[test]
fn a_restart_finds_the_same_deadline() {
    let mut w = guided_with_timeout(30, Decision::Retry);
    w.step(t(0.0));
    w.finish("a", 1, failed(1));
    w.step(t(1.0));
    let mut restarted = World::new(w.spec.clone());
    restarted.status = w.status.clone();
    restarted.jobs = w.jobs.clone();
    let p = restarted.step(t(20.0));
    assert_eq!(p.requeue_at, Some(t(31.0)));
    assert!(p.events.is_empty(), "nothing new happened");
    let p = restarted.step(t(40.0));
    assert_eq!(timed_out(&p), 1);
    assert!(restarted.status.decisions[0].decided_at >= t(31.0));
}

#[test]
fn the_deployments_timeout_is_the_default_for_its_run_steps() {
    use crate::api::{DeploymentSpec, DeploymentStep};
    let timeout = |seconds| {
        Some(GuidedFailureTimeout {
            seconds,
            decision: Decision::Abort,
        })
    };
    let step = |name: &str, type_, own| DeploymentStep {
        run_when: Default::default(),
        name: name.into(),
        type_,
        instructions: None,
        retries: None,
        actions: vec![],
        approvers: None,
        guided_failure_timeout: own,
        approval_timeout: (type_ == StepType::ManualIntervention).then_some(ApprovalTimeout {
            seconds: 5,
            decision: Approval::Approved,
        }),
    };
    let d = DeploymentSpec {
        guided_failure: true,
        retries: None,
        concurrency: None,
        approvers: None,
        guided_failure_timeout: timeout(60),
        steps: vec![
            step("a", StepType::Run, None),
            step("b", StepType::Run, timeout(5)),
            step("gate", StepType::ManualIntervention, None),
        ],
    };
    let spec = |i| crate::plan::deployment::step_spec(&d, i).unwrap();
    assert_eq!(spec(0).guided_failure_timeout, timeout(60));
    assert_eq!(spec(1).guided_failure_timeout, timeout(5));
    assert_eq!(spec(2).guided_failure_timeout, None);
    assert_eq!(spec(2).approval_timeout.map(|a| a.seconds), Some(5));
    assert_eq!(spec(0).approval_timeout, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the clock does: the default is never applied before the
    /// deadline, is applied exactly once, and the same observation always
    /// plans the same (a restart changes nothing).
    #[test]
    fn a_deadline_applies_once_and_never_early(
        seconds in 1i64..120,
        default in prop::sample::select(vec![Decision::Retry, Decision::Ignore, Decision::Abort]),
        ticks in prop::collection::vec(1i64..20_000, 1..60),
        fails in 1u32..3,
    ) {
        let mut w = guided_with_timeout(seconds, default);
        let mut now = t(0.0);
        let mut timeouts = 0;
        for tick in ticks {
            let (before, jobs) = (w.status.clone(), w.jobs.clone());
            let p = w.step(now);
            let mut again = World::new(w.spec.clone());
            again.status = before.clone();
            again.jobs = jobs;
            prop_assert_eq!(again.plan(now), p.clone());
            timeouts += timed_out(&p);
            for d in w.status.decisions.iter().filter(|d| d.by.as_deref() == Some("timeout")) {
                let a = &w.status.actions.iter().find(|a| a.name == d.action).unwrap();
                let seen = a.attempts.iter().find(|x| x.number == d.attempt).unwrap().failure_seen_at.unwrap();
                prop_assert!(d.decided_at >= seen + SignedDuration::from_secs(seconds));
            }
            // Each failure answered by timeout at most once.
            let mut answered: Vec<_> = w.status.decisions.iter().map(|d| (&d.action, d.attempt)).collect();
            let n = answered.len();
            answered.dedup();
            prop_assert_eq!(answered.len(), n);
            if w.phase().is_terminal() {
                break;
            }
            let running: Vec<AttemptKey> = w.jobs.iter().filter(|(_, j)| j.state == JobState::Running).map(|(k, _)| k.clone()).collect();
            for (action, attempt) in running {
                let state = if action == "a" && attempt <= fails { failed(1) } else { ok() };
                w.finish(&action, attempt, state);
            }
            now += SignedDuration::from_millis(tick);
        }
        let timeout_decisions = w.status.decisions.iter().filter(|d| d.by.as_deref() == Some("timeout")).count();
        prop_assert_eq!(timeouts, timeout_decisions, "one DecisionTimedOut per default applied");
    }
}
