//! One release at a time (issue 15, part 3): releases that share
//! `spec.concurrency.key` run one after the other, oldest first; `Supersede`
//! fails the older queued ones; different keys run side by side. Each release
//! starts with a ManualIntervention gate, so the one holding the key stays put
//! until the test approves it (and a release waiting for approval keeps its place).

mod common;

use common::events::wait_warning;
use common::manifests::{action, release};
use common::operator::setup;
use common::release::{create_release, wait_phase};
use common::{TestNamespace, wait_for};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use stepwise::api::{
    ANNOTATION_APPROVAL, ANNOTATION_CANCEL, Deployment, Phase, Step, condition_types as ct,
};
use stepwise::status::is_true;

const LONG: std::time::Duration = std::time::Duration::from_secs(90);

fn gated(name: &str, concurrency: Option<Value>) -> Deployment {
    let mut spec = json!({ "steps": [
        { "name": "gate", "type": "ManualIntervention" },
        { "name": "go", "actions": [action("a", &[("duration", "1s")])] },
    ]});
    if let Some(c) = concurrency {
        spec["concurrency"] = c;
    }
    release(name, spec)
}

async fn approve(api: &Api<Deployment>, name: &str) {
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_APPROVAL: "approved" } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("approving {name}: {e}"));
}

/// Waits until `name` is Queued with a message naming `behind` and `place`.
async fn wait_queued(api: &Api<Deployment>, name: &str, behind: &str, place: usize) -> Deployment {
    let want = format!("waits for release {behind} to finish (place {place} in the queue");
    wait_for(
        api,
        name,
        LONG,
        &format!("Queued: {want}"),
        |d: &Deployment| {
            let st = d.status.clone().unwrap_or_default();
            st.phase == Some(Phase::Queued) && st.message.is_some_and(|m| m.contains(&want))
        },
    )
    .await
}

