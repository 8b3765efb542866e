//! Phase `shards`: the throughput workload (`BENCH_RELEASES` releases of 2
//! steps x 2 actions, created at once) split across three operator processes
//! in one namespace: `--shard a`, `--shard b` and one without `--shard`, a
//! third of the releases each by their `stepwise.dev/shard` label. It reports
//! the wall time and each process's CPU seconds, peak RSS and attempts
//! started, beside the one-process run of the `throughput` phase.

use std::time::Instant;

use kube::{Client, ResourceExt};
use stepwise::api::LABEL_SHARD;
use stepwise_testkit::probe::sample;

use super::throughput::{releases, wait_all};
use super::{create_releases, namespace, remove};
use crate::operator::BenchOperator;
use crate::results::{ShardProcess, ShardsResult};
use crate::settings::Settings;
use crate::stats::{finite, log, round1, round3};
use crate::watch::Recorder;

/// The processes, by the shard they run (`None`: the unlabelled releases).
const SHARDS: [(&str, Option<&str>); 3] = [("a", Some("a")), ("b", Some("b")), ("default", None)];

pub async fn phase_shards(s: &Settings, client: &Client) -> ShardsResult {
    let n = s.releases;
    log(format!("shards: {n} releases over 3 operator processes"));
    let ns = namespace(s, client, "bench-shards").await;
    let rec = Recorder::start(client, &ns.name, true).await;
    let mut ops = Vec::new();
    for (_, shard) in SHARDS {
        let extra: Vec<&str> = shard.map(|s| vec!["--shard", s]).unwrap_or_default();
        let op = BenchOperator::start_with(s, &ns.name, &extra).await;
        let cpu0 = op.cpu_seconds();
        ops.push((op, cpu0));
    }
    let mut objs = releases(n);
    for (i, d) in objs.iter_mut().enumerate() {
        if let (_, Some(shard)) = SHARDS[i % SHARDS.len()] {
            d.labels_mut().insert(LABEL_SHARD.into(), shard.into());
        }
    }
    let started = Instant::now();
    create_releases(s, &ns, objs).await;
    let ok = wait_all(s, &rec, n, started).await;
    let wall = started.elapsed().as_secs_f64();
    let mut result = ShardsResult {
        releases: n,
        wall_s: ok.then_some(round1(wall)),
        releases_per_s: ok.then_some(round3(n as f64 / wall)),
        ..ShardsResult::default()
    };
    for (i, ((key, _), (op, cpu0))) in SHARDS.iter().zip(&ops).enumerate() {
        let metrics = op.metrics().await;
        let attempts = sample(
            &metrics,
            "stepwise_action_attempts_total{result=\"started\"}",
        );
        result.processes.insert(
            (*key).to_string(),
            ShardProcess {
                releases: (i..n).step_by(SHARDS.len()).count(),
                attempts_started: attempts,
                cpu_seconds: finite(round3(op.cpu_seconds() - cpu0)),
                peak_rss_mib: op.footprint().peak_rss_mib,
            },
        );
    }
    result.cpu_seconds_total = finite(round3(
        result
            .processes
            .values()
            .filter_map(|p| p.cpu_seconds)
            .sum(),
    ));
    log(format!(
        "shards: {n} releases in {:?} s, operator CPU {:?} s in all",
        result.wall_s, result.cpu_seconds_total
    ));
    drop(ops);
    drop(rec);
    remove(ns, std::time::Duration::from_secs(900)).await;
    result
}
