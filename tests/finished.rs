//! A release never runs a finished step again (issue 12): deleted Steps,
//! names held by someone else, quotas. Each test has its own namespace and
//! operator, against the real local control plane.

mod common;

use std::time::Duration;

use common::events::{operator_events as events, wait_warning};
use common::manifests::{action, release};
use common::operator::setup;
use common::release::{create_release as create, wait_phase};
use common::{TestNamespace, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{Deployment, Outcome, Phase, Step, condition_types as ct};

const LONG: Duration = Duration::from_secs(90);

async fn job_names(ns: &TestNamespace) -> Vec<String> {
    let api: Api<Job> = ns.api();
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

fn conditions(d: &Deployment) -> Vec<(String, String, String, jiff::Timestamp)> {
    d.status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.last_transition_time.0,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn step_message(s: &Step) -> String {
    s.status
        .as_ref()
        .and_then(|st| st.message.clone())
        .unwrap_or_default()
}

/// Case 1: deleting a Step of a finished release leaves the release as it
/// was, says so, and runs nothing again; a Succeeded step of a running
/// release is not run again either.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_step_of_a_finished_release_is_not_run_again() {
    let (ns, op) = setup("deleted-finished").await;
    let d = release(
        "rel",
        json!({ "steps": [
            { "name": "one", "actions": [action("a", &[])] },
            { "name": "two", "actions": [action("b", &[("duration", "4s")])] },
        ]}),
    );
    let api = create(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    // Step one done, step two running: delete step one's Step.
    wait_phase(&steps, "rel-two", Phase::Running).await;
    steps
        .delete("rel-one", &DeleteParams::background())
        .await
        .expect("delete Step rel-one");
    let done = wait_phase(&api, "rel", Phase::Succeeded).await;
    assert!(
        steps.get_opt("rel-one").await.unwrap().is_none(),
        "a Succeeded step's Step was created again"
    );
    let note = wait_warning(&ns, "StepDeleted").await;
    assert!(note.contains("rel-one"), "{note}");

    // The release is finished: delete its last Step too.
    let before = conditions(&done);
    steps
        .delete("rel-two", &DeleteParams::background())
        .await
        .expect("delete Step rel-two");
    let after = wait_for(
        &api,
        "rel",
        LONG,
        "the deleted Step noted in the release's summary",
        |d: &Deployment| {
            d.status.as_ref().is_some_and(|s| {
                s.steps[1]
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("rel-two was deleted"))
            })
        },
    )
    .await;
    let status = after.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded));
    assert_eq!(conditions(&after), before, "conditions changed");
    assert_eq!(
        status.message,
        done.status.as_ref().unwrap().message,
        "message changed"
    );
    assert!(steps.get_opt("rel-two").await.unwrap().is_none());
    assert!(
        steps
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let notes: Vec<String> = events(&ns)
        .await
        .into_iter()
        .filter(|e| e.1 == "StepDeleted")
        .map(|e| e.2)
        .collect();
    assert!(notes.iter().any(|n| n.contains("rel-two")), "{notes:?}");
    // No Job ran again (those of the deleted Steps go with them).
    assert!(
        job_names(&ns)
            .await
            .iter()
            .all(|j| j == "rel-one-a-1" || j == "rel-two-b-1"),
        "{:?}",
        job_names(&ns).await
    );
    drop(op);
    ns.cleanup().await;
}

/// Case 2: a Job under the name an attempt needs that is not the Step's
/// own is never adopted nor counted: the Step waits, naming it and its
/// owner, and starts the attempt once it is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_of_someone_else_is_waited_for_never_adopted() {
    let (ns, op) = setup("foreign-job").await;
    let jobs: Api<Job> = ns.api();
    let foreign: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "rel-s-a-1" },
        "spec": { "backoffLimit": 0, "template": {
            "metadata": { "annotations": { "sim.stepwise.dev/duration": "600s" } },
            "spec": { "restartPolicy": "Never",
                      "containers": [{ "name": "main", "image": "busybox" }] } } }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &foreign)
        .await
        .expect("create a foreign Job");
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "s", "retries": { "limit": 2, "delaySeconds": 1 },
                "actions": [action("a", &[])] }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    let waiting = wait_for(
        &steps,
        "rel-s",
        LONG,
        "a wait naming the foreign Job",
        |s: &Step| step_message(s).contains("Job rel-s-a-1 already exists"),
    )
    .await;
    let msg = step_message(&waiting);
    assert!(msg.contains("owned by no controller"), "{msg}");
    let st = waiting.status.clone().unwrap();
    assert_ne!(st.phase, Some(Phase::Failed));
    assert!(
        st.actions.iter().all(|a| a.attempts.is_empty()),
        "a foreign Job counted as an attempt: {st:?}"
    );
    let note = wait_warning(&ns, "JobNameTaken").await;
    assert!(note.contains("rel-s-a-1"), "{note}");

    jobs.delete("rel-s-a-1", &DeleteParams::background())
        .await
        .expect("delete the foreign Job");
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let st = steps.get("rel-s").await.unwrap().status.unwrap();
    let attempts = &st.actions[0].attempts;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].outcome, Outcome::Succeeded);
    assert!(
        attempts
            .iter()
            .all(|a| a.reason.as_deref() != Some("JobDeleted"))
    );
    drop(op);
    ns.cleanup().await;
}

