//! The local control plane itself: real Job controller, scheduler and garbage
//! collector, with pods simulated by kwok (scripts/kwok-stages.yaml). These
//! pin down the simulation contract the operator's tests rely on.

mod common;

use std::time::{Duration, Instant};

use common::{TestNamespace, job_has_condition, job_outcome, wait_for, wait_until};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// A Job as Stepwise makes them: one pod, no retries by the Job controller.
fn job(name: &str, labels: Value, annotations: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": labels, "annotations": annotations },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "busybox", "command": ["true"] }],
                },
            },
        },
    }))
    .expect("job manifest")
}

async fn create_job(ns: &TestNamespace, job: &Job) -> Api<Job> {
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), job)
        .await
        .unwrap_or_else(|e| panic!("cannot create job: {e}"));
    jobs
}

async fn wait_job_finished(jobs: &Api<Job>, name: &str) -> Job {
    wait_for(
        jobs,
        name,
        JOB_TIMEOUT,
        &format!("job {name} to finish"),
        |j| job_outcome(j).is_some(),
    )
    .await
}

async fn job_pods(ns: &TestNamespace, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = ns.api();
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods")
        .items
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminated(pod: &Pod) -> ContainerStateTerminated {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| panic!("pod has no terminated container: {}", common::describe(pod)))
}

