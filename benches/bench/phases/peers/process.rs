//! The controller under test for one driver: Stepwise's operator (the
//! bench's [`BenchOperator`]) or a peer started by `scripts/peers.sh run`
//! (which execs the controller, so its pid is the controller's), both with
//! their RSS sampled from /proc.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::driver::Driver;
use crate::operator::{BenchOperator, ProcSampler};
use crate::results::Footprint;
use crate::settings::Settings;
use crate::stats::log;

pub enum Controller {
    Stepwise(Box<BenchOperator>),
    Peer {
        sampler: ProcSampler,
        child: Child,
        log: String,
    },
}

fn peers_sh(root: &Path, args: &[&str], kubeconfig: &Path) -> Command {
    let mut c = Command::new(root.join("scripts/peers.sh"));
    c.args(args).env("STEPWISE_KUBECONFIG", kubeconfig);
    c
}

impl Controller {
    /// Installs what the driver needs into `ns` and starts its controller.
    pub async fn start(s: &Settings, d: Driver, ns: &str) -> Controller {
        if d == Driver::Stepwise {
            return Controller::Stepwise(Box::new(BenchOperator::start(s, ns).await));
        }
        let status = peers_sh(&s.root, &["setup", d.key(), ns], &s.kubeconfig)
            .status()
            .expect("run scripts/peers.sh setup");
        assert!(
            status.success(),
            "scripts/peers.sh setup {} failed",
            d.key()
        );
        std::fs::create_dir_all(&s.log_dir).expect("log dir");
        let log_path = s.log_dir.join(format!("peer-{}-{ns}.log", d.key()));
        let out = File::create(&log_path).expect("peer log");
        let err = out.try_clone().expect("peer log");
        let child = peers_sh(&s.root, &["run", d.key(), ns], &s.kubeconfig)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the peer");
        log(format!(
            "peers: {} started (pid {}), log {}",
            d.key(),
            child.id(),
            log_path.display()
        ));
        // Informers list and sync before anything is created.
        tokio::time::sleep(Duration::from_secs(5)).await;
        Controller::Peer {
            sampler: ProcSampler::start(child.id()),
            child,
            log: log_path.display().to_string(),
        }
    }

    pub fn cpu_seconds(&self) -> f64 {
        match self {
            Controller::Stepwise(op) => op.cpu_seconds(),
            Controller::Peer { sampler, .. } => sampler.cpu_seconds(),
        }
    }

    pub fn footprint(&self) -> Footprint {
        match self {
            Controller::Stepwise(op) => op.footprint(),
            Controller::Peer { sampler, .. } => sampler.footprint(),
        }
    }

    pub fn log_path(&self) -> String {
        match self {
            Controller::Stepwise(op) => op.log_path(),
            Controller::Peer { log, .. } => log.clone(),
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Controller::Peer { child, .. } = self {
            // Nothing of the peer's state needs a graceful stop: the
            // namespace is deleted next.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
