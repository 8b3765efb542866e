//! `BENCHMARKS.md`, rendered from the typed [`Results`]: a header, the goals
//! table, the notes (kept from the file it rewrites) and the generated
//! details.

mod details;
mod peers;
mod shards;

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::results::Results;
use crate::stats::round1;

const NOTES_BEGIN: &str = "<!-- notes:begin (kept by the bench when it rewrites this file) -->";
const NOTES_END: &str = "<!-- notes:end -->";

/// A value as compact JSON (`null` when absent), as the report has always
/// printed raw numbers.
fn js<T: Serialize>(x: &T) -> String {
    serde_json::to_value(x)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "null".into())
}

fn fmt_num(x: Option<f64>, unit: &str) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{} {unit}", round1(x)).trim().to_string(),
        _ => "n/a".into(),
    }
}

/// A goal of the form "at most `limit`"; a row's ratio is measured / limit.
struct Goal {
    limit: f64,
    unit: &'static str,
}

const fn goal(limit: f64, unit: &'static str) -> Goal {
    Goal { limit, unit }
}

const RETRY_ERROR_MS: Goal = goal(50.0, " ms");
const THROUGHPUT_VS_RAW: Goal = goal(1.25, "");
const WRITES_PER_ATTEMPT: Goal = goal(3.0, "");
const PEAK_RSS_MIB: Goal = goal(50.0, " MiB");
const HANDOFF_MS: Goal = goal(100.0, " ms");
const HANDOFF_VS_RAW: Goal = goal(1.5, "x raw");

/// One goal's row: the measured value against the goal's limit.
fn goal_row(md: &mut String, metric: &str, goal: &Goal, measured: String, value: Option<f64>) {
    let label = format!("<= {}{}", goal.limit, goal.unit);
    row(md, metric, &label, measured, value.map(|x| x / goal.limit));
}

/// One row of the goals table; `ratio` is measured / goal.
fn row(md: &mut String, metric: &str, goal: &str, measured: String, ratio: Option<f64>) {
    let (ratio, verdict) = match ratio {
        Some(r) if r.is_finite() => (
            format!("{:.2}", r),
            if r <= 1.0 { "met" } else { "**missed**" },
        ),
        _ => ("n/a".into(), "not measured"),
    };
    let _ = writeln!(
        md,
        "| {metric} | {goal} | {measured} | {ratio} | {verdict} |"
    );
}

pub fn render(r: &Results, notes: &str) -> String {
    let mut md = String::new();
    header(&mut md, r);
    goals(&mut md, r);
    peers::peers(&mut md, r);
    let _ = writeln!(md, "{NOTES_BEGIN}\n{}\n{NOTES_END}\n", notes.trim());
    let _ = writeln!(md, "## Details (generated)\n");
    details::retry(&mut md, r);
    details::handoff(&mut md, r);
    details::throughput(&mut md, r);
    shards::shards(&mut md, r);
    details::api_writes(&mut md, r);
    details::footprint(&mut md, r);
    md
}

fn header(md: &mut String, r: &Results) {
    let m = &r.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` (`scripts/bench.sh` -> `cargo bench --bench bench`, source \
         `benches/bench/`); raw numbers in `bench/results.json`. Everything below the notes \
         is regenerated on every run; the notes section is kept.\n"
    );
    let _ = writeln!(
        md,
        "- Date: {}\n- Machine: {} CPUs (`nproc`), {} MiB memory, {} (kernel {})\n\
         - Cluster: local control plane, Kubernetes {} built from source, kwok fake nodes, loopback only\n\
         - Operator: `target/release/stepwise` at {} (one process per phase, `--namespace`-scoped)\n\
         - Releases in the throughput run: {} (`BENCH_RELEASES`)\n",
        r.date,
        m.nproc,
        m.memory_mib,
        m.cpu_model,
        m.kernel,
        r.kubernetes,
        r.revision,
        js(&r.throughput.as_ref().map(|t| t.releases)),
    );
}

fn goals(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(md, "Ratio is measured / goal: at most 1 meets the goal.\n");
    let _ = writeln!(md, "| Metric | Goal | Measured | Ratio | Verdict |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let retry = r.retry_delay_error_p99_ms;
    goal_row(
        md,
        "Retry delay error p99 (failed pod seen -> next Job seen, minus delay)",
        &RETRY_ERROR_MS,
        fmt_num(retry, "ms"),
        retry.map(f64::abs),
    );
    let op_retry = r.retry.as_ref().and_then(|x| x.operator_error_ms.p99);
    goal_row(
        md,
        "Retry delay error p99, operator-recorded (failureSeenAt -> startedAt)",
        &RETRY_ERROR_MS,
        fmt_num(op_retry, "ms"),
        op_retry.map(f64::abs),
    );
    handoff_goals(md, r);
    let tp = r.throughput.as_ref();
    let t = r.throughput_ratio;
    goal_row(
        md,
        "Throughput: operator wall time / raw client wall time",
        &THROUGHPUT_VS_RAW,
        format!(
            "{:.2} ({} vs {})",
            t.unwrap_or(f64::NAN),
            fmt_num(tp.and_then(|t| t.operator_wall_s), "s"),
            fmt_num(tp.and_then(|t| t.raw_wall_s), "s")
        ),
        t,
    );
    let w = r.writes_per_attempt;
    goal_row(
        md,
        "API writes per action attempt (operator's)",
        &WRITES_PER_ATTEMPT,
        format!("{:.2}", w.unwrap_or(f64::NAN)),
        w,
    );
    let rss = r.peak_rss_mib;
    goal_row(
        md,
        "Operator peak RSS (VmHWM), throughput run",
        &PEAK_RSS_MIB,
        fmt_num(rss, "MiB"),
        rss,
    );
    let _ = writeln!(
        md,
        "| Operator CPU (utime+stime), throughput run | - | {} | - | - |\n",
        fmt_num(r.cpu_seconds, "s")
    );
}

fn handoff_goals(md: &mut String, r: &Results) {
    let ho = r.handoff.as_ref();
    let (h, hr) = (r.handoff_p99_ms, r.handoff_raw_p99_ms);
    goal_row(
        md,
        "Hand-off p99 (Job done -> next Job created)",
        &HANDOFF_MS,
        format!(
            "{} (p50 {})",
            fmt_num(h, "ms"),
            fmt_num(ho.and_then(|x| x.operator_ms.p50), "ms")
        ),
        h,
    );
    let vs_raw = match (h, hr) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    goal_row(
        md,
        "Hand-off p99 vs raw client",
        &HANDOFF_VS_RAW,
        format!(
            "{} vs raw {} (raw p50 {})",
            fmt_num(h, "ms"),
            fmt_num(hr, "ms"),
            fmt_num(ho.and_then(|x| x.raw_ms.p50), "ms")
        ),
        vs_raw,
    );
}

/// The notes section of the BENCHMARKS.md at `path`, kept across runs.
pub fn existing_notes(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match (text.find(NOTES_BEGIN), text.find(NOTES_END)) {
        (Some(a), Some(b)) if b > a => text[a + NOTES_BEGIN.len()..b].trim().to_string(),
        _ => "## Notes\n\n(No notes yet.)".into(),
    }
}
