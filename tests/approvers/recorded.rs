//! Who decided, as the operator records it (issue 15, part 2): the
//! stamped user becomes the decision's and approval's `by`.

use super::*;
use common::manifests::{action, release};
use stepwise::api::{
    ANNOTATION_RECORDED_APPROVAL, ANNOTATION_RECORDED_DECISION, Deployment, Phase,
};

fn phase(p: Phase) -> impl Fn(&Step) -> bool {
    move |s: &Step| s.status.as_ref().and_then(|st| st.phase) == Some(p)
}

/// Sets annotation `k=v` on Deployment `rel` as `who`.
async fn on_deployment(ns: &TestNamespace, who: &Client, k: &str, v: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(who.clone(), &ns.name);
    let patch = json!({ "metadata": { "annotations": { k: v } } });
    api.patch("rel", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate the Deployment")
}

/// Waits until Step `name`'s status satisfies `check`.
async fn wait_step(
    steps: &Api<Step>,
    name: &str,
    what: &str,
    check: impl Fn(&Step) -> bool,
) -> Step {
    common::wait_for(steps, name, SETTLE, what, check).await
}

/// Issue 15, part 2: the operator records the stamped user as the decision's
/// and approval's `by`, on the Step and through the Deployment handoff, keeps
/// it on the Job and Step records and removes `decided-by` with the annotation.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_records_who_decided_and_who_approved() {
    let ns = setup("by").await;
    let op = common::operator::Operator::start(&common::operator::launch(), &ns.name).await;
    let fail_once = || action("a", &[("fail-attempts", "1")]);
    let d = release(
        "rel",
        json!({ "guidedFailure": true, "steps": [
            { "name": "s", "retries": { "limit": 0 }, "actions": [fail_once()] },
            { "name": "gate", "type": "ManualIntervention" },
            { "name": "t", "retries": { "limit": 0 }, "actions": [fail_once()] },
            { "name": "gate2", "type": "ManualIntervention" },
        ]}),
    );
    let admin: Api<Deployment> = ns.api();
    admin
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let steps: Api<Step> = ns.api();
    let (alice, bob, carol) = (
        client_as("alice", &[]).await,
        client_as("bob", &[]).await,
        client_as("carol", &[]).await,
    );
    alice_decides_on_the_step(&ns, &steps, &alice).await;
    carol_approves_on_the_deployment(&ns, &steps, &carol).await;
    bob_decides_on_the_deployment(&ns, &steps, &bob).await;
    alice_approves_the_last_gate(&ns, &admin, &steps, &alice).await;
    drop(op);
    ns.cleanup().await;
}

/// A decision on the Step: alice, recorded on its status and its Job.
async fn alice_decides_on_the_step(ns: &TestNamespace, steps: &Api<Step>, alice: &Client) {
    wait_step(
        steps,
        "rel-s",
        "waiting for a decision",
        phase(Phase::WaitingForDecision),
    )
    .await;
    annotate_as(
        alice,
        &ns.name,
        "rel-s",
        json!({ ANNOTATION_DECISION: "retry" }),
    )
    .await
    .expect("alice decides");
    let s = wait_step(steps, "rel-s", "succeeded", phase(Phase::Succeeded)).await;
    let st = s.status.clone().expect("status");
    assert_eq!(st.decisions.len(), 1, "{st:?}");
    assert_eq!(st.decisions[0].by.as_deref(), Some("alice"));
    assert!(
        decided_by(&s).is_none(),
        "decided-by removed with the decision"
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = ns.api();
    let job = jobs.get("rel-s-a-1").await.expect("attempt 1's Job");
    let recorded = job.annotations().get(ANNOTATION_RECORDED_DECISION).cloned();
    assert!(
        recorded
            .as_deref()
            .is_some_and(|r| r.contains(r#""by":"alice""#)),
        "{recorded:?}"
    );
}

/// An approval on the Deployment: carol, handed on to the Step.
async fn carol_approves_on_the_deployment(ns: &TestNamespace, steps: &Api<Step>, carol: &Client) {
    wait_step(
        steps,
        "rel-gate",
        "waiting for approval",
        phase(Phase::WaitingForApproval),
    )
    .await;
    let d = on_deployment(ns, carol, ANNOTATION_APPROVAL, "approved").await;
    assert_eq!(
        d.annotations()
            .get(ANNOTATION_DECIDED_BY)
            .map(String::as_str),
        Some("carol")
    );
    // The status is written first, then the record on the Step, then the
    // person's annotations go: wait for all three.
    let g = wait_step(
        steps,
        "rel-gate",
        "approved, recorded on the Step, annotations removed",
        |s: &Step| {
            phase(Phase::Succeeded)(s)
                && s.annotations().contains_key(ANNOTATION_RECORDED_APPROVAL)
                && decided_by(s).is_none()
                && !s.annotations().contains_key(ANNOTATION_APPROVAL)
        },
    )
    .await;
    let approval = g
        .status
        .as_ref()
        .and_then(|s| s.approval.clone())
        .expect("approval");
    assert_eq!(approval.by.as_deref(), Some("carol"));
    let recorded = g.annotations().get(ANNOTATION_RECORDED_APPROVAL);
    assert!(
        recorded.is_some_and(|r| r.contains(r#""by":"carol""#)),
        "{recorded:?}"
    );
}

/// A decision on the Deployment: bob, handed on to the Step.
async fn bob_decides_on_the_deployment(ns: &TestNamespace, steps: &Api<Step>, bob: &Client) {
    wait_step(
        steps,
        "rel-t",
        "waiting for a decision",
        phase(Phase::WaitingForDecision),
    )
    .await;
    on_deployment(ns, bob, ANNOTATION_DECISION, "ignore").await;
    let t = wait_step(steps, "rel-t", "ignored", phase(Phase::Succeeded)).await;
    let st = t.status.expect("status");
    assert_eq!(st.decisions[0].by.as_deref(), Some("bob"), "{st:?}");
}

/// The last approval on the Step itself: alice; the Deployment keeps no decision annotations.
async fn alice_approves_the_last_gate(
    ns: &TestNamespace,
    admin: &Api<Deployment>,
    steps: &Api<Step>,
    alice: &Client,
) {
    wait_step(
        steps,
        "rel-gate2",
        "waiting for approval",
        phase(Phase::WaitingForApproval),
    )
    .await;
    annotate_as(
        alice,
        &ns.name,
        "rel-gate2",
        json!({ ANNOTATION_APPROVAL: "approved" }),
    )
    .await
    .expect("alice approves");
    let done = common::wait_for(
        admin,
        "rel",
        SETTLE,
        "the release to succeed",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded),
    )
    .await;
    assert!(
        done.annotations()
            .keys()
            .all(|k| !k.starts_with("stepwise.dev/")),
        "the Deployment keeps no decision annotations: {:?}",
        done.annotations()
    );
    let g2 = steps.get("rel-gate2").await.expect("gate2");
    assert_eq!(
        g2.status
            .and_then(|s| s.approval)
            .and_then(|a| a.by)
            .as_deref(),
        Some("alice")
    );
}
