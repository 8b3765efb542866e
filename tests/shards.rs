//! Shards (issue 16, part 3): `stepwise controller --shard NAME` runs only
//! the releases labelled `stepwise.dev/shard=NAME`, a process without
//! `--shard` only the unlabelled ones. Three processes share one namespace:
//! every release finishes, its Steps, Jobs and pods carry its shard, each
//! process starts exactly its own releases' attempts, and a shard that is
//! down leaves its releases to nobody until it is back, losing nothing.

mod common;

use std::time::Duration;

use common::manifests::{action, release};
use common::operator::{Operator, launch, namespace_with_crds, sample};
use common::release::wait_phase;
use common::{TestNamespace, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{Deployment, LABEL_DEPLOYMENT, LABEL_SHARD, Phase, Step};

/// A one-step release of two actions, in `shard` (unlabelled for `None`).
fn sharded(name: &str, shard: Option<&str>, duration: &str) -> Deployment {
    let mut d = release(
        name,
        json!({ "steps": [{ "name": "s", "actions": [
            action("a", &[("duration", duration)]),
            action("b", &[]),
        ]}]}),
    );
    if let Some(s) = shard {
        d.labels_mut().insert(LABEL_SHARD.into(), s.into());
    }
    d
}

async fn started(op: &Operator) -> f64 {
    sample(
        &op.metrics().await,
        "stepwise_action_attempts_total{result=\"started\"}",
    )
}

/// Every Step and Job of `release` carries `shard` (or no shard label).
async fn assert_carried(ns: &TestNamespace, release: &str, shard: Option<&str>) {
    let by_release = ListParams::default().labels(&format!("{LABEL_DEPLOYMENT}={release}"));
    let steps: Api<Step> = ns.api();
    let jobs: Api<Job> = ns.api();
    let steps = steps.list(&by_release).await.expect("steps").items;
    let jobs = jobs.list(&by_release).await.expect("jobs").items;
    assert_eq!((steps.len(), jobs.len()), (1, 2), "{release}");
    for labels in steps
        .iter()
        .map(|s| s.labels())
        .chain(jobs.iter().map(|j| j.labels()))
    {
        assert_eq!(
            labels.get(LABEL_SHARD).map(String::as_str),
            shard,
            "{release}"
        );
    }
    for j in &jobs {
        let template = j.spec.as_ref().and_then(|s| s.template.metadata.as_ref());
        let pod_shard = template.and_then(|m| m.labels.as_ref()?.get(LABEL_SHARD).cloned());
        assert_eq!(pod_shard.as_deref(), shard, "pods of {}", j.name_any());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_split_the_releases_by_shard() {
    let ns = namespace_with_crds("shards").await;
    let l = launch();
    let default = Operator::start(&l, &ns.name).await;
    let mut a = Operator::start_with(&l, &ns.name, &["--shard", "a"]).await;
    let b = Operator::start_with(&l, &ns.name, &["--shard", "b"]).await;
    let api: Api<Deployment> = ns.api();
    let spread = [
        ("plain-1", None),
        ("plain-2", None),
        ("a-1", Some("a")),
        ("a-2", Some("a")),
        ("b-1", Some("b")),
        ("b-2", Some("b")),
    ];
    for (name, shard) in spread {
        api.create(&PostParams::default(), &sharded(name, shard, "200ms"))
            .await
            .expect("create");
    }
    for (name, shard) in spread {
        wait_phase(&api, name, Phase::Succeeded).await;
        assert_carried(&ns, name, shard).await;
    }
    // Each process started exactly the attempts of its own releases.
    for (op, which) in [(&default, "default"), (&a, "a"), (&b, "b")] {
        assert_eq!(started(op).await, 4.0, "attempts started by shard {which}");
    }

    // Shard a down: its new release waits for it, untouched by the others.
    a.kill();
    api.create(&PostParams::default(), &sharded("a-3", Some("a"), "2s"))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = api.get("a-3").await.expect("a-3");
    let steps: Api<Step> = ns.api();
    assert!(
        steps.get_opt("a-3-s").await.expect("get").is_none(),
        "no other shard created a-3's Step"
    );
    assert_ne!(
        waiting.status.and_then(|s| s.phase),
        Some(Phase::Running),
        "no other shard ran a-3"
    );
    // Back, it runs it; killed again mid-attempt and restarted, nothing is lost or repeated.
    a.restart().await;
    wait_for(
        &steps,
        "a-3-s",
        Duration::from_secs(60),
        "a-3 running",
        |s: &Step| s.status.as_ref().and_then(|st| st.phase) == Some(Phase::Running),
    )
    .await;
    a.restart().await;
    wait_phase(&api, "a-3", Phase::Succeeded).await;
    assert_carried(&ns, "a-3", Some("a")).await;
    let step = steps.get("a-3-s").await.expect("a-3-s");
    for action in &step.status.expect("status").actions {
        assert_eq!(action.attempts.len(), 1, "{} ran once", action.name);
    }
    assert_eq!(started(&default).await + started(&b).await, 8.0);
    drop((default, a, b));
    ns.cleanup().await;
}
