//! Failure handlers (issue 15, part 4): `runWhen: OnFailure | Always` steps
//! run in order after a release failed (or was cancelled), `OnSuccess`
//! steps after the failure never start, a successful release skips its
//! `OnFailure` steps, and the release ends Failed with the first failure
//! kept in `status.failure`, a failing handler reported beside it; an
//! operator restart while a handler runs runs nothing twice.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::events::wait_warning;
use common::manifests::{action, release};
use common::operator::setup;
use common::release::{create_release, wait_phase};
use common::{TestNamespace, kubeconfig_path, wait_for};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use stepwise::api::{ANNOTATION_CANCEL, Deployment, Phase, Step, condition_types as ct};
use stepwise::status::is_true;

const LONG: Duration = Duration::from_secs(120);

fn step(name: &str, when: &str, exit_code: &str) -> Value {
    json!({ "name": name, "runWhen": when,
            "actions": [action("a", &[("exit-code", exit_code), ("duration", "1s")])] })
}

/// Every Step of `release` as (name, phase), listed now.
async fn steps_now(ns: &TestNamespace) -> BTreeMap<String, Phase> {
    let api: Api<Step> = ns.api();
    api.list(&ListParams::default())
        .await
        .expect("list steps")
        .items
        .into_iter()
        .map(|s| {
            let phase = s.status.as_ref().and_then(|st| st.phase);
            (s.name_any(), phase.unwrap_or(Phase::Pending))
        })
        .collect()
}

