//! Cancel a release that is running (issue 15, part 5): `stepwise.dev/cancel`
//! on a Deployment deletes the running attempt's Job (foreground: its pod
//! goes first), fails the step and the release with reason `Cancelled`, and
//! nothing else starts; a cancel of a finished release is removed with a
//! Warning `CancelIgnored`.

mod common;

use std::time::Duration;

use common::events::wait_warning;
use common::manifests::{action, release};
use common::operator::setup;
use common::release::{create_release, wait_phase};
use common::{TestNamespace, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{ANNOTATION_CANCEL, Deployment, Phase, Step};

const LONG: Duration = Duration::from_secs(90);

async fn cancel(api: &Api<Deployment>, name: &str) {
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_CANCEL: "true" } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("cancelling {name}: {e}"));
}

async fn jobs(ns: &TestNamespace) -> Vec<Job> {
    let api: Api<Job> = ns.api();
    api.list(&ListParams::default()).await.expect("jobs").items
}

/// The release and its step are Failed with reason Cancelled.
fn assert_cancelled(d: &Deployment, step: &Step) {
    for (what, phase, message) in [
        (
            "release",
            d.status.as_ref().and_then(|s| s.phase),
            d.status.as_ref().and_then(|s| s.message.clone()),
        ),
        (
            "step",
            step.status.as_ref().and_then(|s| s.phase),
            step.status.as_ref().and_then(|s| s.message.clone()),
        ),
    ] {
        assert_eq!(phase, Some(Phase::Failed), "{what}: {message:?}");
    }
    let reason = step
        .status
        .as_ref()
        .and_then(|s| s.actions.first())
        .and_then(|a| a.attempts.last())
        .and_then(|a| a.reason.clone());
    assert_eq!(reason.as_deref(), Some("Cancelled"), "{:?}", step.status);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_during_a_running_attempt_deletes_its_job_and_starts_nothing() {
    let (ns, op) = setup("cancel-running").await;
    let d = release(
        "rel",
        json!({ "steps": [
            { "name": "s", "actions": [action("long", &[("duration", "120s")]), action("next", &[])] },
            { "name": "later", "actions": [action("c", &[])] },
        ]}),
    );
    let api = create_release(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    wait_for(&steps, "rel-s", LONG, "attempt 1 running", |s: &Step| {
        s.status.as_ref().and_then(|st| st.phase) == Some(Phase::Running)
    })
    .await;
    cancel(&api, "rel").await;
    let done = wait_phase(&api, "rel", Phase::Failed).await;
    let step = steps.get("rel-s").await.expect("rel-s");
    assert_cancelled(&done, &step);
    wait_warning(&ns, "Cancelled").await;
    // The running attempt's Job is gone; no other action or step started.
    common::wait_until(LONG, "the cancelled Job to be deleted", || async {
        let left = jobs(&ns).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                left.iter().map(|j| j.name_any()).collect::<Vec<_>>()
            ))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(jobs(&ns).await.is_empty(), "a Job started after the cancel");
    assert!(steps.get_opt("rel-later").await.expect("get").is_none());
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_during_a_retry_wait_fails_at_once() {
    let (ns, op) = setup("cancel-retry").await;
    let d = release(
        "rel",
        json!({ "steps": [{ "name": "s", "retries": { "limit": 3, "delaySeconds": 60 },
            "actions": [action("a", &[("exit-code", "1")])] }]}),
    );
    let api = create_release(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    wait_phase(&steps, "rel-s", Phase::Retrying).await;
    cancel(&api, "rel").await;
    let done = wait_phase(&api, "rel", Phase::Failed).await;
    let step = steps.get("rel-s").await.expect("rel-s");
    let attempts = step
        .status
        .as_ref()
        .map_or(0, |s| s.actions[0].attempts.len());
    assert_eq!(attempts, 1, "no retry after the cancel: {:?}", step.status);
    let msg = done.status.and_then(|s| s.message).unwrap_or_default();
    assert!(msg.contains("ancel"), "{msg}");
    assert_eq!(jobs(&ns).await.len(), 1, "only the failed attempt's Job");
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_of_a_finished_release_is_removed_with_a_warning() {
    let (ns, op) = setup("cancel-finished").await;
    let d = release(
        "rel",
        json!({ "steps": [{ "name": "s", "actions": [action("a", &[])] }]}),
    );
    let api = create_release(&ns, &d).await;
    wait_phase(&api, "rel", Phase::Succeeded).await;
    cancel(&api, "rel").await;
    let note = wait_warning(&ns, "CancelIgnored").await;
    assert!(note.contains("already finished"), "{note}");
    let d = wait_for(
        &api,
        "rel",
        LONG,
        "the cancel annotation removed",
        |d: &Deployment| !d.annotations().contains_key(ANNOTATION_CANCEL),
    )
    .await;
    assert_eq!(d.status.and_then(|s| s.phase), Some(Phase::Succeeded));
    drop(op);
    ns.cleanup().await;
}