#[tokio::test(flavor = "multi_thread")]
async fn job_runs_to_complete() {
    let ns = TestNamespace::new("cluster-complete").await;
    let jobs = create_job(&ns, &job("ok", json!({}), json!({}))).await;
    let done = wait_job_finished(&jobs, "ok").await;
    assert_eq!(
        job_outcome(&done),
        Some("Complete"),
        "{}",
        common::describe(&done)
    );
    assert_eq!(done.status.as_ref().and_then(|s| s.succeeded), Some(1));

    let pods = job_pods(&ns, "ok").await;
    assert_eq!(pods.len(), 1, "one pod, no retry");
    assert_eq!(phase(&pods[0]), "Succeeded");
    let t = terminated(&pods[0]);
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert!(t.finished_at.is_some(), "finishedAt set");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_annotation_fails_the_job_with_that_code() {
    let ns = TestNamespace::new("cluster-exit-code").await;
    let jobs = create_job(
        &ns,
        &job(
            "boom",
            json!({}),
            json!({ "sim.stepwise.dev/exit-code": "3" }),
        ),
    )
    .await;
    let done = wait_job_finished(&jobs, "boom").await;
    assert_eq!(
        job_outcome(&done),
        Some("Failed"),
        "{}",
        common::describe(&done)
    );
    assert_eq!(done.status.as_ref().and_then(|s| s.failed), Some(1));

    let pods = job_pods(&ns, "boom").await;
    assert_eq!(pods.len(), 1, "backoffLimit 0: no second pod");
    assert_eq!(phase(&pods[0]), "Failed");
    let t = terminated(&pods[0]);
    assert_eq!(t.exit_code, 3, "{}", common::describe(&pods[0]));
    assert_eq!(t.reason.as_deref(), Some("Error"));
    assert!(t.finished_at.is_some(), "finishedAt set");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_attempts_scripts_each_attempt() {
    let ns = TestNamespace::new("cluster-attempts").await;
    let annotations = json!({ "sim.stepwise.dev/fail-attempts": "1,2" });
    let mut jobs = None;
    for attempt in 1..=3 {
        let name = format!("step-attempt-{attempt}");
        let labels = json!({ "stepwise.dev/attempt": attempt.to_string() });
        jobs = Some(create_job(&ns, &job(&name, labels, annotations.clone())).await);
    }
    let jobs = jobs.unwrap();
    for (attempt, expected) in [(1, "Failed"), (2, "Failed"), (3, "Complete")] {
        let name = format!("step-attempt-{attempt}");
        let done = wait_job_finished(&jobs, &name).await;
        assert_eq!(
            job_outcome(&done),
            Some(expected),
            "attempt {attempt}: {}",
            common::describe(&done)
        );
        let pods = job_pods(&ns, &name).await;
        assert_eq!(pods.len(), 1);
        let code = terminated(&pods[0]).exit_code;
        let expected_code = if expected == "Failed" { 1 } else { 0 };
        assert_eq!(code, expected_code, "attempt {attempt} exit code");
    }
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duration_keeps_the_pod_running_first() {
    let ns = TestNamespace::new("cluster-duration").await;
    let started = Instant::now();
    let jobs = create_job(
        &ns,
        &job(
            "slow",
            json!({}),
            json!({ "sim.stepwise.dev/duration": "2s" }),
        ),
    )
    .await;

    // While it runs, the pod is seen Running and the Job is not finished.
    let pods: Api<Pod> = ns.api();
    wait_until(
        Duration::from_secs(30),
        "the pod of job slow to be Running",
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("batch.kubernetes.io/job-name=slow"))
                    .await
                    .map_err(|e| e.to_string())?;
                match list.items.first() {
                    Some(p) if phase(p) == "Running" => Ok(()),
                    Some(p) => Err(format!("phase {}", phase(p))),
                    None => Err("no pod yet".into()),
                }
            }
        },
    )
    .await;
    let running_seen = started.elapsed();

    let done = wait_job_finished(&jobs, "slow").await;
    let elapsed = started.elapsed();
    assert_eq!(
        job_outcome(&done),
        Some("Complete"),
        "{}",
        common::describe(&done)
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "job finished {elapsed:?} after creation, before the pod's 2s of work (Running seen at {running_seen:?})"
    );

    // The API's own record says the same (timestamps have 1 s resolution;
    // truncating both ends cannot shrink a >= 2 s gap below 2 s).
    let status = done.status.as_ref().expect("status");
    let (start, end) = (
        status.start_time.as_ref().unwrap(),
        status.completion_time.as_ref().unwrap(),
    );
    let job_secs = end.0.as_second() - start.0.as_second();
    assert!(
        job_secs >= 2,
        "job ran {job_secs}s by its startTime/completionTime"
    );

    let pods = job_pods(&ns, "slow").await;
    let t = terminated(&pods[0]);
    let (run_start, run_end) = (t.started_at.unwrap(), t.finished_at.unwrap());
    let ran = run_end.0.as_second() - run_start.0.as_second();
    assert!(ran >= 2, "container ran {ran}s by its startedAt/finishedAt");
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_job_removes_its_pods() {
    let ns = TestNamespace::new("cluster-gc").await;
    // One finished Job, one whose pod is still running when it is deleted
    // (kwok then kills the pod; the Job controller drops its finalizer).
    let jobs = create_job(&ns, &job("finished", json!({}), json!({}))).await;
    create_job(
        &ns,
        &job(
            "running",
            json!({}),
            json!({ "sim.stepwise.dev/duration": "10m" }),
        ),
    )
    .await;
    let done = wait_job_finished(&jobs, "finished").await;
    assert!(job_has_condition(&done, "Complete"));
    let pods: Api<Pod> = ns.api();
    wait_until(
        Duration::from_secs(30),
        "the pod of job running to be Running",
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("batch.kubernetes.io/job-name=running"))
                    .await
                    .map_err(|e| e.to_string())?;
                match list.items.first() {
                    Some(p) if phase(p) == "Running" => Ok(()),
                    other => Err(format!("{:?}", other.map(phase))),
                }
            }
        },
    )
    .await;
    assert_eq!(job_pods(&ns, "finished").await.len(), 1);

    let deleted_at = Instant::now();
    for name in ["finished", "running"] {
        jobs.delete(name, &DeleteParams::background())
            .await
            .expect("delete job");
    }
    wait_until(
        Duration::from_secs(60),
        "the Jobs' pods to be garbage collected",
        || {
            let pods = pods.clone();
            let jobs = jobs.clone();
            async move {
                let left_jobs = jobs
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let left = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                if left.items.is_empty() && left_jobs.items.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "jobs {:?}, pods {:?}",
                        left_jobs
                            .items
                            .iter()
                            .map(|j| j.metadata.name.clone())
                            .collect::<Vec<_>>(),
                        left.items
                            .iter()
                            .map(|p| (
                                p.metadata.name.clone(),
                                phase(p).to_string(),
                                p.metadata.finalizers.clone()
                            ))
                            .collect::<Vec<_>>()
                    ))
                }
            }
        },
    )
    .await;
    eprintln!("pods of deleted jobs gone after {:?}", deleted_at.elapsed());
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_cluster_fails_with_how_to_start_one() {
    let dir = std::env::temp_dir().join(common::unique_name("stepwise-no-cluster"));
    let err = common::try_client_at(dir.join("kubeconfig"))
        .await
        .err()
        .expect("a nonexistent kubeconfig must not give a client");
    assert!(err.contains("no local Kubernetes cluster"), "{err}");
    assert!(err.contains("make cluster"), "{err}");

    // A kubeconfig whose API server does not answer fails the same way.
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens there any more
    let path = dir.join("dead-kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:{port}\n\
             users:\n- name: u\n  user:\n    token: x\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\n\
             current-context: dead\n"
        ),
    )
    .unwrap();
    let err = common::try_client_at(&path)
        .await
        .err()
        .expect("a dead API server must not give a client");
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        err.contains("does not answer") || err.contains("did not answer"),
        "{err}"
    );
    assert!(err.contains("make cluster"), "{err}");
}

/// `kubectl apply` of the shipped CRDs draws no warning from the API server
/// (it used to warn `unrecognized format "uint32"` for every unsigned field).
#[tokio::test]
async fn the_crds_apply_without_a_warning() {
    common::client().await; // fails loudly when there is no cluster
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["crds", "charts/stepwise/crds"] {
        let out = std::process::Command::new(root.join(".tools/bin/kubectl"))
            .arg("--kubeconfig")
            .arg(common::kubeconfig_path())
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
            ])
            .arg(root.join(dir))
            .output()
            .expect("run kubectl (make tools builds it)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl apply -f {dir} failed: {stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("deployments.stepwise.dev"),
            "kubectl apply -f {dir} did not apply the Deployment CRD"
        );
        assert!(
            !stderr.contains("Warning"),
            "kubectl apply -f {dir} warned:\n{stderr}"
        );
    }
}
