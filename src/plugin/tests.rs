//! The tree as a person reads it, and which Step a request applies to.
use super::*;

const DEPLOYMENT: &str = r#"
apiVersion: stepwise.dev/v1alpha1
kind: Deployment
metadata: {name: shop-1, namespace: team-a}
spec:
  guidedFailure: true
  steps:
  - name: migrate
    retries: {limit: 1, delaySeconds: 15}
    actions:
    - {name: backup, template: {spec: {containers: [{name: m}]}}}
    - {name: schema, template: {spec: {containers: [{name: m}]}}}
  - name: approve
    type: ManualIntervention
status:
  phase: Retrying
  message: "step migrate (1/2): attempt 1 of 2 failed: exit code 1 (Error); retrying at 12:00:17Z"
  steps:
  - {name: migrate, stepRef: shop-1-migrate, phase: Retrying}
  - {name: approve, phase: Pending}
"#;

const STEP: &str = r#"
apiVersion: stepwise.dev/v1alpha1
kind: Step
metadata: {name: shop-1-migrate, namespace: team-a}
spec:
  guidedFailure: true
  retries: {enabled: true, limit: 1, delaySeconds: 15}
  actions:
  - {name: backup, template: {spec: {containers: [{name: m}]}}}
  - {name: schema, template: {spec: {containers: [{name: m}]}}}
status:
  phase: Retrying
  message: "attempt 1 of 2 failed: exit code 1 (Error); retrying at 12:00:17Z"
  actions:
  - name: backup
    phase: Succeeded
    attempts:
    - {number: 1, job: shop-1-migrate-backup-1, outcome: Succeeded, startedAt: "2026-11-29T12:00:00.100Z", finishedAt: "2026-11-29T12:00:01Z"}
  - name: schema
    phase: Retrying
    nextAttemptAt: "2026-11-29T12:00:17.250Z"
    attempts:
    - {number: 1, job: shop-1-migrate-schema-1, outcome: Failed, startedAt: "2026-11-29T12:00:01.200Z", finishedAt: "2026-11-29T12:00:02Z", failureSeenAt: "2026-11-29T12:00:02.250Z", reason: Error, exitCode: 1}
"#;

fn fixtures() -> (Deployment, Vec<Step>) {
    (
        serde_norway::from_str(DEPLOYMENT).unwrap(),
        vec![serde_norway::from_str(STEP).unwrap()],
    )
}

#[test]
fn tree_shows_attempts_next_retry_and_error() {
    let (d, steps) = fixtures();
    insta::assert_snapshot!(render(&d, &steps));
}

#[test]
fn tree_says_what_a_bounded_status_leaves_out() {
    let (d, mut steps) = fixtures();
    let st = steps[0].status.as_mut().unwrap();
    st.actions[1].earlier_attempts = Some(6);
    st.earlier_decisions = Some(crate::api::EarlierDecisions {
        count: 3,
        through: "2026-11-29T12:00:00Z".parse().unwrap(),
    });
    let tree = render(&d, &steps);
    assert!(tree.contains("#1-#6  Failed (not listed)"), "{tree}");
    assert!(tree.contains("3 earlier decisions (not listed)"), "{tree}");
}

#[test]
fn tree_counts_down_to_the_decision_deadline() {
    let (mut d, steps) = fixtures();
    let at: Timestamp = "2026-11-29T12:01:10Z".parse().unwrap();
    d.status.as_mut().unwrap().decision_deadline = Some(at);
    let now: Timestamp = "2026-11-29T12:00:05Z".parse().unwrap();
    let tree = render_at(&d, &steps, Some(now));
    assert!(
        tree.contains("│ decision deadline 12:01:10.000Z (in 1m 5s): the default applies"),
        "{tree}"
    );
    assert!(deadline(at, Some(at)).contains("(in 0s)"));
    assert!(!render(&d, &steps).contains("(in "));
}

