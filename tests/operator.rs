//! The operator against the real local control plane: each test has its own
//! namespace and its own `stepwise` process, and scripts each attempt's
//! outcome through the simulated pods' annotations.

mod common;

use std::time::Duration;

use common::events::operator_event_reasons as event_reasons;
use common::manifests::{action, release};
use common::operator::{namespace_with_crds, sample, setup};
use common::release::{create_release as create, wait_phase};
use common::{TestNamespace, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{
    ANNOTATION_APPROVAL, ANNOTATION_DECISION, ActionPhase, AttemptStatus, Decision, Deployment,
    Outcome, Phase, Step, condition_types as ct,
};

const LONG: Duration = Duration::from_secs(90);

async fn jobs(ns: &TestNamespace) -> Vec<Job> {
    let api: Api<Job> = ns.api();
    let mut jobs = api
        .list(&ListParams::default().labels("stepwise.dev/step"))
        .await
        .expect("list jobs")
        .items;
    jobs.sort_by_key(|j| j.name_any());
    jobs
}

fn label(job: &Job, key: &str) -> String {
    job.labels().get(key).cloned().unwrap_or_default()
}

/// Job counts per action name.
fn attempts_per_action(jobs: &[Job]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for j in jobs {
        *m.entry(label(j, "stepwise.dev/action")).or_insert(0) += 1;
    }
    m
}

fn condition<'a>(
    conds: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conds.iter().find(|c| c.type_ == t)
}

#[tokio::test(flavor = "multi_thread")]
async fn release_runs_steps_and_actions_in_order() {
    let (ns, op) = setup("order").await;
    let d = release(
        "shop-1",
        json!({ "steps": [
            { "name": "migrate", "actions": [action("backup", &[]), action("schema", &[])] },
            { "name": "rollout", "actions": [action("web", &[]), action("worker", &[])] },
        ]}),
    );
    let api = create(&ns, &d).await;
    let done = wait_phase(&api, "shop-1", Phase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        condition(&status.conditions, ct::READY).unwrap().status,
        "True"
    );
    assert_eq!(
        condition(&status.conditions, ct::STALLED).unwrap().status,
        "False"
    );
    assert_eq!(
        status.steps.iter().map(|s| s.phase).collect::<Vec<_>>(),
        vec![Phase::Succeeded; 2]
    );

    let steps: Api<Step> = ns.api();
    let all: Vec<Step> = steps.list(&ListParams::default()).await.unwrap().items;
    let names: Vec<String> = all.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, vec!["shop-1-migrate", "shop-1-rollout"]);
    for s in &all {
        assert_eq!(
            s.labels()
                .get("stepwise.dev/deployment")
                .map(String::as_str),
            Some("shop-1")
        );
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Deployment", Some(true))
        );
    }
    assert_ran_once_in_order(&all, &["backup", "schema", "web", "worker"]);
    assert_single_attempt_jobs(&jobs(&ns).await, 4);
    drop(op);
    ns.cleanup().await;
}

/// Every action ran once, in `order`: each started after the one before it finished.
fn assert_ran_once_in_order(all: &[Step], order: &[&str]) {
    let mut timeline = Vec::new();
    for s in all {
        for a in &s.status.as_ref().unwrap().actions {
            assert_eq!(a.attempts.len(), 1, "{} ran more than once", a.name);
            let at = &a.attempts[0];
            timeline.push((
                a.name.clone(),
                at.started_at.unwrap(),
                at.finished_at.unwrap(),
            ));
        }
    }
    let names: Vec<&str> = timeline.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, order);
    for pair in timeline.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2 - jiff::SignedDuration::from_secs(1),
            "{pair:?}"
        );
    }
}

