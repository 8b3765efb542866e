//! `make bench`: measures the operator against the local control plane and
//! writes `bench/results.json` and `BENCHMARKS.md`.
//!
//! Phases (all by default; `--phases retry,handoff,throughput` or
//! `BENCH_PHASES` picks some, and the results of the others are kept from the
//! previous `bench/results.json`):
//!
//! * `retry`: 50 retries after a 2 s delay and 10 after the default 15 s, all
//!   at once; observed minus configured wait, three ways (the operator's own
//!   `failureSeenAt` -> `startedAt`; the API server's whole-second timestamps;
//!   the bench's own watch receive times).
//! * `handoff`: 11 releases of 20 actions (209 hand-offs; a step holds at
//!   most 20) under the operator, then 11 chains of 20 Jobs driven by a
//!   minimal raw client; each hand-off is
//!   "previous Job done -> next Job created" as the bench's watcher saw them.
//! * `throughput`: `BENCH_RELEASES` (default 1000) releases of 2 steps x 2
//!   actions to Succeeded, against the raw client running the same 4-Job
//!   chains; API writes from the API server's own `apiserver_request_total`
//!   before and after each run; the operator's peak RSS and CPU seconds.
//!
//! Every phase runs in namespaces of its own (labelled `stepwise.dev/bench`),
//! each operator process is scoped to one of them with `--namespace`, and
//! every namespace is deleted (and waited for) before the next phase starts.
//! Every wait is bounded (`BENCH_PHASE_TIMEOUT_S`, default 1800 s).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use stepwise::api::{Deployment, Phase, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

#[path = "../tests/common/manifests.rs"]
mod manifests;
use manifests::{action, release};

const BENCH_LABEL: &str = "stepwise.dev/bench";
const RAW_LABEL: &str = "stepwise-bench/raw";
const NOTES_BEGIN: &str = "<!-- notes:begin (kept by the bench when it rewrites this file) -->";
const NOTES_END: &str = "<!-- notes:end -->";

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

struct Settings {
    root: PathBuf,
    bin: PathBuf,
    kubeconfig: PathBuf,
    phases: Vec<String>,
    releases: usize,
    handoff_chains: usize,
    handoff_actions: usize,
    retry_short: usize,
    retry_long: usize,
    create_concurrency: usize,
    phase_timeout: Duration,
    log_dir: PathBuf,
    /// Where bench/results.json and BENCHMARKS.md go (profiling runs write elsewhere).
    out_dir: PathBuf,
    /// Profiling only: a command the operator runs under, in the same process
    /// (`valgrind --tool=massif`), and extra environment (`LD_PRELOAD=...`).
    operator_prefix: Vec<String>,
    operator_env: Vec<(String, String)>,
    operator_rust_log: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn load() -> Settings {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let kubeconfig = ["STEPWISE_KUBECONFIG", "KUBECONFIG"]
            .iter()
            .find_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".cluster").join("kubeconfig"));
        let mut s = Settings {
            bin: std::env::var_os("STEPWISE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/release/stepwise")),
            kubeconfig,
            phases: std::env::var("BENCH_PHASES")
                .unwrap_or_else(|_| "retry,handoff,throughput".into())
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            releases: env_or("BENCH_RELEASES", 1000),
            handoff_chains: env_or("BENCH_HANDOFF_CHAINS", 11),
            handoff_actions: env_or("BENCH_HANDOFF_ACTIONS", 20),
            retry_short: env_or("BENCH_RETRY_SHORT", 50),
            retry_long: env_or("BENCH_RETRY_LONG", 10),
            create_concurrency: env_or("BENCH_CREATE_CONCURRENCY", 16),
            phase_timeout: Duration::from_secs(env_or("BENCH_PHASE_TIMEOUT_S", 1800)),
            log_dir: root.join("target/bench-logs"),
            out_dir: std::env::var_os("BENCH_OUT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.clone()),
            operator_prefix: std::env::var("BENCH_OPERATOR_PREFIX")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect(),
            operator_env: std::env::var("BENCH_OPERATOR_ENV")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            operator_rust_log: std::env::var("BENCH_OPERATOR_RUST_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
            root,
        };
        // `cargo bench` passes `--bench`; everything else is ours.
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--bench" | "--render-only" => {}
                "--releases" => {
                    s.releases = args
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(s.releases)
                }
                "--phases" => {
                    if let Some(v) = args.next() {
                        s.phases = v.split(',').map(|p| p.trim().to_string()).collect();
                    }
                }
                "-h" | "--help" => {
                    println!(
                        "usage: cargo bench --bench bench -- [--releases N] [--phases retry,handoff,throughput]\n\
                         env: BENCH_RELEASES, BENCH_PHASES, BENCH_PHASE_TIMEOUT_S, STEPWISE_BIN, KUBECONFIG"
                    );
                    std::process::exit(0);
                }
                other => eprintln!("[bench] ignoring argument {other:?}"),
            }
        }
        s.releases = s.releases.max(1);
        s
    }

    fn wants(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

// ---------------------------------------------------------------------------
// Small helpers: time, statistics, /proc
// ---------------------------------------------------------------------------

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn log(msg: impl std::fmt::Display) {
    let t = jiff::Timestamp::now().strftime("%H:%M:%S");
    eprintln!("[bench {t}] {msg}");
}

/// Nearest-rank quantile of a sorted slice.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// n, min, p50, p90, p99, max, mean of a sample.
fn summary(values: &[f64]) -> Value {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return json!({ "n": 0 });
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({
        "n": v.len(),
        "min": round1(v[0]),
        "p50": round1(quantile(&v, 0.50)),
        "p90": round1(quantile(&v, 0.90)),
        "p99": round1(quantile(&v, 0.99)),
        "max": round1(v[v.len() - 1]),
        "mean": round1(mean),
    })
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `VmRSS`/`VmHWM`-style field of /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime of a process, in seconds.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// The control plane's processes, from `.cluster/pids/` next to the kubeconfig.
fn cluster_pids(kubeconfig: &Path) -> BTreeMap<String, u32> {
    let dir = kubeconfig
        .parent()
        .map(|p| p.join("pids"))
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for c in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ] {
        if let Some(pid) = std::fs::read_to_string(dir.join(format!("{c}.pid")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            out.insert(c.to_string(), pid);
        }
    }
    out
}

fn cluster_cpu(pids: &BTreeMap<String, u32>) -> BTreeMap<String, f64> {
    pids.iter()
        .filter_map(|(c, pid)| Some((c.clone(), proc_cpu_seconds(*pid)?)))
        .collect()
}

fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Value {
    let mut m = serde_json::Map::new();
    for (c, a) in after {
        if let Some(b) = before.get(c) {
            m.insert(c.clone(), json!(round1(a - b)));
        }
    }
    Value::Object(m)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({
        "nproc": nproc,
        "memory_mib": mem_kib / 1024,
        "cpu_model": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn git_revision(root: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no", "src"]).is_empty();
    if dirty {
        format!("{rev}+dirty-src")
    } else {
        rev
    }
}

/// Waits for `check` (polled every `every`) up to `timeout`; false on timeout.
async fn poll_until<F, Fut>(timeout: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------
// Cluster access: client, namespaces, CRDs, API server metrics
// ---------------------------------------------------------------------------

async fn connect(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| {
        panic!(
            "cannot read kubeconfig {}: {e}; start the cluster with `make cluster` \
             (or run `make bench`, which starts it)",
            path.display()
        )
    });
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
    config.connect_timeout = Some(Duration::from_secs(5));
    let client = Client::try_from(config).expect("a Kubernetes client");
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        other => panic!(
            "the API server from {} does not answer ({other:?}); start it with `scripts/cluster.sh up`",
            path.display()
        ),
    }
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in stepwise::crd::all() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("stepwise-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot install CRD {name}: {e}"));
        let established = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                api.get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.status?.conditions)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            }
        })
        .await;
        assert!(established, "CRD {name} not established in 30 s");
    }
}

/// Creates `<prefix>-<suffix>` and waits for its default ServiceAccount.
async fn create_namespace(client: &Client, prefix: &str) -> String {
    let suffix = format!("{:x}", (wall_ms() as u64) & 0xff_ffff);
    let name = format!("{prefix}-{suffix}");
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": name, "labels": { BENCH_LABEL: "true", "stepwise.dev/test": "true" } },
    }))
    .expect("namespace manifest");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    let ready = poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let sas = sas.clone();
        async move { matches!(sas.get_opt("default").await, Ok(Some(_))) }
    })
    .await;
    assert!(
        ready,
        "namespace {name} got no default ServiceAccount in 60 s"
    );
    name
}

