//! `scripts/cluster.sh up` itself, under conditions that once made it hang
//! (issue 11): both cores busy and a launcher slow to exec its program. A
//! second, throwaway cluster is started beside the one the other tests use
//! (`STEPWISE_CLUSTER_STATE`), invoked by a relative path as `make` does,
//! and must come up, answer, and leave nothing running after `down`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Far above a healthy start under load (~30 s here): only a hang reaches it.
const UP_LIMIT: Duration = Duration::from_secs(420);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Busy loops on every core, stopped when dropped.
struct CpuHog(Vec<Child>);

impl CpuHog {
    fn on_every_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hogs = (0..cores)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("start a CPU hog")
            })
            .collect();
        Self(hogs)
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// The second cluster's state directory; `down` runs when dropped, so a
/// failing test leaves no control plane behind.
struct ScratchCluster {
    state: PathBuf,
}

impl ScratchCluster {
    fn new() -> Self {
        let state = root()
            .join("target")
            .join(format!("cluster-start-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        Self { state }
    }

    fn script(&self, verb: &str) -> Command {
        let mut cmd = Command::new("bash");
        // Relative, as `make cluster` and `make demo` call it.
        cmd.arg("scripts/cluster.sh")
            .arg(verb)
            .current_dir(root())
            .env("STEPWISE_CLUSTER_STATE", &self.state)
            // One real node per machine (the kubelet's device-plugin socket
            // is a fixed path): the main cluster has it.
            .env("STEPWISE_REAL_NODE", "0")
            .stdin(Stdio::null());
        cmd
    }

    fn pids(&self) -> Vec<(String, u32)> {
        let dir = self.state.join("pids");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let name = name.strip_suffix(".pid")?.to_string();
                let pid = std::fs::read_to_string(e.path())
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                Some((name, pid))
            })
            .collect()
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let _ = self.script("down").output();
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        !matches!(state, Some(Some('Z' | 'X')))
    })
}

/// Runs `cmd` to its end, or kills it and fails the test after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration, what: &str, logs: &Path) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let started = Instant::now();
    loop {
        if child.try_wait().expect("poll child").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{what} hung: no end after {limit:?}\nstdout:\n{}\nstderr:\n{}\nlogs in {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                logs.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops `component` and starts it again with the same command line in a
/// session of its own, recording only its pid (no start time).
fn restart_by_hand(cluster: &ScratchCluster, component: &str) {
    let pid_file = cluster.state.join("pids").join(format!("{component}.pid"));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .expect("cmdline")
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let started = Instant::now();
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{component} did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It outlives this function, like the rest of the cluster: `down` stops it.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("setsid")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart");
    std::fs::write(&pid_file, format!("{}\n", child.id())).expect("pid file");
}

fn need_tools() {
    for tool in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kwok",
        "kubectl",
    ] {
        let path = root().join(".tools/bin").join(tool);
        assert!(
            path.exists(),
            "{} is missing: run `make tools` (make test does) before this test",
            path.display()
        );
    }
}

#[test]
fn the_cluster_comes_up_on_busy_cores_with_a_slow_launcher() {
    need_tools();
    let cluster = ScratchCluster::new();
    let mut up = cluster.script("up");
    // Each launch waits 8 s before it execs its program: longer than the
    // ~5 s the old launcher allowed before judging a component by its
    // command line (which names the checkout only after the exec), so it
    // took a live component for dead and blocked in `wait` on it.
    up.env("STEPWISE_CLUSTER_EXEC_DELAY", "8")
        .env("STEPWISE_CLUSTER_TIMEOUT", "240");
    let out = {
        let _hog = CpuHog::on_every_core();
        run_bounded(up, UP_LIMIT, "scripts/cluster.sh up", &cluster.state)
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("cluster up in"),
        "cluster.sh up failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    let nodes = Command::new(root().join(".tools/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(cluster.state.join("kubeconfig"))
        .args(["get", "nodes", "-o"])
        .arg(r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#)
        .output()
        .expect("kubectl get nodes");
    let nodes = String::from_utf8_lossy(&nodes.stdout);
    for node in ["kwok-node-1=True", "kwok-node-2=True"] {
        assert!(nodes.contains(node), "expected {node} in: {nodes}");
    }
    let status = cluster
        .script("status")
        .output()
        .expect("cluster.sh status");
    assert!(
        status.status.success(),
        "cluster.sh status says the cluster is not up:\n{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // A component restarted by someone else, its pid file rewritten (as
    // tests/outage.rs does): `down` must still know it for ours.
    restart_by_hand(&cluster, "kube-scheduler");

    let pids = cluster.pids();
    assert_eq!(
        pids.len(),
        5,
        "expected five recorded components, got {pids:?}"
    );
    let down = run_bounded(
        cluster.script("down"),
        Duration::from_secs(120),
        "scripts/cluster.sh down",
        &cluster.state,
    );
    assert!(down.status.success(), "cluster.sh down failed: {down:?}");
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) still runs after down");
    }
    assert!(
        !cluster.state.exists(),
        "down left {}",
        cluster.state.display()
    );
}
