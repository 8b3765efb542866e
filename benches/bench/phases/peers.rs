//! Phase `peers`: the same workloads through Stepwise, Tekton Pipelines and
//! Argo Workflows (at its default requeue time and at 1 s), one driver after
//! another on one cluster, each in a namespace of its own with its controller
//! scoped to it (Stepwise's operator, or a peer run by `scripts/peers.sh`):
//!
//! * (a) `BENCH_PEERS_TWO_STEP` 2-step releases (1 action each), one at a time;
//! * (b) `BENCH_PEERS_RETRY` releases whose action fails twice and succeeds on
//!   attempt 3, 2 s between attempts (not for Tekton, which cannot wait);
//! * (c) `BENCH_PEERS_RELEASES` releases of 2 steps x 2 actions created at once;
//! * (d) all cluster writes in (c) per pod, the controller's CPU seconds and
//!   peak RSS over (a)-(c).

mod driver;
mod process;
mod workload;

use std::time::{Duration, Instant};

use kube::Client;

use self::driver::{Driver, Shape};
use self::process::Controller;
use self::workload::{Outcomes, all_at_once, one_by_one};
use super::{namespace, remove};
use crate::apiserver::{apiserver_requests, writes, writes_delta};
use crate::results::{DriverRun, PeersPhase};
use crate::settings::Settings;
use crate::stats::{finite, git_revision, log, round1, round3, summary};

pub async fn phase_peers(s: &Settings, client: &Client) -> PeersPhase {
    let mut phase = PeersPhase {
        two_step_n: s.peers_two_step,
        retry_n: s.peers_retry,
        releases: s.peers_releases,
        ..PeersPhase::default()
    };
    for name in &s.peers {
        let Some(d) = Driver::parse(name) else {
            log(format!(
                "peers: unknown driver {name:?} (one of {})",
                crate::settings::PEERS
            ));
            continue;
        };
        let run = run_driver(s, client, d).await;
        phase.runs.insert(d.key().to_string(), run);
    }
    phase
}

fn version(s: &Settings, d: Driver) -> String {
    let var = match d {
        Driver::Stepwise => return git_revision(&s.root),
        d if d.is_tekton() => "TEKTON_VERSION",
        _ => "ARGO_WORKFLOWS_VERSION",
    };
    let file = std::fs::read_to_string(s.root.join("scripts/versions.sh")).unwrap_or_default();
    let pinned = file
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or("?");
    std::env::var(var).unwrap_or_else(|_| pinned.trim().to_string())
}

async fn run_driver(s: &Settings, client: &Client, d: Driver) -> DriverRun {
    let started = Instant::now();
    let ns = namespace(s, client, &format!("bench-peer-{}", d.key())).await;
    let ctl = Controller::start(s, d, &ns.name).await;
    let cpu0 = ctl.cpu_seconds();
    let out = Outcomes::start(client, &ns.name, d).await;
    let mut run = DriverRun {
        version: version(s, d),
        log: ctl.log_path(),
        ..DriverRun::default()
    };
    let per = Duration::from_secs(180);
    let two = Shape {
        steps: 2,
        actions: 1,
        retry: false,
    };
    // One release first, not counted: the controller's first reconciles.
    one_by_one(&out, d, "warm", 1, two, per).await;
    let (secs, bad) = one_by_one(&out, d, "two", s.peers_two_step, two, per).await;
    (run.two_step_s, run.two_step_failed) = (summary(&secs), bad);
    log(format!(
        "peers: {} two-step p50 {:?} s ({bad} failed)",
        d.key(),
        run.two_step_s.p50
    ));
    if let Some(why) = d.retry_unsupported() {
        run.retry_not_run = Some(why.to_string());
    } else {
        let flaky = Shape {
            steps: 1,
            actions: 1,
            retry: true,
        };
        let (secs, bad) = one_by_one(&out, d, "retry", s.peers_retry, flaky, per).await;
        (run.retry_s, run.retry_failed) = (summary(&secs), bad);
    }
    throughput(s, client, d, &out, &mut run).await;
    run.cpu_seconds = finite(round3(ctl.cpu_seconds() - cpu0));
    run.footprint = ctl.footprint();
    run.wall_s = round1(started.elapsed().as_secs_f64());
    drop(out);
    drop(ctl);
    remove(ns, Duration::from_secs(900)).await;
    log(format!("peers: {} done in {:.0} s", d.key(), run.wall_s));
    run
}

/// (c) and (d): releases created at once, and the cluster's writes meanwhile.
async fn throughput(s: &Settings, client: &Client, d: Driver, out: &Outcomes, run: &mut DriverRun) {
    let n = s.peers_releases;
    let w0 = apiserver_requests(client).await;
    let (wall, ok) = all_at_once(out, d, n, s.create_concurrency, s.phase_timeout).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delta = writes(&writes_delta(&w0, &apiserver_requests(client).await));
    run.throughput_releases = n;
    run.throughput_succeeded = ok;
    run.throughput_wall_s = wall.map(|w| round1(w.as_secs_f64()));
    run.throughput_releases_per_s = wall.map(|w| round3(ok as f64 / w.as_secs_f64()));
    run.pods = n * 4;
    run.writes_total = delta.values().sum();
    run.writes_per_pod_total = finite(round3(run.writes_total / run.pods as f64));
    let mut rows: Vec<(String, f64)> = delta.iter().map(|(k, v)| (k.label(), *v)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    run.writes_top = rows.into_iter().take(8).collect();
    log(format!(
        "peers: {} throughput {n} releases in {:?} s, {:.2} writes per pod",
        d.key(),
        run.throughput_wall_s,
        run.writes_total / run.pods as f64
    ));
}
