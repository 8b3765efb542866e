use super::*;
use crate::api::{Action, DeploymentStep, RetryPolicy, condition_types as ct};
use crate::status::is_true;

mod foreign;
mod handlers;

fn spec(n: usize, guided: bool) -> DeploymentSpec {
    DeploymentSpec {
        guided_failure: guided,
        guided_failure_timeout: None,
        retries: Some(RetryPolicy::default()),
        concurrency: None,
        approvers: None,
        steps: (0..n)
            .map(|i| DeploymentStep {
                run_when: Default::default(),
                approvers: None,
                guided_failure_timeout: None,
                approval_timeout: None,
                name: format!("s{i}"),
                type_: StepType::Run,
                instructions: None,
                retries: None,
                actions: vec![Action {
                    name: "a".into(),
                    template: Default::default(),
                    timeout_seconds: None,
                    start_timeout_seconds: None,
                }],
            })
            .collect(),
    }
}

fn view(i: usize, phase: Phase) -> StepSlot {
    StepSlot::Ours(StepView {
        name: format!("d-s{i}"),
        phase,
        message: Some(format!("m{i}")),
        current_action: Some("a".into()),
        attempt: Some(1),
        cannot_start: false,
        decision_deadline: None,
    })
}

fn run(spec: &DeploymentSpec, steps: &[StepSlot]) -> DeploymentPlan {
    plan(
        spec,
        "d",
        Some(1),
        &DeploymentStatus::default(),
        steps,
        false,
        Timestamp::UNIX_EPOCH,
    )
}

#[test]
fn creates_first_step_then_waits() {
    let p = run(&spec(2, false), &[StepSlot::Missing, StepSlot::Missing]);
    assert_eq!(p.create_step, Some(0));
    assert_eq!(p.status.phase, Some(Phase::Running));
    let p = run(
        &spec(2, false),
        &[view(0, Phase::Running), StepSlot::Missing],
    );
    assert_eq!(p.create_step, None);
    assert_eq!(p.status.current_step.as_deref(), Some("s0"));
}

#[test]
fn next_step_only_after_success() {
    let p = run(
        &spec(3, false),
        &[
            view(0, Phase::Succeeded),
            StepSlot::Missing,
            StepSlot::Missing,
        ],
    );
    assert_eq!(p.create_step, Some(1));
    for blocking in [
        Phase::Retrying,
        Phase::Failed,
        Phase::WaitingForDecision,
        Phase::WaitingForApproval,
    ] {
        let p = run(
            &spec(3, false),
            &[view(0, blocking), StepSlot::Missing, StepSlot::Missing],
        );
        assert_eq!(p.create_step, None, "{blocking:?}");
        assert_eq!(p.status.phase, Some(blocking));
    }
}

#[test]
fn all_succeeded_is_ready() {
    let p = run(
        &spec(2, false),
        &[view(0, Phase::Succeeded), view(1, Phase::Succeeded)],
    );
    assert_eq!(p.status.phase, Some(Phase::Succeeded));
    assert!(is_true(&p.status.conditions, ct::READY));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::DeploymentSucceeded)
    );
}

#[test]
fn failure_stalls_and_guided_failure_shows() {
    let p = run(
        &spec(2, false),
        &[view(0, Phase::Failed), StepSlot::Missing],
    );
    assert!(is_true(&p.status.conditions, ct::STALLED));
    assert!(
        !p.status
            .conditions
            .iter()
            .any(|c| c.type_ == ct::GUIDED_FAILURE)
    );
    let p = run(
        &spec(2, true),
        &[view(0, Phase::WaitingForDecision), StepSlot::Missing],
    );
    assert!(is_true(&p.status.conditions, ct::GUIDED_FAILURE));
    assert!(p.status.message.unwrap().contains("m0"));
}

