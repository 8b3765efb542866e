//! Phase `handoff`: hand-off latency. Releases of one step of up to 20
//! actions (a step holds at most 20) under the operator, then as many chains
//! of Jobs driven by the raw client; each hand-off is "previous Job done ->
//! next Job created" as the bench's watcher saw them.

use std::time::{Duration, Instant};

use kube::Client;
use serde_json::{Value, json};
use stepwise::api::Deployment;
use stepwise_testkit::manifests::{action, release};

use super::{create_releases, namespace, remove};
use crate::apiserver::{apiserver_requests, post_jobs, server_latency_ms, writes_delta};
use crate::hops::{decompose, handoffs, pairs_of, started_at_by_job};
use crate::metrics::reconcile_profile;
use crate::operator::BenchOperator;
use crate::raw::raw_client;
use crate::results::{HandoffLatency, HandoffResult, ServerLatency};
use crate::settings::Settings;
use crate::stats::{loadavg, log, poll_until, round1, summary};
use crate::watch::Recorder;

/// The releases and the Job names of each, in order.
fn releases(n: usize, len: usize) -> (Vec<Deployment>, Vec<Vec<String>>) {
    let mut objs = Vec::new();
    let mut chains = Vec::new();
    for c in 0..n {
        let name = format!("h-{c:03}");
        let actions: Vec<Value> = (0..len).map(|a| action(&format!("a{a:02}"), &[])).collect();
        objs.push(release(
            &name,
            json!({ "steps": [{ "name": "s", "actions": actions }] }),
        ));
        chains.push((0..len).map(|a| format!("{name}-s-a{a:02}-1")).collect());
    }
    (objs, chains)
}

pub async fn phase_handoff(s: &Settings, client: &Client) -> HandoffResult {
    // A step holds at most 20 actions (CRD validation).
    let (n, len) = (s.handoff_chains, s.handoff_actions.clamp(2, 20));
    log(format!(
        "handoff: {n} releases x 1 step x {len} actions ({} hand-offs), then the raw client",
        n * (len - 1)
    ));
    let mut result = operator_run(s, client, n, len).await;
    let (raw_ms, raw_missing, raw_wall, raw_post_jobs) = raw_run(s, client, n, len).await;
    result.raw_ms = summary(&raw_ms);
    result.raw_missing = raw_missing;
    result.raw_wall_s = raw_wall.map(|d| round1(d.as_secs_f64()));
    result.server_latency_post_jobs.raw = raw_post_jobs;
    result.load_average = loadavg();
    result
}

/// The operator's part; the raw client's fields stay empty.
async fn operator_run(s: &Settings, client: &Client, n: usize, len: usize) -> HandoffResult {
    let ns = namespace(s, client, "bench-handoff").await;
    let rec = Recorder::start(client, &ns.name, true).await;
    let op = BenchOperator::start(s, &ns.name).await;
    let (objs, chains) = releases(n, len);
    let a0 = apiserver_requests(client).await;
    let started = Instant::now();
    create_releases(s, &ns, objs).await;
    let ok = poll_until(s.phase_timeout, Duration::from_millis(250), || {
        let done = rec.with(|x| x.deployments_succeeded.len());
        async move { done >= n }
    })
    .await;
    let op_wall = started.elapsed().as_secs_f64();
    if !ok {
        log("handoff: the operator did not finish every release in time");
    }
    let a1 = apiserver_requests(client).await;
    let (op_handoffs, op_missing) = handoffs(&rec, &chains);
    let started_at = started_at_by_job(client, &ns.name).await;
    let metrics = op.metrics().await;
    let result = HandoffResult {
        handoffs: op_handoffs.len(),
        operator_ms: summary(&op_handoffs),
        operator_decomposed: decompose(&rec, &pairs_of(&chains, |_| true), &started_at),
        server_latency_post_jobs: HandoffLatency {
            operator: server_latency_ms(&writes_delta(&a0, &a1), &post_jobs()),
            raw: None,
        },
        operator_missing: op_missing,
        operator_wall_s: round1(op_wall),
        operator_reconcile: reconcile_profile(&metrics),
        operator_footprint: op.footprint(),
        ..HandoffResult::default()
    };
    drop(op);
    drop(rec);
    remove(ns, Duration::from_secs(300)).await;
    result
}

/// The raw client's hand-offs, how many were not seen, its wall time and
/// the API server's latency of its Job creates.
async fn raw_run(
    s: &Settings,
    client: &Client,
    n: usize,
    len: usize,
) -> (Vec<f64>, usize, Option<Duration>, Option<ServerLatency>) {
    let ns = namespace(s, client, "bench-handoff-raw").await;
    let rec = Recorder::start(client, &ns.name, false).await;
    let chains: Vec<Vec<String>> = (0..n)
        .map(|c| (0..len).map(|a| format!("raw-{c:03}-{a:02}")).collect())
        .collect();
    let a0 = apiserver_requests(client).await;
    let timeout = s.phase_timeout;
    let wall = raw_client(client, &ns.name, &chains, s.create_concurrency, timeout).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a1 = apiserver_requests(client).await;
    let post_jobs = server_latency_ms(&writes_delta(&a0, &a1), &post_jobs());
    let (hops, missing) = handoffs(&rec, &chains);
    drop(rec);
    remove(ns, Duration::from_secs(300)).await;
    (hops, missing, wall, post_jobs)
}