/// Case 2, for a Step deleted while it ran and re-created: its Jobs are the
/// old Step's (orphaned here, so they stay), never the new one's attempts.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_step_waits_for_the_old_steps_jobs() {
    let (ns, op) = setup("recreated").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "s",
                "actions": [action("a", &[("duration", "600s")])] }]}),
        ),
    )
    .await;
    let jobs: Api<Job> = ns.api();
    let steps: Api<Step> = ns.api();
    wait_for(&jobs, "rel-s-a-1", LONG, "the first attempt's Job", |_| {
        true
    })
    .await;
    let old_uid = steps.get("rel-s").await.unwrap().uid().unwrap();
    steps
        .delete("rel-s", &DeleteParams::orphan())
        .await
        .expect("delete the Step, orphaning its Jobs");
    let new = wait_for(
        &steps,
        "rel-s",
        LONG,
        "the Step created again, waiting for the old Job",
        |s: &Step| s.uid() != Some(old_uid.clone()) && step_message(s).contains("rel-s-a-1"),
    )
    .await;
    let st = new.status.clone().unwrap();
    assert!(st.actions.iter().all(|a| a.attempts.is_empty()), "{st:?}");
    assert_ne!(st.phase, Some(Phase::Failed));
    // The old Job is gone: the new Step runs its attempt 1 (its own Job).
    jobs.delete("rel-s-a-1", &DeleteParams::background())
        .await
        .expect("delete the old Job");
    let running = wait_for(&jobs, "rel-s-a-1", LONG, "the new Step's Job", |j: &Job| {
        j.owner_references()
            .iter()
            .any(|o| Some(o.uid.clone()) == new.uid())
    })
    .await;
    assert_eq!(
        running
            .labels()
            .get("stepwise.dev/attempt")
            .map(String::as_str),
        Some("1")
    );
    let st = steps.get("rel-s").await.unwrap().status.unwrap();
    assert!(
        st.actions[0]
            .attempts
            .iter()
            .all(|a| a.reason.as_deref() != Some("JobDeleted"))
    );
    assert_ne!(
        api.get("rel").await.unwrap().status.and_then(|s| s.phase),
        Some(Phase::Failed)
    );
    drop(op);
    ns.cleanup().await;
}

/// Case 2 for Steps: a Step under the needed name that is not this
/// Deployment's (made by hand) is waited for, named with its owner.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_of_someone_else_is_waited_for_never_adopted() {
    let (ns, op) = setup("foreign-step").await;
    let steps: Api<Step> = ns.api();
    let hand: Step = serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1", "kind": "Step",
        "metadata": { "name": "rel-s" },
        "spec": { "actions": [action("other", &[])] }
    }))
    .unwrap();
    steps
        .create(&PostParams::default(), &hand)
        .await
        .expect("create a Step by hand");
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "s", "actions": [action("a", &[])] }]}),
        ),
    )
    .await;
    let waiting = wait_for(
        &api,
        "rel",
        LONG,
        "a wait naming the Step",
        |d: &Deployment| {
            d.status
                .as_ref()
                .and_then(|s| s.message.clone())
                .is_some_and(|m| m.contains("a Step named rel-s exists"))
        },
    )
    .await;
    assert_eq!(waiting.status.unwrap().phase, Some(Phase::Running));
    steps
        .delete("rel-s", &DeleteParams::background())
        .await
        .expect("delete the hand-made Step");
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let st = steps.get("rel-s").await.unwrap();
    assert_eq!(
        st.spec.actions[0].name, "a",
        "the Deployment's own Step ran"
    );
    drop(op);
    ns.cleanup().await;
}

