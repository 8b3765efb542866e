//! Decision deadlines (issue 15, part 1): `guidedFailureTimeout` and
//! `approvalTimeout` apply their default when no one decides in time, record
//! it `by: timeout` with a `DecisionTimedOut` Event, and keep the deadline
//! through an operator restart (it is derived from recorded times). Times
//! are short (3-4 s); the assertions compare recorded times, not stopwatches.

mod common;

use common::events::wait_warning;
use common::manifests::{action, release};
use common::operator::setup;
use common::release::{create_release as create, wait_phase};
use jiff::SignedDuration;
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{DECIDED_BY_TIMEOUT, Decision, Phase, Step, StepStatus};

fn status(s: &Step) -> StepStatus {
    s.status.clone().expect("a status")
}

/// The failure the step waits on was seen at this time.
fn failure_seen(st: &StepStatus) -> jiff::Timestamp {
    st.actions[0]
        .attempts
        .last()
        .and_then(|a| a.failure_seen_at)
        .expect("the failure's time")
}

fn guided(name: &str, seconds: i64, decision: &str) -> stepwise::api::Deployment {
    release(
        name,
        json!({ "guidedFailure": true,
        "guidedFailureTimeout": { "seconds": seconds, "decision": decision },
        "steps": [
            { "name": "s", "retries": { "limit": 0 },
              "actions": [action("a", &[("fail-attempts", "1")])] },
            { "name": "t", "actions": [action("b", &[])] },
        ]}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guided_failure_times_out_into_the_default() {
    let (ns, op) = setup("deadline-guided").await;
    let api = create(&ns, &guided("rel", 3, "ignore")).await;
    let steps: Api<Step> = ns.api();
    let waiting = status(&wait_phase(&steps, "rel-s", Phase::WaitingForDecision).await);
    let deadline = waiting.decision_deadline.expect("a decision deadline");
    assert_eq!(
        deadline,
        failure_seen(&waiting) + SignedDuration::from_secs(3)
    );
    let d = wait_phase(&api, "rel", Phase::WaitingForDecision).await;
    assert_eq!(d.status.and_then(|s| s.decision_deadline), Some(deadline));
    // No one decides: ignore applies, and the release carries on.
    let done = wait_phase(&api, "rel", Phase::Succeeded).await;
    assert_eq!(done.status.and_then(|s| s.decision_deadline), None);
    let st = status(&steps.get("rel-s").await.expect("step"));
    assert_eq!(st.decisions.len(), 1, "{st:?}");
    let decision = &st.decisions[0];
    assert_eq!(decision.decision, Decision::Ignore);
    assert_eq!(decision.by.as_deref(), Some(DECIDED_BY_TIMEOUT));
    assert!(
        decision.decided_at >= deadline,
        "{} < {deadline}",
        decision.decided_at
    );
    assert_eq!(st.decision_deadline, None);
    let note = wait_warning(&ns, "DecisionTimedOut").await;
    assert!(note.contains("ignore applied"), "{note}");
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_times_out_into_the_default() {
    let (ns, op) = setup("deadline-approval").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "gate", "type": "ManualIntervention",
                "approvalTimeout": { "seconds": 3, "decision": "rejected" } }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    let waiting = wait_phase(&steps, "rel-gate", Phase::WaitingForApproval).await;
    let created = waiting.creation_timestamp().expect("created").0;
    let deadline = status(&waiting).decision_deadline.expect("a deadline");
    assert_eq!(deadline, created + SignedDuration::from_secs(3));
    wait_phase(&api, "rel", Phase::Failed).await;
    let st = status(&steps.get("rel-gate").await.expect("step"));
    let a = st.approval.expect("an approval");
    assert_eq!(a.approval, stepwise::api::Approval::Rejected);
    assert_eq!(a.by.as_deref(), Some(DECIDED_BY_TIMEOUT));
    assert!(a.decided_at >= deadline);
    wait_warning(&ns, "DecisionTimedOut").await;
    drop(op);
    ns.cleanup().await;
}

/// The operator is down when the deadline passes: nothing is applied while
/// it is away, and the restarted operator applies the default at once.
/// Restarted before the deadline, it waits for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_survives_an_operator_restart() {
    let (ns, mut op) = setup("deadline-restart").await;
    let api = create(&ns, &guided("rel", 4, "abort")).await;
    let steps: Api<Step> = ns.api();
    let waiting = status(&wait_phase(&steps, "rel-s", Phase::WaitingForDecision).await);
    let deadline = waiting.decision_deadline.expect("a decision deadline");
    op.kill();
    let past = deadline + SignedDuration::from_secs(1);
    let left = past.duration_since(jiff::Timestamp::now());
    tokio::time::sleep(std::time::Duration::try_from(left).unwrap_or_default()).await;
    let st = status(&steps.get("rel-s").await.expect("step"));
    assert!(
        st.decisions.is_empty(),
        "applied while the operator was down"
    );
    op.restart().await;
    wait_phase(&api, "rel", Phase::Failed).await;
    let st = status(&steps.get("rel-s").await.expect("step"));
    assert_eq!(st.decisions[0].decision, Decision::Abort);
    assert_eq!(st.decisions[0].by.as_deref(), Some(DECIDED_BY_TIMEOUT));
    assert!(st.decisions[0].decided_at >= past);

    // Restarted before its deadline: it still applies, at its time.
    let api = create(
        &ns,
        &release(
            "rel2",
            json!({ "steps": [{ "name": "gate", "type": "ManualIntervention",
                "approvalTimeout": { "seconds": 8, "decision": "approved" } }]}),
        ),
    )
    .await;
    let waiting = wait_phase(&steps, "rel2-gate", Phase::WaitingForApproval).await;
    let deadline = status(&waiting).decision_deadline.expect("a deadline");
    op.restart().await;
    assert!(
        jiff::Timestamp::now() < deadline,
        "the restart took longer than the deadline; the test proves nothing"
    );
    wait_phase(&api, "rel2", Phase::Succeeded).await;
    let a = status(&steps.get("rel2-gate").await.expect("step"))
        .approval
        .expect("approval");
    assert_eq!(a.by.as_deref(), Some(DECIDED_BY_TIMEOUT));
    assert!(a.decided_at >= deadline);
    drop(op);
    ns.cleanup().await;
}

/// The API server refuses a deadline where it means nothing (server-side
/// dry runs; no operator needed), and accepts one where it does.
#[tokio::test(flavor = "multi_thread")]
async fn deadlines_are_refused_where_they_mean_nothing() {
    let ns = common::operator::namespace_with_crds("deadline-cel").await;
    let run = json!({ "name": "s", "actions": [action("a", &[])] });
    let gate = json!({ "name": "g", "type": "ManualIntervention" });
    let timeout = json!({ "seconds": 5, "decision": "abort" });
    let with = |mut v: serde_json::Value, k: &str, t: serde_json::Value| {
        v[k] = t;
        v
    };
    let cases = [
        (
            "guidedFailureTimeout without guidedFailure",
            json!({ "guidedFailureTimeout": timeout, "steps": [run] }),
            Some("guidedFailureTimeout needs guidedFailure: true"),
        ),
        (
            "a step's guidedFailureTimeout without guidedFailure",
            json!({ "steps": [with(run.clone(), "guidedFailureTimeout", timeout.clone())] }),
            Some("guidedFailureTimeout needs guidedFailure: true"),
        ),
        (
            "guidedFailureTimeout on a ManualIntervention step",
            json!({ "guidedFailure": true, "steps": [with(gate.clone(), "guidedFailureTimeout", timeout.clone())] }),
            Some("guidedFailureTimeout is for Run steps"),
        ),
        (
            "approvalTimeout on a Run step",
            json!({ "steps": [with(run.clone(), "approvalTimeout", json!({ "seconds": 5, "decision": "approved" }))] }),
            Some("approvalTimeout is for ManualIntervention steps"),
        ),
        (
            "zero seconds",
            json!({ "guidedFailure": true, "guidedFailureTimeout": { "seconds": 0, "decision": "retry" }, "steps": [run] }),
            Some("should be greater than or equal to 1"),
        ),
        (
            "an unknown decision",
            json!({ "steps": [with(gate.clone(), "approvalTimeout", json!({ "seconds": 5, "decision": "abort" }))] }),
            Some("Unsupported value"),
        ),
        (
            "both where they belong",
            json!({ "guidedFailure": true, "guidedFailureTimeout": timeout, "steps": [
                run.clone(), with(gate.clone(), "approvalTimeout", json!({ "seconds": 5, "decision": "approved" }))] }),
            None,
        ),
    ];
    let mut wrong = refused::<stepwise::api::Deployment>(&ns, "Deployment", &cases).await;
    // A Step made by hand is held to the same rules.
    let step_cases = [
        (
            "a Step's approvalTimeout on a Run step",
            json!({ "actions": [action("a", &[])], "approvalTimeout": { "seconds": 5, "decision": "approved" } }),
            Some("approvalTimeout is for ManualIntervention steps"),
        ),
        (
            "a Step's guidedFailureTimeout without guidedFailure",
            json!({ "actions": [action("a", &[])], "guidedFailureTimeout": timeout }),
            Some("guidedFailureTimeout needs guidedFailure: true on a Run step"),
        ),
        (
            "a Step with both where they belong",
            json!({ "type": "ManualIntervention", "approvalTimeout": { "seconds": 5, "decision": "approved" } }),
            None,
        ),
    ];
    wrong.extend(refused::<Step>(&ns, "Step", &step_cases).await);
    assert!(wrong.is_empty(), "{wrong:#?}");
    ns.cleanup().await;
}

/// Server-side dry runs of `cases` (what, spec, a part of the refusal or
/// None for accepted); the cases that did not go as expected.
async fn refused<K: kube::Resource<DynamicType = ()>>(
    ns: &common::TestNamespace,
    kind: &str,
    cases: &[(&str, serde_json::Value, Option<&str>)],
) -> Vec<String> {
    use kube::api::{ApiResource, DynamicObject, PostParams};
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &ar);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut wrong = Vec::new();
    for (what, spec, refusal) in cases {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "stepwise.dev/v1alpha1", "kind": kind,
            "metadata": { "name": "d" }, "spec": spec,
        }))
        .expect("object");
        match (api.create(&dry, &obj).await, refusal) {
            (Ok(_), None) => {}
            (Err(kube::Error::Api(e)), Some(part)) if e.code == 422 && e.message.contains(part) => {
            }
            (got, want) => wrong.push(format!("{what}: got {:?}, want {want:?}", got.err())),
        }
    }
    wrong
}
