//! The API server's own `/metrics`: requests served by verb and resource,
//! their server-side latency, and which writes are the operator's.

use std::collections::BTreeMap;

use kube::Client;
use kube::api::GetParams;

use crate::results::{ReadRow, ServerLatency};
use crate::stats::{log, round1};

/// One key of `apiserver_request_total`, without the response code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteKey {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
}

/// Request counts (and latency sums) by kind, as the API server counts them.
pub type Requests = BTreeMap<WriteKey, f64>;

impl WriteKey {
    pub fn label(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        let sub = if self.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", self.subresource)
        };
        format!("{} {group}/{}{sub}", self.verb, self.resource)
    }

    fn is(&self, verb: &str, group: &str, resource: &str, subresource: &str) -> bool {
        self.verb == verb
            && self.group == group
            && self.resource == resource
            && self.subresource == subresource
    }
}

/// How a write counts towards the operator's share.
pub enum OperatorWrite {
    /// Only the operator makes it.
    Own,
    /// The cluster makes some per Job too: the operator's share is what
    /// exceeds the raw run's.
    BeyondCluster,
}

pub fn operator_write(k: &WriteKey) -> Option<OperatorWrite> {
    let writes = matches!(k.verb.as_str(), "POST" | "PUT" | "PATCH" | "APPLY");
    match (
        k.group.as_str(),
        k.resource.as_str(),
        k.subresource.as_str(),
    ) {
        ("batch", "jobs", "") if k.verb == "POST" => Some(OperatorWrite::Own),
        ("stepwise.dev", "steps", _) if writes => Some(OperatorWrite::Own),
        ("stepwise.dev", "deployments", "status") if writes => Some(OperatorWrite::Own),
        ("events.k8s.io", "events", "") if writes => Some(OperatorWrite::BeyondCluster),
        _ => None,
    }
}

/// How many of `k` the operator run should have made when they are not the
/// operator's: the bench's own Deployment creates, no Job creates, and the
/// same cluster work per Job as the raw run.
pub fn expected_foreign(k: &WriteKey, releases: usize, raw: f64) -> f64 {
    if k.is("POST", "stepwise.dev", "deployments", "") {
        releases as f64
    } else if k.verb == "POST" && k.group == "batch" && k.resource == "jobs" {
        0.0
    } else {
        raw
    }
}

/// Splits `name{a="b",c="d"} value` into its parts.
pub fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    Some((name, parse_labels(labels)?, value))
}

/// `a="b",c="d"` (with `\` escapes) into a map.
fn parse_labels(labels: &str) -> Option<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(n);
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => val.push(c),
            }
        }
        let end = end?;
        map.insert(key.trim_start_matches(',').to_string(), val);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(map)
}

/// Requests the API server has served since it started, by verb and resource.
pub async fn apiserver_requests(client: &Client) -> Requests {
    // GET /metrics through the admin client (kube builds the request; the
    // empty resource path plus the "name" `metrics` is exactly `/metrics`).
    let request = kube::core::Request::new("")
        .get("metrics", &GetParams::default())
        .expect("a GET /metrics request");
    let text = match client.request_text(request).await {
        Ok(t) => t,
        Err(e) => {
            log(format!(
                "warning: cannot read the API server's /metrics: {e}"
            ));
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        // Request counts, and the server-side latency of each kind as
        // `<VERB>#sum` / `<VERB>#count` (seconds) for mean latencies.
        let verb = labels.get("verb").cloned().unwrap_or_default();
        let verb = match name {
            "apiserver_request_total" => verb,
            "apiserver_request_duration_seconds_sum" => format!("{verb}#sum"),
            "apiserver_request_duration_seconds_count" => format!("{verb}#count"),
            _ => continue,
        };
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let key = WriteKey {
            verb,
            group: label("group"),
            resource: label("resource"),
            subresource: label("subresource"),
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

pub fn is_write(k: &WriteKey) -> bool {
    matches!(
        k.verb.as_str(),
        "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY" | "DELETECOLLECTION"
    )
}

/// The writes among `requests`.
pub fn writes(requests: &Requests) -> Requests {
    requests
        .iter()
        .filter(|(k, _)| is_write(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Read requests (GET, LIST, WATCH) in each run, by resource, largest
/// difference first.
pub fn reads_table(raw: &Requests, op: &Requests) -> Vec<ReadRow> {
    let mut keys: Vec<&WriteKey> = raw
        .keys()
        .chain(op.keys())
        .filter(|k| !is_write(k) && !k.verb.contains('#'))
        .collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<(f64, ReadRow)> = keys
        .into_iter()
        .map(|k| {
            let o = op.get(k).copied().unwrap_or(0.0);
            let r = raw.get(k).copied().unwrap_or(0.0);
            let row = ReadRow {
                read: k.label(),
                operator_run: o,
                raw_run: r,
            };
            (o - r, row)
        })
        .filter(|(d, _)| d.abs() >= 5.0)
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().map(|(_, v)| v).take(12).collect()
}

/// Mean server-side latency (ms) of `verb group/resource` between two snapshots.
pub fn server_latency_ms(delta: &Requests, like: &WriteKey) -> Option<ServerLatency> {
    let get = |suffix: &str| {
        let verb = format!("{}#{suffix}", like.verb);
        delta
            .iter()
            .filter(|(k, _)| k.is(&verb, &like.group, &like.resource, &like.subresource))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let (sum, count) = (get("sum"), get("count"));
    (count > 0.0).then(|| ServerLatency {
        mean_ms: round1(sum / count * 1000.0),
        requests: count,
    })
}

/// The key of Job creates.
pub fn post_jobs() -> WriteKey {
    WriteKey {
        verb: "POST".into(),
        group: "batch".into(),
        resource: "jobs".into(),
        subresource: String::new(),
    }
}

pub fn writes_delta(before: &Requests, after: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, a)| (k.clone(), a - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}