/// `count` Jobs, each attempt 1 with backoffLimit 0, its pod labelled like it, owned by its Step.
fn assert_single_attempt_jobs(js: &[Job], count: usize) {
    assert_eq!(js.len(), count);
    for j in js {
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(label(j, "stepwise.dev/attempt"), "1");
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(
            pod_labels.get("stepwise.dev/action"),
            j.labels().get("stepwise.dev/action")
        );
        assert_eq!(j.owner_references()[0].kind, "Step");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_failed_action_is_retried_after_its_delay() {
    let (ns, op) = setup("only-failed").await;
    let d = release(
        "rel",
        json!({ "steps": [{
            "name": "db",
            "retries": { "limit": 3, "delaySeconds": 3 },
            "actions": [
                action("backup", &[]),
                action("migrate", &[("fail-attempts", "1,2"), ("exit-code", "7")]),
                action("verify", &[]),
            ],
        }]}),
    );
    let api = create(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    // While waiting, the real error stays visible.
    let waiting = wait_phase(&steps, "rel-db", Phase::Retrying).await;
    let msg = waiting.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        msg.starts_with("attempt 1 of 4 failed: exit code 7 (Error); retrying at "),
        "{msg}"
    );
    assert!(waiting.status.as_ref().unwrap().next_attempt_at.is_some());

    wait_phase(&api, "rel", Phase::Succeeded).await;
    let counts = attempts_per_action(&jobs(&ns).await);
    assert_eq!(counts.get("backup"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("migrate"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("verify"), Some(&1), "{counts:?}");

    let step = steps.get("rel-db").await.unwrap();
    let migrate = &step.status.as_ref().unwrap().actions[1];
    assert_eq!(
        migrate
            .attempts
            .iter()
            .map(|a| a.outcome)
            .collect::<Vec<_>>(),
        vec![Outcome::Failed, Outcome::Failed, Outcome::Succeeded]
    );
    assert_eq!(migrate.attempts[0].exit_code, Some(7));
    assert_waited(&migrate.attempts, 3);
    let reasons = event_reasons(&ns).await;
    for r in ["AttemptFailed", "RetryScheduled", "StepSucceeded"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} event in {reasons:?}"
        );
    }
    assert_attempt_metrics(&op.metrics().await, 5, 2, 3, 2);
    // Both retries came through the due-time lane, not the controller's queue.
    let lane = op
        .log_text()
        .matches("due-time lane created the Job")
        .count();
    assert_eq!(lane, 2, "{}", op.log_text());
    drop(op);
    ns.cleanup().await;
}

/// Each retry started at least `secs` after its failure was seen, and by
/// the cluster's own clock (whole seconds) at least `secs - 1` after it failed.
fn assert_waited(attempts: &[AttemptStatus], secs: i64) {
    for pair in attempts.windows(2) {
        let waited = pair[1]
            .started_at
            .unwrap()
            .duration_since(pair[0].failure_seen_at.unwrap());
        assert!(
            waited >= jiff::SignedDuration::from_secs(secs),
            "retry came after {waited:?}"
        );
        // And by the cluster's own clock (whole seconds).
        let failed_at = pair[0].finished_at.unwrap();
        let created = pair[1].started_at.unwrap();
        assert!(
            created.duration_since(failed_at) >= jiff::SignedDuration::from_secs(secs - 1),
            "{failed_at} -> {created}"
        );
    }
}

/// The attempt and retry counters equal what happened.
fn assert_attempt_metrics(m: &str, started: u32, failed: u32, succeeded: u32, retries: u32) {
    for (result, want) in [
        ("started", started),
        ("failed", failed),
        ("succeeded", succeeded),
    ] {
        let series = format!("stepwise_action_attempts_total{{result=\"{result}\"}}");
        assert_eq!(sample(m, &series), f64::from(want), "{series} in {m}");
    }
    assert_eq!(
        sample(m, "stepwise_retries_scheduled_total"),
        f64::from(retries),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_retry_waits_fifteen_seconds() {
    let (ns, op) = setup("default-delay").await;
    let d = release(
        "rel",
        json!({ "retries": {}, "steps": [{ "name": "s", "actions": [action("flaky", &[("fail-attempts", "1")])] }]}),
    );
    let api = create(&ns, &d).await;
    let done = wait_phase(&api, "rel", Phase::Succeeded).await;
    assert_eq!(done.status.unwrap().steps[0].phase, Phase::Succeeded);
    let steps: Api<Step> = ns.api();
    let step = steps.get("rel-s").await.unwrap();
    let retries = step.spec.retries.clone().unwrap();
    assert_eq!(
        (retries.enabled, retries.limit, retries.delay_seconds),
        (true, 3, 15)
    );
    let attempts = &step.status.as_ref().unwrap().actions[0].attempts;
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1]
        .started_at
        .unwrap()
        .duration_since(attempts[0].failure_seen_at.unwrap());
    assert!(
        waited >= jiff::SignedDuration::from_secs(15),
        "waited {waited:?}"
    );
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_fail_the_release_and_later_steps_never_start() {
    let (ns, op) = setup("exhausted").await;
    let d = release(
        "rel",
        json!({ "steps": [
            { "name": "first", "retries": { "limit": 1, "delaySeconds": 1 }, "actions": [action("a", &[("exit-code", "3")])] },
            { "name": "second", "actions": [action("b", &[])] },
        ]}),
    );
    let api = create(&ns, &d).await;
    let failed = wait_phase(&api, "rel", Phase::Failed).await;
    let status = failed.status.unwrap();
    let stalled = condition(&status.conditions, ct::STALLED).unwrap();
    assert_eq!(stalled.status, "True");
    assert!(
        stalled
            .message
            .contains("action a failed after 2 attempts: exit code 3"),
        "{}",
        stalled.message
    );
    assert_eq!(
        condition(&status.conditions, ct::READY).unwrap().status,
        "False"
    );
    assert_eq!(status.steps[1].phase, Phase::Pending);
    // Give the operator time to do something wrong.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steps: Api<Step> = ns.api();
    assert!(
        steps.get_opt("rel-second").await.unwrap().is_none(),
        "a later step started"
    );
    assert_eq!(attempts_per_action(&jobs(&ns).await).get("a"), Some(&2));
    assert!(event_reasons(&ns).await.iter().any(|r| r == "StepFailed"));
    drop(op);
    ns.cleanup().await;
}

async fn guided_until_waiting(
    ns: &TestNamespace,
    fail_attempts: &str,
) -> (Api<Deployment>, Api<Step>) {
    let d = release(
        "rel",
        json!({ "guidedFailure": true, "steps": [
            { "name": "s", "retries": { "limit": 1, "delaySeconds": 1 },
              "actions": [action("flaky", &[("fail-attempts", fail_attempts)]), action("after", &[])] },
            { "name": "next", "actions": [action("c", &[])] },
        ]}),
    );
    let api = create(ns, &d).await;
    let waiting = wait_phase(&api, "rel", Phase::WaitingForDecision).await;
    let gf = condition(
        &waiting.status.as_ref().unwrap().conditions,
        ct::GUIDED_FAILURE,
    )
    .unwrap()
    .clone();
    assert_eq!(gf.status, "True");
    assert!(gf.message.contains("flaky"), "{}", gf.message);
    let steps: Api<Step> = ns.api();
    let step = wait_phase(&steps, "rel-s", Phase::WaitingForDecision).await;
    let sgf = condition(
        &step.status.as_ref().unwrap().conditions,
        ct::GUIDED_FAILURE,
    )
    .unwrap();
    assert_eq!(
        (sgf.status.as_str(), sgf.reason.as_str()),
        ("True", "RetriesExhausted")
    );
    assert!(
        sgf.message
            .contains("action flaky failed after 2 attempts: exit code 1"),
        "{}",
        sgf.message
    );
    (api, steps)
}

async fn decide(steps: &Api<Step>, decision: &str) {
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_DECISION: decision } } });
    steps
        .patch("rel-s", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
}

#[tokio::test(flavor = "multi_thread")]
async fn guided_failure_retry_runs_one_more_attempt() {
    let (ns, op) = setup("guided-retry").await;
    let (api, steps) = guided_until_waiting(&ns, "1,2").await;
    decide(&steps, "retry").await;
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let step = steps.get("rel-s").await.unwrap();
    assert!(
        !step.annotations().contains_key(ANNOTATION_DECISION),
        "annotation not removed"
    );
    let status = step.status.unwrap();
    assert_eq!(status.decisions.len(), 1);
    assert_eq!(
        (status.decisions[0].decision, status.decisions[0].attempt),
        (Decision::Retry, 2)
    );
    assert_eq!(status.actions[0].attempts.len(), 3);
    let gf = condition(&status.conditions, ct::GUIDED_FAILURE).unwrap();
    assert_eq!(
        (gf.status.as_str(), gf.reason.as_str()),
        ("False", "DecisionApplied")
    );
    let reasons = event_reasons(&ns).await;
    assert!(reasons.iter().any(|r| r == "GuidedFailure"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r == "DecisionApplied"),
        "{reasons:?}"
    );
    let m = op.metrics().await;
    assert_eq!(
        sample(&m, "stepwise_decisions_total{decision=\"retry\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "stepwise_guided_failures_total"), 1.0, "{m}");
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guided_failure_retry_that_fails_waits_again() {
    let (ns, op) = setup("guided-again").await;
    let (api, steps) = guided_until_waiting(&ns, "1,2,3").await;
    decide(&steps, "retry").await;
    wait_for(
        &steps,
        "rel-s",
        LONG,
        "a third attempt that fails and waits again",
        |s: &Step| {
            let st = s.status.as_ref().unwrap();
            st.phase == Some(Phase::WaitingForDecision) && st.actions[0].attempts.len() == 3
        },
    )
    .await;
    decide(&steps, "ignore").await;
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let step = steps.get("rel-s").await.unwrap();
    let status = step.status.unwrap();
    assert_eq!(status.actions[0].phase, ActionPhase::Ignored);
    assert_eq!(status.actions[1].phase, ActionPhase::Succeeded);
    assert_eq!(
        status
            .decisions
            .iter()
            .map(|d| d.decision)
            .collect::<Vec<_>>(),
        vec![Decision::Retry, Decision::Ignore]
    );
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guided_failure_abort_fails_the_release() {
    let (ns, op) = setup("guided-abort").await;
    let (api, steps) = guided_until_waiting(&ns, "1,2").await;
    // An unknown value is reported and changes nothing.
    decide(&steps, "maybe").await;
    wait_for(
        &steps,
        "rel-s",
        LONG,
        "the unknown decision reported",
        |s: &Step| {
            s.status
                .as_ref()
                .and_then(|st| st.message.clone())
                .is_some_and(|m| m.contains("unknown decision \"maybe\""))
        },
    )
    .await;
    decide(&steps, "abort").await;
    let failed = wait_phase(&api, "rel", Phase::Failed).await;
    let step = steps.get("rel-s").await.unwrap();
    assert_eq!(
        condition(&step.status.as_ref().unwrap().conditions, ct::STALLED)
            .unwrap()
            .reason,
        "Aborted"
    );
    assert!(
        condition(&failed.status.unwrap().conditions, ct::STALLED)
            .unwrap()
            .status
            == "True"
    );
    let s: Api<Step> = ns.api();
    assert!(s.get_opt("rel-next").await.unwrap().is_none());
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_intervention_waits_for_approval() {
    let (ns, op) = setup("manual").await;
    let spec = json!({ "steps": [
        { "name": "approve", "type": "ManualIntervention", "instructions": "Check the dashboards." },
        { "name": "go", "actions": [action("a", &[])] },
    ]});
    let api = create(&ns, &release("yes", spec.clone())).await;
    create(&ns, &release("no", spec)).await;
    let steps: Api<Step> = ns.api();
    for name in ["yes-approve", "no-approve"] {
        let s = wait_phase(&steps, name, Phase::WaitingForApproval).await;
        assert!(
            s.status
                .unwrap()
                .message
                .unwrap()
                .contains("Check the dashboards.")
        );
    }
    wait_phase(&api, "yes", Phase::WaitingForApproval).await;
    for (name, answer) in [("yes-approve", "approved"), ("no-approve", "rejected")] {
        let patch = json!({ "metadata": { "annotations": { ANNOTATION_APPROVAL: answer } } });
        steps
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    wait_phase(&api, "yes", Phase::Succeeded).await;
    let no = wait_phase(&api, "no", Phase::Failed).await;
    assert!(no.status.unwrap().message.unwrap().contains("rejected"));
    assert!(steps.get_opt("no-go").await.unwrap().is_none());
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_during_a_wait_neither_loses_nor_duplicates_an_attempt() {
    let (ns, mut op) = setup("crash-wait").await;
    let d = release(
        "rel",
        json!({ "steps": [{ "name": "s", "retries": { "limit": 2, "delaySeconds": 6 },
            "actions": [action("a", &[("fail-attempts", "1,2")])] }]}),
    );
    let api = create(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    let waiting = wait_phase(&steps, "rel-s", Phase::Retrying).await;
    let due = waiting.status.unwrap().next_attempt_at.unwrap();
    op.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    op.restart().await;
    // Second wait: kill right as it becomes due.
    let waiting = wait_for(
        &steps,
        "rel-s",
        LONG,
        "the second retry wait",
        |s: &Step| {
            s.status.as_ref().is_some_and(|st| {
                st.phase == Some(Phase::Retrying) && st.actions[0].attempts.len() == 2
            })
        },
    )
    .await;
    let due2 = waiting.status.unwrap().next_attempt_at.unwrap();
    let until_due = due2.duration_since(jiff::Timestamp::now());
    tokio::time::sleep(Duration::from_millis(until_due.as_millis().max(0) as u64)).await;
    op.restart().await;
    wait_phase(&api, "rel", Phase::Succeeded).await;
    let js = jobs(&ns).await;
    assert_eq!(
        js.len(),
        3,
        "one Job per attempt: {:?}",
        js.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    let step = steps.get("rel-s").await.unwrap();
    let attempts = &step.status.unwrap().actions[0].attempts;
    assert_eq!(
        attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        attempts[1].started_at.unwrap() >= due,
        "attempt 2 before its time"
    );
    assert!(
        attempts[2].started_at.unwrap() >= due2,
        "attempt 3 before its time"
    );
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_job_is_reported_and_retried() {
    let (ns, op) = setup("job-deleted").await;
    let d = release(
        "rel",
        json!({ "steps": [{ "name": "s", "retries": { "limit": 1, "delaySeconds": 1 },
            "actions": [action("slow", &[("duration", "30s"), ("fail-attempts", "9")])] }]}),
    );
    create(&ns, &d).await;
    let jobs_api: Api<Job> = ns.api();
    wait_for(&jobs_api, "rel-s-slow-1", LONG, "the first Job", |_| true).await;
    jobs_api
        .delete("rel-s-slow-1", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    let steps: Api<Step> = ns.api();
    let step = wait_for(
        &steps,
        "rel-s",
        LONG,
        "the deletion noticed and a retry started",
        |s: &Step| {
            s.status
                .as_ref()
                .is_some_and(|st| st.actions[0].attempts.len() == 2)
        },
    )
    .await;
    let first = &step.status.unwrap().actions[0].attempts[0];
    assert_eq!(first.reason.as_deref(), Some("JobDeleted"));
    assert!(
        first
            .message
            .clone()
            .unwrap()
            .contains("deleted before it finished")
    );
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_writes_only_status() {
    let (ns, op) = setup("ssa").await;
    let d = release(
        "rel",
        json!({ "steps": [{ "name": "s", "actions": [action("a", &[])] }]}),
    );
    let api: Api<Deployment> = ns.api();
    api.patch("rel", &PatchParams::apply("gitops-tool"), &Patch::Apply(&d))
        .await
        .unwrap();
    let done = wait_phase(&api, "rel", Phase::Succeeded).await;
    assert_eq!(
        done.metadata.generation,
        Some(1),
        "the spec was never changed"
    );
    for mf in done.managed_fields() {
        let manager = mf.manager.as_deref().unwrap_or_default();
        let fields = mf
            .fields_v1
            .as_ref()
            .map(|f| f.0.to_string())
            .unwrap_or_default();
        if manager == "stepwise" {
            assert_eq!(mf.subresource.as_deref(), Some("status"), "{fields}");
            assert!(!fields.contains("f:spec"), "{fields}");
        } else {
            assert_eq!(manager, "gitops-tool");
        }
    }
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_release_reads_in_progress_before_the_operator_acts() {
    let ns = namespace_with_crds("fresh").await;
    let api = create(
        &ns,
        &release(
            "rel",
            json!({ "steps": [{ "name": "s", "actions": [action("a", &[])] }]}),
        ),
    )
    .await;
    let fresh = api.get("rel").await.unwrap();
    assert_eq!(fresh.metadata.generation, Some(1));
    assert_eq!(fresh.status.unwrap().observed_generation, Some(-1));
    ns.cleanup().await;
}