#[test]
fn mirrors_progress_only_when_a_step_needs_attention() {
    let s = spec(2, true);
    let running = run(&s, &[view(0, Phase::Running), StepSlot::Missing]);
    assert_eq!(running.status.current_step.as_deref(), Some("s0"));
    assert_eq!(running.status.current_action, None);
    assert_eq!(running.status.attempt, None);
    assert_eq!(running.status.steps[0].message, None);
    assert_eq!(
        running.status.message.as_deref(),
        Some("step s0 (1/2) running")
    );
    // A running step's progress never changes the Deployment's status.
    let StepSlot::Ours(mut later) = view(0, Phase::Running) else {
        unreachable!()
    };
    later.current_action = Some("b".into());
    later.attempt = Some(2);
    later.message = Some("other".into());
    assert_eq!(
        run(&s, &[StepSlot::Ours(later), StepSlot::Missing]).status,
        running.status
    );

    for attention in [
        Phase::Retrying,
        Phase::WaitingForDecision,
        Phase::WaitingForApproval,
        Phase::Failed,
    ] {
        let p = run(&s, &[view(0, attention), StepSlot::Missing]);
        assert_eq!(
            p.status.current_action.as_deref(),
            Some("a"),
            "{attention:?}"
        );
        assert_eq!(p.status.attempt, Some(1));
        assert_eq!(p.status.steps[0].message.as_deref(), Some("m0"));
    }
}

#[test]
fn a_new_step_reads_as_it_will_once_its_step_exists() {
    let s = spec(2, false);
    let creating = run(&s, &[view(0, Phase::Succeeded), StepSlot::Missing]);
    assert_eq!(creating.create_step, Some(1));
    for appeared in [Phase::Pending, Phase::Running] {
        let p = run(&s, &[view(0, Phase::Succeeded), view(1, appeared)]);
        assert_eq!(p.create_step, None);
        assert_eq!(p.status, creating.status, "{appeared:?}");
    }
    assert!(creating.events.is_empty(), "{:?}", creating.events);
}

#[test]
fn step_spec_resolves_retries() {
    let mut s = spec(2, true);
    s.steps[1].type_ = StepType::ManualIntervention;
    s.steps[1].actions.clear();
    s.steps[0].retries = Some(RetryPolicy {
        limit: 1,
        ..Default::default()
    });
    let first = step_spec(&s, 0).unwrap();
    assert_eq!(first.retries.unwrap().limit, 1);
    assert!(first.guided_failure);
    assert_eq!(step_spec(&s, 1).unwrap().retries, None);
    s.steps[0].retries = None;
    assert_eq!(
        step_spec(&s, 0).unwrap().retries,
        Some(RetryPolicy::default())
    );
    assert!(step_spec(&s, 9).is_none());
}

/// Runs the plan with `previous` as the status last written.
fn again(spec: &DeploymentSpec, previous: &DeploymentStatus, steps: &[StepSlot]) -> DeploymentPlan {
    plan(
        spec,
        "d",
        Some(1),
        previous,
        steps,
        false,
        Timestamp::from_second(1000).unwrap(),
    )
}

#[test]
fn a_succeeded_step_is_never_planned_again() {
    let s = spec(3, false);
    let running = run(
        &s,
        &[
            view(0, Phase::Succeeded),
            view(1, Phase::Running),
            StepSlot::Missing,
        ],
    );
    // Step 0's Step object is deleted while step 1 runs.
    let p = again(
        &s,
        &running.status,
        &[
            StepSlot::Missing,
            view(1, Phase::Running),
            StepSlot::Missing,
        ],
    );
    assert_eq!(p.create_step, None);
    assert_eq!(p.status.phase, Some(Phase::Running));
    assert_eq!(p.status.steps[0].phase, Phase::Succeeded);
    let note = p.status.steps[0].message.clone().unwrap();
    assert!(note.contains("d-s0 was deleted"), "{note}");
    let e = p
        .events
        .iter()
        .find(|e| e.reason == EventReason::StepDeleted)
        .unwrap();
    assert!(e.warning);
    assert_eq!(e.related.as_deref(), Some("d-s0"));
    // Said once.
    let p2 = again(
        &s,
        &p.status,
        &[
            StepSlot::Missing,
            view(1, Phase::Running),
            StepSlot::Missing,
        ],
    );
    assert!(p2.events.is_empty(), "{:?}", p2.events);
    assert_eq!(p2.status, p.status);
}

