//! The operator's HTTP endpoints on loopback: probes and the metrics page.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.0 GET on loopback: status code and body; None when the
/// port does not answer (connect within 5 s, whole answer within 10 s).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
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

/// 1.0 while the operator serving metrics on `port` holds the Lease, else 0.0.
pub async fn leader_status(port: u16) -> f64 {
    let page = http_get(port, "/metrics")
        .await
        .map(|x| x.1)
        .unwrap_or_default();
    sample(&page, "leader_election_master_status")
}

/// Ok once the operator serving metrics on `port` leads; for `wait_until`.
pub async fn leading(port: u16) -> Result<(), String> {
    if leader_status(port).await == 1.0 {
        Ok(())
    } else {
        Err(format!("the operator on :{port} does not lead"))
    }
}

/// Reads one sample (`name{labels} value`) from a metrics page.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
