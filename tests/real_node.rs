//! Real containers on the real node of the local cluster (scripts/node.sh:
//! a kubelet on containerd + runc, started by
//! `scripts/cluster.sh up`, unless STEPWISE_REAL_NODE=0). What kwok only scripts,
//! the kubelet decides here: exit codes, the OOM killer, image pulls, logs.
//!
//! Every test fails, saying how to start one, when the cluster has no real
//! node: they are never skipped silently.

mod common;

use std::time::{Duration, Instant};

use common::real::{NODE_KIND_LABEL, NODE_KIND_REAL, real_node};
use common::{TestNamespace, job_outcome, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use serde_json::{Value, json};

/// How long a real Job may take from creation to its end (a pod starts in
/// about 3 s on the real node; the machine is shared).
const JOB_TIMEOUT: Duration = Duration::from_secs(90);

/// A Job as Stepwise makes them (one pod, no retries by the Job controller),
/// pinned to the real node: its nodeSelector and a toleration of its taint.
fn real_job(name: &str, image: &str, command: &str, resources: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "nodeSelector": { NODE_KIND_LABEL: NODE_KIND_REAL },
                    "tolerations": [{
                        "key": NODE_KIND_LABEL,
                        "operator": "Equal",
                        "value": NODE_KIND_REAL,
                        "effect": "NoSchedule",
                    }],
                    "containers": [{
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", command],
                        "resources": resources,
                    }],
                },
            },
        },
    }))
    .expect("job manifest")
}

async fn create(ns: &TestNamespace, job: &Job) -> Api<Job> {
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), job)
        .await
        .unwrap_or_else(|e| panic!("cannot create job: {e}"));
    jobs
}

async fn finished(jobs: &Api<Job>, name: &str) -> Job {
    wait_for(
        jobs,
        name,
        JOB_TIMEOUT,
        &format!("job {name} to finish on the real node"),
        |j| job_outcome(j).is_some(),
    )
    .await
}

/// The Job's one pod, checked to have run on the real node.
async fn the_pod(ns: &TestNamespace, job: &str, node: &str) -> Pod {
    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods");
    assert_eq!(list.items.len(), 1, "one pod for job {job}, no retry");
    let pod = list.items.into_iter().next().expect("one pod");
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node),
        "job {job} ran on the real node: {}",
        common::describe(&pod)
    );
    pod
}

fn container_state(pod: &Pod) -> Option<ContainerState> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.clone())
}

/// (exit code, reason) of the pod's terminated container.
fn terminated(pod: &Pod) -> (i32, Option<String>) {
    let t = container_state(pod)
        .and_then(|s| s.terminated)
        .unwrap_or_else(|| panic!("pod has no terminated container: {}", common::describe(pod)));
    (t.exit_code, t.reason)
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_3_is_an_error_with_that_code() {
    let ns = TestNamespace::new("real-exit").await;
    let (node, image) = real_node(&ns.client).await;
    let jobs = create(&ns, &real_job("exit3", &image, "exit 3", json!({}))).await;
    let done = finished(&jobs, "exit3").await;
    assert_eq!(
        job_outcome(&done),
        Some("Failed"),
        "{}",
        common::describe(&done)
    );
    let pod = the_pod(&ns, "exit3", &node).await;
    assert_eq!(
        terminated(&pod),
        (3, Some("Error".to_string())),
        "{}",
        common::describe(&pod)
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn success_and_its_logs_come_from_the_container() {
    let ns = TestNamespace::new("real-logs").await;
    let (node, image) = real_node(&ns.client).await;
    let jobs = create(
        &ns,
        &real_job("hello", &image, "echo hello from $(hostname)", json!({})),
    )
    .await;
    let done = finished(&jobs, "hello").await;
    assert_eq!(
        job_outcome(&done),
        Some("Complete"),
        "{}",
        common::describe(&done)
    );
    let pod = the_pod(&ns, "hello", &node).await;
    assert_eq!(terminated(&pod), (0, Some("Completed".to_string())));
    // kubectl logs: the API server reaches the kubelet by the node's name.
    let pods: Api<Pod> = ns.api();
    let name = pod.metadata.name.clone().expect("pod name");
    let logs = pods
        .logs(&name, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot read the logs of pod {name} through the kubelet: {e}"));
    assert_eq!(
        logs.trim(),
        format!("hello from {name}"),
        "the container's own output"
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_over_the_limit_is_oom_killed() {
    let ns = TestNamespace::new("real-oom").await;
    let (node, image) = real_node(&ns.client).await;
    // dd allocates its 64 MiB block and fills it from /dev/zero: four times
    // the limit.
    let limits = json!({ "limits": { "memory": "16Mi" }, "requests": { "memory": "16Mi" } });
    // containerd 1.6 may report a memory kill as Error 137 (a race between
    // its OOM and exit events, fixed in 1.7): such a run is tried again.
    for run in 1..=3 {
        let name = format!("hog-{run}");
        let jobs = create(
            &ns,
            &real_job(
                &name,
                &image,
                "dd if=/dev/zero of=/dev/null bs=64M count=4",
                limits.clone(),
            ),
        )
        .await;
        let done = finished(&jobs, &name).await;
        assert_eq!(
            job_outcome(&done),
            Some("Failed"),
            "{}",
            common::describe(&done)
        );
        let pod = the_pod(&ns, &name, &node).await;
        let got = terminated(&pod);
        if got == (137, Some("Error".to_string())) && run < 3 {
            eprintln!("run {run}: containerd reported the OOM kill as Error 137; running again");
            continue;
        }
        assert_eq!(
            got,
            (137, Some("OOMKilled".to_string())),
            "{}",
            common::describe(&pod)
        );
        break;
    }
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_image_waits_in_errimagepull() {
    let ns = TestNamespace::new("real-pull").await;
    let (node, _) = real_node(&ns.client).await;
    // The node's containerd sends every pull to a closed port on 127.0.0.1:
    // nothing is looked up or contacted.
    let jobs = create(
        &ns,
        &real_job(
            "nopull",
            "registry.invalid/stepwise/missing:1",
            "true",
            json!({}),
        ),
    )
    .await;
    let pods: Api<Pod> = ns.api();
    let started = Instant::now();
    let seen = loop {
        let list = pods
            .list(&ListParams::default().labels("batch.kubernetes.io/job-name=nopull"))
            .await
            .expect("list pods");
        let waiting = list
            .items
            .first()
            .and_then(container_state)
            .and_then(|s| s.waiting);
        if let Some(w) = waiting.filter(|w| {
            matches!(
                w.reason.as_deref(),
                Some("ErrImagePull" | "ImagePullBackOff")
            )
        }) {
            break w;
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!(
                "timed out after 60 s waiting for the pod of job nopull to wait in ErrImagePull \
                 or ImagePullBackOff; last seen: {}",
                list.items
                    .first()
                    .map(common::describe)
                    .unwrap_or("no pod".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "pull failure after {:?}, as the kubelet reports it: {:?}: {:?}",
        started.elapsed(),
        seen.reason,
        seen.message
    );
    let pod = the_pod(&ns, "nopull", &node).await;
    assert!(
        container_state(&pod).and_then(|s| s.terminated).is_none(),
        "a pod that cannot pull never runs"
    );
    let job = jobs.get("nopull").await.expect("job");
    assert_eq!(
        job_outcome(&job),
        None,
        "the Job waits; it neither fails nor completes"
    );
    jobs.delete("nopull", &DeleteParams::foreground())
        .await
        .expect("delete job");
    ns.cleanup().await;
}
