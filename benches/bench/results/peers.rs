//! The peers phase's results: the same workloads through Stepwise, Tekton
//! Pipelines and Argo Workflows, one after another on one cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Footprint, Summary};

/// One driver's run of every workload.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DriverRun {
    /// Stepwise: the binary's git revision; a peer: its module version.
    pub version: String,
    /// (a) 2-step releases one after another, create -> outcome seen, s.
    pub two_step_s: Summary,
    pub two_step_failed: usize,
    /// (b) an action failing twice then succeeding, 2 s between attempts.
    pub retry_s: Summary,
    pub retry_failed: usize,
    /// Why (b) did not run for this driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_not_run: Option<String>,
    /// (c) releases of 2 steps x 2 actions created at once.
    pub throughput_releases: usize,
    pub throughput_succeeded: usize,
    pub throughput_wall_s: Option<f64>,
    pub throughput_releases_per_s: Option<f64>,
    /// (d) every cluster write in the throughput run, per pod it ran.
    pub writes_total: f64,
    pub pods: usize,
    pub writes_per_pod_total: Option<f64>,
    /// The largest write kinds of the throughput run.
    pub writes_top: BTreeMap<String, f64>,
    /// The controller over all of this driver's workloads.
    pub cpu_seconds: Option<f64>,
    pub footprint: Footprint,
    pub wall_s: f64,
    pub log: String,
}

/// The peers phase: sizes and each driver's run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeersPhase {
    pub two_step_n: usize,
    pub retry_n: usize,
    pub releases: usize,
    pub runs: BTreeMap<String, DriverRun>,
}

/// A peer's headline numbers (`peers.tekton`, `peers.argo` in results.json).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerHeadline {
    pub two_step_median_s: Option<f64>,
    pub throughput_releases_per_s: Option<f64>,
    pub writes_per_pod_total: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub version: String,
}

impl PeerHeadline {
    pub fn of(r: &DriverRun) -> PeerHeadline {
        PeerHeadline {
            two_step_median_s: r.two_step_s.p50,
            throughput_releases_per_s: r.throughput_releases_per_s,
            writes_per_pod_total: r.writes_per_pod_total,
            peak_rss_mib: Some(r.footprint.peak_rss_mib),
            cpu_seconds: r.cpu_seconds,
            version: r.version.clone(),
        }
    }
}

/// `peers` in results.json: Tekton at its defaults and tuned for
/// throughput, Argo at its default requeue, with `DEFAULT_REQUEUE_TIME=1s`,
/// and tuned (1 s requeue, higher client QPS).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Peers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tekton: Option<PeerHeadline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tekton_tuned: Option<PeerHeadline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo: Option<PeerHeadline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_requeue_1s: Option<PeerHeadline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_tuned: Option<PeerHeadline>,
}