/// Case 3, across Deployments: `shop` + `db-migrate` and `shop-db` +
/// `migrate` both need Step `shop-db-migrate`: the second one fails,
/// Stalled, naming the Step; the first runs as if nothing happened.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_name_taken_by_another_release_fails_the_second() {
    let (ns, op) = setup("step-clash").await;
    let first = create(
        &ns,
        &release(
            "shop",
            json!({ "steps": [{ "name": "db-migrate", "actions": [action("a", &[("duration", "3s")])] }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    wait_for(
        &steps,
        "shop-db-migrate",
        LONG,
        "the first release's Step",
        |_| true,
    )
    .await;
    create(
        &ns,
        &release(
            "shop-db",
            json!({ "steps": [{ "name": "migrate", "actions": [action("b", &[])] }]}),
        ),
    )
    .await;
    let failed = wait_phase(&first.clone(), "shop-db", Phase::Failed).await;
    let status = failed.status.unwrap();
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::STALLED)
        .unwrap();
    assert_eq!(stalled.status, "True");
    assert!(
        stalled.message.contains("shop-db-migrate") && stalled.message.contains("Deployment shop "),
        "{}",
        stalled.message
    );
    wait_phase(&first, "shop", Phase::Succeeded).await;
    assert_eq!(
        job_names(&ns).await,
        vec!["shop-db-migrate-a-1".to_string()]
    );
    drop(op);
    ns.cleanup().await;
}

/// Case 4: a quota that refuses Jobs (403) is waited out with backoff, the
/// API server's words in the Step's message and a Warning Event; nothing
/// fails and no attempt is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_quota_is_waited_out_not_a_failure() {
    let (ns, op) = setup("quota").await;
    let quotas: Api<ResourceQuota> = ns.api();
    let quota: ResourceQuota = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": { "name": "no-jobs" },
        "spec": { "hard": { "count/jobs.batch": "0" } }
    }))
    .unwrap();
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("create the quota");
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "s", "actions": [action("a", &[])] }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    let waiting = wait_for(
        &steps,
        "rel-s",
        LONG,
        "the quota's refusal in the Step's message",
        |s: &Step| step_message(s).contains("quota"),
    )
    .await;
    let st = waiting.status.clone().unwrap();
    assert_ne!(st.phase, Some(Phase::Failed), "{st:?}");
    assert!(st.actions[0].attempts.is_empty(), "{st:?}");
    let msg = step_message(&waiting);
    assert!(
        msg.contains("no-jobs") && msg.contains("trying again at"),
        "{msg}"
    );
    let note = wait_warning(&ns, "JobCreateFailed").await;
    assert!(note.contains("quota"), "{note}");
    assert!(
        events(&ns).await.iter().all(|e| e.1 != "JobRejected"),
        "a quota refusal is not permanent"
    );
    quotas
        .delete("no-jobs", &DeleteParams::background())
        .await
        .expect("delete the quota");
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let st = steps.get("rel-s").await.unwrap().status.unwrap();
    assert_eq!(st.actions[0].attempts.len(), 1);
    drop(op);
    ns.cleanup().await;
}

/// Case 3, within one Deployment: step `db` + action `seed-users` and step
/// `db-seed` + action `users` would share Job names: the release is refused
/// before anything runs, naming both; a shortened name is a DNS label.
#[tokio::test(flavor = "multi_thread")]
async fn job_names_that_would_clash_are_refused_naming_both() {
    let (ns, op) = setup("job-clash").await;
    let api = create(
        &ns,
        &release(
            "shop",
            json!({ "steps": [
                { "name": "db", "actions": [action("seed-users", &[])] },
                { "name": "db-seed", "actions": [action("users", &[])] },
            ]}),
        ),
    )
    .await;
    let failed = wait_phase(&api, "shop", Phase::Failed).await;
    let status = failed.status.unwrap();
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::STALLED)
        .unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "JobNamesClash")
    );
    for part in ["step db action seed-users", "step db-seed action users"] {
        assert!(stalled.message.contains(part), "{}", stalled.message);
    }
    let steps: Api<Step> = ns.api();
    assert!(
        steps
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(job_names(&ns).await.is_empty());

    // A name that needs shortening, from a Deployment name with dots.
    let long = format!("rel.{}", "x".repeat(40));
    let api = create(
        &ns,
        &release(
            &long,
            json!({ "steps": [{ "name": "s", "actions": [action("a-rather-long-action", &[])] }]}),
        ),
    )
    .await;
    wait_phase(&api, &long, Phase::Succeeded).await;
    let names = job_names(&ns).await;
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(stepwise::jobs::is_dns_label(&names[0]), "{}", names[0]);
    drop(op);
    ns.cleanup().await;
}