/// Deletes the namespace and waits (bounded) until it is gone, so that the
/// garbage it leaves does not load the next phase. Returns seconds waited.
async fn delete_namespace(client: &Client, name: &str, timeout: Duration) -> f64 {
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = api.delete(name, &DeleteParams::background()).await {
        log(format!("warning: cannot delete namespace {name}: {e}"));
        return 0.0;
    }
    let gone = poll_until(timeout, Duration::from_secs(1), || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)) }
    })
    .await;
    let waited = started.elapsed().as_secs_f64();
    if gone {
        log(format!("namespace {name} deleted in {waited:.1} s"));
    } else {
        log(format!(
            "warning: namespace {name} still terminating after {waited:.0} s; going on"
        ));
    }
    waited
}

/// One key of `apiserver_request_total`, without the response code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct WriteKey {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
}

impl WriteKey {
    fn label(&self) -> String {
        let group = if self.group.is_empty() {
            "core".to_string()
        } else {
            self.group.clone()
        };
        let sub = if self.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", self.subresource)
        };
        format!("{} {group}/{}{sub}", self.verb, self.resource)
    }
}

/// How a write counts towards the operator's share.
enum OperatorWrite {
    /// Only the operator makes it.
    Own,
    /// The cluster makes some per Job too: the operator's share is what
    /// exceeds the raw run's.
    BeyondCluster,
}

fn operator_write(k: &WriteKey) -> Option<OperatorWrite> {
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

/// Splits `name{a="b",c="d"} value` into its parts.
fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (head, ""),
    };
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
    Some((name, map, value))
}

/// Requests the API server has served since it started, by verb and resource.
async fn apiserver_requests(client: &Client) -> BTreeMap<WriteKey, f64> {
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
        let key = WriteKey {
            verb,
            group: labels.get("group").cloned().unwrap_or_default(),
            resource: labels.get("resource").cloned().unwrap_or_default(),
            subresource: labels.get("subresource").cloned().unwrap_or_default(),
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

fn is_write(k: &WriteKey) -> bool {
    matches!(
        k.verb.as_str(),
        "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY" | "DELETECOLLECTION"
    )
}

/// Read requests (GET, LIST, WATCH) in each run, by resource, largest
/// difference first.
fn reads_table(raw: &BTreeMap<WriteKey, f64>, op: &BTreeMap<WriteKey, f64>) -> Value {
    let mut keys: Vec<&WriteKey> = raw
        .keys()
        .chain(op.keys())
        .filter(|k| !is_write(k) && !k.verb.contains('#'))
        .collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<(f64, Value)> = keys
        .into_iter()
        .map(|k| {
            let o = op.get(k).copied().unwrap_or(0.0);
            let r = raw.get(k).copied().unwrap_or(0.0);
            (
                o - r,
                json!({ "read": k.label(), "operator_run": o, "raw_run": r }),
            )
        })
        .filter(|(d, _)| d.abs() >= 5.0)
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    json!(
        rows.into_iter()
            .map(|(_, v)| v)
            .take(12)
            .collect::<Vec<_>>()
    )
}

/// Mean server-side latency (ms) of `verb group/resource` between two snapshots.
fn server_latency_ms(
    delta: &BTreeMap<WriteKey, f64>,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
) -> Value {
    let get = |suffix: &str| {
        delta
            .iter()
            .filter(|(k, _)| {
                k.verb == format!("{verb}#{suffix}")
                    && k.group == group
                    && k.resource == resource
                    && k.subresource == subresource
            })
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let (sum, count) = (get("sum"), get("count"));
    if count > 0.0 {
        json!({ "mean_ms": round1(sum / count * 1000.0), "requests": count })
    } else {
        Value::Null
    }
}

fn writes_delta(
    before: &BTreeMap<WriteKey, f64>,
    after: &BTreeMap<WriteKey, f64>,
) -> BTreeMap<WriteKey, f64> {
    after
        .iter()
        .map(|(k, a)| (k.clone(), a - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

// ---------------------------------------------------------------------------
// The bench's own watcher: local receive times of Job, pod (and CR) events
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct JobSeen {
    /// Local time the bench first saw the Job (ms since the epoch).
    seen_ms: f64,
    /// metadata.creationTimestamp, whole seconds since the epoch.
    created_s: Option<i64>,
}

#[derive(Clone, Debug)]
struct PodDone {
    seen_ms: f64,
    /// The container's terminated.finishedAt, whole seconds since the epoch.
    finished_s: Option<i64>,
}

#[derive(Default)]
struct Seen {
    jobs: HashMap<String, JobSeen>,
    /// Job name -> first time its Complete/Failed condition was seen.
    jobs_done: HashMap<String, f64>,
    /// Job name -> first time its pod was seen in a terminal phase.
    pods_done: HashMap<String, PodDone>,
    /// Deployment name -> first time it was seen Succeeded.
    deployments_succeeded: HashMap<String, f64>,
    deployment_events: u64,
    step_events: u64,
    steps_seen: HashSet<String>,
    operator_events: u64,
}

impl Seen {
    fn done_ms(&self, job: &str) -> Option<f64> {
        let p = self.pods_done.get(job).map(|p| p.seen_ms);
        let j = self.jobs_done.get(job).copied();
        match (p, j) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.status == "True"
                    && matches!(
                        c.type_.as_str(),
                        "Complete" | "Failed" | "SuccessCriteriaMet" | "FailureTarget"
                    )
            })
        })
}

fn pod_job_name(pod: &Pod) -> Option<String> {
    let labels = pod.labels();
    labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
        .cloned()
}

fn pod_terminal(pod: &Pod) -> Option<bool> {
    match pod.status.as_ref()?.phase.as_deref()? {
        "Succeeded" => Some(false),
        "Failed" => Some(true),
        _ => None,
    }
}

/// Watches one kind in a namespace and calls `on` with each object and its
/// local receive time; resolves the returned receiver once the initial list
/// is done.
fn spawn_watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    mut on: F,
) -> (JoinHandle<()>, tokio::sync::oneshot::Receiver<()>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Clone + Eq + std::hash::Hash,
    F: FnMut(&K, f64, bool) + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let t = wall_ms();
            match event {
                Ok(watcher::Event::Apply(o)) => on(&o, t, false),
                Ok(watcher::Event::InitApply(o)) => on(&o, t, true),
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => log(format!("watch error (retrying): {e}")),
            }
        }
    });
    (task, rx)
}

/// The bench's measuring watcher for one namespace.
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Recorder {
    /// Starts watching Jobs and pods (and, with `crs`, Deployments, Steps and
    /// the operator's Events) and returns once every watch has listed.
    async fn start(client: &Client, ns: &str, crs: bool) -> Recorder {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        let mut ready = Vec::new();

        let s = seen.clone();
        let (t, r) = spawn_watch(
            Api::<Job>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            move |job: &Job, t, _| {
                let mut s = s.lock().unwrap();
                let name = job.name_any();
                s.jobs.entry(name.clone()).or_insert_with(|| JobSeen {
                    seen_ms: t,
                    created_s: job.creation_timestamp().map(|c| c.0.as_second()),
                });
                if job_finished(job) {
                    s.jobs_done.entry(name).or_insert(t);
                }
            },
        );
        tasks.push(t);
        ready.push(r);

        let s = seen.clone();
        let (t, r) = spawn_watch(
            Api::<Pod>::namespaced(client.clone(), ns),
            watcher::Config::default(),
            move |pod: &Pod, t, _| {
                let (Some(job), Some(_failed)) = (pod_job_name(pod), pod_terminal(pod)) else {
                    return;
                };
                let finished_s = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|cs| {
                        cs.iter()
                            .filter_map(|c| {
                                c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref()
                            })
                            .map(|f| f.0.as_second())
                            .max()
                    });
                seen_pod(&mut s.lock().unwrap(), job, t, finished_s);
            },
        );
        tasks.push(t);
        ready.push(r);

        if crs {
            let s = seen.clone();
            let (t, r) = spawn_watch(
                Api::<Deployment>::namespaced(client.clone(), ns),
                watcher::Config::default(),
                move |d: &Deployment, t, init| {
                    let mut s = s.lock().unwrap();
                    if !init {
                        s.deployment_events += 1;
                    }
                    if d.status.as_ref().and_then(|st| st.phase) == Some(Phase::Succeeded) {
                        s.deployments_succeeded.entry(d.name_any()).or_insert(t);
                    }
                },
            );
            tasks.push(t);
            ready.push(r);

            let s = seen.clone();
            let (t, r) = spawn_watch(
                Api::<Step>::namespaced(client.clone(), ns),
                watcher::Config::default(),
                move |st: &Step, _, init| {
                    let mut s = s.lock().unwrap();
                    if !init {
                        s.step_events += 1;
                        s.steps_seen.insert(st.name_any());
                    }
                },
            );
            tasks.push(t);
            ready.push(r);

            let s = seen.clone();
            let (t, r) = spawn_watch(
                Api::<KubeEvent>::namespaced(client.clone(), ns),
                watcher::Config::default(),
                move |e: &KubeEvent, _, init| {
                    if !init && e.reporting_controller.as_deref() == Some("stepwise") {
                        s.lock().unwrap().operator_events += 1;
                    }
                },
            );
            tasks.push(t);
            ready.push(r);
        }

        for r in ready {
            let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
        }
        Recorder { seen, tasks }
    }

    fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}

