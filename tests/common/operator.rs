//! The operator under test: the real `stepwise` binary, run as a process
//! against the local cluster and scoped to one test namespace, so tests run in
//! parallel without seeing each other's objects.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{TestNamespace, kubeconfig_path, wait_for};

/// Installs (or updates) the CRDs with server-side apply and waits until both are served.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in stepwise::crd::all() {
        let name = crd.metadata.name.clone().expect("crd name");
        api.patch(
            &name,
            &PatchParams::apply("stepwise-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot install CRD {name}: {e}"));
        wait_for(
            &api,
            &name,
            Duration::from_secs(30),
            "the CRD to be established",
            |c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            },
        )
        .await;
    }
}

/// A fresh test namespace, with the CRDs installed.
pub async fn namespace_with_crds(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    ns
}

/// A fresh test namespace with the CRDs and an operator watching it.
pub async fn setup(prefix: &str) -> (TestNamespace, Operator) {
    let ns = namespace_with_crds(prefix).await;
    let op = Operator::start(&ns.name).await;
    (ns, op)
}

/// A running `stepwise controller --namespace <ns>`; killed (SIGKILL) on drop.
pub struct Operator {
    child: Option<Child>,
    namespace: String,
    pub metrics_port: u16,
    pub probe_port: u16,
    pub log: PathBuf,
    extra: Vec<String>,
    starts: u32,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Operator {
    /// Starts the operator for `namespace` and waits until it reports ready.
    pub async fn start(namespace: &str) -> Operator {
        Self::start_with(namespace, &[]).await
    }

    /// A replica electing its leader through a Lease in `namespace`.
    pub async fn start_leader_elected(namespace: &str, lease_duration: &str) -> Operator {
        let args = [
            "--leader-elect",
            "--leader-election-namespace",
            namespace,
            "--lease-duration",
            lease_duration,
        ];
        Self::start_with(namespace, &args).await
    }

    pub async fn start_with(namespace: &str, extra: &[&str]) -> Operator {
        let mut op = Operator {
            child: None,
            namespace: namespace.to_string(),
            metrics_port: free_port(),
            probe_port: free_port(),
            log: PathBuf::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        op.spawn();
        op.wait_ready().await;
        op
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("operator-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        self.log = dir.join(format!(
            "{}-{}-{}.log",
            self.namespace, self.probe_port, self.starts
        ));
        let log = std::fs::File::create(&self.log).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_stepwise"))
            .arg("controller")
            .arg("--namespace")
            .arg(&self.namespace)
            .arg("--metrics-bind-address")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--health-probe-bind-address")
            .arg(format!("127.0.0.1:{}", self.probe_port))
            .args(&self.extra)
            .env("KUBECONFIG", kubeconfig_path())
            .env(
                "RUST_LOG",
                std::env::var("STEPWISE_TEST_LOG").unwrap_or_else(|_| "info,stepwise=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("cannot start the stepwise binary");
        self.child = Some(child);
    }

    pub async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the operator exited ({status}) before it was ready; log:\n{}",
                    self.log_text()
                );
            }
            if http_get(self.probe_port, "/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "the operator did not become ready in 60 s; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: graceful shutdown; waits until the process has exited and returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            loop {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!(
                        "the operator did not stop within 30 s of SIGTERM; log:\n{}",
                        self.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        started.elapsed()
    }

    /// Kill, then start again (same ports) and wait until ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET on loopback: status code and body.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.ok()?;
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
