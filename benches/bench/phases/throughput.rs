//! Phase `throughput`: `BENCH_RELEASES` releases of 2 steps x 2 actions to
//! Succeeded, against the raw client running the same 4-Job chains; API
//! writes from the API server's own `apiserver_request_total` before and
//! after each run; the operator's peak RSS and CPU seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::json;
use stepwise::api::Deployment;
use stepwise_testkit::manifests::{action, release};

use super::writes::{RunWrites, api_writes};
use super::{create_releases, namespace, remove};
use crate::apiserver::{
    Requests, apiserver_requests, post_jobs, reads_table, server_latency_ms, writes, writes_delta,
};
use crate::hops::{decompose, hop_latencies, pairs_of, started_at_by_job};
use crate::metrics::reconcile_profile;
use crate::operator::BenchOperator;
use crate::raw::raw_client;
use crate::results::{
    Cleanup, Footprint, Hops, LocalCounts, Reconcile, RunEnds, Runs, Summary, ThroughputResult,
};
use crate::settings::Settings;
use crate::stats::{
    cluster_cpu, cluster_pids, cpu_delta, finite, loadavg, log, poll_until, round1, round3,
    summary, wall_ms,
};
use crate::watch::Recorder;

/// What the raw client's run measured.
struct RawRun {
    wall: Option<Duration>,
    requests: Requests,
    jobs_done: usize,
    hops: Summary,
    cpu: BTreeMap<String, f64>,
    load: Vec<f64>,
    cleanup_s: f64,
}

/// What the operator's run measured.
struct OperatorRun {
    /// Wall time, and whether every release succeeded within it.
    wall: Duration,
    ok: bool,
    done: usize,
    creates_done_s: f64,
    last_job_done_s: Option<f64>,
    requests: Requests,
    cpu: BTreeMap<String, f64>,
    load: Vec<f64>,
    operator_cpu_s: Option<f64>,
    footprint: Footprint,
    reconcile: Reconcile,
    local: LocalCounts,
    hops: Hops,
    cleanup_s: f64,
}

pub async fn phase_throughput(s: &Settings, client: &Client) -> ThroughputResult {
    let n = s.releases;
    log(format!(
        "throughput: {n} releases x 2 steps x 2 actions ({} Jobs), raw client first",
        n * 4
    ));
    let pids = cluster_pids(&s.kubeconfig);
    let raw = raw_run(s, client, &pids).await;
    log(format!(
        "throughput: raw client {:?} for {n} chains",
        raw.wall.map(|d| d.as_secs_f64())
    ));
    let op = operator_run(s, client, &pids).await;
    combine(n, raw, op)
}

async fn raw_run(s: &Settings, client: &Client, pids: &BTreeMap<String, u32>) -> RawRun {
    let n = s.releases;
    let ns = namespace(s, client, "bench-tput-raw").await;
    let rec = Recorder::start(client, &ns.name, false).await;
    let chains: Vec<Vec<String>> = (0..n)
        .map(|c| (0..4).map(|j| format!("t-{c:05}-{j}")).collect())
        .collect();
    let cpu0 = cluster_cpu(pids);
    let w0 = apiserver_requests(client).await;
    let timeout = s.phase_timeout;
    let wall = raw_client(client, &ns.name, &chains, s.create_concurrency, timeout).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w1 = apiserver_requests(client).await;
    let cpu1 = cluster_cpu(pids);
    let load = loadavg();
    let jobs_done = rec.with(|x| x.pods_done.len());
    let hops = summary(&hop_latencies(&rec, &pairs_of(&chains, |_| true)));
    drop(rec);
    RawRun {
        wall,
        requests: writes_delta(&w0, &w1),
        jobs_done,
        hops,
        cpu: cpu_delta(&cpu0, &cpu1),
        load,
        cleanup_s: remove(ns, Duration::from_secs(900)).await,
    }
}

pub(super) fn releases(n: usize) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            release(
                &format!("d-{i:05}"),
                json!({ "steps": [
                    { "name": "s1", "actions": [action("a1", &[]), action("a2", &[])] },
                    { "name": "s2", "actions": [action("a1", &[]), action("a2", &[])] },
                ]}),
            )
        })
        .collect()
}

