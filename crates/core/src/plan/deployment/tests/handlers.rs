//! Failure handlers (`runWhen`) and cancel: which steps run once a release
//! has failed, in what order, and how the release reads meanwhile and after.

use proptest::prelude::*;

use super::*;
use crate::api::RunWhen;
use crate::plan::step::REASON_CANCELLED;

fn with(when: &[RunWhen]) -> DeploymentSpec {
    let mut s = spec(when.len(), false);
    for (step, w) in s.steps.iter_mut().zip(when) {
        step.run_when = *w;
    }
    s
}

fn cancelled(
    spec: &DeploymentSpec,
    previous: &DeploymentStatus,
    steps: &[StepSlot],
) -> DeploymentPlan {
    plan(
        spec,
        "d",
        Some(1),
        previous,
        steps,
        true,
        Timestamp::UNIX_EPOCH,
    )
}

fn failed(status: &DeploymentStatus) -> Option<&str> {
    status.failure.as_ref().map(|f| f.step.as_str())
}

fn reasons(p: &DeploymentPlan) -> Vec<EventReason> {
    p.events.iter().map(|e| e.reason).collect()
}

use RunWhen::{Always, OnFailure, OnSuccess};
use StepSlot::Missing;

#[test]
fn a_release_that_succeeds_runs_always_steps_and_skips_failure_handlers() {
    let s = with(&[OnSuccess, OnFailure, Always]);
    let p = run(&s, &[view(0, Phase::Succeeded), Missing, Missing]);
    assert_eq!(p.create_step, Some(2));
    assert_eq!(p.status.steps[1].phase, Phase::Skipped);
    assert!(
        p.status.steps[1]
            .message
            .as_deref()
            .unwrap()
            .contains("OnFailure")
    );
    let p = run(
        &s,
        &[
            view(0, Phase::Succeeded),
            Missing,
            view(2, Phase::Succeeded),
        ],
    );
    assert_eq!(p.status.phase, Some(Phase::Succeeded));
    assert_eq!(p.status.steps[1].phase, Phase::Skipped);
    assert_eq!(p.status.failure, None);
    let msg = p.status.message.unwrap();
    assert!(msg.contains("2 of 3") && msg.contains("1 skipped"), "{msg}");
}

#[test]
fn a_finished_release_keeps_its_skipped_steps_as_written() {
    let s = with(&[OnSuccess, OnFailure]);
    let slots = [view(0, Phase::Succeeded), Missing];
    let done = run(&s, &slots).status;
    assert_eq!(done.phase, Some(Phase::Succeeded));
    let again = again(&s, &done, &slots);
    assert_eq!(again.status, done, "nothing to write");
    assert!(again.events.is_empty());
}

#[test]
fn a_failure_runs_the_handlers_after_it_in_order_and_ends_failed() {
    let s = with(&[OnSuccess, OnSuccess, OnFailure, OnSuccess, Always]);
    let first = [view(0, Phase::Failed), Missing, Missing, Missing, Missing];
    let p = run(&s, &first);
    // In progress while the first handler runs; the failure is named.
    assert_eq!(p.create_step, Some(2));
    assert_eq!(p.status.phase, Some(Phase::Running));
    assert!(is_true(&p.status.conditions, ct::RECONCILING));
    assert_eq!(failed(&p.status), Some("s0"));
    assert_eq!(p.status.current_step.as_deref(), Some("s2"));
    assert!(reasons(&p).contains(&EventReason::FailureHandlers));
    assert!(!reasons(&p).contains(&EventReason::DeploymentFailed));
    assert_eq!(p.status.steps[1].phase, Phase::Pending);
    assert_eq!(p.status.steps[1].step_ref, None);
    let msg = p.status.message.clone().unwrap();
    assert!(
        msg.starts_with("step s0 (1/5): m0") && msg.contains("s2"),
        "{msg}"
    );

    let mut slots = first.clone();
    slots[2] = view(2, Phase::Succeeded);
    let p2 = again(&s, &p.status, &slots);
    assert_eq!(p2.create_step, Some(4), "the OnSuccess s3 never starts");
    assert!(
        !reasons(&p2).contains(&EventReason::FailureHandlers),
        "once"
    );
    slots[4] = view(4, Phase::Succeeded);
    let p3 = again(&s, &p2.status, &slots);
    assert_eq!(p3.create_step, None);
    assert_eq!(p3.status.phase, Some(Phase::Failed));
    assert!(is_true(&p3.status.conditions, ct::STALLED));
    assert_eq!(failed(&p3.status), Some("s0"));
    assert_eq!(p3.status.current_step.as_deref(), Some("s0"));
    assert!(reasons(&p3).contains(&EventReason::DeploymentFailed));
    let msg = p3.status.message.unwrap();
    assert!(
        msg.contains("m0") && msg.contains("failure handlers succeeded: s2, s4"),
        "{msg}"
    );
}