fn seen_pod(s: &mut Seen, job: String, t: f64, finished_s: Option<i64>) {
    s.pods_done.entry(job).or_insert(PodDone {
        seen_ms: t,
        finished_s,
    });
}

// ---------------------------------------------------------------------------
// The operator process
// ---------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .ok()?
        .ok()?;
    let code = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// `stepwise controller --namespace NS`, killed on drop; its RSS is sampled
/// every 250 ms while it runs.
struct Operator {
    child: Child,
    pid: u32,
    metrics_port: u16,
    log: PathBuf,
    rss_samples: Arc<Mutex<Vec<(f64, u64)>>>,
    sampler: JoinHandle<()>,
}

impl Operator {
    async fn start(settings: &Settings, ns: &str) -> Operator {
        std::fs::create_dir_all(&settings.log_dir).expect("log dir");
        let log_path = settings.log_dir.join(format!("{ns}.log"));
        let out = std::fs::File::create(&log_path).expect("log file");
        let err = out.try_clone().expect("log file");
        let metrics_port = free_port();
        let probe_port = free_port();
        assert!(
            settings.bin.exists(),
            "{} does not exist: run `cargo build --release --bins`",
            settings.bin.display()
        );
        let mut command = match settings.operator_prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&settings.bin);
                c
            }
            None => Command::new(&settings.bin),
        };
        let mut child = command
            .args(["controller", "--namespace", ns])
            .arg("--metrics-bind-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--health-probe-bind-address")
            .arg(format!("127.0.0.1:{probe_port}"))
            .env("KUBECONFIG", &settings.kubeconfig)
            .env("RUST_LOG", &settings.operator_rust_log)
            .envs(settings.operator_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", settings.bin.display()));
        let pid = child.id();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the operator exited ({status}) before it was ready; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if http_get(probe_port, "/readyz")
                .await
                .is_some_and(|(c, _)| c == 200)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the operator was not ready in 60 s; see {}",
                log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rss_samples = Arc::new(Mutex::new(Vec::new()));
        let samples = rss_samples.clone();
        let t0 = Instant::now();
        let sampler = tokio::spawn(async move {
            loop {
                if let Some(kib) = proc_status_kib(pid, "VmRSS") {
                    samples
                        .lock()
                        .unwrap()
                        .push((t0.elapsed().as_secs_f64(), kib));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Operator {
            child,
            pid,
            metrics_port,
            log: log_path,
            rss_samples,
            sampler,
        }
    }

    async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }

    /// Peak RSS, CPU seconds and the RSS curve, read before the process ends.
    fn footprint(&self) -> Value {
        let hwm = proc_status_kib(self.pid, "VmHWM").unwrap_or(0);
        let rss = proc_status_kib(self.pid, "VmRSS").unwrap_or(0);
        let samples = self.rss_samples.lock().unwrap().clone();
        // Ten points of the curve are enough to see its shape.
        let step = (samples.len() / 10).max(1);
        let curve: Vec<Value> = samples
            .iter()
            .step_by(step)
            .map(|(t, kib)| json!([round1(*t), round1(*kib as f64 / 1024.0)]))
            .collect();
        json!({
            "peak_rss_mib": round1(hwm as f64 / 1024.0),
            "rss_at_end_mib": round1(rss as f64 / 1024.0),
            "cpu_seconds": round3(self.cpu_seconds()),
            "threads": proc_status_kib(self.pid, "Threads"),
            "rss_curve_s_mib": curve,
        })
    }
}

impl Drop for Operator {
    /// SIGTERM (the operator finishes in-flight reconciles and exits), then
    /// SIGKILL after 10 s.
    fn drop(&mut self) {
        self.sampler.abort();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Histograms of the operator's /metrics page: per series (labels without
/// `le`), the buckets, sum and count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

fn histograms(text: &str, name: &str) -> BTreeMap<String, Histogram> {
    let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
    for line in text.lines() {
        let Some((n, mut labels, value)) = parse_sample(line) else {
            continue;
        };
        let le = labels.remove("le");
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        if n == format!("{name}_bucket") {
            let le = match le.as_deref() {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().unwrap_or(f64::NAN),
                None => continue,
            };
            out.entry(key).or_default().buckets.push((le, value));
        } else if n == format!("{name}_sum") {
            out.entry(key).or_default().sum = value;
        } else if n == format!("{name}_count") {
            out.entry(key).or_default().count = value;
        }
    }
    out
}

impl Histogram {
    /// The upper bound of the bucket holding quantile q (a bound, not a value).
    fn quantile_bound(&self, q: f64) -> f64 {
        let mut b = self.buckets.clone();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        let target = q * self.count;
        b.iter()
            .find(|(_, c)| *c >= target)
            .map(|(le, _)| *le)
            .unwrap_or(f64::INFINITY)
    }

    fn to_json(&self, unit_ms: bool) -> Value {
        let scale = if unit_ms { 1000.0 } else { 1.0 };
        let bound = |q| {
            let v = self.quantile_bound(q) * scale;
            if v.is_finite() {
                json!(round3(v))
            } else {
                json!("+Inf")
            }
        };
        let mut b = self.buckets.clone();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        json!({
            "count": self.count,
            "mean": if self.count > 0.0 { round3(self.sum / self.count * scale) } else { 0.0 },
            "p50_bucket_le": bound(0.5),
            "p99_bucket_le": bound(0.99),
            "buckets": b.iter().map(|(le, c)| {
                let le = if le.is_finite() { json!(round3(le * scale)) } else { json!("+Inf") };
                json!([le, c])
            }).collect::<Vec<_>>(),
        })
    }
}

/// What the operator says about its own reconciles.
fn reconcile_profile(metrics: &str) -> Value {
    let mut out = serde_json::Map::new();
    for (key, h) in histograms(metrics, "controller_runtime_reconcile_time_seconds") {
        out.insert(format!("time_ms[{key}]"), h.to_json(true));
    }
    let mut totals = serde_json::Map::new();
    for line in metrics.lines() {
        if let Some((n, labels, v)) = parse_sample(line)
            && (n == "controller_runtime_reconcile_total" || n == "stepwise_action_attempts_total")
        {
            let key = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            totals.insert(format!("{n}[{key}]"), json!(v));
        }
    }
    out.insert("counters".into(), Value::Object(totals));
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

/// The raw client's Job: the same shape as the operator's (backoffLimit 0,
/// restartPolicy Never, restricted security context), no owner.
fn raw_job(name: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "labels": { RAW_LABEL: "true" } },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { RAW_LABEL: "true" } },
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "main",
                        "image": "busybox",
                        "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }
                    }]
                }
            }
        }
    }))
    .expect("a valid Job")
}

