//! The generated details of `BENCHMARKS.md`, one section per phase.

use std::fmt::Write as _;

use super::js;
use crate::results::{Decomposed, Reconcile, Results, Summary};

/// What a section says when its phase has never run.
fn not_measured(md: &mut String, phase: &str) {
    let _ = writeln!(
        md,
        "Not measured yet (`cargo bench --bench bench -- --phases {phase}`).\n"
    );
}

/// `| {label} | {precision} | n | min | p50 | p90 | p99 | max |`
fn summary_row(md: &mut String, label: &str, precision: &str, s: &Summary) {
    let _ = writeln!(
        md,
        "| {label} | {precision} | {} | {} | {} | {} | {} | {} |",
        js(&s.n),
        js(&s.min),
        js(&s.p50),
        js(&s.p90),
        js(&s.p99),
        js(&s.max)
    );
}

pub fn retry(md: &mut String, r: &Results) {
    let _ = writeln!(md, "### Retry timing precision\n");
    let Some(rt) = &r.retry else {
        return not_measured(md, "retry");
    };
    let _ = writeln!(
        md,
        "{} of {} retries measured; phase wall time {} s. Errors are observed minus configured wait, in ms.\n",
        js(&rt.retries_measured),
        js(&rt.retries_expected),
        js(&rt.wall_s)
    );
    let _ = writeln!(md, "| View | Precision | n | min | p50 | p90 | p99 | max |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, precision, s) in [
        (
            "Bench watcher: failed pod (or Job) seen -> next Job seen",
            "ms (local receive times)",
            &rt.watch_error_ms,
        ),
        (
            "Operator status: failureSeenAt -> next startedAt",
            "ms (operator clock)",
            &rt.operator_error_ms,
        ),
        (
            "API timestamps: container finishedAt -> next Job creationTimestamp",
            "1 s (both truncated)",
            &rt.api_timestamps_error_ms,
        ),
        (
            "Failure detection: failed pod seen by bench -> failureSeenAt",
            "ms (same clock)",
            &rt.failure_detection_ms,
        ),
    ] {
        summary_row(md, label, precision, s);
    }
    for (delay, v) in &rt.by_delay {
        let (w, o) = (&v.watch_error_ms, &v.operator_error_ms);
        let _ = writeln!(
            md,
            "| ... delay {delay}: watcher / operator | ms | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            js(&w.n),
            js(&w.min),
            js(&o.min),
            js(&w.p50),
            js(&o.p50),
            js(&w.p90),
            js(&o.p90),
            js(&w.p99),
            js(&o.p99),
            js(&w.max),
            js(&o.max),
        );
    }
    let _ = writeln!(
        md,
        "\nAPI-timestamp view, whole seconds of error -> count: `{}`. The operator's own \
         `stepwise_retry_delay_error_seconds` histogram (ms bucket bounds -> cumulative count): `{}`.\n",
        js(&rt.api_timestamps_error_histogram_s),
        js(&rt.operator_histogram_ms.buckets)
    );
}

pub fn handoff(md: &mut String, r: &Results) {
    let _ = writeln!(md, "### Hand-off latency\n");
    let Some(ho) = &r.handoff else {
        return not_measured(md, "handoff");
    };
    let _ = writeln!(md, "| Driver | n | min | p50 | p90 | p99 | max | wall |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, s, wall) in [
        ("Operator", &ho.operator_ms, js(&ho.operator_wall_s)),
        ("Raw client", &ho.raw_ms, js(&ho.raw_wall_s)),
    ] {
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {wall} s |",
            js(&s.n),
            js(&s.min),
            js(&s.p50),
            js(&s.p90),
            js(&s.p99),
            js(&s.max)
        );
    }
    let d = &ho.operator_decomposed;
    let _ = writeln!(
        md,
        "\nOperator hand-offs split at its own `startedAt` (planned, just before the create \
         request): reaction (previous Job done, as the bench saw it -> startedAt) p50 {} / p99 {} ms; \
         create (startedAt -> new Job seen by the bench) p50 {} / p99 {} ms. API server's own mean \
         latency of `POST jobs` (apiserver_request_duration_seconds): operator part {}, raw part {}. \
         Load average (1, 5, 15 min) at the end: {}.\n",
        js(&d.react_ms.p50),
        js(&d.react_ms.p99),
        js(&d.create_ms.p50),
        js(&d.create_ms.p99),
        js(&ho.server_latency_post_jobs.operator),
        js(&ho.server_latency_post_jobs.raw),
        js(&ho.load_average)
    );
    let _ = writeln!(
        md,
        "Operator reconcile profile in this phase: `{}`\n",
        compact_reconcile(&ho.operator_reconcile)
    );
}

pub fn throughput(md: &mut String, r: &Results) {
    let _ = writeln!(md, "### Throughput\n");
    let Some(tp) = &r.throughput else {
        return not_measured(md, "throughput");
    };
    let timed_out = match tp.operator_timed_out_after_s {
        None => String::new(),
        Some(after) => format!(
            " (timed out after {} s with {} done)",
            js(&after),
            js(&tp.operator_releases_done)
        ),
    };
    let _ = writeln!(
        md,
        "- {} releases, {} Jobs. Raw client: {} s ({} chains/s). Operator: {} s ({} releases/s; \
         all creates sent after {} s; last Job done after {} s){timed_out}.\n\
         - Control-plane CPU seconds during the raw run: `{}`; during the operator run: `{}`; \
         the operator itself: {} s.\n\
         - Namespace cleanup after each run: `{}` s.\n\
         - Operator reconcile profile: `{}`\n",
        js(&tp.releases),
        js(&tp.jobs),
        js(&tp.raw_wall_s),
        js(&tp.raw_chains_per_s),
        js(&tp.operator_wall_s),
        js(&tp.operator_releases_per_s),
        js(&tp.operator_creates_done_s),
        js(&tp.operator_last_job_done_s),
        js(&tp.cluster_cpu_s.raw_run),
        js(&tp.cluster_cpu_s.operator_run),
        js(&tp.operator_cpu_s),
        js(&tp.cleanup_s),
        compact_reconcile(&tp.reconcile),
    );
    hops(md, r);
}

