//! The bench's settings: environment (`BENCH_*`, `STEPWISE_BIN`,
//! `KUBECONFIG`) and command line (`--phases`, `--releases`, `--render-only`).

use std::path::PathBuf;
use std::time::Duration;

/// Every phase, in the order they run.
pub const PHASES: &str = "retry,handoff,throughput,shards";
/// The peers phase's drivers, in the order they run.
pub const PEERS: &str = "stepwise,tekton,tekton-tuned,argo,argo-1s,argo-tuned";

pub struct Settings {
    pub root: PathBuf,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub phases: Vec<String>,
    pub releases: usize,
    pub handoff_chains: usize,
    pub handoff_actions: usize,
    pub retry_short: usize,
    pub retry_long: usize,
    pub create_concurrency: usize,
    /// The peers phase: drivers and sizes (see phases/peers.rs).
    pub peers: Vec<String>,
    pub peers_two_step: usize,
    pub peers_retry: usize,
    pub peers_releases: usize,
    pub phase_timeout: Duration,
    pub log_dir: PathBuf,
    /// Where bench/results.json and BENCHMARKS.md go (profiling runs write elsewhere).
    pub out_dir: PathBuf,
    /// Profiling only: a command the operator runs under, in the same process
    /// (`valgrind --tool=massif`), and extra environment (`LD_PRELOAD=...`).
    pub operator_prefix: Vec<String>,
    pub operator_env: Vec<(String, String)>,
    pub operator_rust_log: String,
    /// `--render-only`: rewrite BENCHMARKS.md from bench/results.json.
    pub render_only: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_string(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn phase_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

impl Settings {
    pub fn load() -> Settings {
        let mut s = Settings::from_env();
        s.apply_args(std::env::args().skip(1));
        s.releases = s.releases.max(1);
        s
    }

    fn from_env() -> Settings {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let kubeconfig = ["STEPWISE_KUBECONFIG", "KUBECONFIG"]
            .iter()
            .find_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".cluster").join("kubeconfig"));
        Settings {
            bin: std::env::var_os("STEPWISE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/release/stepwise")),
            kubeconfig,
            phases: phase_list(&std::env::var("BENCH_PHASES").unwrap_or_else(|_| PHASES.into())),
            releases: env_or("BENCH_RELEASES", 1000),
            handoff_chains: env_or("BENCH_HANDOFF_CHAINS", 11),
            handoff_actions: env_or("BENCH_HANDOFF_ACTIONS", 20),
            retry_short: env_or("BENCH_RETRY_SHORT", 50),
            retry_long: env_or("BENCH_RETRY_LONG", 10),
            create_concurrency: env_or("BENCH_CREATE_CONCURRENCY", 16),
            peers: phase_list(&std::env::var("BENCH_PEERS").unwrap_or_else(|_| PEERS.into())),
            peers_two_step: env_or("BENCH_PEERS_TWO_STEP", 20),
            peers_retry: env_or("BENCH_PEERS_RETRY", 3),
            peers_releases: env_or("BENCH_PEERS_RELEASES", 300).max(1),
            phase_timeout: Duration::from_secs(env_or("BENCH_PHASE_TIMEOUT_S", 1800)),
            log_dir: root.join("target/bench-logs"),
            out_dir: std::env::var_os("BENCH_OUT_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.clone()),
            operator_prefix: env_string("BENCH_OPERATOR_PREFIX")
                .split_whitespace()
                .map(String::from)
                .collect(),
            operator_env: env_string("BENCH_OPERATOR_ENV")
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            operator_rust_log: std::env::var("BENCH_OPERATOR_RUST_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
            render_only: false,
            root,
        }
    }

    /// `cargo bench` passes `--bench`; everything else is ours.
    fn apply_args(&mut self, mut args: impl Iterator<Item = String>) {
        while let Some(a) = args.next() {
            match a.as_str() {
                "--bench" => {}
                "--render-only" => self.render_only = true,
                "--peers" => self.phases = vec!["peers".into()],
                "--releases" => {
                    if let Some(n) = args.next().and_then(|v| v.parse().ok()) {
                        self.releases = n;
                    }
                }
                "--phases" => {
                    if let Some(v) = args.next() {
                        self.phases = v.split(',').map(|p| p.trim().to_string()).collect();
                    }
                }
                "-h" | "--help" => {
                    println!(
                        "usage: cargo bench --bench bench -- [--releases N] [--phases {PHASES},peers] [--peers] [--render-only]\n\
                         env: BENCH_RELEASES, BENCH_PHASES, BENCH_PHASE_TIMEOUT_S, STEPWISE_BIN, KUBECONFIG,\n\
                         BENCH_PEERS ({PEERS}), BENCH_PEERS_TWO_STEP, BENCH_PEERS_RETRY, BENCH_PEERS_RELEASES"
                    );
                    std::process::exit(0);
                }
                other => eprintln!("[bench] ignoring argument {other:?}"),
            }
        }
    }

    pub fn wants(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }

    pub fn results_path(&self) -> PathBuf {
        self.out_dir.join("bench/results.json")
    }

    pub fn report_path(&self) -> PathBuf {
        self.out_dir.join("BENCHMARKS.md")
    }
}
