//! The operator process of a phase: the test kit's [`Operator`], stopped
//! gracefully, with its RSS sampled every 250 ms while it runs
//! ([`ProcSampler`], also used for the peers' processes).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stepwise_testkit::operator::{Launch, OnDrop, Operator};
use tokio::task::JoinHandle;

use crate::results::Footprint;
use crate::settings::Settings;
use crate::stats::{finite, proc_cpu_seconds, proc_status_kib, round1, round3};

/// (seconds since ready, KiB).
type Samples = Arc<Mutex<Vec<(f64, u64)>>>;

pub struct BenchOperator {
    sampler: ProcSampler,
    /// Dropped after the sampler is stopped: SIGTERM, SIGKILL after 10 s.
    operator: Operator,
}

/// How the bench starts the operator (settings.rs says from where).
pub fn launch(s: &Settings) -> Launch {
    Launch {
        exe: s.bin.clone(),
        log_dir: s.log_dir.clone(),
        kubeconfig: s.kubeconfig.clone(),
        rust_log: s.operator_rust_log.clone(),
        wrapper: s.operator_prefix.clone(),
        env: s.operator_env.clone(),
        on_drop: OnDrop::Terminate,
    }
}

impl BenchOperator {
    /// `stepwise controller --namespace NS`, once it reports ready.
    pub async fn start(s: &Settings, ns: &str) -> BenchOperator {
        BenchOperator::start_with(s, ns, &[]).await
    }

    /// The same, with `extra` arguments (`--shard NAME`).
    pub async fn start_with(s: &Settings, ns: &str, extra: &[&str]) -> BenchOperator {
        let operator = Operator::start_with(&launch(s), ns, extra).await;
        let pid = operator.pid().expect("the operator runs");
        BenchOperator {
            sampler: ProcSampler::start(pid),
            operator,
        }
    }

    pub async fn metrics(&self) -> String {
        self.operator.metrics().await
    }

    pub fn log_path(&self) -> String {
        self.operator.log.display().to_string()
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.sampler.cpu_seconds()
    }

    /// Peak RSS, CPU seconds and the RSS curve, read before the process ends.
    pub fn footprint(&self) -> Footprint {
        self.sampler.footprint()
    }
}

/// Samples a process's RSS every 250 ms from /proc until dropped.
pub struct ProcSampler {
    task: JoinHandle<()>,
    samples: Samples,
    pid: u32,
}

impl ProcSampler {
    pub fn start(pid: u32) -> ProcSampler {
        let samples: Samples = Arc::default();
        let into = samples.clone();
        let t0 = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                if let Some(kib) = proc_status_kib(pid, "VmRSS")
                    && let Ok(mut v) = into.lock()
                {
                    v.push((t0.elapsed().as_secs_f64(), kib));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        ProcSampler { task, samples, pid }
    }

    /// utime + stime so far.
    pub fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }

    /// Peak RSS (VmHWM), CPU seconds and the RSS curve, read before the process ends.
    pub fn footprint(&self) -> Footprint {
        let hwm = proc_status_kib(self.pid, "VmHWM").unwrap_or(0);
        let rss = proc_status_kib(self.pid, "VmRSS").unwrap_or(0);
        let samples = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        // Ten points of the curve are enough to see its shape.
        let step = (samples.len() / 10).max(1);
        let curve = samples
            .iter()
            .step_by(step)
            .map(|(t, kib)| [round1(*t), round1(*kib as f64 / 1024.0)])
            .collect();
        Footprint {
            peak_rss_mib: round1(hwm as f64 / 1024.0),
            rss_at_end_mib: round1(rss as f64 / 1024.0),
            cpu_seconds: finite(round3(self.cpu_seconds())),
            threads: proc_status_kib(self.pid, "Threads"),
            rss_curve_s_mib: curve,
        }
    }
}

impl Drop for ProcSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
