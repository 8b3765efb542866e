//! Steps the release does not own, and Steps deleted before they finished.

use super::*;

fn foreign(owner: Option<(&str, &str)>) -> StepSlot {
    StepSlot::Foreign(ForeignStep {
        name: "d-s0".into(),
        owner: owner.map(|(kind, name)| Owner {
            kind: kind.into(),
            name: name.into(),
            uid: "u-other".into(),
        }),
    })
}

#[test]
fn a_step_of_another_release_fails_this_one_naming_it() {
    let p = run(
        &spec(2, false),
        &[foreign(Some(("Deployment", "other"))), StepSlot::Missing],
    );
    assert_eq!(p.create_step, None);
    assert_eq!(p.status.phase, Some(Phase::Failed));
    assert!(is_true(&p.status.conditions, ct::STALLED));
    let msg = p.status.message.clone().unwrap();
    assert!(
        msg.contains("d-s0") && msg.contains("Deployment other"),
        "{msg}"
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == EventReason::StepNameTaken)
    );
}

#[test]
fn a_foreign_step_is_never_adopted_and_is_waited_for() {
    // An old incarnation of this Deployment, or a Step made by hand.
    for owner in [Some(("Deployment", "d")), None] {
        let p = run(&spec(2, false), &[foreign(owner), StepSlot::Missing]);
        assert_eq!(p.create_step, None);
        assert_eq!(p.status.phase, Some(Phase::Running));
        assert!(p.recheck);
        assert_eq!(p.status.steps[0].phase, Phase::Running);
        let msg = p.status.message.clone().unwrap();
        assert!(
            msg.contains("Step named d-s0") && msg.contains("owned by"),
            "{msg}"
        );
    }
}

#[test]
fn a_deleted_unfinished_step_is_created_again() {
    let s = spec(2, false);
    let running = run(&s, &[view(0, Phase::Retrying), StepSlot::Missing]);
    let p = again(&s, &running.status, &[StepSlot::Missing, StepSlot::Missing]);
    assert_eq!(p.create_step, Some(0));
    assert!(p.events.is_empty());
}
