//! The control plane goes away mid-release: kube-apiserver and etcd are
//! stopped and started again while a release waits on a retry. The operator
//! recovers by itself. Its own test binary, so no other test sees the outage.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::operator::setup;
use common::{client, wait_for};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise::api::{Deployment, Phase, Step};

fn state() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
}

/// Stops a component started by scripts/cluster.sh and returns its command
/// line, so it can be started again exactly as it was.
fn stop(component: &str) -> Vec<String> {
    let pid_file = state().join("pids").join(format!("{component}.pid"));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{component} is not running ({}: {e})", pid_file.display()))
        .trim()
        .parse()
        .expect("a pid");
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .expect("cmdline")
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let started = Instant::now();
    while alive(pid) {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cmdline
}

/// Starts a component again with its old command line, in a session of its
/// own, appending to its log and recording its pid where cluster.sh looks.
fn start(component: &str, cmdline: &[String]) {
    let log_path = state().join("logs").join(format!("{component}.log"));
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log_path)
        .expect("log");
    // It outlives this test, like the rest of the cluster: cluster.sh stops it.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("setsid")
        .args(cmdline)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot restart {component}: {e}"));
    std::fs::write(
        state().join("pids").join(format!("{component}.pid")),
        format!("{}\n", child.id()),
    )
    .expect("pid file");
    // The start time recorded by scripts/cluster.sh is the old process's:
    // without it, scripts/lib/proc.sh judges the new one by its command line
    // (which names this checkout), so `cluster.sh down` still stops it.
    let start = state().join("pids").join(format!("{component}.start"));
    if let Err(e) = std::fs::remove_file(&start) {
        assert!(
            e.kind() == std::io::ErrorKind::NotFound,
            "cannot remove {}: {e}",
            start.display()
        );
    }
}

async fn api_server_back() {
    let started = Instant::now();
    loop {
        let kubeconfig = common::kubeconfig_path();
        if let Ok(c) = common::try_client_at(&kubeconfig).await
            && c.apiserver_version().await.is_ok()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the API server did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recovers_from_an_api_server_and_etcd_restart() {
    let (ns, mut op) = setup("outage").await;
    let api: Api<Deployment> = ns.api();
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1", "kind": "Deployment", "metadata": { "name": "rel" },
        "spec": { "steps": [{ "name": "s", "retries": { "limit": 2, "delaySeconds": 8 }, "actions": [
            { "name": "a", "template": { "metadata": { "annotations": { "sim.stepwise.dev/fail-attempts": "1" } },
              "spec": { "containers": [{ "name": "m", "image": "busybox" }] } } },
            { "name": "b", "template": { "spec": { "containers": [{ "name": "m", "image": "busybox" }] } } }
        ] }] }
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let steps: Api<Step> = ns.api();
    wait_for(
        &steps,
        "rel-s",
        Duration::from_secs(60),
        "the retry wait",
        |s: &Step| s.status.as_ref().and_then(|st| st.phase) == Some(Phase::Retrying),
    )
    .await;

    // Clients first, etcd last; then back in the opposite order.
    let apiserver = stop("kube-apiserver");
    let etcd = stop("etcd");
    tokio::time::sleep(Duration::from_secs(2)).await;
    start("etcd", &etcd);
    tokio::time::sleep(Duration::from_secs(1)).await;
    start("kube-apiserver", &apiserver);
    api_server_back().await;

    // A fresh client: the old connections died with the server.
    let fresh = client().await;
    let api: Api<Deployment> = Api::namespaced(fresh.clone(), &ns.name);
    wait_for(
        &api,
        "rel",
        Duration::from_secs(120),
        "the release to finish after the outage",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded),
    )
    .await;
    let jobs: Api<Job> = Api::namespaced(fresh.clone(), &ns.name);
    let names: Vec<String> = jobs
        .list(&ListParams::default().labels("stepwise.dev/step"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(names, vec!["rel-s-a-1", "rel-s-a-2", "rel-s-b-1"]);
    let steps: Api<Step> = Api::namespaced(fresh, &ns.name);
    let st = steps.get("rel-s").await.unwrap().status.unwrap();
    assert_eq!(st.actions[0].attempts.len(), 2);
    assert!(
        op.log_text().contains("reconcile"),
        "the operator kept running"
    );
    op.kill();
    ns.cleanup().await;
}
