//! The bench's results, typed: what `bench/results.json` holds and
//! `BENCHMARKS.md` is rendered from. A renamed field is a compile error in the
//! report, not a silent "n/a". Field names are the JSON keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod peers;
mod shards;
pub use peers::{DriverRun, PeerHeadline, Peers, PeersPhase};
pub use shards::{ShardProcess, ShardsResult};

/// n, min, p50, p90, p99, max, mean of a sample (only `n` when it is empty).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

/// A histogram bucket bound: a number, or `"+Inf"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Finite(f64),
    Text(String),
}

impl Default for Bound {
    fn default() -> Bound {
        Bound::Finite(0.0)
    }
}

/// One histogram of the operator's /metrics page, in ms or s.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistogramView {
    pub count: f64,
    pub mean: f64,
    pub p50_bucket_le: Bound,
    pub p99_bucket_le: Bound,
    pub buckets: Vec<(Bound, f64)>,
}

/// What the operator says about its own reconciles: `time_ms[<labels>]`
/// histograms and `<counter>[<labels>]` totals.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reconcile {
    pub counters: BTreeMap<String, f64>,
    #[serde(flatten)]
    pub time_ms: BTreeMap<String, HistogramView>,
}

/// The API server's own mean latency of one kind of request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerLatency {
    pub mean_ms: f64,
    pub requests: f64,
}

/// The operator process's memory and CPU, read before it ends.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Footprint {
    pub peak_rss_mib: f64,
    pub rss_at_end_mib: f64,
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub rss_curve_s_mib: Vec<[f64; 2]>,
}

