//! Real outcomes on the real node of the local cluster, beyond
//! tests/real_outcomes.rs: pods that cannot start (unschedulable, refused by
//! a quota, a root image in a restricted namespace) fail at their start
//! timeout with the cause as the reason; the start timeout's outcome
//! survives a status wipe; an init container's exit code; an evicted pod.
//!
//! Every test fails, saying how to start one, when the cluster has no real
//! node: they are never skipped silently.

mod common;

use std::time::Duration;

use common::TestNamespace;
use common::manifests::release;
use common::operator::setup;
use common::real::{real_action, real_node};
use common::release::{attempts, step_status, wipe_status};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stepwise::api::{ANNOTATION_START_FAILURE, Deployment, Phase, Step};
use stepwise::jobs::job_name;

async fn start_release(ns: &TestNamespace, name: &str, retries: Value, actions: Vec<Value>) {
    let deployments: Api<Deployment> = ns.api();
    let mut step = json!({ "name": "run", "actions": actions });
    if !retries.is_null() {
        step["retries"] = retries;
    }
    deployments
        .create(
            &PostParams::default(),
            &release(name, json!({ "steps": [step] })),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot create release {name}: {e}"));
}

fn attempt_env() -> Value {
    json!([{
        "name": "ATTEMPT",
        "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['stepwise.dev/attempt']" } },
    }])
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap_or_else(|e| panic!("cannot list pods of {job}: {e}"))
        .items
}

/// Waits until the Step's and the Deployment's message contain `part`,
/// and a Warning AttemptCannotStart Event does.
async fn cannot_start_is_shown(ns: &TestNamespace, release: &str, part: &str) {
    use k8s_openapi::api::events::v1::Event;
    let says =
        |m: Option<&str>| m.is_some_and(|m| m.contains("cannot start: ") && m.contains(part));
    let steps: Api<Step> = ns.api();
    let what = format!("'{part}' in the Step's message");
    common::wait_for(
        &steps,
        &format!("{release}-run"),
        Duration::from_secs(60),
        &what,
        |s| says(s.status.as_ref().and_then(|st| st.message.as_deref())),
    )
    .await;
    let deployments: Api<Deployment> = ns.api();
    common::wait_for(
        &deployments,
        release,
        Duration::from_secs(30),
        "the Deployment's message",
        |d| says(d.status.as_ref().and_then(|st| st.message.as_deref())),
    )
    .await;
    let events: Api<Event> = ns.api();
    common::wait_until(
        Duration::from_secs(30),
        "a Warning AttemptCannotStart Event",
        || {
            let events = events.clone();
            async move {
                let list = events
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let notes: Vec<_> = list.items.iter().map(|e| (&e.reason, &e.note)).collect();
                list.items
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some("AttemptCannotStart")
                            && e.type_.as_deref() == Some("Warning")
                            && says(e.note.as_deref())
                    })
                    .then_some(())
                    .ok_or(format!("events: {notes:?}"))
            }
        },
    )
    .await;
}

