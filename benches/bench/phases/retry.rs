//! Phase `retry`: retry timing precision. Releases whose one action fails
//! its first attempt, with delaySeconds 2 and the default 15, all at once;
//! observed minus configured wait, three ways (the operator's own
//! `failureSeenAt` -> `startedAt`; the API server's whole-second timestamps;
//! the bench's own watch receive times).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use stepwise::api::{AttemptStatus as Attempt, Step};
use stepwise_testkit::manifests::{action, release};

use super::{create_releases, namespace, remove};
use crate::metrics::{histograms, reconcile_profile};
use crate::operator::BenchOperator;
use crate::results::{DelayErrors, RetryResult};
use crate::settings::Settings;
use crate::stats::{loadavg, log, poll_until, round1, summary};
use crate::watch::{Recorder, Seen};

/// The errors measured, each a sample in ms.
#[derive(Default)]
struct Errors {
    operator: Vec<f64>,
    watch: Vec<f64>,
    api: Vec<f64>,
    detect: Vec<f64>,
    /// By delay ("2s", "15s"): (operator, watch).
    by_delay: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
}

/// The releases: (name, configured delay in ms) and their manifests.
fn releases(s: &Settings) -> (Vec<(String, f64)>, Vec<stepwise::api::Deployment>) {
    let mut wanted = Vec::new();
    let mut objs = Vec::new();
    for i in 0..s.retry_short + s.retry_long {
        let (name, retries, delay_ms) = if i < s.retry_short {
            let retries = json!({ "limit": 1, "delaySeconds": 2 });
            (format!("r2-{i:03}"), retries, 2000.0)
        } else {
            // No delaySeconds: the default (15 s).
            let name = format!("r15-{:03}", i - s.retry_short);
            (name, json!({ "limit": 1 }), 15000.0)
        };
        objs.push(release(
            &name,
            json!({ "steps": [{ "name": "s", "retries": retries,
                                "actions": [action("a", &[("fail-attempts", "1")])] }] }),
        ));
        wanted.push((name, delay_ms));
    }
    (wanted, objs)
}

pub async fn phase_retry(s: &Settings, client: &Client) -> RetryResult {
    log(format!(
        "retry: {} releases with delaySeconds 2 and {} with the default 15, each failing attempt 1",
        s.retry_short, s.retry_long
    ));
    let ns = namespace(s, client, "bench-retry").await;
    let rec = Recorder::start(client, &ns.name, true).await;
    let op = BenchOperator::start(s, &ns.name).await;
    let (wanted, objs) = releases(s);
    let started = Instant::now();
    create_releases(s, &ns, objs).await;
    let total = wanted.len();
    let timeout = Duration::from_secs(180).min(s.phase_timeout);
    let done = poll_until(timeout, Duration::from_millis(500), || {
        let done = rec.with(|x| x.deployments_succeeded.len());
        async move { done >= total }
    })
    .await;
    let wall = started.elapsed().as_secs_f64();
    if !done {
        log(format!(
            "retry: only {}/{total} releases succeeded in time",
            rec.with(|x| x.deployments_succeeded.len())
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = op.metrics().await;
    let steps: Vec<Step> = Api::<Step>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let errors = measure(&rec, &steps, &wanted);
    let hist = histograms(&metrics, "stepwise_retry_delay_error_seconds")
        .into_values()
        .next()
        .unwrap_or_default();
    let result = RetryResult {
        retries_measured: errors.watch.len(),
        retries_expected: total,
        load_average: loadavg(),
        wall_s: round1(wall),
        watch_error_ms: summary(&errors.watch),
        operator_error_ms: summary(&errors.operator),
        api_timestamps_error_ms: summary(&errors.api),
        api_timestamps_error_histogram_s: per_second(&errors.api),
        failure_detection_ms: summary(&errors.detect),
        by_delay: errors
            .by_delay
            .iter()
            .map(|(k, (o, w))| {
                let e = DelayErrors {
                    operator_error_ms: summary(o),
                    watch_error_ms: summary(w),
                };
                (k.clone(), e)
            })
            .collect(),
        operator_histogram_ms: hist.view(true),
        reconcile: reconcile_profile(&metrics),
        namespace: ns.name.clone(),
        operator_log: op.log_path(),
    };
    drop(op);
    drop(rec);
    remove(ns, Duration::from_secs(300)).await;
    result
}

/// The API-timestamp view in whole seconds: how many fall in each second.
fn per_second(api_err: &[f64]) -> BTreeMap<String, usize> {
    let mut seconds: BTreeMap<i64, usize> = BTreeMap::new();
    for e in api_err {
        *seconds.entry((e / 1000.0).round() as i64).or_default() += 1;
    }
    seconds.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The first two attempts of each release's one action, as its Step records them.
fn attempts<'a>(steps: &'a [Step], step_name: &str) -> Option<(&'a Attempt, &'a Attempt)> {
    let step = steps.iter().find(|st| st.name_any() == step_name)?;
    let attempts = &step.status.as_ref()?.actions.first()?.attempts;
    let first = attempts.iter().find(|a| a.number == 1)?;
    let second = attempts.iter().find(|a| a.number == 2)?;
    Some((first, second))
}

fn measure(rec: &Recorder, steps: &[Step], wanted: &[(String, f64)]) -> Errors {
    let mut errors = Errors::default();
    for (name, delay_ms) in wanted {
        let step_name = format!("{name}-s");
        let Some((first, second)) = attempts(steps, &step_name) else {
            continue;
        };
        let key = format!("{}s", delay_ms / 1000.0);
        if let (Some(seen), Some(start)) = (first.failure_seen_at, second.started_at) {
            let e = start.duration_since(seen).as_secs_f64() * 1000.0 - delay_ms;
            errors.operator.push(e);
            errors.by_delay.entry(key.clone()).or_default().0.push(e);
        }
        let jobs = (format!("{step_name}-a-1"), format!("{step_name}-a-2"));
        rec.with(|x| errors.observe(x, &jobs, first, *delay_ms, &key));
    }
    errors
}

impl Errors {
    /// The bench watcher's and the API timestamps' views of one retry.
    fn observe(
        &mut self,
        x: &Seen,
        jobs: &(String, String),
        first: &Attempt,
        delay_ms: f64,
        key: &str,
    ) {
        let (job1, job2) = jobs;
        if let (Some(done1), Some(j2)) = (x.done_ms(job1), x.jobs.get(job2)) {
            let e = j2.seen_ms - done1 - delay_ms;
            self.watch.push(e);
            self.by_delay.entry(key.to_string()).or_default().1.push(e);
        }
        if let (Some(p1), Some(j2)) = (x.pods_done.get(job1), x.jobs.get(job2))
            && let (Some(fin), Some(created)) = (p1.finished_s, j2.created_s)
        {
            self.api.push(((created - fin) as f64) * 1000.0 - delay_ms);
        }
        if let (Some(done1), Some(seen)) = (x.done_ms(job1), first.failure_seen_at) {
            self.detect.push(seen.as_millisecond() as f64 - done1);
        }
    }
}
