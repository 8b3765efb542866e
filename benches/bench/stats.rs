//! Small helpers: time, statistics, /proc, the machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::results::{Machine, Summary};

/// Local wall-clock time in ms since the epoch (comparable with the API
/// server's timestamps on this one machine).
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

pub fn log(msg: impl std::fmt::Display) {
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

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `x` if it is a number (JSON has no NaN).
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// n, min, p50, p90, p99, max, mean of a sample.
pub fn summary(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let (Some(&min), Some(&max)) = (v.first(), v.last()) else {
        return Summary::default();
    };
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let at = |q| Some(round1(quantile(&v, q)));
    Summary {
        n: v.len(),
        min: Some(round1(min)),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: Some(round1(max)),
        mean: Some(round1(mean)),
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Vec<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect()
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
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime of a process, in seconds.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
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
pub fn cluster_pids(kubeconfig: &Path) -> BTreeMap<String, u32> {
    let dir = kubeconfig
        .parent()
        .map(|p| p.join("pids"))
        .unwrap_or_default();
    let components = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ];
    components
        .iter()
        .filter_map(|c| {
            let pid = std::fs::read_to_string(dir.join(format!("{c}.pid"))).ok()?;
            Some((c.to_string(), pid.trim().parse().ok()?))
        })
        .collect()
}

pub fn cluster_cpu(pids: &BTreeMap<String, u32>) -> BTreeMap<String, f64> {
    pids.iter()
        .filter_map(|(c, pid)| Some((c.clone(), proc_cpu_seconds(*pid)?)))
        .collect()
}

pub fn cpu_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(c, a)| Some((c.clone(), round1(a - before.get(c)?))))
        .collect()
}

pub fn machine() -> Machine {
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
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory_mib: mem_kib / 1024,
        cpu_model: model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The short revision, `+dirty-src` when `src/` has uncommitted changes.
pub fn git_revision(root: &Path) -> String {
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
pub async fn poll_until<F, Fut>(timeout: Duration, every: Duration, mut check: F) -> bool
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