async fn create_with_retry<K>(api: &Api<K>, obj: &K) -> bool
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    for attempt in 0..5 {
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 409 => return true,
            // Invalid or forbidden: trying again changes nothing.
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 404 | 422) => {
                log(format!("create {} refused: {}", obj.name_any(), e.message));
                return false;
            }
            Err(e) => {
                log(format!(
                    "create {} failed (try {attempt}): {e}",
                    obj.name_any()
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    false
}

async fn create_all<K>(api: &Api<K>, objs: Vec<K>, concurrency: usize) -> usize
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    stream::iter(objs)
        .map(|o| {
            let api = api.clone();
            async move { create_with_retry(&api, &o).await }
        })
        .buffer_unordered(concurrency)
        .filter(|ok| futures::future::ready(!*ok))
        .count()
        .await
}

// ---------------------------------------------------------------------------
// The raw client: the lower bound
// ---------------------------------------------------------------------------

/// Runs chains of Jobs with no logic but "when a Job is done (its pod is
/// terminal or its Job condition says so, whichever comes first), create the
/// next one". Returns the wall time from the first create to the last chain
/// done, or None on timeout.
async fn raw_client(
    client: &Client,
    ns: &str,
    chains: &[Vec<String>],
    concurrency: usize,
    timeout: Duration,
) -> Option<Duration> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let index: Arc<HashMap<String, (usize, usize)>> = Arc::new(
        chains
            .iter()
            .enumerate()
            .flat_map(|(c, chain)| {
                chain
                    .iter()
                    .enumerate()
                    .map(move |(p, n)| (n.clone(), (c, p)))
            })
            .collect(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let selector = watcher::Config::default().labels(RAW_LABEL);
    let tx_pods = tx.clone();
    let (pods_task, pods_ready) = spawn_watch(
        Api::<Pod>::namespaced(client.clone(), ns),
        selector.clone(),
        move |pod: &Pod, _, _| {
            if pod_terminal(pod).is_some()
                && let Some(job) = pod_job_name(pod)
            {
                let _ = tx_pods.send(job);
            }
        },
    );
    let (jobs_task, jobs_ready) = spawn_watch(api.clone(), selector, move |job: &Job, _, _| {
        if job_finished(job) {
            let _ = tx.send(job.name_any());
        }
    });
    let _ = pods_ready.await;
    let _ = jobs_ready.await;

    let started = Instant::now();
    let firsts: Vec<Job> = chains.iter().map(|c| raw_job(&c[0])).collect();
    let failed = create_all(&api, firsts, concurrency).await;
    if failed > 0 {
        log(format!("raw client: {failed} first creates failed"));
    }
    let mut done = HashSet::new();
    let mut remaining = chains.len();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut result = None;
    while remaining > 0 {
        let Ok(Some(name)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        if !done.insert(name.clone()) {
            continue;
        }
        let Some(&(c, p)) = index.get(&name) else {
            continue;
        };
        if p + 1 < chains[c].len() {
            let api = api.clone();
            let job = raw_job(&chains[c][p + 1]);
            tokio::spawn(async move {
                create_with_retry(&api, &job).await;
            });
        } else {
            remaining -= 1;
        }
    }
    if remaining == 0 {
        result = Some(started.elapsed());
    } else {
        log(format!(
            "raw client: timed out with {remaining} chains unfinished"
        ));
    }
    pods_task.abort();
    jobs_task.abort();
    result
}

// ---------------------------------------------------------------------------
// Phase: retry timing precision
// ---------------------------------------------------------------------------

async fn phase_retry(s: &Settings, client: &Client) -> Value {
    log(format!(
        "retry: {} releases with delaySeconds 2 and {} with the default 15, each failing attempt 1",
        s.retry_short, s.retry_long
    ));
    let ns = create_namespace(client, "bench-retry").await;
    let rec = Recorder::start(client, &ns, true).await;
    let op = Operator::start(s, &ns).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut wanted: Vec<(String, f64)> = Vec::new();
    let mut objs = Vec::new();
    for i in 0..s.retry_short + s.retry_long {
        let (name, retries, delay_ms) = if i < s.retry_short {
            (
                format!("r2-{i:03}"),
                json!({ "limit": 1, "delaySeconds": 2 }),
                2000.0,
            )
        } else {
            // No delaySeconds: the default (15 s).
            (
                format!("r15-{:03}", i - s.retry_short),
                json!({ "limit": 1 }),
                15000.0,
            )
        };
        objs.push(release(
            &name,
            json!({ "steps": [{ "name": "s", "retries": retries,
                                "actions": [action("a", &[("fail-attempts", "1")])] }] }),
        ));
        wanted.push((name, delay_ms));
    }
    let started = Instant::now();
    let refused = create_all(&api, objs, s.create_concurrency).await;
    assert_eq!(
        refused, 0,
        "the API server refused {refused} of the bench's Deployments"
    );
    let total = wanted.len();
    let done = poll_until(
        Duration::from_secs(180).min(s.phase_timeout),
        Duration::from_millis(500),
        || {
            let done = rec.with(|x| x.deployments_succeeded.len());
            async move { done >= total }
        },
    )
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

    let steps: Vec<Step> = Api::<Step>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut operator_err = Vec::new();
    let mut watch_err = Vec::new();
    let mut api_err = Vec::new();
    let mut detect_ms = Vec::new();
    let mut by_delay: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (name, delay_ms) in &wanted {
        let step_name = format!("{name}-s");
        let Some(step) = steps.iter().find(|st| st.name_any() == step_name) else {
            continue;
        };
        let Some(attempts) = step
            .status
            .as_ref()
            .and_then(|st| st.actions.first())
            .map(|a| a.attempts.clone())
        else {
            continue;
        };
        let (Some(first), Some(second)) = (
            attempts.iter().find(|a| a.number == 1),
            attempts.iter().find(|a| a.number == 2),
        ) else {
            continue;
        };
        let key = format!("{}s", delay_ms / 1000.0);
        if let (Some(seen), Some(start)) = (first.failure_seen_at, second.started_at) {
            let e = start.duration_since(seen).as_secs_f64() * 1000.0 - delay_ms;
            operator_err.push(e);
            by_delay.entry(key.clone()).or_default().0.push(e);
        }
        let job1 = format!("{step_name}-a-1");
        let job2 = format!("{step_name}-a-2");
        rec.with(|x| {
            if let (Some(done1), Some(j2)) = (x.done_ms(&job1), x.jobs.get(&job2)) {
                let e = j2.seen_ms - done1 - delay_ms;
                watch_err.push(e);
                by_delay.entry(key.clone()).or_default().1.push(e);
            }
            if let (Some(p1), Some(j2)) = (x.pods_done.get(&job1), x.jobs.get(&job2))
                && let (Some(fin), Some(created)) = (p1.finished_s, j2.created_s)
            {
                api_err.push(((created - fin) as f64) * 1000.0 - delay_ms);
            }
            if let (Some(done1), Some(seen)) = (x.done_ms(&job1), first.failure_seen_at) {
                detect_ms.push(seen.as_millisecond() as f64 - done1);
            }
        });
    }
    let hist = histograms(&metrics, "stepwise_retry_delay_error_seconds")
        .into_values()
        .next()
        .unwrap_or_default();
    // The API-timestamp view in whole seconds: how many fall in each second.
    let mut api_seconds: BTreeMap<i64, usize> = BTreeMap::new();
    for e in &api_err {
        *api_seconds.entry((e / 1000.0).round() as i64).or_default() += 1;
    }
    let watch = summary(&watch_err);
    let result = json!({
        "retries_measured": watch_err.len(),
        "load_average": loadavg(),
        "retries_expected": total,
        "wall_s": round1(wall),
        "watch_error_ms": watch,
        "operator_error_ms": summary(&operator_err),
        "api_timestamps_error_ms": summary(&api_err),
        "api_timestamps_error_histogram_s": api_seconds.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "failure_detection_ms": summary(&detect_ms),
        "by_delay": by_delay.iter().map(|(k, (o, w))| (k.clone(), json!({ "operator_error_ms": summary(o), "watch_error_ms": summary(w) }))).collect::<serde_json::Map<_, _>>(),
        "operator_histogram_ms": hist.to_json(true),
        "reconcile": reconcile_profile(&metrics),
        "namespace": ns,
        "operator_log": op.log.display().to_string(),
    });
    drop(op);
    drop(rec);
    delete_namespace(client, &ns, Duration::from_secs(300)).await;
    result
}

// ---------------------------------------------------------------------------
// Phase: hand-off latency
// ---------------------------------------------------------------------------

/// Hand-offs in one namespace: next Job first seen minus previous Job done
/// first seen, for each consecutive pair of each chain.
fn handoffs(rec: &Recorder, chains: &[Vec<String>]) -> (Vec<f64>, usize) {
    rec.with(|x| {
        let mut out = Vec::new();
        let mut missing = 0;
        for chain in chains {
            for pair in chain.windows(2) {
                match (x.done_ms(&pair[0]), x.jobs.get(&pair[1])) {
                    (Some(done), Some(next)) => out.push(next.seen_ms - done),
                    _ => missing += 1,
                }
            }
        }
        (out, missing)
    })
}

/// Job name -> the operator's `startedAt` of that attempt (ms since the
/// epoch): the moment it planned the Job, just before the create request.
async fn started_at_by_job(client: &Client, ns: &str) -> HashMap<String, f64> {
    let steps = Api::<Step>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = HashMap::new();
    for step in steps {
        for action in step.status.map(|s| s.actions).unwrap_or_default() {
            for a in action.attempts {
                if let Some(t) = a.started_at {
                    out.insert(a.job.clone(), t.as_millisecond() as f64);
                }
            }
        }
    }
    out
}

/// Splits hand-offs `(previous, next)` into the operator's reaction (previous
/// Job done, as the bench saw it -> the operator's startedAt of the next) and
/// the create (startedAt -> the next Job seen by the bench).
fn decompose(rec: &Recorder, pairs: &[(String, String)], started: &HashMap<String, f64>) -> Value {
    let (mut react, mut create) = (Vec::new(), Vec::new());
    rec.with(|x| {
        for (prev, next) in pairs {
            if let (Some(done), Some(st), Some(seen)) =
                (x.done_ms(prev), started.get(next), x.jobs.get(next))
            {
                react.push(st - done);
                create.push(seen.seen_ms - st);
            }
        }
    });
    json!({ "react_ms": summary(&react), "create_ms": summary(&create) })
}

fn pairs_of(chains: &[Vec<String>], which: impl Fn(usize) -> bool) -> Vec<(String, String)> {
    chains
        .iter()
        .flat_map(|c| {
            c.windows(2)
                .enumerate()
                .filter(|(i, _)| which(*i))
                .map(|(_, w)| (w[0].clone(), w[1].clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn hop_latencies(rec: &Recorder, pairs: &[(String, String)]) -> Vec<f64> {
    rec.with(|x| {
        pairs
            .iter()
            .filter_map(|(p, n)| Some(x.jobs.get(n)?.seen_ms - x.done_ms(p)?))
            .collect()
    })
}

fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    json!(v)
}

async fn phase_handoff(s: &Settings, client: &Client) -> Value {
    // A step holds at most 20 actions (CRD validation).
    let (n, len) = (s.handoff_chains, s.handoff_actions.clamp(2, 20));
    log(format!(
        "handoff: {n} releases x 1 step x {len} actions ({} hand-offs), then the raw client",
        n * (len - 1)
    ));
    // Operator.
    let ns = create_namespace(client, "bench-handoff").await;
    let rec = Recorder::start(client, &ns, true).await;
    let op = Operator::start(s, &ns).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut objs = Vec::new();
    let mut chains = Vec::new();
    for c in 0..n {
        let name = format!("h-{c:03}");
        let actions: Vec<Value> = (0..len).map(|a| action(&format!("a{a:02}"), &[])).collect();
        objs.push(release(
            &name,
            json!({ "steps": [{ "name": "s", "actions": actions }] }),
        ));
        chains.push(
            (0..len)
                .map(|a| format!("{name}-s-a{a:02}-1"))
                .collect::<Vec<_>>(),
        );
    }
    let a0 = apiserver_requests(client).await;
    let started = Instant::now();
    let refused = create_all(&api, objs, s.create_concurrency).await;
    assert_eq!(
        refused, 0,
        "the API server refused {refused} of the bench's Deployments"
    );
    let ok = poll_until(s.phase_timeout, Duration::from_millis(250), || {
        let done = rec.with(|x| x.deployments_succeeded.len());
        async move { done >= n }
    })
    .await;
    let op_wall = started.elapsed().as_secs_f64();
    if !ok {
        log("handoff: the operator did not finish every release in time");
    }
    let a1 = apiserver_requests(client).await;
    let op_post_jobs = server_latency_ms(&writes_delta(&a0, &a1), "POST", "batch", "jobs", "");
    let (op_handoffs, op_missing) = handoffs(&rec, &chains);
    let started_at = started_at_by_job(client, &ns).await;
    let op_decomposed = decompose(&rec, &pairs_of(&chains, |_| true), &started_at);
    let metrics = op.metrics().await;
    let op_footprint = op.footprint();
    drop(op);
    drop(rec);
    delete_namespace(client, &ns, Duration::from_secs(300)).await;

    // Raw client.
    let ns = create_namespace(client, "bench-handoff-raw").await;
    let rec = Recorder::start(client, &ns, false).await;
    let raw_chains: Vec<Vec<String>> = (0..n)
        .map(|c| (0..len).map(|a| format!("raw-{c:03}-{a:02}")).collect())
        .collect();
    let a0 = apiserver_requests(client).await;
    let raw_wall = raw_client(
        client,
        &ns,
        &raw_chains,
        s.create_concurrency,
        s.phase_timeout,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a1 = apiserver_requests(client).await;
    let raw_post_jobs = server_latency_ms(&writes_delta(&a0, &a1), "POST", "batch", "jobs", "");
    let (raw_handoffs, raw_missing) = handoffs(&rec, &raw_chains);
    drop(rec);
    delete_namespace(client, &ns, Duration::from_secs(300)).await;

    let op_sum = summary(&op_handoffs);
    let raw_sum = summary(&raw_handoffs);
    json!({
        "handoffs": op_handoffs.len(),
        "operator_ms": op_sum,
        "operator_decomposed": op_decomposed,
        "server_latency_post_jobs": { "operator": op_post_jobs, "raw": raw_post_jobs },
        "load_average": loadavg(),
        "raw_ms": raw_sum,
        "operator_missing": op_missing,
        "raw_missing": raw_missing,
        "operator_wall_s": round1(op_wall),
        "raw_wall_s": raw_wall.map(|d| round1(d.as_secs_f64())),
        "operator_reconcile": reconcile_profile(&metrics),
        "operator_footprint": op_footprint,
    })
}

// ---------------------------------------------------------------------------
// Phase: throughput, API economy, footprint
// ---------------------------------------------------------------------------

async fn phase_throughput(s: &Settings, client: &Client) -> Value {
    let n = s.releases;
    let attempts = (n * 4) as f64;
    let pids = cluster_pids(&s.kubeconfig);
    log(format!(
        "throughput: {n} releases x 2 steps x 2 actions ({} Jobs), raw client first",
        n * 4
    ));

    // Raw client: the same 4-Job chains.
    let ns = create_namespace(client, "bench-tput-raw").await;
    let rec = Recorder::start(client, &ns, false).await;
    let chains: Vec<Vec<String>> = (0..n)
        .map(|c| (0..4).map(|j| format!("t-{c:05}-{j}")).collect())
        .collect();
    let cpu0 = cluster_cpu(&pids);
    let w0 = apiserver_requests(client).await;
    let raw_wall = raw_client(client, &ns, &chains, s.create_concurrency, s.phase_timeout).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w1 = apiserver_requests(client).await;
    let cpu1 = cluster_cpu(&pids);
    let raw_load = loadavg();
    let raw_all = writes_delta(&w0, &w1);
    let raw_writes: BTreeMap<WriteKey, f64> = raw_all
        .iter()
        .filter(|(k, _)| is_write(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let raw_reads = raw_all;
    let raw_jobs_done = rec.with(|x| x.pods_done.len());
    let raw_hops = hop_latencies(&rec, &pairs_of(&chains, |_| true));
    let raw_cpu = cpu_delta(&cpu0, &cpu1);
    drop(rec);
    let raw_cleanup = delete_namespace(client, &ns, Duration::from_secs(900)).await;
    log(format!(
        "throughput: raw client {:?} for {n} chains",
        raw_wall.map(|d| d.as_secs_f64())
    ));

    // Operator.
    let ns = create_namespace(client, "bench-tput").await;
    let rec = Recorder::start(client, &ns, true).await;
    let op = Operator::start(s, &ns).await;
    let op_cpu_start = op.cpu_seconds();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let objs: Vec<Deployment> = (0..n)
        .map(|i| {
            release(
                &format!("d-{i:05}"),
                json!({ "steps": [
                    { "name": "s1", "actions": [action("a1", &[]), action("a2", &[])] },
                    { "name": "s2", "actions": [action("a1", &[]), action("a2", &[])] },
                ]}),
            )
        })
        .collect();
    let cpu0 = cluster_cpu(&pids);
    let w0 = apiserver_requests(client).await;
    let started = Instant::now();
    let t0_ms = wall_ms();
    let refused = create_all(&api, objs, s.create_concurrency).await;
    assert_eq!(
        refused, 0,
        "the API server refused {refused} of the bench's Deployments"
    );
    let created_s = started.elapsed().as_secs_f64();
    let mut last_report = Instant::now();
    let ok = poll_until(s.phase_timeout, Duration::from_millis(100), || {
        let done = rec.with(|x| x.deployments_succeeded.len());
        if last_report.elapsed() > Duration::from_secs(30) {
            log(format!(
                "throughput: {done}/{n} releases succeeded after {:.0} s",
                started.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        async move { done >= n }
    })
    .await;
    let op_wall = started.elapsed();
    let op_done = rec.with(|x| x.deployments_succeeded.len());
    let last_job_done_s = rec.with(|x| {
        x.pods_done
            .values()
            .map(|p| p.seen_ms)
            .fold(f64::NAN, f64::max)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w1 = apiserver_requests(client).await;
    let cpu1 = cluster_cpu(&pids);
    let op_load = loadavg();
    let op_cpu = op.cpu_seconds() - op_cpu_start;
    let metrics = op.metrics().await;
    let footprint = op.footprint();
    let op_reads = writes_delta(&w0, &w1);
    let op_writes: BTreeMap<WriteKey, f64> = op_reads
        .iter()
        .filter(|(k, _)| is_write(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let local = rec.with(|x| {
        json!({
            "jobs_created": x.jobs.len(),
            "steps_created": x.steps_seen.len(),
            "step_updates": x.step_events.saturating_sub(x.steps_seen.len() as u64),
            "deployment_updates": x.deployment_events.saturating_sub(n as u64),
            "operator_event_writes": x.operator_events,
        })
    });
    let local_total: f64 = [
        "jobs_created",
        "steps_created",
        "step_updates",
        "deployment_updates",
        "operator_event_writes",
    ]
    .iter()
    .filter_map(|k| local[*k].as_f64())
    .sum();
    let op_chains: Vec<Vec<String>> = (0..n)
        .map(|i| {
            ["s1-a1", "s1-a2", "s2-a1", "s2-a2"]
                .iter()
                .map(|j| format!("d-{i:05}-{j}-1"))
                .collect()
        })
        .collect();
    // Within a step: a1 -> a2 (hops 0 and 2); across steps: s1-a2 -> s2-a1 (hop 1).
    let intra = pairs_of(&op_chains, |i| i != 1);
    let inter = pairs_of(&op_chains, |i| i == 1);
    let started_at = started_at_by_job(client, &ns).await;
    let hops = json!({
        "raw_ms": summary(&raw_hops),
        "operator_within_step_ms": summary(&hop_latencies(&rec, &intra)),
        "operator_within_step_decomposed": decompose(&rec, &intra, &started_at),
        "operator_across_steps_ms": summary(&hop_latencies(&rec, &inter)),
        "operator_across_steps_decomposed": decompose(&rec, &inter, &started_at),
    });
    let op_cluster_cpu = cpu_delta(&cpu0, &cpu1);
    drop(op);
    drop(rec);
    let op_cleanup = delete_namespace(client, &ns, Duration::from_secs(900)).await;

    // API economy. apiserver_request_total has no namespace or client label,
    // so the operator's writes are read from the kinds only it writes: Job
    // creates, Steps (create, status, annotation patches), Deployment status,
    // and events.k8s.io Events less what the cluster writes there per Job
    // (the scheduler's Scheduled events), taken from the raw run. Every other
    // row must match between the runs (the cluster's own work per Job: pods,
    // bindings, pod and Job status); where it does not, another client wrote
    // meanwhile and the row is listed as foreign.
    let mut keys: Vec<WriteKey> = raw_writes.keys().chain(op_writes.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    let mut foreign = Vec::new();
    let mut operator_total = 0.0;
    for k in &keys {
        let op_d = op_writes.get(k).copied().unwrap_or(0.0);
        let raw_d = raw_writes.get(k).copied().unwrap_or(0.0);
        let operator = match operator_write(k) {
            Some(OperatorWrite::Own) => op_d,
            Some(OperatorWrite::BeyondCluster) => op_d - raw_d,
            None => {
                // The bench's own Deployment creates are expected; the rest
                // should be the same cluster work in both runs.
                let expected = if k.verb == "POST"
                    && k.group == "stepwise.dev"
                    && k.resource == "deployments"
                    && k.subresource.is_empty()
                {
                    n as f64
                } else if k.verb == "POST" && k.group == "batch" && k.resource == "jobs" {
                    0.0
                } else {
                    raw_d
                };
                if (op_d - expected).abs() > (0.02 * attempts).max(2.0) {
                    foreign.push(
                        json!({ "write": k.label(), "operator_run": op_d, "raw_run": raw_d }),
                    );
                }
                continue;
            }
        };
        operator_total += operator;
        rows.push(json!({
            "write": k.label(),
            "operator_run": op_d,
            "raw_run": raw_d,
            "operator_attributed": operator,
            "operator_per_attempt": round3(operator / attempts),
            "server_mean_ms_operator_run": server_latency_ms(&op_reads, &k.verb, &k.group, &k.resource, &k.subresource)["mean_ms"],
        }));
    }
    rows.sort_by(|a, b| {
        b["operator_attributed"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["operator_attributed"].as_f64().unwrap_or(0.0))
    });
    let op_all: f64 = op_writes.values().sum();
    let raw_all: f64 = raw_writes.values().sum();
    let raw_wall_s = raw_wall.map(|d| d.as_secs_f64());
    let op_wall_s = ok.then_some(op_wall.as_secs_f64());
    let ratio = match (op_wall_s, raw_wall_s) {
        (Some(o), Some(r)) if r > 0.0 => Some(round3(o / r)),
        _ => None,
    };
    json!({
        "releases": n,
        "jobs": n * 4,
        "raw_wall_s": raw_wall_s.map(round1),
        "operator_wall_s": op_wall_s.map(round1),
        "operator_timed_out_after_s": (!ok).then(|| round1(op_wall.as_secs_f64())),
        "operator_releases_done": op_done,
        "operator_creates_done_s": round1(created_s),
        "operator_last_job_done_s": round1((last_job_done_s - t0_ms) / 1000.0),
        "raw_jobs_done": raw_jobs_done,
        "throughput_ratio": ratio,
        "operator_releases_per_s": op_wall_s.map(|w| round1(n as f64 / w)),
        "raw_chains_per_s": raw_wall_s.map(|w| round1(n as f64 / w)),
        "cleanup_s": { "raw": round1(raw_cleanup), "operator": round1(op_cleanup) },
        "cluster_cpu_s": { "raw_run": raw_cpu, "operator_run": op_cluster_cpu },
        "hops": hops,
        "server_latency_post_jobs": {
            "raw_run": server_latency_ms(&raw_reads, "POST", "batch", "jobs", ""),
            "operator_run": server_latency_ms(&op_reads, "POST", "batch", "jobs", ""),
        },
        "reads": reads_table(&raw_reads, &op_reads),
        "load_average": { "raw_run_end": raw_load, "operator_run_end": op_load },
        "operator_cpu_s": round3(op_cpu),
        "footprint": footprint,
        "reconcile": reconcile_profile(&metrics),
        "api_writes": {
            "attempts": attempts,
            "operator_writes": operator_total,
            "operator_writes_per_attempt": round3(operator_total / attempts),
            "all_writes_operator_run": op_all,
            "all_writes_raw_run": raw_all,
            "all_writes_per_job_operator_run": round3(op_all / attempts),
            "all_writes_per_job_raw_run": round3(raw_all / attempts),
            "rows": rows,
            "foreign_writes": foreign,
            "namespace_local_counts": local,
            "namespace_local_per_attempt": round3(local_total / attempts),
        },
    })
}

// ---------------------------------------------------------------------------
// Results and BENCHMARKS.md
// ---------------------------------------------------------------------------

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn num(v: &Value, path: &str) -> Option<f64> {
    get(v, path).as_f64()
}

fn fmt_num(x: Option<f64>, unit: &str) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{} {unit}", round1(x)).trim().to_string(),
        _ => "n/a".into(),
    }
}

fn row(
    md: &mut String,
    metric: &str,
    goal: &str,
    measured: String,
    ratio: Option<f64>,
    limit: f64,
) {
    let (ratio, verdict) = match ratio {
        Some(r) if r.is_finite() => (
            format!("{:.2}", r),
            if r <= limit { "met" } else { "**missed**" },
        ),
        _ => ("n/a".into(), "not measured"),
    };
    let _ = writeln!(
        md,
        "| {metric} | {goal} | {measured} | {ratio} | {verdict} |"
    );
}

fn render(r: &Value, notes: &str) -> String {
    let mut md = String::new();
    let m = &r["machine"];
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` (`scripts/bench.sh` -> `cargo bench --bench bench`, source \
         `benches/bench.rs`); raw numbers in `bench/results.json`. Everything below the notes \
         is regenerated on every run; the notes section is kept.\n"
    );
    let _ = writeln!(
        md,
        "- Date: {}\n- Machine: {} CPUs (`nproc`), {} MiB memory, {} (kernel {})\n\
         - Cluster: local control plane, Kubernetes {} built from source, kwok fake nodes, loopback only\n\
         - Operator: `target/release/stepwise` at {} (one process per phase, `--namespace`-scoped)\n\
         - Releases in the throughput run: {} (`BENCH_RELEASES`)\n",
        r["date"].as_str().unwrap_or("?"),
        m["nproc"],
        m["memory_mib"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        r["kubernetes"].as_str().unwrap_or("?"),
        r["revision"].as_str().unwrap_or("?"),
        r["throughput"]["releases"],
    );
    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(md, "Ratio is measured / goal: at most 1 meets the goal.\n");
    let _ = writeln!(md, "| Metric | Goal | Measured | Ratio | Verdict |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let retry = num(r, "retry_delay_error_p99_ms");
    row(
        &mut md,
        "Retry delay error p99 (failed pod seen -> next Job seen, minus delay)",
        "<= 50 ms",
        fmt_num(retry, "ms"),
        retry.map(|x| x.abs() / 50.0),
        1.0,
    );
    let op_retry = num(r, "retry.operator_error_ms.p99");
    row(
        &mut md,
        "Retry delay error p99, operator-recorded (failureSeenAt -> startedAt)",
        "<= 50 ms",
        fmt_num(op_retry, "ms"),
        op_retry.map(|x| x.abs() / 50.0),
        1.0,
    );
    let h = num(r, "handoff_p99_ms");
    let hr = num(r, "handoff_raw_p99_ms");
    row(
        &mut md,
        "Hand-off p99 (Job done -> next Job created)",
        "<= 100 ms",
        format!(
            "{} (p50 {})",
            fmt_num(h, "ms"),
            fmt_num(num(r, "handoff.operator_ms.p50"), "ms")
        ),
        h.map(|x| x / 100.0),
        1.0,
    );
    let vs_raw = match (h, hr) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    row(
        &mut md,
        "Hand-off p99 vs raw client",
        "<= 1.5x raw",
        format!(
            "{} vs raw {} (raw p50 {})",
            fmt_num(h, "ms"),
            fmt_num(hr, "ms"),
            fmt_num(num(r, "handoff.raw_ms.p50"), "ms")
        ),
        vs_raw.map(|x| x / 1.5),
        1.0,
    );
    let t = num(r, "throughput_ratio");
    row(
        &mut md,
        "Throughput: operator wall time / raw client wall time",
        "<= 1.25",
        format!(
            "{:.2} ({} vs {})",
            t.unwrap_or(f64::NAN),
            fmt_num(num(r, "throughput.operator_wall_s"), "s"),
            fmt_num(num(r, "throughput.raw_wall_s"), "s")
        ),
        t.map(|x| x / 1.25),
        1.0,
    );
    let w = num(r, "writes_per_attempt");
    row(
        &mut md,
        "API writes per action attempt (operator's)",
        "<= 2",
        format!("{:.2}", w.unwrap_or(f64::NAN)),
        w.map(|x| x / 2.0),
        1.0,
    );
    let rss = num(r, "peak_rss_mib");
    row(
        &mut md,
        "Operator peak RSS (VmHWM), throughput run",
        "<= 50 MiB",
        fmt_num(rss, "MiB"),
        rss.map(|x| x / 50.0),
        1.0,
    );
    let _ = writeln!(
        md,
        "| Operator CPU (utime+stime), throughput run | - | {} | - | - |\n",
        fmt_num(num(r, "cpu_seconds"), "s")
    );

    let _ = writeln!(md, "{NOTES_BEGIN}\n{}\n{NOTES_END}\n", notes.trim());

    // Details.
    let _ = writeln!(md, "## Details (generated)\n");
    let _ = writeln!(md, "### Retry timing precision\n");
    let rt = &r["retry"];
    let _ = writeln!(
        md,
        "{} of {} retries measured; phase wall time {} s. Errors are observed minus configured wait, in ms.\n",
        rt["retries_measured"], rt["retries_expected"], rt["wall_s"]
    );
    let _ = writeln!(md, "| View | Precision | n | min | p50 | p90 | p99 | max |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, precision, key) in [
        (
            "Bench watcher: failed pod (or Job) seen -> next Job seen",
            "ms (local receive times)",
            "watch_error_ms",
        ),
        (
            "Operator status: failureSeenAt -> next startedAt",
            "ms (operator clock)",
            "operator_error_ms",
        ),
        (
            "API timestamps: container finishedAt -> next Job creationTimestamp",
            "1 s (both truncated)",
            "api_timestamps_error_ms",
        ),
        (
            "Failure detection: failed pod seen by bench -> failureSeenAt",
            "ms (same clock)",
            "failure_detection_ms",
        ),
    ] {
        let s = &rt[key];
        let _ = writeln!(
            md,
            "| {label} | {precision} | {} | {} | {} | {} | {} | {} |",
            s["n"], s["min"], s["p50"], s["p90"], s["p99"], s["max"]
        );
    }
    if let Some(by) = rt["by_delay"].as_object() {
        for (delay, v) in by {
            let _ = writeln!(
                md,
                "| ... delay {delay}: watcher / operator | ms | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
                v["watch_error_ms"]["n"],
                v["watch_error_ms"]["min"],
                v["operator_error_ms"]["min"],
                v["watch_error_ms"]["p50"],
                v["operator_error_ms"]["p50"],
                v["watch_error_ms"]["p90"],
                v["operator_error_ms"]["p90"],
                v["watch_error_ms"]["p99"],
                v["operator_error_ms"]["p99"],
                v["watch_error_ms"]["max"],
                v["operator_error_ms"]["max"],
            );
        }
    }
    let _ = writeln!(
        md,
        "\nAPI-timestamp view, whole seconds of error -> count: `{}`. The operator's own \
         `stepwise_retry_delay_error_seconds` histogram (ms bucket bounds -> cumulative count): `{}`.\n",
        rt["api_timestamps_error_histogram_s"], rt["operator_histogram_ms"]["buckets"]
    );

    let _ = writeln!(md, "### Hand-off latency\n");
    let ho = &r["handoff"];
    let _ = writeln!(md, "| Driver | n | min | p50 | p90 | p99 | max | wall |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, key, wall) in [
        ("Operator", "operator_ms", "operator_wall_s"),
        ("Raw client", "raw_ms", "raw_wall_s"),
    ] {
        let s = &ho[key];
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} s |",
            s["n"], s["min"], s["p50"], s["p90"], s["p99"], s["max"], ho[wall]
        );
    }
    let d = &ho["operator_decomposed"];
    let _ = writeln!(
        md,
        "\nOperator hand-offs split at its own `startedAt` (planned, just before the create \
         request): reaction (previous Job done, as the bench saw it -> startedAt) p50 {} / p99 {} ms; \
         create (startedAt -> new Job seen by the bench) p50 {} / p99 {} ms. API server's own mean \
         latency of `POST jobs` (apiserver_request_duration_seconds): operator part {}, raw part {}. \
         Load average (1, 5, 15 min) at the end: {}.\n",
        d["react_ms"]["p50"],
        d["react_ms"]["p99"],
        d["create_ms"]["p50"],
        d["create_ms"]["p99"],
        ho["server_latency_post_jobs"]["operator"],
        ho["server_latency_post_jobs"]["raw"],
        ho["load_average"]
    );
    let _ = writeln!(
        md,
        "Operator reconcile profile in this phase: `{}`\n",
        compact_reconcile(&ho["operator_reconcile"])
    );

    let _ = writeln!(md, "### Throughput\n");
    let tp = &r["throughput"];
    let _ = writeln!(
        md,
        "- {} releases, {} Jobs. Raw client: {} s ({} chains/s). Operator: {} s ({} releases/s; \
         all creates sent after {} s; last Job done after {} s){}.\n\
         - Control-plane CPU seconds during the raw run: `{}`; during the operator run: `{}`; \
         the operator itself: {} s.\n\
         - Namespace cleanup after each run: `{}` s.\n\
         - Operator reconcile profile: `{}`\n",
        tp["releases"],
        tp["jobs"],
        tp["raw_wall_s"],
        tp["raw_chains_per_s"],
        tp["operator_wall_s"],
        tp["operator_releases_per_s"],
        tp["operator_creates_done_s"],
        tp["operator_last_job_done_s"],
        if tp["operator_timed_out_after_s"].is_null() {
            String::new()
        } else {
            format!(
                " (timed out after {} s with {} done)",
                tp["operator_timed_out_after_s"], tp["operator_releases_done"]
            )
        },
        tp["cluster_cpu_s"]["raw_run"],
        tp["cluster_cpu_s"]["operator_run"],
        tp["operator_cpu_s"],
        tp["cleanup_s"],
        compact_reconcile(&tp["reconcile"]),
    );

    let hops = &tp["hops"];
    let _ = writeln!(
        md,
        "Per-hop latency in the throughput run (ms; Job done seen -> next Job seen):\n"
    );
    let _ = writeln!(
        md,
        "| Hop | n | p50 | p90 | p99 | max | reaction p50 / p99 | create p50 / p99 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, key, dec) in [
        ("Raw client", "raw_ms", ""),
        (
            "Operator, within a step",
            "operator_within_step_ms",
            "operator_within_step_decomposed",
        ),
        (
            "Operator, across steps (via the Deployment)",
            "operator_across_steps_ms",
            "operator_across_steps_decomposed",
        ),
    ] {
        let h = &hops[key];
        let split = if dec.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            let d = &hops[dec];
            (
                format!("{} / {}", d["react_ms"]["p50"], d["react_ms"]["p99"]),
                format!("{} / {}", d["create_ms"]["p50"], d["create_ms"]["p99"]),
            )
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} |",
            h["n"], h["p50"], h["p90"], h["p99"], h["max"], split.0, split.1
        );
    }
    let _ = writeln!(
        md,
        "\nAPI server's mean latency of `POST jobs`: raw run {}, operator run {}. Read requests that \
         differ between the runs by 5 or more: `{}`. Load average at the end of each run: `{}`.\n",
        tp["server_latency_post_jobs"]["raw_run"],
        tp["server_latency_post_jobs"]["operator_run"],
        tp["reads"],
        tp["load_average"]
    );
    let _ = writeln!(md, "### API writes (throughput run)\n");
    let aw = &tp["api_writes"];
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
        aw["all_writes_operator_run"],
        aw["all_writes_per_job_operator_run"],
        aw["all_writes_raw_run"],
        aw["all_writes_per_job_raw_run"],
        aw["operator_writes"],
        aw["operator_writes_per_attempt"],
        aw["namespace_local_per_attempt"],
        aw["namespace_local_counts"],
        aw["foreign_writes"]
    );
    let _ = writeln!(
        md,
        "| Write | Operator run | Raw run | Operator's | Per attempt | Server mean ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    if let Some(rows) = aw["rows"].as_array() {
        for w in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                w["write"].as_str().unwrap_or("?"),
                w["operator_run"],
                w["raw_run"],
                w["operator_attributed"],
                w["operator_per_attempt"],
                if w["server_mean_ms_operator_run"].is_null() {
                    "-".to_string()
                } else {
                    w["server_mean_ms_operator_run"].to_string()
                }
            );
        }
    }
    let _ = writeln!(md, "\n### Footprint (throughput run)\n");
    let fp = &tp["footprint"];
    let _ = writeln!(
        md,
        "Peak RSS {} MiB, RSS at end {} MiB, {} threads, CPU {} s. RSS curve (s since ready, MiB): `{}`.\n\
         For comparison, the hand-off phase's operator: `{}`.",
        fp["peak_rss_mib"],
        fp["rss_at_end_mib"],
        fp["threads"],
        fp["cpu_seconds"],
        fp["rss_curve_s_mib"],
        r["handoff"]["operator_footprint"]
    );
    md
}

fn compact_reconcile(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return "n/a".into();
    };
    let mut parts = Vec::new();
    for (k, h) in obj {
        if k.starts_with("time_ms") {
            parts.push(format!(
                "{k}: n={} mean={}ms p50<={}ms p99<={}ms",
                h["count"], h["mean"], h["p50_bucket_le"], h["p99_bucket_le"]
            ));
        }
    }
    if let Some(c) = obj.get("counters").and_then(|c| c.as_object()) {
        for (k, n) in c {
            parts.push(format!("{k}={n}"));
        }
    }
    parts.join("; ")
}

fn existing_notes(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match (text.find(NOTES_BEGIN), text.find(NOTES_END)) {
        (Some(a), Some(b)) if b > a => text[a + NOTES_BEGIN.len()..b].trim().to_string(),
        _ => "## Notes\n\n(No notes yet.)".into(),
    }
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

async fn run_phases(s: &Settings, client: &Client, mut results: Value) -> Value {
    if s.wants("retry") {
        let r = phase_retry(s, client).await;
        results["retry_delay_error_p99_ms"] = r["watch_error_ms"]["p99"].clone();
        results["retry"] = r;
    }
    if s.wants("handoff") {
        let r = phase_handoff(s, client).await;
        results["handoff_p99_ms"] = r["operator_ms"]["p99"].clone();
        results["handoff_raw_p99_ms"] = r["raw_ms"]["p99"].clone();
        results["handoff"] = r;
    }
    if s.wants("throughput") {
        let r = phase_throughput(s, client).await;
        results["throughput_ratio"] = r["throughput_ratio"].clone();
        results["writes_per_attempt"] = r["api_writes"]["operator_writes_per_attempt"].clone();
        results["peak_rss_mib"] = r["footprint"]["peak_rss_mib"].clone();
        results["cpu_seconds"] = r["operator_cpu_s"].clone();
        results["throughput"] = r;
    }
    results
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let s = Settings::load();
    if std::env::args().any(|a| a == "--render-only") {
        // Rewrites BENCHMARKS.md from bench/results.json (after editing the notes).
        let results: Value = std::fs::read_to_string(s.out_dir.join("bench/results.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .expect("bench/results.json");
        let md_path = s.out_dir.join("BENCHMARKS.md");
        let md = render(&results, &existing_notes(&md_path));
        std::fs::write(&md_path, md).expect("write BENCHMARKS.md");
        return;
    }
    let client = connect(&s.kubeconfig).await;
    let version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_default();
    install_crds(&client).await;
    log(format!(
        "phases {:?}, operator {}, Kubernetes {version}",
        s.phases,
        s.bin.display()
    ));

    let results_path = s.out_dir.join("bench/results.json");
    let results: Value = std::fs::read_to_string(&results_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));

    let phase_started = Instant::now();
    // On Ctrl-C or SIGTERM the running phase is dropped, which kills its
    // operator process; namespaces left behind are removed by scripts/bench.sh.
    let interrupted = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let results = tokio::select! {
        r = run_phases(&s, &client, results) => r,
        _ = interrupted => {
            log("interrupted: operator stopped; nothing written");
            std::process::exit(130);
        }
    };
    let mut results = results;
    results["machine"] = machine();
    results["date"] = json!(
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    );
    results["kubernetes"] = json!(version);
    results["revision"] = json!(git_revision(&s.root));
    if !s.operator_prefix.is_empty() || !s.operator_env.is_empty() {
        results["operator_profiled_with"] = json!(format!(
            "{} {:?}",
            s.operator_prefix.join(" "),
            s.operator_env
        ));
    }
    results["last_run"] = json!({
        "phases": s.phases,
        "seconds": round1(phase_started.elapsed().as_secs_f64()),
    });

    std::fs::create_dir_all(s.out_dir.join("bench")).expect("bench/");
    std::fs::write(
        &results_path,
        serde_json::to_string_pretty(&results).expect("json") + "\n",
    )
    .expect("write bench/results.json");
    let md_path = s.out_dir.join("BENCHMARKS.md");
    let md = render(&results, &existing_notes(&md_path));
    std::fs::write(&md_path, md).expect("write BENCHMARKS.md");
    log(format!(
        "wrote {} and {} in {:.0} s",
        results_path.display(),
        md_path.display(),
        phase_started.elapsed().as_secs_f64()
    ));
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "retry_delay_error_p99_ms": results["retry_delay_error_p99_ms"],
            "handoff_p99_ms": results["handoff_p99_ms"],
            "handoff_raw_p99_ms": results["handoff_raw_p99_ms"],
            "throughput_ratio": results["throughput_ratio"],
            "writes_per_attempt": results["writes_per_attempt"],
            "peak_rss_mib": results["peak_rss_mib"],
        }))
        .unwrap_or_default()
    );
}