/// Runs a release whose one action cannot start, with a start timeout of
/// 5 s and no retries; checks the cause is shown and recorded as `reason`.
async fn fails_at_start_timeout(
    ns: &TestNamespace,
    name: &str,
    action: Value,
    part: &str,
    reason: &str,
) {
    let mut action = action;
    action["startTimeoutSeconds"] = json!(5);
    start_release(ns, name, Value::Null, vec![action]).await;
    cannot_start_is_shown(ns, name, part).await;
    let status = step_status(ns, name, Phase::Failed).await;
    assert_eq!(
        attempts(&status),
        vec![(1, Some(reason.to_string()), None)],
        "{status:?}"
    );
    let m = status.actions[0].attempts[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        m.starts_with("did not start within 5 s: ") && m.contains(part),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unschedulable_pod_is_shown_and_fails_as_unschedulable() {
    let (ns, _op) = setup("real-unsched").await;
    let (_, image) = real_node(&ns.client).await;
    let huge = json!({ "resources": { "requests": { "cpu": "1000" } } });
    let action = real_action("big", &image, "true", json!({}), huge);
    fails_at_start_timeout(&ns, "us", action, "pod: Unschedulable: 0/", "Unschedulable").await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_a_quota_refuses_is_shown_and_fails_as_failed_create() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let (ns, _op) = setup("real-quota").await;
    let (_, image) = real_node(&ns.client).await;
    let quotas: Api<ResourceQuota> = ns.api();
    let quota = json!({ "metadata": { "name": "no-pods" }, "spec": { "hard": { "pods": "0" } } });
    let quota = serde_json::from_value(quota).expect("quota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("create quota");
    let action = real_action("refused", &image, "true", json!({}), json!({}));
    fails_at_start_timeout(
        &ns,
        "qu",
        action,
        "pod not created: FailedCreate: ",
        "FailedCreate",
    )
    .await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_image_in_a_restricted_namespace_fails_with_the_kubelets_reason() {
    let (ns, _op) = setup("real-restricted").await;
    let (_, image) = real_node(&ns.client).await;
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let label =
        json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "restricted" } } });
    namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label the namespace");
    // Stepwise hardens the pod so admission takes it; busybox runs as root.
    let action = real_action("root", &image, "true", json!({}), json!({}));
    let part = "CreateContainerConfigError: container has runAsNonRoot and image will run as root";
    fails_at_start_timeout(&ns, "rr", action, part, "CreateContainerConfigError").await;
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_timeouts_outcome_survives_a_status_wipe() {
    let (ns, _op) = setup("real-stwipe").await;
    real_node(&ns.client).await;
    let mut action = real_action(
        "pull",
        "registry.invalid/stepwise/missing:1",
        "true",
        json!({}),
        json!({}),
    );
    action["startTimeoutSeconds"] = json!(3);
    start_release(&ns, "sw", Value::Null, vec![action]).await;
    let before = attempts(&step_status(&ns, "sw", Phase::Failed).await);
    assert_eq!(before, vec![(1, Some("ImagePullBackOff".into()), None)]);
    // The Job stays, suspended, carrying the outcome; its pod goes.
    let (jobs, pods): (Api<Job>, Api<Pod>) = (ns.api(), ns.api());
    let first = job_name("sw-run", "pull", 1);
    common::wait_until(
        Duration::from_secs(60),
        "Job 1 suspended with its outcome, its pod gone",
        || {
            let (jobs, pods, first) = (jobs.clone(), pods.clone(), first.clone());
            async move {
                let job = jobs.get(&first).await.map_err(|e| e.to_string())?;
                let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
                let noted = job
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ANNOTATION_START_FAILURE));
                let left = pods_of(&pods, &first).await.len();
                (suspended && noted && left == 0)
                    .then_some(())
                    .ok_or(format!(
                        "suspended {suspended}, annotated {noted}, pods {left}"
                    ))
            }
        },
    )
    .await;
    let steps: Api<Step> = ns.api();
    wipe_status(&steps, "sw-run").await;
    let step = common::wait_for(
        &steps,
        "sw-run",
        Duration::from_secs(60),
        "the status read back",
        |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.phase == Some(Phase::Failed) && !st.actions.is_empty())
        },
    )
    .await;
    assert_eq!(
        attempts(&step.status.expect("status")),
        before,
        "the same outcome"
    );
    assert!(
        jobs.get_opt(&job_name("sw-run", "pull", 2))
            .await
            .expect("get")
            .is_none(),
        "no attempt runs again"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_init_container_exit_code_is_recorded_and_retried_under_retry_on_exit_codes() {
    let (ns, _op) = setup("real-init").await;
    let (_, image) = real_node(&ns.client).await;
    let init = json!({ "initContainers": [{
        "name": "schema", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", r#"[ "$ATTEMPT" -ge 2 ] || exit 3"#], "env": attempt_env(),
    }] });
    let action = real_action("migrate", &image, "true", init, json!({}));
    let retries = json!({ "limit": 1, "delaySeconds": 0, "retryOn": { "exitCodes": [3] } });
    start_release(&ns, "in", retries, vec![action]).await;
    let status = step_status(&ns, "in", Phase::Succeeded).await;
    let got = attempts(&status);
    assert_eq!(got.len(), 2, "{status:?}");
    assert_eq!(
        (got[0].1.as_deref(), got[0].2),
        (Some("Error"), Some(3)),
        "{status:?}"
    );
    let m = status.actions[0].attempts[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        m.contains("init container schema exited with code 3"),
        "{m}"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_pod_is_a_disruption_target_retried_without_overlap() {
    let (ns, op) = setup("real-evict").await;
    let (_, image) = real_node(&ns.client).await;
    let command = r#"[ "$ATTEMPT" -ge 2 ] && exit 0; trap '' TERM; sleep 300"#;
    let pod = json!({ "terminationGracePeriodSeconds": 8 });
    let action = real_action(
        "long",
        &image,
        command,
        pod,
        json!({ "env": attempt_env() }),
    );
    let retries =
        json!({ "limit": 1, "delaySeconds": 0, "retryOn": { "reasons": ["DisruptionTarget"] } });
    start_release(&ns, "ev", retries, vec![action]).await;
    let (jobs, pods): (Api<Job>, Api<Pod>) = (ns.api(), ns.api());
    let (first, second) = (job_name("ev-run", "long", 1), job_name("ev-run", "long", 2));
    let victim = loop {
        let running = pods_of(&pods, &first)
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if let Some(p) = running {
            break p.metadata.name.expect("pod name");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    pods.evict(&victim, &EvictParams::default())
        .await
        .expect("evict");
    // Job 2 never exists while the evicted pod does (it ignores TERM for 8 s).
    let mut saw_pod_after_eviction = false;
    for _ in 0..600 {
        let job2 = jobs.get_opt(&second).await.expect("get job 2");
        let left = pods.get_opt(&victim).await.expect("get pod");
        let terminal = |p: &Pod| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed" | "Succeeded")
            )
        };
        if let (Some(_), Some(p)) = (&job2, &left) {
            assert!(
                terminal(p),
                "Job {second} exists while the evicted pod runs: {}",
                common::describe(p)
            );
        }
        saw_pod_after_eviction |= left.is_some();
        if job2.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        saw_pod_after_eviction,
        "the pod outlived its eviction (else this proves nothing)"
    );
    let status = step_status(&ns, "ev", Phase::Succeeded).await;
    let got = attempts(&status);
    assert_eq!(
        got.len(),
        2,
        "retried under retryOn.reasons: {status:?}; log:\n{}",
        op.log_text()
    );
    assert_eq!(got[0].1.as_deref(), Some("DisruptionTarget"), "{status:?}");
    ns.cleanup().await;
}
