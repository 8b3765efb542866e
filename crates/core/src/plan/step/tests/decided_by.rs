//! Who decided (`stepwise.dev/decided-by`): recorded as the decision's or
//! approval's `by`, kept on the Job or Step so a status wipe keeps it, and
//! removed together with the annotation it names.

use super::*;

fn manual() -> StepSpec {
    let mut s = spec(&[], None, false);
    s.type_ = StepType::ManualIntervention;
    s
}

#[test]
fn a_decision_records_who_took_it_and_removes_decided_by_with_it() {
    let mut w = exhaust_guided();
    w.decision = Some("ignore".into());
    w.decided_by = Some("alice".into());
    let p = w.step(t(2.0));
    assert!(p.removes(ANNOTATION_DECISION));
    assert!(
        p.removes(ANNOTATION_DECIDED_BY),
        "{:?}",
        p.remove_annotations
    );
    assert_eq!(w.status.decisions[0].by.as_deref(), Some("alice"));
    // The Job carries it too, so a wiped status keeps it.
    assert_eq!(p.record_decisions[0].record.by.as_deref(), Some("alice"));
    w.step(t(2.1));
    w.finish("b", 1, ok());
    w.step(t(3.0));
    let before = w.status.decisions.clone();
    w.status = StepStatus::default();
    let p = w.step(t(10.0));
    assert!(p.record_decisions.is_empty(), "already on its Job");
    assert_eq!(w.status.decisions, before);
    assert_eq!(w.status.decisions[0].by.as_deref(), Some("alice"));
}

#[test]
fn without_the_policy_by_is_absent() {
    let mut w = exhaust_guided();
    w.decision = Some("retry".into());
    let p = w.step(t(2.0));
    assert!(!p.removes(ANNOTATION_DECIDED_BY));
    assert_eq!(w.status.decisions[0].by, None);
    assert_eq!(p.record_decisions[0].record.by, None);
    let mut w = World::new(manual());
    w.approval = Some("approved".into());
    w.step(t(0.0));
    assert_eq!(w.status.approval.as_ref().unwrap().by, None);
}

#[test]
fn an_approval_records_who_gave_it_and_a_wipe_keeps_it() {
    let mut w = World::new(manual());
    w.step(t(0.0));
    w.approval = Some("rejected".into());
    w.decided_by = Some("carol".into());
    let p = w.step(t(1.0));
    assert!(p.removes(ANNOTATION_APPROVAL) && p.removes(ANNOTATION_DECIDED_BY));
    assert_eq!(
        w.status.approval.as_ref().unwrap().by.as_deref(),
        Some("carol")
    );
    assert_eq!(
        p.record_approval.as_ref().and_then(|a| a.by.as_deref()),
        Some("carol")
    );
    w.status = StepStatus::default();
    w.step(t(5.0));
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(
        w.status.approval.as_ref().unwrap().by.as_deref(),
        Some("carol")
    );
}

#[test]
fn decided_by_stays_while_an_annotation_it_may_name_stays() {
    // An unknown value is not removed: neither is who wrote it.
    let mut w = exhaust_guided();
    w.decision = Some("yolo".into());
    w.decided_by = Some("bob".into());
    let p = w.step(t(2.0));
    assert!(
        p.remove_annotations.is_empty(),
        "{:?}",
        p.remove_annotations
    );
    // A stray decision on a waiting ManualIntervention step goes; the
    // approval still waiting keeps decided-by.
    let mut w = World::new(manual());
    w.decision = Some("retry".into());
    w.approval = Some("maybe".into());
    w.decided_by = Some("bob".into());
    let p = w.step(t(0.0));
    assert!(p.removes(ANNOTATION_DECISION));
    assert!(!p.removes(ANNOTATION_DECIDED_BY));
    // A decision ignored (nothing to decide) takes decided-by along.
    let mut w = World::new(spec(&["a"], retries(3, 15), true));
    w.step(t(0.0));
    w.decision = Some("abort".into());
    w.decided_by = Some("bob".into());
    let p = w.step(t(1.0));
    assert!(p.removes(ANNOTATION_DECISION) && p.removes(ANNOTATION_DECIDED_BY));
}

#[test]
fn a_recorded_decision_reads_from_an_old_job_annotation_without_by() {
    let old: JobDecision =
        serde_json::from_str(r#"{"decision":"retry","decidedAt":"2026-11-29T12:00:00Z"}"#).unwrap();
    assert_eq!(old.by, None);
    let new = JobDecision {
        by: Some("alice".into()),
        ..old
    };
    let json = serde_json::to_string(&new).unwrap();
    assert!(json.contains(r#""by":"alice""#), "{json}");
}