/// Watches `rel` until it finishes, checking at every look that a Step
/// exists only once every Step in `order` before it has finished. Returns
/// the finished release and the Steps that were created.
async fn run_in_order(ns: &TestNamespace, api: &Api<Deployment>, order: &[&str]) -> Deployment {
    let started = Instant::now();
    loop {
        let seen = steps_now(ns).await;
        for (i, later) in order.iter().enumerate() {
            if !seen.contains_key(*later) {
                continue;
            }
            for earlier in &order[..i] {
                let phase = seen.get(*earlier).copied();
                assert!(
                    phase.is_some_and(Phase::is_terminal),
                    "{later} exists while {earlier} is {phase:?}: {seen:?}"
                );
            }
        }
        let d = api.get("rel").await.expect("get rel");
        if d.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(Phase::is_terminal)
        {
            return d;
        }
        assert!(
            started.elapsed() < LONG,
            "rel did not finish within {LONG:?}: {:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn summary_phases(d: &Deployment) -> Vec<(String, Phase)> {
    d.status
        .as_ref()
        .map(|s| s.steps.iter().map(|x| (x.name.clone(), x.phase)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_release_runs_its_handlers_in_order_and_stays_failed() {
    let (ns, op) = setup("handlers-order").await;
    let d = release(
        "rel",
        json!({ "steps": [
            step("deploy", "OnSuccess", "1"),
            step("later", "OnSuccess", "0"),
            step("rollback", "OnFailure", "0"),
            step("notify", "Always", "0"),
        ]}),
    );
    let api = create_release(&ns, &d).await;
    // In progress (kstatus) while a handler runs.
    let running = wait_for(&api, "rel", LONG, "a handler running", |d: &Deployment| {
        d.status
            .as_ref()
            .is_some_and(|s| s.failure.is_some() && s.phase == Some(Phase::Running))
    })
    .await;
    let st = running.status.unwrap();
    assert!(is_true(&st.conditions, ct::RECONCILING), "{st:?}");
    let done = run_in_order(&ns, &api, &["rel-deploy", "rel-rollback", "rel-notify"]).await;
    let st = done.status.clone().unwrap();
    assert_eq!(st.phase, Some(Phase::Failed), "{st:?}");
    assert!(is_true(&st.conditions, ct::STALLED));
    let failure = st.failure.clone().expect("status.failure");
    assert_eq!(failure.step, "deploy");
    assert_eq!(st.current_step.as_deref(), Some("deploy"));
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.contains("failure handlers succeeded: rollback, notify"),
        "{msg}"
    );
    assert_eq!(
        summary_phases(&done),
        vec![
            ("deploy".into(), Phase::Failed),
            ("later".into(), Phase::Pending),
            ("rollback".into(), Phase::Succeeded),
            ("notify".into(), Phase::Succeeded),
        ]
    );
    let seen = steps_now(&ns).await;
    assert!(
        !seen.contains_key("rel-later"),
        "an OnSuccess step ran after the failure: {seen:?}"
    );
    let note = wait_warning(&ns, "FailureHandlers").await;
    assert!(note.contains("rollback, notify"), "{note}");
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_succeeds_skips_on_failure_steps_and_runs_always_ones() {
    let (ns, op) = setup("handlers-success").await;
    let d = release(
        "rel",
        json!({ "steps": [
            step("deploy", "OnSuccess", "0"),
            step("rollback", "OnFailure", "0"),
            step("notify", "Always", "0"),
        ]}),
    );
    let api = create_release(&ns, &d).await;
    let done = run_in_order(&ns, &api, &["rel-deploy", "rel-notify"]).await;
    let st = done.status.clone().unwrap();
    assert_eq!(st.phase, Some(Phase::Succeeded), "{st:?}");
    assert_eq!(st.failure, None);
    let rollback = st.steps.iter().find(|s| s.name == "rollback").unwrap();
    assert_eq!(rollback.phase, Phase::Skipped);
    assert!(
        rollback
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("OnFailure")
    );
    assert!(!steps_now(&ns).await.contains_key("rel-rollback"));
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_fails_is_reported_beside_the_first_failure() {
    let (ns, op) = setup("handlers-fail").await;
    let d = release(
        "rel",
        json!({ "steps": [
            step("deploy", "OnSuccess", "3"),
            { "name": "rollback", "runWhen": "OnFailure",
              "retries": { "limit": 1, "delaySeconds": 1 },
              "actions": [action("a", &[("exit-code", "4")])] },
            step("notify", "Always", "0"),
        ]}),
    );
    let api = create_release(&ns, &d).await;
    let done = run_in_order(&ns, &api, &["rel-deploy", "rel-rollback", "rel-notify"]).await;
    let st = done.status.clone().unwrap();
    assert_eq!(st.phase, Some(Phase::Failed), "{st:?}");
    let failure = st.failure.clone().expect("status.failure");
    assert_eq!(
        (failure.step.as_str(), failure.reason.as_str()),
        ("deploy", "StepFailed")
    );
    let msg = st.message.unwrap_or_default();
    assert!(msg.starts_with("step deploy (1/3)"), "{msg}");
    assert!(msg.contains("handler rollback:"), "{msg}");
    // The handler's retries ran: two attempts.
    let steps: Api<Step> = ns.api();
    let rollback = steps.get("rel-rollback").await.expect("rel-rollback");
    let attempts = rollback.status.map_or(0, |s| s.actions[0].attempts.len());
    assert_eq!(attempts, 2, "a handler's retries apply");
    let notify = st.steps.iter().find(|s| s.name == "notify").unwrap();
    assert_eq!(
        notify.phase,
        Phase::Succeeded,
        "handlers after a failed one still run"
    );
    drop(op);
    ns.cleanup().await;
}

fn plugin(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-stepwise"))
        .args(["-n", ns])
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("run kubectl-stepwise");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_stepwise_cancel_stops_the_release_and_its_handlers_run() {
    let (ns, op) = setup("handlers-cancel").await;
    let d = release(
        "rel",
        json!({ "steps": [
            { "name": "long", "actions": [action("a", &[("duration", "120s")])] },
            step("later", "OnSuccess", "0"),
            step("cleanup", "OnFailure", "0"),
        ]}),
    );
    let api = create_release(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    wait_phase(&steps, "rel-long", Phase::Running).await;
    let (ok, text) = plugin(&ns.name, &["cancel", "rel"]);
    assert!(ok, "{text}");
    let done = run_in_order(&ns, &api, &["rel-long", "rel-cleanup"]).await;
    let st = done.status.clone().unwrap();
    assert_eq!(st.phase, Some(Phase::Failed), "{st:?}");
    assert_eq!(st.failure.as_ref().map(|f| f.step.as_str()), Some("long"));
    let long = steps.get("rel-long").await.expect("rel-long");
    let reason = long
        .status
        .as_ref()
        .and_then(|s| s.actions[0].attempts.last())
        .and_then(|a| a.reason.clone());
    assert_eq!(reason.as_deref(), Some("Cancelled"));
    let seen = steps_now(&ns).await;
    assert_eq!(seen.get("rel-cleanup"), Some(&Phase::Succeeded), "{seen:?}");
    assert!(!seen.contains_key("rel-later"), "{seen:?}");
    // The cancel was handed to the running Step; none is left on the release.
    assert!(!done.annotations().contains_key(ANNOTATION_CANCEL));
    // A finished release has nothing to cancel: the plugin says so.
    let (ok, text) = plugin(&ns.name, &["cancel", "rel"]);
    assert!(!ok && text.contains("already finished"), "{text}");
    drop(op);
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_while_a_handler_runs_runs_nothing_twice() {
    let (ns, mut op) = setup("handlers-restart").await;
    let d = release(
        "rel",
        json!({ "steps": [
            step("deploy", "OnSuccess", "1"),
            { "name": "rollback", "runWhen": "OnFailure",
              "actions": [action("a", &[("duration", "4s")])] },
            step("notify", "Always", "0"),
        ]}),
    );
    let api = create_release(&ns, &d).await;
    let steps: Api<Step> = ns.api();
    wait_phase(&steps, "rel-rollback", Phase::Running).await;
    op.restart().await;
    let done = run_in_order(&ns, &api, &["rel-deploy", "rel-rollback", "rel-notify"]).await;
    let st = done.status.clone().unwrap();
    assert_eq!(st.phase, Some(Phase::Failed), "{st:?}");
    assert_eq!(st.failure.map(|f| f.step), Some("deploy".to_string()));
    for name in ["rel-deploy", "rel-rollback", "rel-notify"] {
        let s = steps.get(name).await.expect(name);
        let attempts = s.status.map_or(0, |st| st.actions[0].attempts.len());
        assert_eq!(attempts, 1, "{name} ran once");
    }
    drop(op);
    ns.cleanup().await;
}
