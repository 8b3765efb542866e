//! The shards section: the throughput workload over one operator process
//! (the `throughput` phase) and over three (the `shards` phase).

use std::fmt::Write as _;

use super::js;
use crate::results::Results;

pub fn shards(md: &mut String, r: &Results) {
    let _ = writeln!(md, "### Shards: one process against three\n");
    let Some(sh) = &r.shards else {
        let _ = writeln!(md, "Not measured yet (`BENCH_PHASES=shards`).\n");
        return;
    };
    let one = r.throughput.as_ref();
    let _ = writeln!(
        md,
        "{} releases x 2 steps x 2 actions created at once. One process (the throughput run): \
         {} s wall, {} releases/s, operator CPU {} s, peak RSS {} MiB. Three processes \
         (`--shard a`, `--shard b`, no `--shard`; a third of the releases each): {} s wall, \
         {} releases/s, operator CPU {} s in all.\n",
        js(&sh.releases),
        js(&one.and_then(|t| t.operator_wall_s)),
        js(&one.and_then(|t| t.operator_releases_per_s)),
        js(&one.and_then(|t| t.operator_cpu_s)),
        js(&one.map(|t| t.footprint.peak_rss_mib)),
        js(&sh.wall_s),
        js(&sh.releases_per_s),
        js(&sh.cpu_seconds_total),
    );
    let _ = writeln!(
        md,
        "| Process | Releases | Attempts started | CPU s | Peak RSS, MiB |\n|---|---|---|---|---|"
    );
    for (shard, p) in &sh.processes {
        let _ = writeln!(
            md,
            "| {shard} | {} | {} | {} | {} |",
            p.releases,
            js(&p.attempts_started),
            js(&p.cpu_seconds),
            js(&p.peak_rss_mib)
        );
    }
    let _ = writeln!(md);
}
