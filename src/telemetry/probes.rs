//! The HTTP endpoints `/metrics`, `/healthz` and `/readyz`, and
//! `stepwise probe`, the client exec probes use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

use super::Metrics;
use crate::{Error, Result};

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
}
