//! `make bench`: measures the operator against the local control plane and
//! writes `bench/results.json` and `BENCHMARKS.md`.
//!
//! Phases (all but `peers` by default; `--phases retry,handoff,throughput,shards` or
//! `BENCH_PHASES` picks some, and the results of the others are kept from the
//! previous `bench/results.json`):
//!
//! * `retry`: 50 retries after a 2 s delay and 10 after the default 15 s, all
//!   at once; observed minus configured wait, three ways (the operator's own
//!   `failureSeenAt` -> `startedAt`; the API server's whole-second timestamps;
//!   the bench's own watch receive times).
//! * `handoff`: 11 releases of 20 actions (209 hand-offs; a step holds at
//!   most 20) under the operator, then 11 chains of 20 Jobs driven by a
//!   minimal raw client; each hand-off is
//!   "previous Job done -> next Job created" as the bench's watcher saw them.
//! * `throughput`: `BENCH_RELEASES` (default 1000) releases of 2 steps x 2
//!   actions to Succeeded, against the raw client running the same 4-Job
//!   chains; API writes from the API server's own `apiserver_request_total`
//!   before and after each run; the operator's peak RSS and CPU seconds.
//! * `shards`: the throughput workload over three operator processes
//!   (`--shard a`, `--shard b`, no `--shard`), a third of the releases each:
//!   wall time and each process's CPU, RSS and attempts.
//! * `peers` (only when asked for: `--peers`, `BENCH_PHASES=peers` or
//!   `make bench-peers`): the same small workloads through Stepwise, Tekton
//!   Pipelines and Argo Workflows (see `phases/peers.rs`).
//!
//! Every phase runs in namespaces of its own (labelled `stepwise.dev/bench`),
//! each operator process is scoped to one of them with `--namespace`, and
//! every namespace is deleted (and waited for) before the next phase starts.
//! Every wait is bounded (`BENCH_PHASE_TIMEOUT_S`, default 1800 s).
//!
//! Modules: `settings` (environment and arguments), `phases` (one module per
//! phase), `watch` and `hops` (the bench's own watcher and what it makes of
//! hand-offs), `raw` (the raw client), `operator` (the operator process, from
//! the test kit, with its footprint), `apiserver` and `metrics` (the API
//! server's and the operator's /metrics), `results` (the typed results) and
//! `report` (BENCHMARKS.md). Client, namespaces, CRDs and the operator
//! process come from `stepwise-testkit`.

mod apiserver;
mod hops;
mod metrics;
mod operator;
mod phases;
mod raw;
mod report;
mod results;
mod settings;
mod stats;
mod watch;

use std::time::Instant;

use kube::Client;
use stepwise_testkit::client::client_at;
use stepwise_testkit::crds::install_crds_as;

use crate::report::{existing_notes, render};
use crate::results::{LastRun, Results};
use crate::settings::Settings;
use crate::stats::{git_revision, log, machine, round1};

/// Runs the phases asked for; the others keep their previous results.
async fn run_phases(s: &Settings, client: &Client, mut results: Results) -> Results {
    if s.wants("retry") {
        results.retry = Some(phases::phase_retry(s, client).await);
    }
    if s.wants("handoff") {
        results.handoff = Some(phases::phase_handoff(s, client).await);
    }
    if s.wants("throughput") {
        results.throughput = Some(phases::phase_throughput(s, client).await);
    }
    if s.wants("shards") {
        results.shards = Some(phases::phase_shards(s, client).await);
    }
    if s.wants("peers") {
        results.peers_phase = Some(phases::phase_peers(s, client).await);
    }
    results
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn write_report(s: &Settings, results: &Results) {
    let md_path = s.report_path();
    let md = render(results, &existing_notes(&md_path));
    std::fs::write(&md_path, md).expect("write BENCHMARKS.md");
}

/// `--render-only`: rewrites BENCHMARKS.md from bench/results.json (after
/// editing the notes).
fn render_only(s: &Settings) {
    let text = std::fs::read_to_string(s.results_path()).expect("bench/results.json");
    let results: Results = serde_json::from_str(&text).expect("bench/results.json as results");
    write_report(s, &results);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let s = Settings::load();
    if s.render_only {
        return render_only(&s);
    }
    let client = client_at(&s.kubeconfig).await;
    let version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_default();
    install_crds_as(&client, "stepwise-bench").await;
    log(format!(
        "phases {:?}, operator {}, Kubernetes {version}",
        s.phases,
        s.bin.display()
    ));
    let previous = std::fs::read_to_string(s.results_path()).unwrap_or_default();
    let started = Instant::now();
    // On Ctrl-C or SIGTERM the running phase is dropped, which stops its
    // operator process; namespaces left behind are removed by scripts/bench.sh.
    let mut results = tokio::select! {
        r = run_phases(&s, &client, Results::previous(&previous)) => r,
        _ = interrupted() => {
            log("interrupted: operator stopped; nothing written");
            std::process::exit(130);
        }
    };
    results.headline();
    results.machine = machine();
    results.date = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    results.kubernetes = version;
    results.revision = git_revision(&s.root);
    if !s.operator_prefix.is_empty() || !s.operator_env.is_empty() {
        let with = format!("{} {:?}", s.operator_prefix.join(" "), s.operator_env);
        results.operator_profiled_with = Some(with);
    }
    results.last_run = LastRun {
        phases: s.phases.clone(),
        seconds: round1(started.elapsed().as_secs_f64()),
    };
    write_outputs(&s, &results, started);
}

fn write_outputs(s: &Settings, results: &Results, started: Instant) {
    std::fs::create_dir_all(s.out_dir.join("bench")).expect("bench/");
    std::fs::write(s.results_path(), results.to_json()).expect("write bench/results.json");
    write_report(s, results);
    log(format!(
        "wrote {} and {} in {:.0} s",
        s.results_path().display(),
        s.report_path().display(),
        started.elapsed().as_secs_f64()
    ));
    let headline = serde_json::json!({
        "retry_delay_error_p99_ms": results.retry_delay_error_p99_ms,
        "handoff_p99_ms": results.handoff_p99_ms,
        "handoff_raw_p99_ms": results.handoff_raw_p99_ms,
        "throughput_ratio": results.throughput_ratio,
        "writes_per_attempt": results.writes_per_attempt,
        "peak_rss_mib": results.peak_rss_mib,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&headline).unwrap_or_default()
    );
}
