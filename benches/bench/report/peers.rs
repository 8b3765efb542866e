//! The side-by-side table of the peers phase: Stepwise, Tekton Pipelines and
//! Argo Workflows on the same workloads, with the ratios Stepwise / peer.

use std::fmt::Write as _;

use super::js;
use crate::results::{DriverRun, Results};
use crate::stats::round3;

/// (heading, key in the runs) of the peers, in column order.
const PEERS: [(&str, &str); 5] = [
    ("Tekton", "tekton"),
    ("Tekton (tuned)", "tekton-tuned"),
    ("Argo (default requeue)", "argo"),
    ("Argo (requeue 1 s)", "argo-1s"),
    ("Argo (tuned)", "argo-tuned"),
];

type Metric = (&'static str, fn(&DriverRun) -> Option<f64>);

const METRICS: [Metric; 8] = [
    ("(a) 2-step release p50, s", |r| r.two_step_s.p50),
    ("(a) 2-step release p90, s", |r| r.two_step_s.p90),
    (
        "(b) fail twice, succeed on attempt 3 (2 s waits) p50, s",
        |r| r.retry_s.p50,
    ),
    ("(c) throughput, releases/s", |r| {
        r.throughput_releases_per_s
    }),
    ("(c) wall time, s", |r| r.throughput_wall_s),
    ("(d) all cluster writes per pod, (c)", |r| {
        r.writes_per_pod_total
    }),
    ("(d) controller CPU s, (a)-(c)", |r| r.cpu_seconds),
    ("(d) controller peak RSS, MiB", |r| {
        Some(r.footprint.peak_rss_mib)
    }),
];

fn cell(x: Option<f64>) -> String {
    x.map(|v| js(&v)).unwrap_or_else(|| "n/a".into())
}

pub fn peers(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Peers\n");
    let Some(p) = &r.peers_phase else {
        let _ = writeln!(md, "Not measured yet (`make bench-peers`).\n");
        return;
    };
    let runs = &p.runs;
    let version = |k: &str| {
        runs.get(k)
            .map(|r| r.version.clone())
            .unwrap_or("not run".into())
    };
    let _ = writeln!(
        md,
        "Same cluster, same run, one after another. Sizes: (a) {} releases one at a time, \
         (b) {} releases, (c) {} releases x 2 steps x 2 actions created at once. Versions: \
         Stepwise {}, Tekton Pipelines {}, Argo Workflows {}. Ratio is Stepwise / peer \
         (for throughput, above 1 means Stepwise is faster; for the others, below 1).\n",
        p.two_step_n,
        p.retry_n,
        p.releases,
        version("stepwise"),
        version("tekton"),
        version("argo"),
    );
    let mut head = "| Metric | Stepwise |".to_string();
    let mut rule = "|---|---|".to_string();
    for (h, _) in PEERS {
        head += &format!(" {h} | ratio |");
        rule += "---|---|";
    }
    let _ = writeln!(md, "{head}\n{rule}");
    let ours = runs.get("stepwise");
    for (label, f) in METRICS {
        let mine = ours.and_then(f);
        let mut line = format!("| {label} | {} |", cell(mine));
        for (_, k) in PEERS {
            let theirs = runs.get(k).and_then(f);
            let ratio = match (mine, theirs) {
                (Some(a), Some(b)) if b != 0.0 => Some(round3(a / b)),
                _ => None,
            };
            line += &format!(" {} | {} |", cell(theirs), cell(ratio));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
    for (k, run) in runs {
        if let Some(why) = &run.retry_not_run {
            let _ = writeln!(md, "- {k}, (b): {why}.");
        }
        let _ = writeln!(
            md,
            "- {k}: failed or timed out (a) {}, (b) {}, (c) {} of {}; top writes in (c): `{}`.",
            run.two_step_failed,
            run.retry_failed,
            run.throughput_releases - run.throughput_succeeded,
            run.throughput_releases,
            js(&run.writes_top)
        );
    }
    let _ = writeln!(md);
}
