//! The operator under test: the real `stepwise` binary, run as a process
//! against the local cluster and scoped to one namespace, so tests (and bench
//! phases) run side by side without seeing each other's objects.
//!
//! Only the root crate knows where Cargo put the binary
//! (`env!("CARGO_BIN_EXE_stepwise")`), so callers pass it in a [`Launch`].

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::crds::{install_crds, namespace_with_crds};
pub use crate::probe::{http_get, leader_status, leading, sample};

use crate::client::kubeconfig_path;
use crate::namespace::TestNamespace;

/// How long the operator may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop on drop waits before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What happens to the process when its [`Operator`] is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDrop {
    /// SIGKILL, as in a crash: tests do not wait for a shutdown.
    Kill,
    /// SIGTERM (in-flight reconciles finish), SIGKILL after 10 s.
    Terminate,
}

/// How to start the operator binary.
#[derive(Clone, Debug)]
pub struct Launch {
    pub exe: PathBuf,
    /// Where each start writes its log, `<namespace>-<probe port>-<start>.log`.
    pub log_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub rust_log: String,
    /// A command the binary runs under, in the same process (`valgrind ...`).
    pub wrapper: Vec<String>,
    pub env: Vec<(String, String)>,
    pub on_drop: OnDrop,
}

impl Launch {
    /// The binary at `exe` against the local cluster, logging to `log_dir` at
    /// `$STEPWISE_TEST_LOG` (default `info,stepwise=debug`), killed on drop.
    pub fn new(exe: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> Launch {
        Launch {
            exe: exe.into(),
            log_dir: log_dir.into(),
            kubeconfig: kubeconfig_path(),
            rust_log: std::env::var("STEPWISE_TEST_LOG")
                .unwrap_or_else(|_| "info,stepwise=debug".into()),
            wrapper: Vec::new(),
            env: Vec::new(),
            on_drop: OnDrop::Kill,
        }
    }
}

/// A fresh test namespace with the CRDs and an operator watching it.
pub async fn setup(launch: &Launch, prefix: &str) -> (TestNamespace, Operator) {
    let ns = namespace_with_crds(prefix).await;
    let op = Operator::start(launch, &ns.name).await;
    (ns, op)
}

/// A running `stepwise controller --namespace <ns>`; stopped on drop as its
/// [`Launch`] says.
pub struct Operator {
    child: Option<Child>,
    launch: Launch,
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
    pub async fn start(launch: &Launch, namespace: &str) -> Operator {
        Self::start_with(launch, namespace, &[]).await
    }

    /// A replica electing its leader through a Lease in `namespace`.
    pub async fn start_leader_elected(
        launch: &Launch,
        namespace: &str,
        lease_duration: &str,
    ) -> Operator {
        let args = [
            "--leader-elect",
            "--leader-election-namespace",
            namespace,
            "--lease-duration",
            lease_duration,
        ];
        Self::start_with(launch, namespace, &args).await
    }

    /// Starts it with `extra` arguments after the scoping ones.
    pub async fn start_with(launch: &Launch, namespace: &str, extra: &[&str]) -> Operator {
        assert!(
            launch.exe.exists(),
            "the operator binary {} does not exist (build it: `cargo build --bins`)",
            launch.exe.display()
        );
        let mut op = Operator {
            child: None,
            launch: launch.clone(),
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

    fn command(&self) -> Command {
        let launch = &self.launch;
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&launch.exe);
                c
            }
            None => Command::new(&launch.exe),
        };
        command
            .args(["controller", "--namespace", &self.namespace])
            .arg("--metrics-bind-address")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--health-probe-bind-address")
            .arg(format!("127.0.0.1:{}", self.probe_port))
            .args(&self.extra)
            .env("KUBECONFIG", &launch.kubeconfig)
            .env("RUST_LOG", &launch.rust_log)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    fn spawn(&mut self) {
        self.starts += 1;
        std::fs::create_dir_all(&self.launch.log_dir).expect("log dir");
        self.log = self.launch.log_dir.join(format!(
            "{}-{}-{}.log",
            self.namespace, self.probe_port, self.starts
        ));
        let log = std::fs::File::create(&self.log).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .command()
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.launch.exe.display()));
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
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "the operator did not become ready in {READY_TIMEOUT:?}; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        if !self.stop(Duration::from_secs(30)) {
            panic!(
                "the operator did not stop within 30 s of SIGTERM; log:\n{}",
                self.log_text()
            );
        }
        started.elapsed()
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; whether it stopped in time.
    fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        while started.elapsed() < grace {
            if c.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
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
        match self.launch.on_drop {
            OnDrop::Kill => self.kill(),
            OnDrop::Terminate => {
                self.stop(STOP_GRACE);
            }
        }
    }
}
