//! Decisions, approvals and retry schedules that hold (issue 12): a manual
//! retry is one attempt, annotations are never lost or ignored silently,
//! decisions survive a status wipe, status stays small, jitter keeps to the
//! cap. Each test has its own namespace and operator.

mod common;

use std::time::Duration;

use common::events::{operator_events as events, wait_warning};
use common::manifests::{action, release};
use common::operator::setup;
use common::release::{create_release as create, wait_phase, wipe_status};
use common::{TestNamespace, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{
    ANNOTATION_APPROVAL, ANNOTATION_DECISION, ActionPhase, Decision, Deployment, Phase, Step,
};

const LONG: Duration = Duration::from_secs(90);

async fn jobs(ns: &TestNamespace) -> Vec<Job> {
    let api: Api<Job> = ns.api();
    api.list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
}

async fn annotate<K>(api: &Api<K>, name: &str, key: &str, value: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({ "metadata": { "annotations": { key: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotating {name}: {e}"));
}

fn attempts(s: &Step) -> usize {
    s.status
        .as_ref()
        .map_or(0, |st| st.actions.first().map_or(0, |a| a.attempts.len()))
}

/// Case 7: with `retryOn` matching 75/JobDeleted, attempt 1 fails with 1
/// (not retryable: a decision is awaited); `retry` runs attempt 2, which
/// fails with a retryable reason: the step waits for a decision again
/// instead of retrying on its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_manual_retry_runs_exactly_one_more_attempt() {
    let (ns, op) = setup("manual-retry").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "guidedFailure": true, "steps": [{ "name": "s",
                "retries": { "limit": 3, "delaySeconds": 1,
                             "retryOn": { "exitCodes": [75, 143], "reasons": ["JobDeleted"] } },
                "actions": [action("a", &[("duration", "6s"), ("fail-attempts", "1")])] }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    wait_phase(&steps, "rel-s", Phase::WaitingForDecision).await;
    annotate(&steps, "rel-s", ANNOTATION_DECISION, "retry").await;
    // Attempt 2 runs; it is made to fail with a reason retryOn matches.
    let job_api: Api<Job> = ns.api();
    wait_for(&job_api, "rel-s-a-2", LONG, "attempt 2's Job", |_| true).await;
    job_api
        .delete("rel-s-a-2", &DeleteParams::background())
        .await
        .expect("delete attempt 2's Job");
    let waiting = wait_for(
        &steps,
        "rel-s",
        LONG,
        "a decision awaited again after attempt 2",
        |s: &Step| {
            s.status.as_ref().and_then(|st| st.phase) == Some(Phase::WaitingForDecision)
                && attempts(s) == 2
        },
    )
    .await;
    let st = waiting.status.unwrap();
    assert_eq!(st.actions[0].phase, ActionPhase::WaitingForDecision);
    // Nothing more runs on its own (the retry delay is 1 s: three of them pass).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let names: Vec<String> = jobs(&ns).await.iter().map(|j| j.name_any()).collect();
    assert!(
        !names.iter().any(|n| n == "rel-s-a-3"),
        "an automatic retry after a manual one: {names:?}"
    );
    assert_eq!(attempts(&steps.get("rel-s").await.unwrap()), 2);
    annotate(&steps, "rel-s", ANNOTATION_DECISION, "abort").await;
    wait_phase(&api, "rel", Phase::Failed).await;
    drop(op);
    ns.cleanup().await;
}

/// Case 9: the delay with jitter never exceeds `maxDelaySeconds`.
#[tokio::test(flavor = "multi_thread")]
async fn jitter_never_exceeds_max_delay() {
    let (ns, op) = setup("jitter-cap").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "s",
                "retries": { "limit": 2, "delaySeconds": 2, "maxDelaySeconds": 2, "jitterPercent": 100 },
                "actions": [action("a", &[("fail-attempts", "1,2")])] }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    let retrying = wait_phase(&steps, "rel-s", Phase::Retrying).await;
    let a = &retrying.status.as_ref().unwrap().actions[0];
    let seen = a.attempts[0].failure_seen_at.expect("failure time");
    let next = a.next_attempt_at.expect("next attempt time");
    assert!(
        next.duration_since(seen) <= jiff::SignedDuration::from_secs(2),
        "retry scheduled {} after the failure, over maxDelaySeconds 2",
        next.duration_since(seen)
    );
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let st = steps.get("rel-s").await.unwrap().status.unwrap();
    let at = &st.actions[0].attempts;
    assert_eq!(at.len(), 3);
    for pair in at.windows(2) {
        let gap = pair[1]
            .started_at
            .unwrap()
            .duration_since(pair[0].failure_seen_at.unwrap());
        // It waited at least its delay.
        assert!(gap >= jiff::SignedDuration::from_secs(2), "{gap}");
    }
    drop(op);
    ns.cleanup().await;
}

/// Case 8: an approval on a Run step is removed with a Warning Event; a
/// decision or approval put on the Deployment reaches its waiting step.
#[tokio::test(flavor = "multi_thread")]
async fn annotations_are_never_ignored_silently() {
    let (ns, op) = setup("annotations").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "guidedFailure": true, "steps": [
                { "name": "s", "retries": { "limit": 0 },
                  "actions": [action("a", &[("fail-attempts", "1")])] },
                { "name": "gate", "type": "ManualIntervention" },
            ]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    wait_phase(&steps, "rel-s", Phase::WaitingForDecision).await;
    // An approval on a Run step means nothing: removed, with a warning.
    annotate(&steps, "rel-s", ANNOTATION_APPROVAL, "approved").await;
    wait_for(&steps, "rel-s", LONG, "the approval removed", |s: &Step| {
        !s.annotations().contains_key(ANNOTATION_APPROVAL)
    })
    .await;
    let note = wait_warning(&ns, "ApprovalIgnored").await;
    assert!(note.contains(ANNOTATION_APPROVAL), "{note}");
    // A decision on the Deployment goes to its waiting step.
    annotate(&api, "rel", ANNOTATION_DECISION, "retry").await;
    wait_phase(&steps, "rel-gate", Phase::WaitingForApproval).await;
    let s = steps.get("rel-s").await.unwrap().status.unwrap();
    assert_eq!(
        s.decisions.iter().map(|d| d.decision).collect::<Vec<_>>(),
        vec![Decision::Retry]
    );
    wait_for(
        &api,
        "rel",
        LONG,
        "the Deployment's decision removed",
        |d: &Deployment| !d.annotations().contains_key(ANNOTATION_DECISION),
    )
    .await;
    // So does an approval.
    annotate(&api, "rel", ANNOTATION_APPROVAL, "approved").await;
    let done = wait_phase(&api, "rel", Phase::Succeeded).await;
    assert!(!done.annotations().contains_key(ANNOTATION_APPROVAL));
    // A decision on a Deployment with nothing waiting: removed with a warning.
    annotate(&api, "rel", ANNOTATION_DECISION, "abort").await;
    let gone = wait_for(
        &api,
        "rel",
        LONG,
        "the stray decision removed",
        |d: &Deployment| !d.annotations().contains_key(ANNOTATION_DECISION),
    )
    .await;
    assert_eq!(gone.status.unwrap().phase, Some(Phase::Succeeded));
    let warned = events(&ns)
        .await
        .into_iter()
        .any(|e| e.0 == "Warning" && e.1 == "DecisionIgnored" && e.2.contains("abort"));
    assert!(warned, "{:?}", events(&ns).await);
    drop(op);
    ns.cleanup().await;
}

/// What a Step's status says that a wipe must not change.
fn reading(s: &Step) -> String {
    let st = s.status.clone().unwrap_or_default();
    let actions: Vec<_> = st
        .actions
        .iter()
        .map(|a| (a.name.clone(), a.phase, a.attempts.len()))
        .collect();
    let decisions: Vec<_> = st
        .decisions
        .iter()
        .map(|d| (d.action.clone(), d.attempt, d.decision, d.decided_at))
        .collect();
    format!(
        "{:?} {actions:?} {decisions:?} {:?}",
        st.phase,
        st.approval.map(|a| (a.approval, a.decided_at))
    )
}

/// Case 5: decisions and approvals survive a status wipe: every Step reads
/// as before and no Job runs again.
#[tokio::test(flavor = "multi_thread")]
async fn decisions_and_approvals_survive_a_status_wipe() {
    let (ns, op) = setup("wiped").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "guidedFailure": true, "steps": [
                { "name": "s", "retries": { "limit": 0 },
                  "actions": [action("a", &[("exit-code", "3")]), action("b", &[])] },
                { "name": "gate", "type": "ManualIntervention" },
                { "name": "after", "actions": [action("c", &[])] },
            ]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    wait_phase(&steps, "rel-s", Phase::WaitingForDecision).await;
    annotate(&steps, "rel-s", ANNOTATION_DECISION, "ignore").await;
    wait_phase(&steps, "rel-gate", Phase::WaitingForApproval).await;
    annotate(&steps, "rel-gate", ANNOTATION_APPROVAL, "approved").await;
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let names = ["rel-s", "rel-gate", "rel-after"];
    let mut before = Vec::new();
    for n in names {
        before.push(reading(&steps.get(n).await.unwrap()));
    }
    let jobs_before = jobs(&ns).await.len();
    assert_eq!(jobs_before, 3);

    for n in names {
        wipe_status(&steps, n).await;
    }
    wipe_status(&api, "rel").await;
    for (n, was) in names.iter().zip(&before) {
        wait_for(&steps, n, LONG, "the Step to read as before", |s: &Step| {
            reading(s) == *was
        })
        .await;
    }
    wait_phase(&api, "rel", Phase::Succeeded).await;
    assert_eq!(jobs(&ns).await.len(), jobs_before, "a Job ran again");
    let s = steps.get("rel-s").await.unwrap().status.unwrap();
    assert_eq!(s.actions[0].phase, ActionPhase::Ignored);
    drop(op);
    ns.cleanup().await;
}

/// Case 6: a long history keeps the Step's status small: the latest
/// attempts listed, the earlier ones summed up, the decisions bounded, and
/// every decision still recorded (on its Job) with its annotation removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_keeps_status_small() {
    let (ns, op) = setup("long-history").await;
    create(
        &ns,
        &release(
            "rel",
            json!({ "guidedFailure": true, "steps": [{ "name": "s",
                "retries": { "limit": 10, "delaySeconds": 0 },
                "actions": [action("a", &[("exit-code", "1")])] }]}),
        ),
    )
    .await;
    let steps: Api<Step> = ns.api();
    const RETRIES: u32 = 25;
    for n in 0..RETRIES {
        wait_for(
            &steps,
            "rel-s",
            LONG,
            &format!("a decision awaited after {n} retries"),
            |s: &Step| asks_after(s, n),
        )
        .await;
        annotate(&steps, "rel-s", ANNOTATION_DECISION, "retry").await;
    }
    let last = wait_for(
        &steps,
        "rel-s",
        LONG,
        "the last retry failed too",
        |s: &Step| asks_after(s, RETRIES),
    )
    .await;
    let st = last.status.clone().unwrap();
    let a = &st.actions[0];
    let total = 11 + RETRIES;
    assert!(
        a.attempts.len() <= 5,
        "{} attempts listed",
        a.attempts.len()
    );
    assert_eq!(
        a.earlier_attempts.unwrap_or(0) + a.attempts.len() as u32,
        total
    );
    assert_eq!(a.attempts.last().unwrap().number, total);
    assert!(
        st.decisions.len() <= 22,
        "{} decisions listed",
        st.decisions.len()
    );
    assert!(st.earlier_decisions.is_some());
    let recorded = jobs(&ns)
        .await
        .iter()
        .filter(|j| {
            j.annotations()
                .contains_key("stepwise.dev/recorded-decision")
        })
        .count();
    assert_eq!(
        recorded as u32, RETRIES,
        "every decision recorded on its Job"
    );
    assert_eq!(jobs(&ns).await.len() as u32, total);
    let bytes = serde_json::to_vec(&st).unwrap().len();
    assert!(bytes < 64 * 1024, "status is {bytes} bytes");
    drop(op);
    ns.cleanup().await;
}

/// Decisions the Step applied, listed and summed up.
fn decisions_made(s: &Step) -> u32 {
    s.status.as_ref().map_or(0, |st| {
        st.decisions.len() as u32 + st.earlier_decisions.as_ref().map_or(0, |e| e.count)
    })
}

/// The Step waits for its next decision after `n` of them, the last one consumed.
fn asks_after(s: &Step, n: u32) -> bool {
    s.status.as_ref().is_some_and(|st| {
        st.message
            .as_deref()
            .is_some_and(|m| m.contains("waiting for a decision"))
    }) && decisions_made(s) == n
        && !s.annotations().contains_key(ANNOTATION_DECISION)
}

/// Case 8: a decision annotation is removed only if it still holds the
/// value read; one changed meanwhile stays, to be read next time.
#[tokio::test(flavor = "multi_thread")]
async fn an_annotation_changed_meanwhile_is_not_removed() {
    let ns = common::operator::namespace_with_crds("cond-remove").await;
    let steps: Api<Step> = ns.api();
    let step: Step = serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1", "kind": "Step",
        "metadata": { "name": "s", "annotations": { ANNOTATION_DECISION: "retry" } },
        "spec": { "actions": [action("a", &[])] }
    }))
    .unwrap();
    steps
        .create(&PostParams::default(), &step)
        .await
        .expect("create a Step");
    let read = steps.get("s").await.unwrap();
    // Someone changes the decision between the operator's read and its removal.
    annotate(&steps, "s", ANNOTATION_DECISION, "abort").await;
    let removed =
        stepwise::controller::annotations::remove_if_unchanged(&steps, &read, ANNOTATION_DECISION)
            .await
            .expect("the patch is answered");
    assert!(!removed, "a changed value was removed");
    let now = steps.get("s").await.unwrap();
    assert_eq!(
        now.annotations()
            .get(ANNOTATION_DECISION)
            .map(String::as_str),
        Some("abort")
    );
    let removed =
        stepwise::controller::annotations::remove_if_unchanged(&steps, &now, ANNOTATION_DECISION)
            .await
            .expect("the patch is answered");
    assert!(removed);
    assert!(
        !steps
            .get("s")
            .await
            .unwrap()
            .annotations()
            .contains_key(ANNOTATION_DECISION)
    );
    ns.cleanup().await;
}
