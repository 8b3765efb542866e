use super::*;
use crate::api::{DeploymentStep, StepType, condition_types as ct};
use crate::status::is_true;
use proptest::prelude::*;

mod properties;

fn rel(name: &str, at: i64, key: Option<&str>, policy: ConcurrencyPolicy, state: State) -> Release {
    Release {
        name: name.into(),
        created: Timestamp::from_second(at).unwrap(),
        concurrency: key.map(|k| Concurrency {
            key: k.into(),
            policy,
        }),
        state,
    }
}

fn queue(name: &str, at: i64, state: State) -> Release {
    rel(name, at, Some("app"), ConcurrencyPolicy::Queue, state)
}

fn supersede(name: &str, at: i64, state: State) -> Release {
    rel(name, at, Some("app"), ConcurrencyPolicy::Supersede, state)
}

fn wait(behind: &str, place: usize) -> Verdict {
    Verdict::Wait {
        behind: behind.into(),
        place,
    }
}

use State::{Finished, Started, Waiting};

#[test]
fn state_from_phase_step_and_deletion() {
    assert_eq!(State::of(None, false, false), Waiting);
    assert_eq!(State::of(Some(Phase::Pending), false, false), Waiting);
    assert_eq!(State::of(Some(Phase::Queued), false, false), Waiting);
    // A Step exists: started, whatever the (wiped or stale) status says.
    assert_eq!(State::of(None, true, false), Started);
    assert_eq!(State::of(Some(Phase::Queued), true, false), Started);
    for p in [
        Phase::Running,
        Phase::Retrying,
        Phase::WaitingForDecision,
        Phase::WaitingForApproval,
    ] {
        assert_eq!(State::of(Some(p), false, false), Started, "{p:?}");
    }
    assert_eq!(State::of(Some(Phase::Succeeded), true, false), Finished);
    assert_eq!(State::of(Some(Phase::Failed), false, false), Finished);
    assert_eq!(State::of(Some(Phase::Running), true, true), Finished);
}

#[test]
fn without_a_key_or_once_started_the_queue_does_not_apply() {
    let others = [queue("a", 1, Started)];
    let free = rel("b", 2, None, ConcurrencyPolicy::Queue, Waiting);
    assert_eq!(decide(&free, &others), Verdict::Start);
    assert_eq!(decide(&queue("b", 2, Started), &others), Verdict::Start);
}

#[test]
fn a_release_alone_starts() {
    let me = queue("a", 1, Waiting);
    assert_eq!(decide(&me, std::slice::from_ref(&me)), Verdict::Start);
    assert_eq!(decide(&me, &[queue("z", 0, Finished)]), Verdict::Start);
}

#[test]
fn waits_behind_the_started_one_in_creation_order() {
    let all = [
        queue("a", 1, Started),
        queue("b", 2, Waiting),
        queue("c", 3, Waiting),
    ];
    assert_eq!(decide(&all[1], &all), wait("a", 1));
    assert_eq!(decide(&all[2], &all), wait("a", 2));
}

#[test]
fn a_release_waiting_for_a_decision_keeps_the_key() {
    // Its phase reads as started: those behind it keep waiting.
    let holder = queue(
        "a",
        1,
        State::of(Some(Phase::WaitingForApproval), false, false),
    );
    let all = [holder, queue("b", 2, Waiting)];
    assert_eq!(decide(&all[1], &all), wait("a", 1));
}

#[test]
fn with_none_started_only_the_oldest_starts() {
    let all = [
        queue("c", 3, Waiting),
        queue("a", 1, Waiting),
        queue("b", 2, Waiting),
    ];
    assert_eq!(decide(&all[1], &all), Verdict::Start);
    assert_eq!(decide(&all[2], &all), wait("a", 1));
    assert_eq!(decide(&all[0], &all), wait("a", 2));
}

#[test]
fn equal_creation_times_are_ordered_by_name() {
    let all = [queue("b", 1, Waiting), queue("a", 1, Waiting)];
    assert_eq!(decide(&all[1], &all), Verdict::Start);
    assert_eq!(decide(&all[0], &all), wait("a", 1));
}

#[test]
fn a_started_release_holds_the_key_even_when_an_older_one_waits() {
    // b started; a (same second, sorts first) arrived a moment later.
    let all = [queue("b", 1, Started), queue("a", 1, Waiting)];
    assert_eq!(decide(&all[1], &all), wait("b", 1));
}

#[test]
fn other_keys_and_finished_releases_do_not_count() {
    let all = [
        rel("x", 1, Some("other"), ConcurrencyPolicy::Queue, Started),
        rel("y", 1, None, ConcurrencyPolicy::Queue, Started),
        queue("old", 0, Finished),
        queue("b", 2, Waiting),
    ];
    assert_eq!(decide(&all[3], &all), Verdict::Start);
}

#[test]
fn supersede_fails_older_waiting_releases_only() {
    let all = [
        supersede("a", 1, Started),
        supersede("b", 2, Waiting),
        supersede("c", 3, Waiting),
        supersede("d", 4, Waiting),
    ];
    // A started release is never touched.
    assert_eq!(decide(&all[0], &all), Verdict::Start);
    let by_d = Verdict::Superseded { by: "d".into() };
    assert_eq!(decide(&all[1], &all), by_d);
    assert_eq!(decide(&all[2], &all), by_d);
    // The newest waits for the running one, behind the two still to fail.
    assert_eq!(decide(&all[3], &all), wait("a", 3));
}

