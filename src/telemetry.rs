//! Logs, metrics and probes: tracing setup, the Prometheus registry, and the
//! HTTP endpoints `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;
use tracing_subscriber::{EnvFilter, prelude::*};

use crate::api::{Decision, Phase};
use crate::{Error, Result};

/// Text logs for people, JSON for log pipelines. `RUST_LOG` filters (default `info`).
pub fn init_tracing(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .init();
    } else {
        // Colours only for a person at a terminal, not in log files.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .init();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: DecisionValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DecisionValue {
    retry,
    ignore,
    abort,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

/// The controllers' names in the reconcile metrics.
pub const CONTROLLERS: [&str; 2] = ["step", "deployment"];
/// The results a reconcile is counted under.
const RESULTS: [&str; 3] = ["success", "error", "requeue_after"];

/// Every metric the operator exports. Names of the reconcile metrics follow
/// controller-runtime, so existing dashboards work.
pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabel, Counter>,
    pub reconcile_time: Family<ControllerLabel, Histogram>,
    pub attempts: Family<ResultLabel, Counter>,
    pub retries_scheduled: Counter,
    pub guided_failures: Counter,
    pub decisions: Family<DecisionLabel, Counter>,
    pub retry_delay_error: Histogram,
    pub deployments: Family<PhaseLabel, Gauge>,
    pub leader: Gauge,
    phases: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Reconciliations per controller and result (success, error, requeue_after)",
            reconcile_total.clone(),
        );
        let reconcile_errors = Family::<ControllerLabel, Counter>::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Reconciliations that returned an error",
            reconcile_errors.clone(),
        );
        let reconcile_time = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Time spent in one reconciliation",
            reconcile_time.clone(),
        );
        let attempts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "stepwise_action_attempts",
            "Action attempts by result (started, succeeded, failed)",
            attempts.clone(),
        );
        let retries_scheduled = Counter::default();
        registry.register(
            "stepwise_retries_scheduled",
            "Retries scheduled after a failed attempt",
            retries_scheduled.clone(),
        );
        let guided_failures = Counter::default();
        registry.register(
            "stepwise_guided_failures",
            "Steps that ran out of retries and now wait for a decision",
            guided_failures.clone(),
        );
        let decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "stepwise_decisions",
            "Guided-failure decisions applied",
            decisions.clone(),
        );
        let retry_delay_error =
            Histogram::new([-0.1, 0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0]);
        registry.register(
            "stepwise_retry_delay_error_seconds",
            "Observed minus configured wait before a retry's Job was created",
            retry_delay_error.clone(),
        );
        let deployments = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "stepwise_deployments",
            "Deployments by phase, as last reconciled",
            deployments.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader_election_master_status",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        // As controller-runtime does: the series exist at 0 from the start, so
        // `rate()` alerts on errors work before the first one happens.
        for controller in CONTROLLERS {
            drop(reconcile_errors.get_or_create(&ControllerLabel { controller }));
            for result in RESULTS {
                drop(reconcile_total.get_or_create(&ReconcileLabels { controller, result }));
            }
        }
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            attempts,
            retries_scheduled,
            guided_failures,
            decisions,
            retry_delay_error,
            deployments,
            leader,
            phases: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &'static str, result: &'static str, took: Duration) {
        self.reconcile_total
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        if result == "error" {
            self.reconcile_errors
                .get_or_create(&ControllerLabel { controller })
                .inc();
        }
        self.reconcile_time
            .get_or_create(&ControllerLabel { controller })
            .observe(took.as_secs_f64());
    }

    pub fn decision(&self, d: Decision) {
        let decision = match d {
            Decision::Retry => DecisionValue::retry,
            Decision::Ignore => DecisionValue::ignore,
            Decision::Abort => DecisionValue::abort,
        };
        self.decisions
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    pub fn attempt(&self, result: &'static str) {
        self.attempts.get_or_create(&ResultLabel { result }).inc();
    }

    /// Records a deployment's phase (None: deleted) and refreshes the gauge.
    pub fn deployment_phase(&self, key: String, phase: Option<Phase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        match phase {
            Some(p) => phases.insert(key, p),
            None => phases.remove(&key),
        };
        let mut counts: HashMap<Phase, i64> = HashMap::new();
        for p in phases.values() {
            *counts.entry(*p).or_default() += 1;
        }
        for p in [
            Phase::Pending,
            Phase::Queued,
            Phase::Running,
            Phase::Retrying,
            Phase::WaitingForDecision,
            Phase::WaitingForApproval,
            Phase::Succeeded,
            Phase::Failed,
        ] {
            self.deployments
                .get_or_create(&PhaseLabel { phase: p.as_str() })
                .set(counts.get(&p).copied().unwrap_or(0));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// Caches synced and the CRDs served.
    pub ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Serves `/metrics` on one address and the probes on another (they may be
/// equal). With `address_dir`, writes each address as bound (a port 0 is
/// replaced by the one the kernel chose) to `<dir>/metrics.addr` and
/// `<dir>/probes.addr`, for `stepwise probe --address-file` (exec probes);
/// files left by an earlier run are removed before binding.
pub async fn serve(
    metrics_addr: SocketAddr,
    probe_addr: SocketAddr,
    address_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<()> {
    let metrics_app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics);
    let probe_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(health);
    let dir = address_dir.as_deref();
    if let Some(dir) = dir {
        for name in ["metrics", "probes"] {
            match std::fs::remove_file(dir.join(format!("{name}.addr"))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Serve {
                        what: "probes",
                        address: dir.display().to_string(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
    }
    if metrics_addr == probe_addr {
        return serve_one(
            metrics_addr,
            "metrics and probes",
            &["metrics", "probes"],
            dir,
            metrics_app.merge(probe_app),
        )
        .await;
    }
    tokio::try_join!(
        serve_one(metrics_addr, "metrics", &["metrics"], dir, metrics_app),
        serve_one(probe_addr, "probes", &["probes"], dir, probe_app),
    )?;
    Ok(())
}

async fn serve_one(
    address: SocketAddr,
    what: &'static str,
    names: &[&str],
    dir: Option<&Path>,
    app: Router,
) -> Result<()> {
    let failed = |source| Error::Serve {
        what,
        address: address.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    if let Some(dir) = dir {
        for name in names {
            // Written whole, then renamed: a probe never reads half an address.
            let path = dir.join(format!("{name}.addr"));
            let tmp = dir.join(format!(".{name}.addr.tmp"));
            std::fs::write(&tmp, format!("{bound}\n"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(failed)?;
        }
    }
    tracing::info!(address = %bound, "serving {what}");
    axum::serve(listener, app).await.map_err(failed)
}

/// `stepwise probe`: GETs `path` from the address (or the address read from
/// `address_file`); succeeds on a 2xx answer. For exec probes of a replica
/// whose ports the kernel chose (`--bound-addresses-dir`).
pub fn probe(
    address: Option<SocketAddr>,
    address_file: Option<&Path>,
    path: &str,
) -> Result<String> {
    use std::io::{Read, Write};
    let address = match (address, address_file) {
        (Some(a), _) => a,
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::Probe(format!("cannot read {}: {e}", f.display())))?;
            text.trim().parse().map_err(|e| {
                Error::Probe(format!(
                    "{} holds no address ({:?}): {e}",
                    f.display(),
                    text.trim()
                ))
            })?
        }
        (None, None) => return Err(Error::Probe("give --address or --address-file".into())),
    };
    let timeout = Duration::from_secs(2);
    let io = |e: std::io::Error| Error::Probe(format!("GET http://{address}{path}: {e}"));
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::Probe(format!("GET http://{address}{path}: no HTTP answer")))?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    if (200..300).contains(&status) {
        Ok(format!("{status} {body}"))
    } else {
        Err(Error::Probe(format!(
            "GET http://{address}{path}: {status} {body}"
        )))
    }
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn ready_handler(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_controller_runtime_names() {
        let m = Metrics::default();
        m.reconciled("step", "success", Duration::from_millis(3));
        m.attempt("started");
        m.decision(Decision::Retry);
        m.deployment_phase("ns/a".into(), Some(Phase::Running));
        let text = m.encode();
        for name in [
            "controller_runtime_reconcile_total{controller=\"step\",result=\"success\"} 1",
            "controller_runtime_reconcile_time_seconds_bucket",
            "stepwise_action_attempts_total{result=\"started\"} 1",
            "stepwise_decisions_total{decision=\"retry\"} 1",
            "stepwise_deployments{phase=\"Running\"} 1",
            "leader_election_master_status 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    /// Two servers on port 0 write the ports the kernel chose; `probe`
    /// reads them and tells ready from not ready.
    #[tokio::test]
    async fn port_zero_addresses_are_written_and_probed() {
        let dir = std::env::temp_dir().join(format!("stepwise-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("probes.addr"), "127.0.0.1:1\n").unwrap(); // stale
        let health = Arc::new(Health::default());
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let metrics_any: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let server = tokio::spawn(serve(
            metrics_any,
            any,
            Some(dir.clone()),
            Arc::new(Metrics::default()),
            health.clone(),
        ));
        let file = dir.join("probes.addr");
        let mut written = None;
        for _ in 0..100 {
            // The server task has not run before the first await.
            if let Ok(a) = std::fs::read_to_string(&file)
                && a.trim() != "127.0.0.1:1"
            {
                written = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let written = written.expect("probes.addr replaced by the bound address");
        assert!(written.starts_with("127.0.0.1:"), "{written}");
        let f = file.clone();
        let not_ready = tokio::task::spawn_blocking(move || probe(None, Some(&f), "/readyz"))
            .await
            .unwrap();
        assert!(
            matches!(&not_ready, Err(Error::Probe(m)) if m.contains("503")),
            "{not_ready:?}"
        );
        health.set_ready(true);
        let f = file.clone();
        let ready = tokio::task::spawn_blocking(move || probe(None, Some(&f), "/readyz"))
            .await
            .unwrap();
        assert_eq!(ready.unwrap(), "200 ready");
        let m = dir.join("metrics.addr");
        let metrics = tokio::task::spawn_blocking(move || probe(None, Some(&m), "/metrics"))
            .await
            .unwrap();
        assert!(metrics.unwrap().contains("leader_election_master_status"));
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_counters_exist_at_zero_before_any_error() {
        let text = Metrics::default().encode();
        for controller in CONTROLLERS {
            let errors = format!(
                "controller_runtime_reconcile_errors_total{{controller=\"{controller}\"}} 0"
            );
            assert!(text.contains(&errors), "missing {errors} in\n{text}");
            for result in RESULTS {
                let total = format!(
                    "controller_runtime_reconcile_total{{controller=\"{controller}\",result=\"{result}\"}} 0"
                );
                assert!(text.contains(&total), "missing {total} in\n{text}");
            }
        }
    }
}
