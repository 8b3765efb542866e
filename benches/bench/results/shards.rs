//! The shards phase's results: the throughput workload over three operator
//! processes (`--shard a`, `--shard b`, no `--shard`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One operator process of the shards phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShardProcess {
    /// Releases labelled for it.
    pub releases: usize,
    /// `stepwise_action_attempts_total{result="started"}` from its /metrics.
    pub attempts_started: f64,
    pub cpu_seconds: Option<f64>,
    pub peak_rss_mib: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShardsResult {
    pub releases: usize,
    /// From the first create to the last release Succeeded; None on timeout.
    pub wall_s: Option<f64>,
    pub releases_per_s: Option<f64>,
    pub cpu_seconds_total: Option<f64>,
    /// By shard: `a`, `b`, `default`.
    pub processes: BTreeMap<String, ShardProcess>,
}