/// Waits until `n` releases succeeded, saying how far it is every 30 s.
pub(super) async fn wait_all(s: &Settings, rec: &Recorder, n: usize, started: Instant) -> bool {
    let mut last_report = Instant::now();
    poll_until(s.phase_timeout, Duration::from_millis(100), || {
        let done = rec.with(|x| x.deployments_succeeded.len());
        if last_report.elapsed() > Duration::from_secs(30) {
            log(format!(
                "throughput: {done}/{n} releases succeeded after {:.0} s",
                started.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        async move { done >= n }
    })
    .await
}

async fn operator_run(s: &Settings, client: &Client, pids: &BTreeMap<String, u32>) -> OperatorRun {
    let n = s.releases;
    let ns = namespace(s, client, "bench-tput").await;
    let rec = Recorder::start(client, &ns.name, true).await;
    let op = BenchOperator::start(s, &ns.name).await;
    let op_cpu_start = op.cpu_seconds();
    let cpu0 = cluster_cpu(pids);
    let w0 = apiserver_requests(client).await;
    let started = Instant::now();
    let t0_ms = wall_ms();
    create_releases(s, &ns, releases(n)).await;
    let creates_done_s = round1(started.elapsed().as_secs_f64());
    let ok = wait_all(s, &rec, n, started).await;
    let wall = started.elapsed();
    let done = rec.with(|x| x.deployments_succeeded.len());
    let last_job_done_ms = rec.with(|x| {
        let seen = x.pods_done.values().map(|p| p.seen_ms);
        seen.fold(f64::NAN, f64::max)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w1 = apiserver_requests(client).await;
    let cpu1 = cluster_cpu(pids);
    let load = loadavg();
    let operator_cpu_s = finite(round3(op.cpu_seconds() - op_cpu_start));
    let metrics = op.metrics().await;
    let footprint = op.footprint();
    let local = rec.with(|x| LocalCounts {
        jobs_created: x.jobs.len(),
        steps_created: x.steps_seen.len(),
        step_updates: x.step_events.saturating_sub(x.steps_seen.len() as u64),
        deployment_updates: x.deployment_events.saturating_sub(n as u64),
        operator_event_writes: x.operator_events,
    });
    let hops = operator_hops(client, &ns.name, &rec, n).await;
    drop(op);
    drop(rec);
    OperatorRun {
        wall,
        ok,
        done,
        creates_done_s,
        last_job_done_s: finite(round1((last_job_done_ms - t0_ms) / 1000.0)),
        requests: writes_delta(&w0, &w1),
        cpu: cpu_delta(&cpu0, &cpu1),
        load,
        operator_cpu_s,
        footprint,
        reconcile: reconcile_profile(&metrics),
        local,
        hops,
        cleanup_s: remove(ns, Duration::from_secs(900)).await,
    }
}

/// Per-hop latencies of the operator's run; the raw client's are added later.
async fn operator_hops(client: &Client, ns: &str, rec: &Recorder, n: usize) -> Hops {
    let chains: Vec<Vec<String>> = (0..n)
        .map(|i| {
            ["s1-a1", "s1-a2", "s2-a1", "s2-a2"]
                .iter()
                .map(|j| format!("d-{i:05}-{j}-1"))
                .collect()
        })
        .collect();
    // Within a step: a1 -> a2 (hops 0 and 2); across steps: s1-a2 -> s2-a1 (hop 1).
    let intra = pairs_of(&chains, |i| i != 1);
    let inter = pairs_of(&chains, |i| i == 1);
    let started_at = started_at_by_job(client, ns).await;
    Hops {
        raw_ms: Summary::default(),
        operator_within_step_ms: summary(&hop_latencies(rec, &intra)),
        operator_within_step_decomposed: decompose(rec, &intra, &started_at),
        operator_across_steps_ms: summary(&hop_latencies(rec, &inter)),
        operator_across_steps_decomposed: decompose(rec, &inter, &started_at),
    }
}

fn combine(n: usize, raw: RawRun, op: OperatorRun) -> ThroughputResult {
    let raw_writes = writes(&raw.requests);
    let op_writes = writes(&op.requests);
    let run_writes = RunWrites {
        op_requests: &op.requests,
        op: &op_writes,
        raw: &raw_writes,
        releases: n,
        attempts: (n * 4) as f64,
    };
    let raw_wall_s = raw.wall.map(|d| d.as_secs_f64());
    let op_wall_s = op.ok.then_some(op.wall.as_secs_f64());
    let ratio = match (op_wall_s, raw_wall_s) {
        (Some(o), Some(r)) if r > 0.0 => Some(round3(o / r)),
        _ => None,
    };
    ThroughputResult {
        releases: n,
        jobs: n * 4,
        raw_wall_s: raw_wall_s.map(round1),
        operator_wall_s: op_wall_s.map(round1),
        operator_timed_out_after_s: (!op.ok).then(|| round1(op.wall.as_secs_f64())),
        operator_releases_done: op.done,
        operator_creates_done_s: op.creates_done_s,
        operator_last_job_done_s: op.last_job_done_s,
        raw_jobs_done: raw.jobs_done,
        throughput_ratio: ratio,
        operator_releases_per_s: op_wall_s.map(|w| round1(n as f64 / w)),
        raw_chains_per_s: raw_wall_s.map(|w| round1(n as f64 / w)),
        cleanup_s: Cleanup {
            raw: round1(raw.cleanup_s),
            operator: round1(op.cleanup_s),
        },
        cluster_cpu_s: Runs {
            raw_run: raw.cpu,
            operator_run: op.cpu,
        },
        hops: Hops {
            raw_ms: raw.hops,
            ..op.hops
        },
        server_latency_post_jobs: Runs {
            raw_run: server_latency_ms(&raw.requests, &post_jobs()),
            operator_run: server_latency_ms(&op.requests, &post_jobs()),
        },
        reads: reads_table(&raw.requests, &op.requests),
        load_average: RunEnds {
            raw_run_end: raw.load,
            operator_run_end: op.load,
        },
        operator_cpu_s: op.operator_cpu_s,
        footprint: op.footprint,
        reconcile: op.reconcile,
        api_writes: api_writes(&run_writes, op.local),
    }
}
