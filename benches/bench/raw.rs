//! The raw client, the lower bound: chains of Jobs with no logic but "when a
//! Job is done, create the next one"; and creating many objects at once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::stats::log;
use crate::watch::{job_finished, pod_job_name, pod_terminal, spawn_watch};

const RAW_LABEL: &str = "stepwise-bench/raw";

/// The raw client's Job: the same shape as the operator's (backoffLimit 0,
/// restartPolicy Never, restricted security context), no owner.
fn raw_job(name: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "labels": { RAW_LABEL: "true" } },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { RAW_LABEL: "true" } },
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "main",
                        "image": "busybox",
                        "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }
                    }]
                }
            }
        }
    }))
    .expect("a valid Job")
}

/// Creates `obj`, trying again on transient errors; false when refused.
async fn create_with_retry<K>(api: &Api<K>, obj: &K) -> bool
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    for attempt in 0..5 {
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 409 => return true,
            // Invalid or forbidden: trying again changes nothing.
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 404 | 422) => {
                log(format!("create {} refused: {}", obj.name_any(), e.message));
                return false;
            }
            Err(e) => {
                log(format!(
                    "create {} failed (try {attempt}): {e}",
                    obj.name_any()
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    false
}

/// Creates all of `objs`, `concurrency` at a time; returns how many failed.
pub async fn create_all<K>(api: &Api<K>, objs: Vec<K>, concurrency: usize) -> usize
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    stream::iter(objs)
        .map(|o| {
            let api = api.clone();
            async move { create_with_retry(&api, &o).await }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| futures::future::ready(!*ok))
        .count()
        .await
}

/// Runs chains of Jobs: when a Job is done (its pod is terminal or its Job
/// condition says so, whichever comes first), the next one is created.
/// Returns the wall time from the first create to the last chain done, or
/// None on timeout.
pub async fn raw_client(
    client: &Client,
    ns: &str,
    chains: &[Vec<String>],
    concurrency: usize,
    timeout: Duration,
) -> Option<Duration> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let selector = watcher::Config::default().labels(RAW_LABEL);
    let tx_pods = tx.clone();
    let (pods_task, pods_ready) = spawn_watch(
        Api::<Pod>::namespaced(client.clone(), ns),
        selector.clone(),
        move |pod: &Pod, _, _| {
            if pod_terminal(pod).is_some()
                && let Some(job) = pod_job_name(pod)
            {
                let _ = tx_pods.send(job);
            }
        },
    );
    let (jobs_task, jobs_ready) = spawn_watch(api.clone(), selector, move |job: &Job, _, _| {
        if job_finished(job) {
            let _ = tx.send(job.name_any());
        }
    });
    let _ = pods_ready.await;
    let _ = jobs_ready.await;

    let started = Instant::now();
    let firsts: Vec<Job> = chains.iter().map(|c| raw_job(&c[0])).collect();
    let failed = create_all(&api, firsts, concurrency).await;
    if failed > 0 {
        log(format!("raw client: {failed} first creates failed"));
    }
    let remaining = drive(&api, chains, &mut rx, timeout).await;
    pods_task.abort();
    jobs_task.abort();
    if remaining == 0 {
        Some(started.elapsed())
    } else {
        log(format!(
            "raw client: timed out with {remaining} chains unfinished"
        ));
        None
    }
}

/// Creates the next Job of a chain for each Job name done that arrives on
/// `done`; returns how many chains were unfinished at `timeout`.
async fn drive(
    api: &Api<Job>,
    chains: &[Vec<String>],
    done: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    timeout: Duration,
) -> usize {
    let index: HashMap<&str, (usize, usize)> = chains
        .iter()
        .enumerate()
        .flat_map(|(c, chain)| {
            chain
                .iter()
                .enumerate()
                .map(move |(p, n)| (n.as_str(), (c, p)))
        })
        .collect();
    let mut seen = HashSet::new();
    let mut remaining = chains.len();
    let deadline = tokio::time::Instant::now() + timeout;
    while remaining > 0 {
        let Ok(Some(name)) = tokio::time::timeout_at(deadline, done.recv()).await else {
            break;
        };
        let Some(&(c, p)) = index.get(name.as_str()) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        if p + 1 < chains[c].len() {
            let api = api.clone();
            let job = raw_job(&chains[c][p + 1]);
            tokio::spawn(async move {
                create_with_retry(&api, &job).await;
            });
        } else {
            remaining -= 1;
        }
    }
    remaining
}