fn split(d: Option<&Decomposed>) -> (String, String) {
    match d {
        None => ("-".to_string(), "-".to_string()),
        Some(d) => (
            format!("{} / {}", js(&d.react_ms.p50), js(&d.react_ms.p99)),
            format!("{} / {}", js(&d.create_ms.p50), js(&d.create_ms.p99)),
        ),
    }
}

fn hops(md: &mut String, r: &Results) {
    let Some(tp) = &r.throughput else {
        return;
    };
    let hops = &tp.hops;
    let _ = writeln!(
        md,
        "Per-hop latency in the throughput run (ms; Job done seen -> next Job seen):\n"
    );
    let _ = writeln!(
        md,
        "| Hop | n | p50 | p90 | p99 | max | reaction p50 / p99 | create p50 / p99 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, h, dec) in [
        ("Raw client", &hops.raw_ms, None),
        (
            "Operator, within a step",
            &hops.operator_within_step_ms,
            Some(&hops.operator_within_step_decomposed),
        ),
        (
            "Operator, across steps (via the Deployment)",
            &hops.operator_across_steps_ms,
            Some(&hops.operator_across_steps_decomposed),
        ),
    ] {
        let (react, create) = split(dec);
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {react} | {create} |",
            js(&h.n),
            js(&h.p50),
            js(&h.p90),
            js(&h.p99),
            js(&h.max)
        );
    }
    let _ = writeln!(
        md,
        "\nAPI server's mean latency of `POST jobs`: raw run {}, operator run {}. Read requests that \
         differ between the runs by 5 or more: `{}`. Load average at the end of each run: `{}`.\n",
        js(&tp.server_latency_post_jobs.raw_run),
        js(&tp.server_latency_post_jobs.operator_run),
        js(&tp.reads),
        js(&tp.load_average)
    );
}

pub fn api_writes(md: &mut String, r: &Results) {
    let _ = writeln!(md, "### API writes (throughput run)\n");
    let Some(tp) = &r.throughput else {
        return not_measured(md, "throughput");
    };
    let aw = &tp.api_writes;
    let _ = writeln!(
        md,
        "From `apiserver_request_total` (verbs POST, PUT, PATCH, APPLY, DELETE), read before and after \
         each run. All writes: {} in the operator run ({} per Job), {} in the raw run ({} per Job). \
         Operator's share: {} writes = {} per attempt.\n\n\
         Cross-check from the bench's own watches of the operator's namespace (changes only: a \
         write that changes nothing is a request but no watch event): {} per attempt, `{}`.\n\n\
         Other writes that differ between the runs by more than 2% (another client writing \
         meanwhile, or the cluster's own per-Job work varying with timing; not counted as the \
         operator's): `{}`.\n",
        js(&aw.all_writes_operator_run),
        js(&aw.all_writes_per_job_operator_run),
        js(&aw.all_writes_raw_run),
        js(&aw.all_writes_per_job_raw_run),
        js(&aw.operator_writes),
        js(&aw.operator_writes_per_attempt),
        js(&aw.namespace_local_per_attempt),
        js(&aw.namespace_local_counts),
        js(&aw.foreign_writes)
    );
    let _ = writeln!(
        md,
        "| Write | Operator run | Raw run | Operator's | Per attempt | Server mean ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for w in &aw.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            w.write,
            js(&w.operator_run),
            js(&w.raw_run),
            js(&w.operator_attributed),
            js(&w.operator_per_attempt),
            w.server_mean_ms_operator_run
                .map(|m| js(&m))
                .unwrap_or_else(|| "-".into())
        );
    }
}

pub fn footprint(md: &mut String, r: &Results) {
    let _ = writeln!(md, "\n### Footprint (throughput run)\n");
    let Some(tp) = &r.throughput else {
        return not_measured(md, "throughput");
    };
    let fp = &tp.footprint;
    let _ = writeln!(
        md,
        "Peak RSS {} MiB, RSS at end {} MiB, {} threads, CPU {} s. RSS curve (s since ready, MiB): `{}`.\n\
         For comparison, the hand-off phase's operator: `{}`.",
        js(&fp.peak_rss_mib),
        js(&fp.rss_at_end_mib),
        js(&fp.threads),
        js(&fp.cpu_seconds),
        js(&fp.rss_curve_s_mib),
        js(&r.handoff.as_ref().map(|h| &h.operator_footprint))
    );
}

/// The reconcile profile on one line.
fn compact_reconcile(v: &Reconcile) -> String {
    let times = v.time_ms.iter().map(|(k, h)| {
        format!(
            "{k}: n={} mean={}ms p50<={}ms p99<={}ms",
            js(&h.count),
            js(&h.mean),
            js(&h.p50_bucket_le),
            js(&h.p99_bucket_le)
        )
    });
    let counters = v.counters.iter().map(|(k, n)| format!("{k}={}", js(n)));
    times.chain(counters).collect::<Vec<_>>().join("; ")
}