/// Hand-offs split at the operator's `startedAt`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Decomposed {
    pub react_ms: Summary,
    pub create_ms: Summary,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DelayErrors {
    pub operator_error_ms: Summary,
    pub watch_error_ms: Summary,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RetryResult {
    pub retries_measured: usize,
    pub retries_expected: usize,
    pub load_average: Vec<f64>,
    pub wall_s: f64,
    pub watch_error_ms: Summary,
    pub operator_error_ms: Summary,
    pub api_timestamps_error_ms: Summary,
    pub api_timestamps_error_histogram_s: BTreeMap<String, usize>,
    pub failure_detection_ms: Summary,
    pub by_delay: BTreeMap<String, DelayErrors>,
    pub operator_histogram_ms: HistogramView,
    pub reconcile: Reconcile,
    pub namespace: String,
    pub operator_log: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HandoffLatency {
    pub operator: Option<ServerLatency>,
    pub raw: Option<ServerLatency>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HandoffResult {
    pub handoffs: usize,
    pub operator_ms: Summary,
    pub operator_decomposed: Decomposed,
    pub server_latency_post_jobs: HandoffLatency,
    pub load_average: Vec<f64>,
    pub raw_ms: Summary,
    pub operator_missing: usize,
    pub raw_missing: usize,
    pub operator_wall_s: f64,
    pub raw_wall_s: Option<f64>,
    pub operator_reconcile: Reconcile,
    pub operator_footprint: Footprint,
}

/// A raw-run and an operator-run value of the same thing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Runs<T> {
    pub raw_run: T,
    pub operator_run: T,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunEnds {
    pub raw_run_end: Vec<f64>,
    pub operator_run_end: Vec<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cleanup {
    pub raw: f64,
    pub operator: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hops {
    pub raw_ms: Summary,
    pub operator_within_step_ms: Summary,
    pub operator_within_step_decomposed: Decomposed,
    pub operator_across_steps_ms: Summary,
    pub operator_across_steps_decomposed: Decomposed,
}

/// Read requests of one kind in each run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadRow {
    pub read: String,
    pub operator_run: f64,
    pub raw_run: f64,
}

/// Writes of one kind, and the operator's share of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WriteRow {
    pub write: String,
    pub operator_run: f64,
    pub raw_run: f64,
    pub operator_attributed: f64,
    pub operator_per_attempt: f64,
    pub server_mean_ms_operator_run: Option<f64>,
}

/// Writes that differ between the runs but are not the operator's.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ForeignWrite {
    pub write: String,
    pub operator_run: f64,
    pub raw_run: f64,
}

/// Changes the bench's own watches saw in the operator's namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LocalCounts {
    pub jobs_created: usize,
    pub steps_created: usize,
    pub step_updates: u64,
    pub deployment_updates: u64,
    pub operator_event_writes: u64,
}

impl LocalCounts {
    pub fn total(&self) -> f64 {
        (self.jobs_created + self.steps_created) as f64
            + (self.step_updates + self.deployment_updates + self.operator_event_writes) as f64
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApiWrites {
    pub attempts: f64,
    pub operator_writes: f64,
    pub operator_writes_per_attempt: f64,
    pub all_writes_operator_run: f64,
    pub all_writes_raw_run: f64,
    pub all_writes_per_job_operator_run: f64,
    pub all_writes_per_job_raw_run: f64,
    pub rows: Vec<WriteRow>,
    pub foreign_writes: Vec<ForeignWrite>,
    pub namespace_local_counts: LocalCounts,
    pub namespace_local_per_attempt: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThroughputResult {
    pub releases: usize,
    pub jobs: usize,
    pub raw_wall_s: Option<f64>,
    pub operator_wall_s: Option<f64>,
    pub operator_timed_out_after_s: Option<f64>,
    pub operator_releases_done: usize,
    pub operator_creates_done_s: f64,
    pub operator_last_job_done_s: Option<f64>,
    pub raw_jobs_done: usize,
    pub throughput_ratio: Option<f64>,
    pub operator_releases_per_s: Option<f64>,
    pub raw_chains_per_s: Option<f64>,
    pub cleanup_s: Cleanup,
    pub cluster_cpu_s: Runs<BTreeMap<String, f64>>,
    pub hops: Hops,
    pub server_latency_post_jobs: Runs<Option<ServerLatency>>,
    pub reads: Vec<ReadRow>,
    pub load_average: RunEnds,
    pub operator_cpu_s: Option<f64>,
    pub footprint: Footprint,
    pub reconcile: Reconcile,
    pub api_writes: ApiWrites,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub memory_mib: u64,
    pub cpu_model: String,
    pub kernel: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LastRun {
    pub phases: Vec<String>,
    pub seconds: f64,
}

/// Everything `bench/results.json` holds: the headline numbers (from the
/// phases, see [`Results::headline`]), each phase's results (kept from the
/// previous run when the phase did not run) and where they were measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    pub retry_delay_error_p99_ms: Option<f64>,
    pub handoff_p99_ms: Option<f64>,
    pub handoff_raw_p99_ms: Option<f64>,
    pub throughput_ratio: Option<f64>,
    pub writes_per_attempt: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub cpu_seconds: Option<f64>,
    /// From the peers phase (Stepwise's run of the same workloads).
    pub two_step_median_s: Option<f64>,
    pub throughput_releases_per_s: Option<f64>,
    pub writes_per_pod_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Peers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_phase: Option<PeersPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardsResult>,
    pub machine: Machine,
    pub date: String,
    pub kubernetes: String,
    pub revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_profiled_with: Option<String>,
    pub last_run: LastRun,
}

/// One phase's results in a previous `bench/results.json`, if they still read.
fn phase<T: serde::de::DeserializeOwned>(v: &serde_json::Value, key: &str) -> Option<T> {
    serde_json::from_value(v.get(key)?.clone()).ok()
}

impl Results {
    /// The phases of a previous `bench/results.json`, each one kept only if
    /// it still reads as this bench's type.
    pub fn previous(text: &str) -> Results {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return Results::default();
        };
        Results {
            retry: phase(&v, "retry"),
            handoff: phase(&v, "handoff"),
            throughput: phase(&v, "throughput"),
            shards: phase(&v, "shards"),
            peers_phase: phase(&v, "peers_phase"),
            ..Results::default()
        }
    }

    /// The headline numbers, from the phases' results.
    pub fn headline(&mut self) {
        self.retry_delay_error_p99_ms = self.retry.as_ref().and_then(|r| r.watch_error_ms.p99);
        self.handoff_p99_ms = self.handoff.as_ref().and_then(|h| h.operator_ms.p99);
        self.handoff_raw_p99_ms = self.handoff.as_ref().and_then(|h| h.raw_ms.p99);
        let t = self.throughput.as_ref();
        self.throughput_ratio = t.and_then(|t| t.throughput_ratio);
        self.writes_per_attempt = t.map(|t| t.api_writes.operator_writes_per_attempt);
        self.peak_rss_mib = t.map(|t| t.footprint.peak_rss_mib);
        self.cpu_seconds = t.and_then(|t| t.operator_cpu_s);
        let runs = self.peers_phase.as_ref().map(|p| &p.runs);
        let head = |k: &str| runs.and_then(|r| r.get(k)).map(PeerHeadline::of);
        let stepwise = head("stepwise");
        self.two_step_median_s = stepwise.as_ref().and_then(|h| h.two_step_median_s);
        self.throughput_releases_per_s =
            stepwise.as_ref().and_then(|h| h.throughput_releases_per_s);
        self.writes_per_pod_total = stepwise.as_ref().and_then(|h| h.writes_per_pod_total);
        self.peers = runs.map(|_| Peers {
            tekton: head("tekton"),
            tekton_tuned: head("tekton-tuned"),
            argo: head("argo"),
            argo_requeue_1s: head("argo-1s"),
            argo_tuned: head("argo-tuned"),
        });
    }

    /// As JSON with its keys sorted, as `bench/results.json` has always been.
    pub fn to_json(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    }
}