#[test]
fn a_handler_that_fails_is_reported_beside_the_failure_and_the_next_still_runs() {
    let s = with(&[OnSuccess, OnFailure, OnFailure]);
    let p = run(
        &s,
        &[view(0, Phase::Failed), view(1, Phase::Failed), Missing],
    );
    assert_eq!(p.create_step, Some(2));
    let p = run(
        &s,
        &[
            view(0, Phase::Failed),
            view(1, Phase::Failed),
            view(2, Phase::Succeeded),
        ],
    );
    assert_eq!(p.status.phase, Some(Phase::Failed));
    assert_eq!(failed(&p.status), Some("s0"));
    let conditions = &p.status.conditions;
    let ready = conditions.iter().find(|c| c.type_ == ct::READY).unwrap();
    assert_eq!(ready.reason, "StepFailed");
    let msg = p.status.message.unwrap();
    assert!(msg.starts_with("step s0 (1/3): m0"), "{msg}");
    assert!(msg.contains("handler s1: m1"), "{msg}");
}

#[test]
fn a_handler_waiting_for_a_decision_holds_the_release_there() {
    let s = with(&[OnSuccess, OnFailure]);
    let p = run(
        &s,
        &[view(0, Phase::Failed), view(1, Phase::WaitingForDecision)],
    );
    assert_eq!(p.status.phase, Some(Phase::WaitingForDecision));
    assert_eq!(p.status.current_step.as_deref(), Some("s1"));
    assert_eq!(failed(&p.status), Some("s0"));
}

#[test]
fn a_cancel_between_steps_creates_nothing_and_fails_the_release() {
    let s = with(&[OnSuccess, OnSuccess]);
    let p = cancelled(
        &s,
        &Default::default(),
        &[view(0, Phase::Succeeded), Missing],
    );
    assert_eq!(p.create_step, None);
    assert_eq!(p.status.phase, Some(Phase::Failed));
    assert_eq!(p.status.steps[0].phase, Phase::Succeeded);
    assert_eq!(p.status.steps[1].phase, Phase::Pending);
    let ready = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::READY)
        .unwrap();
    assert_eq!(ready.reason, REASON_CANCELLED);
    assert!(reasons(&p).contains(&EventReason::Cancelled));
    assert!(reasons(&p).contains(&EventReason::DeploymentFailed));
}

#[test]
fn a_cancel_between_steps_runs_the_failure_handlers_but_no_other_step() {
    let s = with(&[OnSuccess, OnSuccess, OnFailure, Always]);
    let slots = [view(0, Phase::Succeeded), Missing, Missing, Missing];
    let p = cancelled(&s, &Default::default(), &slots);
    assert_eq!(p.create_step, Some(2));
    assert_eq!(failed(&p.status), Some("s1"));
    assert_eq!(p.status.steps[1].step_ref, None);
    assert_eq!(
        reasons(&p),
        vec![EventReason::Cancelled, EventReason::FailureHandlers]
    );
    let mut slots = slots;
    slots[2] = view(2, Phase::Succeeded);
    slots[3] = view(3, Phase::Succeeded);
    let p = cancelled(&s, &p.status, &slots);
    assert_eq!(p.status.phase, Some(Phase::Failed));
    let ready = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::READY)
        .unwrap();
    assert_eq!(ready.reason, REASON_CANCELLED);
    assert_eq!(p.status.steps[1].phase, Phase::Pending);
}

#[test]
fn a_failed_step_deleted_while_handlers_run_never_runs_again() {
    let s = with(&[OnSuccess, OnFailure, OnFailure]);
    let p = run(
        &s,
        &[view(0, Phase::Failed), view(1, Phase::Running), Missing],
    );
    // Someone deletes the failed Step while the first handler runs.
    let p = again(
        &s,
        &p.status,
        &[Missing, view(1, Phase::Succeeded), Missing],
    );
    assert_eq!(p.create_step, Some(2), "the next handler, never s0");
    assert_eq!(p.status.steps[0].phase, Phase::Failed);
    assert_eq!(failed(&p.status), Some("s0"));
}

