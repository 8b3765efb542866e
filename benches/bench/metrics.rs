//! The operator's own `/metrics`: histograms and counters of its reconciles.

use std::collections::BTreeMap;

use crate::apiserver::parse_sample;
use crate::results::{Bound, HistogramView, Reconcile};
use crate::stats::round3;

/// One histogram series (labels without `le`): buckets, sum and count.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

fn label_key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The histograms called `name` on a metrics page, by series.
pub fn histograms(text: &str, name: &str) -> BTreeMap<String, Histogram> {
    let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for line in text.lines() {
        let Some((n, mut labels, value)) = parse_sample(line) else {
            continue;
        };
        let le = labels.remove("le");
        let entry = || label_key(&labels);
        if n == bucket {
            let le = match le.as_deref() {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().unwrap_or(f64::NAN),
                None => continue,
            };
            out.entry(entry()).or_default().buckets.push((le, value));
        } else if n == sum {
            out.entry(entry()).or_default().sum = value;
        } else if n == count {
            out.entry(entry()).or_default().count = value;
        }
    }
    out
}

fn bound(v: f64) -> Bound {
    if v.is_finite() {
        Bound::Finite(round3(v))
    } else {
        Bound::Text("+Inf".into())
    }
}

impl Histogram {
    fn sorted(&self) -> Vec<(f64, f64)> {
        let mut b = self.buckets.clone();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }

    /// The upper bound of the bucket holding quantile q (a bound, not a value).
    fn quantile_bound(&self, q: f64) -> f64 {
        let target = q * self.count;
        self.sorted()
            .iter()
            .find(|(_, c)| *c >= target)
            .map(|(le, _)| *le)
            .unwrap_or(f64::INFINITY)
    }

    /// The histogram for the results, in ms when `unit_ms` (else seconds).
    pub fn view(&self, unit_ms: bool) -> HistogramView {
        let scale = if unit_ms { 1000.0 } else { 1.0 };
        HistogramView {
            count: self.count,
            mean: if self.count > 0.0 {
                round3(self.sum / self.count * scale)
            } else {
                0.0
            },
            p50_bucket_le: bound(self.quantile_bound(0.5) * scale),
            p99_bucket_le: bound(self.quantile_bound(0.99) * scale),
            buckets: self
                .sorted()
                .iter()
                .map(|(le, c)| (bound(le * scale), *c))
                .collect(),
        }
    }
}

/// What the operator says about its own reconciles.
pub fn reconcile_profile(metrics: &str) -> Reconcile {
    let time_ms = histograms(metrics, "controller_runtime_reconcile_time_seconds")
        .into_iter()
        .map(|(key, h)| (format!("time_ms[{key}]"), h.view(true)))
        .collect();
    let counters = metrics
        .lines()
        .filter_map(parse_sample)
        .filter(|(n, _, _)| {
            *n == "controller_runtime_reconcile_total" || *n == "stepwise_action_attempts_total"
        })
        .map(|(n, labels, v)| (format!("{n}[{}]", label_key(&labels)), v))
        .collect();
    Reconcile { counters, time_ms }
}