#[test]
fn the_newcomers_policy_decides() {
    // b's own policy is Queue; c arrives with Supersede.
    let all = [
        queue("a", 1, Started),
        queue("b", 2, Waiting),
        supersede("c", 3, Waiting),
    ];
    assert_eq!(
        decide(&all[1], &all),
        Verdict::Superseded { by: "c".into() }
    );
    // A Queue newcomer supersedes nothing.
    let all = [supersede("b", 2, Waiting), queue("c", 3, Waiting)];
    assert_eq!(decide(&all[0], &all), Verdict::Start);
}

#[test]
fn the_newest_waits_until_the_superseded_have_failed() {
    // Both waiting, none started: the newer must not start while the older
    // one has not been failed yet (it might be starting right now).
    let all = [supersede("b", 2, Waiting), supersede("c", 3, Waiting)];
    assert_eq!(decide(&all[1], &all), wait("b", 1));
    let all = [supersede("b", 2, Finished), supersede("c", 3, Waiting)];
    assert_eq!(decide(&all[1], &all), Verdict::Start);
}

fn spec(guided: bool) -> DeploymentSpec {
    DeploymentSpec {
        guided_failure: guided,
        guided_failure_timeout: None,
        retries: None,
        concurrency: Some(Concurrency {
            key: "app".into(),
            policy: ConcurrencyPolicy::Queue,
        }),
        approvers: None,
        steps: vec![DeploymentStep {
            run_when: Default::default(),
            approvers: None,
            guided_failure_timeout: None,
            approval_timeout: None,
            name: "s".into(),
            type_: StepType::Run,
            instructions: None,
            retries: None,
            actions: vec![],
        }],
    }
}

#[test]
fn a_queued_release_reads_in_progress_and_names_what_it_waits_for() {
    let now = Timestamp::from_second(100).unwrap();
    let plan = held(
        &spec(true),
        &Default::default(),
        &wait("a", 2),
        Some(1),
        now,
    )
    .unwrap();
    let st = &plan.status;
    assert_eq!(st.phase, Some(Phase::Queued));
    assert_eq!(
        st.message.as_deref(),
        Some(
            "queued: waits for release a to finish (place 2 in the queue for concurrency key app)"
        )
    );
    assert!(!is_true(&st.conditions, ct::READY));
    assert!(is_true(&st.conditions, ct::RECONCILING));
    assert!(!is_true(&st.conditions, ct::STALLED));
    assert!(!is_true(&st.conditions, ct::GUIDED_FAILURE));
    assert_eq!(st.steps.len(), 1);
    assert_eq!(st.steps[0].phase, Phase::Pending);
    assert_eq!(plan.create_step, None);
    assert_eq!(plan.events.len(), 1);
    assert_eq!(
        (plan.events[0].warning, plan.events[0].reason),
        (false, EventReason::Queued)
    );
    // Queued again (another place): no new Event.
    let again = held(&spec(true), st, &wait("a", 1), Some(1), now).unwrap();
    assert!(again.events.is_empty());
    assert_eq!(
        again.status.conditions,
        st.conditions
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.message = c.message.replace("place 2", "place 1");
                c
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_superseded_release_fails_with_a_warning() {
    let now = Timestamp::from_second(100).unwrap();
    let queued = held(
        &spec(false),
        &Default::default(),
        &wait("a", 1),
        Some(1),
        now,
    )
    .unwrap();
    let by = Verdict::Superseded { by: "c".into() };
    let plan = held(&spec(false), &queued.status, &by, Some(1), now).unwrap();
    let st = &plan.status;
    assert_eq!(st.phase, Some(Phase::Failed));
    assert!(is_true(&st.conditions, ct::STALLED));
    let stalled = st
        .conditions
        .iter()
        .find(|c| c.type_ == ct::STALLED)
        .unwrap();
    assert_eq!(stalled.reason, "Superseded");
    assert!(
        st.message
            .as_deref()
            .unwrap()
            .contains("superseded by the newer release c")
    );
    let reasons: Vec<_> = plan.events.iter().map(|e| (e.warning, e.reason)).collect();
    assert_eq!(
        reasons,
        [
            (true, EventReason::Superseded),
            (true, EventReason::DeploymentFailed)
        ]
    );
    assert_eq!(held(&spec(false), st, &Verdict::Start, Some(1), now), None);
}

#[test]
fn a_superseded_release_stays_as_it_is_and_notes_no_deleted_steps() {
    // Its Steps never existed: the planner of a finished release must not
    // read them as deleted after they finished.
    let now = Timestamp::from_second(100).unwrap();
    let by = Verdict::Superseded { by: "c".into() };
    let failed = held(&spec(false), &Default::default(), &by, Some(1), now)
        .unwrap()
        .status;
    let later = Timestamp::from_second(200).unwrap();
    let p = crate::plan::deployment::plan(
        &spec(false),
        "b",
        Some(1),
        &failed,
        &[crate::plan::deployment::StepSlot::Missing],
        false,
        later,
    );
    assert_eq!(p.status, failed);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(p.create_step, None);
}