/// Drives a release to its end: each created step ends as `ok[i]` says;
/// the cancel (if any) is asked after `cancel_after` Steps were created.
/// Returns the Steps created in order and the last status.
fn drive(
    s: &DeploymentSpec,
    ok: &[bool],
    cancel_after: Option<usize>,
) -> (Vec<usize>, DeploymentStatus) {
    let mut slots = vec![Missing; s.steps.len()];
    let mut previous = DeploymentStatus::default();
    let mut created = Vec::new();
    for _ in 0..=2 * s.steps.len() + 1 {
        let cancel = cancel_after.is_some_and(|n| created.len() >= n);
        let p = plan(
            s,
            "d",
            Some(1),
            &previous,
            &slots,
            cancel,
            Timestamp::UNIX_EPOCH,
        );
        // Planning again from what was just written changes nothing.
        let twice = plan(
            s,
            "d",
            Some(1),
            &p.status,
            &slots,
            cancel,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(twice.status, p.status);
        assert!(twice.events.is_empty(), "{:?}", twice.events);
        if let Some(i) = p.create_step {
            assert!(!created.contains(&i), "step {i} created twice");
            created.push(i);
            slots[i] = view(
                i,
                if ok[i] {
                    Phase::Succeeded
                } else {
                    Phase::Failed
                },
            );
        }
        previous = p.status;
        if previous.phase.is_some_and(Phase::is_terminal) {
            // Final: the next look writes nothing and says nothing.
            let cancel = cancel_after.is_some_and(|n| created.len() >= n);
            let p = plan(
                s,
                "d",
                Some(1),
                &previous,
                &slots,
                cancel,
                Timestamp::UNIX_EPOCH,
            );
            assert_eq!(p.status, previous);
            assert!(p.events.is_empty() && p.create_step.is_none(), "{p:?}");
            return (created, previous);
        }
    }
    panic!("the release never finished: {previous:?}");
}

fn any_when() -> impl Strategy<Value = RunWhen> {
    prop_oneof![Just(OnSuccess), Just(OnFailure), Just(Always)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever the conditions, outcomes and cancel: every release ends;
    /// steps start in order, once; before the first failure only OnSuccess
    /// and Always steps run (all of them), after it only OnFailure and
    /// Always ones (all of them); and it fails exactly when a step did.
    #[test]
    fn handlers_run_exactly_when_and_where_they_should(
        cases in prop::collection::vec((any_when(), any::<bool>()), 1..8),
        cancel_after in prop::option::of(0..8usize),
    ) {
        let when: Vec<RunWhen> = cases.iter().map(|c| c.0).collect();
        let ok: Vec<bool> = cases.iter().map(|c| c.1).collect();
        let s = with(&when);
        let (created, last) = drive(&s, &ok, cancel_after);
        prop_assert!(created.windows(2).all(|w| w[0] < w[1]), "{created:?}");
        // Where the release failed: the first created step that failed, or
        // the step a cancel stopped before it started.
        let failed_at = failed(&last).map(|n| {
            s.steps.iter().position(|st| st.name == n).unwrap()
        });
        for (i, w) in when.iter().enumerate() {
            let ran = created.contains(&i);
            let expected = match failed_at {
                None => w.runs(false),
                Some(f) if i < f => w.runs(false),
                Some(f) if i == f => ran,
                Some(_) => w.runs(true),
            };
            prop_assert_eq!(ran, expected, "step {} ({:?}) failed at {:?}", i, w, failed_at);
        }
        let any_failed = created.iter().any(|&i| !ok[i]);
        let phase = last.phase.unwrap();
        prop_assert_eq!(phase == Phase::Failed, failed_at.is_some());
        if let Some(f) = failed_at {
            // The failure is the first created step that failed, unless a
            // cancel came first.
            let first_bad = created.iter().copied().find(|&i| !ok[i]);
            prop_assert!(first_bad == Some(f) || cancel_after.is_some(), "{created:?} {f}");
        } else {
            prop_assert!(!any_failed || created.iter().all(|&i| ok[i]));
        }
        for (i, sum) in last.steps.iter().enumerate() {
            let skipped = sum.phase == Phase::Skipped;
            prop_assert_eq!(skipped, when[i] == OnFailure && failed_at.is_none_or(|f| i < f));
        }
    }
}