/// The Deployments that own at least one Step, by name.
async fn with_steps(ns: &TestNamespace) -> Vec<String> {
    let steps: Api<Step> = ns.api();
    let mut owners: Vec<String> = steps
        .list(&ListParams::default())
        .await
        .expect("list steps")
        .items
        .iter()
        .filter_map(|s| s.labels().get("stepwise.dev/deployment").cloned())
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

#[tokio::test(flavor = "multi_thread")]
async fn three_releases_with_one_key_run_one_at_a_time_oldest_first() {
    let (ns, mut op) = setup("queue").await;
    let key = json!({ "key": "shop", "policy": "Queue" });
    let api = create_release(&ns, &gated("q1", Some(key.clone()))).await;
    wait_phase(&api, "q1", Phase::WaitingForApproval).await;
    create_release(&ns, &gated("q2", Some(key.clone()))).await;
    wait_queued(&api, "q2", "q1", 1).await;
    create_release(&ns, &gated("q3", Some(key))).await;
    let q3 = wait_queued(&api, "q3", "q1", 2).await;
    // kstatus reads a queued release as in progress, not failed.
    let st = q3.status.unwrap_or_default();
    assert!(!is_true(&st.conditions, ct::READY));
    assert!(is_true(&st.conditions, ct::RECONCILING));
    assert!(!is_true(&st.conditions, ct::STALLED));

    // A restart reads the queue off the cluster again: still one running.
    op.restart().await;
    wait_queued(&api, "q2", "q1", 1).await;
    wait_queued(&api, "q3", "q1", 2).await;
    assert_eq!(with_steps(&ns).await, ["q1"]);

    approve(&api, "q1").await;
    wait_phase(&api, "q1", Phase::Succeeded).await;
    wait_phase(&api, "q2", Phase::WaitingForApproval).await;
    wait_queued(&api, "q3", "q2", 1).await;
    assert_eq!(with_steps(&ns).await, ["q1", "q2"]);

    approve(&api, "q2").await;
    wait_phase(&api, "q2", Phase::Succeeded).await;
    wait_phase(&api, "q3", Phase::WaitingForApproval).await;
    approve(&api, "q3").await;
    wait_phase(&api, "q3", Phase::Succeeded).await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn supersede_fails_the_queued_middle_release() {
    let (ns, _op) = setup("supersede").await;
    let key = json!({ "key": "shop", "policy": "Supersede" });
    let api = create_release(&ns, &gated("s1", Some(key.clone()))).await;
    wait_phase(&api, "s1", Phase::WaitingForApproval).await;
    create_release(&ns, &gated("s2", Some(key.clone()))).await;
    wait_queued(&api, "s2", "s1", 1).await;
    create_release(&ns, &gated("s3", Some(key))).await;

    // The middle one fails (it never started); the running one is untouched.
    let s2 = wait_phase(&api, "s2", Phase::Failed).await;
    let st = s2.status.unwrap_or_default();
    let stalled = st.conditions.iter().find(|c| c.type_ == ct::STALLED);
    assert_eq!(
        stalled.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "Superseded"))
    );
    let note = wait_warning(&ns, "Superseded").await;
    assert!(note.contains("s3"), "{note}");
    wait_queued(&api, "s3", "s1", 1).await;
    let s1 = api.get("s1").await.expect("get s1");
    assert_eq!(
        s1.status.and_then(|s| s.phase),
        Some(Phase::WaitingForApproval)
    );

    approve(&api, "s1").await;
    wait_phase(&api, "s1", Phase::Succeeded).await;
    wait_phase(&api, "s3", Phase::WaitingForApproval).await;
    approve(&api, "s3").await;
    wait_phase(&api, "s3", Phase::Succeeded).await;
    assert_eq!(with_steps(&ns).await, ["s1", "s3"], "s2 never started");
    let s2 = api.get("s2").await.expect("get s2");
    assert_eq!(
        s2.status.and_then(|s| s.phase),
        Some(Phase::Failed),
        "Superseded is final"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn different_keys_run_in_parallel() {
    let (ns, _op) = setup("queue-keys").await;
    let api = create_release(&ns, &gated("a1", Some(json!({ "key": "a" })))).await;
    create_release(&ns, &gated("b1", Some(json!({ "key": "b" })))).await;
    create_release(&ns, &gated("free", None)).await;
    // All three wait for approval at the same time: none waits for another.
    for name in ["a1", "b1", "free"] {
        wait_phase(&api, name, Phase::WaitingForApproval).await;
    }
    create_release(&ns, &gated("a2", Some(json!({ "key": "a" })))).await;
    wait_queued(&api, "a2", "a1", 1).await;
    for name in ["a1", "b1", "free"] {
        approve(&api, name).await;
    }
    wait_phase(&api, "a2", Phase::WaitingForApproval).await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_of_a_queued_release_fails_it_before_it_starts() {
    let (ns, _op) = setup("queue-cancel").await;
    let key = json!({ "key": "shop" });
    let api = create_release(&ns, &gated("q1", Some(key.clone()))).await;
    wait_phase(&api, "q1", Phase::WaitingForApproval).await;
    create_release(&ns, &gated("q2", Some(key))).await;
    wait_queued(&api, "q2", "q1", 1).await;
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_CANCEL: "true" } } });
    api.patch("q2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("cancel q2");
    // Failed at once, not when q1 finishes; the annotation has done its part.
    let d = wait_for(&api, "q2", LONG, "q2 cancelled", |d: &Deployment| {
        d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed)
            && !d.annotations().contains_key(ANNOTATION_CANCEL)
    })
    .await;
    let st = d.status.unwrap();
    let ready = st.conditions.iter().find(|c| c.type_ == ct::READY).unwrap();
    assert_eq!(ready.reason, "Cancelled", "{st:?}");
    assert!(st.message.unwrap_or_default().contains("while queued"));
    let note = wait_warning(&ns, "Cancelled").await;
    assert!(note.contains("never started"), "{note}");
    assert_eq!(with_steps(&ns).await, vec!["q1".to_string()]);
    let q1 = api.get("q1").await.expect("q1");
    assert_eq!(
        q1.status.and_then(|s| s.phase),
        Some(Phase::WaitingForApproval)
    );
    ns.cleanup().await;
}