#[test]
fn tree_says_who_decided_and_who_approved() {
    let (mut d, mut steps) = fixtures();
    let at: Timestamp = "2026-11-29T12:00:20Z".parse().unwrap();
    let st = steps[0].status.as_mut().unwrap();
    st.decisions = vec![
        crate::api::DecisionRecord {
            action: "schema".into(),
            attempt: 1,
            decision: Decision::Retry,
            decided_at: at,
            by: Some("alice".into()),
        },
        crate::api::DecisionRecord {
            action: "schema".into(),
            attempt: 2,
            decision: Decision::Ignore,
            decided_at: at,
            by: None,
        },
    ];
    let mut gate: Step = serde_norway::from_str(STEP).unwrap();
    gate.metadata.name = Some("shop-1-approve".into());
    gate.status = Some(crate::api::StepStatus {
        phase: Some(Phase::Succeeded),
        approval: Some(crate::api::ApprovalRecord {
            approval: Approval::Approved,
            decided_at: at,
            by: Some("carol".into()),
        }),
        ..Default::default()
    });
    d.status.as_mut().unwrap().steps[1].step_ref = Some("shop-1-approve".into());
    steps.push(gate);
    let tree = render(&d, &steps);
    assert!(
        tree.contains("decision retry on schema attempt 1 at 12:00:20.000Z by alice\n"),
        "{tree}"
    );
    assert!(
        tree.contains("decision ignore on schema attempt 2 at 12:00:20.000Z\n"),
        "{tree}"
    );
    assert!(
        tree.contains("approved at 12:00:20.000Z by carol"),
        "{tree}"
    );
}

#[test]
fn tree_shows_a_queued_release_and_what_it_waits_for() {
    let (mut d, _) = fixtures();
    d.spec.concurrency = Some(crate::api::Concurrency {
        key: "shop".into(),
        policy: crate::api::ConcurrencyPolicy::Queue,
    });
    let st = d.status.as_mut().unwrap();
    st.phase = Some(Phase::Queued);
    st.message = Some(crate::plan::queue::queued_message("shop", "shop-0", 1));
    st.current_step = None;
    let tree = render(&d, &[]);
    let head: Vec<&str> = tree.lines().take(3).collect();
    assert_eq!(
        head,
        [
            "Deployment team-a/shop-1  Queued",
            "│ queued: waits for release shop-0 to finish (place 1 in the queue for concurrency key shop)",
            "│ one at a time: concurrency key shop (Queue)",
        ]
    );
    assert!(!d.finished());
}

#[test]
fn tree_marks_failure_handlers_and_skipped_steps() {
    let (mut d, _) = fixtures();
    d.spec.steps[1].run_when = crate::api::RunWhen::OnFailure;
    let st = d.status.as_mut().unwrap();
    st.phase = Some(Phase::Succeeded);
    st.steps[0].phase = Phase::Succeeded;
    st.steps[1].phase = Phase::Skipped;
    let tree = render(&d, &[]);
    assert!(
        tree.lines()
            .any(|l| l == "└─ approve  Skipped  (manual intervention)  (failure handler)"),
        "{tree}"
    );
}

#[test]
fn decisions_need_a_step_that_waits_for_one() {
    let (d, mut steps) = fixtures();
    let err = target(&d, &steps, Ask::Retry).unwrap_err();
    assert_eq!(
        err,
        "deployment shop-1 is not waiting for a guided-failure decision (phase Retrying)"
    );
    assert!(target(&d, &steps, Ask::Approve).is_err());
    steps[0].status.as_mut().unwrap().phase = Some(Phase::WaitingForDecision);
    assert_eq!(
        target(&d, &steps, Ask::Abort)
            .unwrap()
            .metadata
            .name
            .as_deref(),
        Some("shop-1-migrate")
    );
    assert_eq!(Ask::Approve.annotation(), (ANNOTATION_APPROVAL, "approved"));
}
