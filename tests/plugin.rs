//! `kubectl stepwise` against the local cluster: status, decisions, approvals
//! and its errors, run as the real binary.

mod common;

use std::process::Command;

use common::kubeconfig_path;
use common::operator::setup;
use common::release::wait_phase;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use stepwise::api::{Deployment, Phase};

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
async fn status_decisions_and_approvals() {
    let (ns, op) = setup("plugin").await;
    let n = ns.name.as_str();

    let (ok, text) = plugin(n, &["status", "nope"]);
    assert!(!ok && text.contains("deployment nope not found"), "{text}");

    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1", "kind": "Deployment", "metadata": { "name": "rel" },
        "spec": { "guidedFailure": true, "steps": [
            { "name": "verify", "retries": { "limit": 1, "delaySeconds": 1 }, "actions": [{ "name": "smoke",
              "template": { "metadata": { "annotations": { "sim.stepwise.dev/fail-attempts": "1,2" } },
                            "spec": { "containers": [{ "name": "m", "image": "busybox" }] } } }] },
            { "name": "approve", "type": "ManualIntervention", "instructions": "Look at the dashboards." }
        ] }
    }))
    .unwrap();
    let api: Api<Deployment> = ns.api();
    api.create(&PostParams::default(), &d).await.unwrap();

    let (ok, text) = plugin(n, &["approve", "rel"]);
    assert!(
        !ok && text.contains("deployment rel is not waiting for approval"),
        "{text}"
    );

    wait_phase(&api, "rel", Phase::WaitingForDecision).await;
    let (ok, text) = plugin(n, &["status", "rel"]);
    assert!(ok, "{text}");
    for line in [
        "Deployment ",
        "WaitingForDecision",
        "├─ verify",
        "smoke",
        "#1  Failed",
        "#2  Failed",
        "exit code 1 (Error)",
        "approve  Pending  (manual intervention)",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let (ok, text) = plugin(n, &["retry", "rel"]);
    assert!(
        ok && text.contains("stepwise.dev/guided-failure-decision=retry"),
        "{text}"
    );

    wait_phase(&api, "rel", Phase::WaitingForApproval).await;
    let (ok, text) = plugin(n, &["abort", "rel"]);
    assert!(
        !ok && text.contains("not waiting for a guided-failure decision"),
        "{text}"
    );
    let (ok, text) = plugin(n, &["approve", "rel"]);
    assert!(ok, "{text}");

    // -w follows until the release ends, then exits 0.
    let (ok, text) = plugin(n, &["status", "-w", "rel"]);
    assert!(
        ok && text.contains("Succeeded") && text.contains("#3  Succeeded"),
        "{text}"
    );
    assert!(text.contains("decision retry on smoke attempt 2"), "{text}");
    drop(op);
    ns.cleanup().await;
}