#[test]
fn a_finished_release_reads_as_before_whatever_its_steps_do() {
    for last in [Phase::Succeeded, Phase::Failed] {
        let s = spec(2, false);
        let done = run(&s, &[view(0, Phase::Succeeded), view(1, last)]);
        assert_eq!(done.status.phase, Some(last));
        for steps in [
            vec![StepSlot::Missing, StepSlot::Missing],
            vec![view(0, Phase::Succeeded), StepSlot::Missing],
            vec![view(0, Phase::Pending), view(1, Phase::Running)],
        ] {
            let p = again(&s, &done.status, &steps);
            assert_eq!(p.create_step, None, "{last:?} {steps:?}");
            assert_eq!(p.status.phase, done.status.phase);
            assert_eq!(p.status.conditions, done.status.conditions);
            assert_eq!(p.status.message, done.status.message);
            assert!(
                p.events
                    .iter()
                    .all(|e| e.reason == EventReason::StepDeleted)
            );
        }
    }
}

fn any_phase() -> impl proptest::strategy::Strategy<Value = Phase> {
    proptest::prelude::prop_oneof![
        proptest::strategy::Just(Phase::Pending),
        proptest::strategy::Just(Phase::Running),
        proptest::strategy::Just(Phase::Retrying),
        proptest::strategy::Just(Phase::WaitingForDecision),
        proptest::strategy::Just(Phase::WaitingForApproval),
        proptest::strategy::Just(Phase::Succeeded),
        proptest::strategy::Just(Phase::Failed),
    ]
}

proptest::proptest! {
    /// Whatever the recorded status and whichever Steps are gone: a step
    /// recorded Succeeded, or any step of a finished release, is never created.
    #[test]
    fn a_recorded_success_is_never_planned_again(
        recorded in proptest::collection::vec(any_phase(), 1..6),
        present in proptest::collection::vec(proptest::option::of(any_phase()), 6),
        release in any_phase(),
    ) {
        let s = spec(recorded.len(), true);
        let previous = DeploymentStatus {
            phase: Some(release),
            steps: recorded
                .iter()
                .enumerate()
                .map(|(i, p)| StepSummary {
                    name: format!("s{i}"),
                    step_ref: Some(format!("d-s{i}")),
                    phase: *p,
                    message: None,
                })
                .collect(),
            ..Default::default()
        };
        let slots: Vec<StepSlot> = present
            .iter()
            .take(recorded.len())
            .enumerate()
            .map(|(i, p)| p.map_or(StepSlot::Missing, |p| view(i, p)))
            .collect();
        let p = again(&s, &previous, &slots);
        if let Some(i) = p.create_step {
            proptest::prop_assert_ne!(recorded[i], Phase::Succeeded);
            proptest::prop_assert!(!release.is_terminal());
            proptest::prop_assert_eq!(&slots[i], &StepSlot::Missing);
        }
        if release.is_terminal() {
            proptest::prop_assert_eq!(p.status.phase, Some(release));
            proptest::prop_assert_eq!(p.status.conditions, previous.conditions);
        }
    }
}

#[test]
fn a_running_step_whose_container_cannot_start_is_mirrored_with_its_message() {
    let StepSlot::Ours(v) = view(0, Phase::Running) else {
        unreachable!()
    };
    assert_eq!(
        v.clone().mirrored().message,
        None,
        "progress stays on the Step"
    );
    let stuck = StepView {
        cannot_start: true,
        ..v
    };
    assert_eq!(stuck.mirrored().message.as_deref(), Some("m0"));
}
