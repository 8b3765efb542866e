//! The `stepwise` command line: `controller`, `crds`, `version`, `probe`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;

use crate::controller::{self, Settings};
use crate::leader::Election;
use crate::telemetry::{self, Health, Metrics};
use crate::{Error, Result};

#[derive(Parser, Debug)]
#[command(
    name = "stepwise",
    version,
    about = "Runs releases as ordered steps of Jobs, with step retries and guided failure"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Deployment and Step controllers (kubeconfig from KUBECONFIG, else in-cluster).
    Controller(ControllerArgs),
    /// Print the CRDs as YAML (what crds/ holds).
    Crds,
    /// Print the version.
    Version,
    /// GET a probe path of a running controller; exit 0 on a 2xx answer (an
    /// exec probe, where the kernel chose the controller's ports).
    Probe(ProbeArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// The controller's probe address, e.g. 127.0.0.1:8081.
    #[arg(
        long,
        conflicts_with = "address_file",
        required_unless_present = "address_file"
    )]
    pub address: Option<SocketAddr>,
    /// A file holding that address: `<dir>/probes.addr` of the controller's
    /// --bound-addresses-dir.
    #[arg(long)]
    pub address_file: Option<PathBuf>,
    /// The path to GET: /readyz or /healthz.
    #[arg(default_value = "/readyz")]
    pub path: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Watch only this namespace (needs only a Role there); all namespaces when unset.
    #[arg(long, env = "STEPWISE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Elect a leader through a Lease so that only one replica acts.
    #[arg(long, default_value_t = false)]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: the pod's namespace, else `default`).
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "stepwise")]
    pub leader_election_id: String,
    /// How long a leader's lease lasts without renewal (e.g. 15s, 1m).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Where /metrics is served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_bind_address: SocketAddr,
    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_probe_bind_address: SocketAddr,
    /// Write the bound addresses to <dir>/metrics.addr and <dir>/probes.addr
    /// (port 0 in a bind address: the port the kernel chose), for
    /// `stepwise probe --address-file`.
    #[arg(long)]
    pub bound_addresses_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "STEPWISE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Reconciles in flight per controller.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Run only the releases labelled stepwise.dev/shard=NAME (and their
    /// Steps and Jobs); without it, only the releases without that label.
    #[arg(long, value_name = "NAME", env = "STEPWISE_SHARD", value_parser = parse_shard)]
    pub shard: Option<String>,
}

/// A shard is a label value: 1 to 63 characters, alphanumeric at both ends,
/// `-`, `_` or `.` between.
fn parse_shard(s: &str) -> std::result::Result<String, String> {
    let inner_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if s.len() <= 63 && inner_ok && ends_ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a label value (1-63 characters: letters, digits, '-', '_', '.', alphanumeric at both ends)"
        ))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d: kube::core::Duration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 15s: {e}"))?;
    let d: Duration = d.into();
    if d < Duration::from_secs(2) {
        return Err("the lease duration must be at least 2s".into());
    }
    Ok(d)
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Crds => {
            print!("{}", crate::crd::yaml()?);
            Ok(())
        }
        Command::Version => {
            println!("stepwise {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Controller(args) => run_controller(args).await,
        Command::Probe(args) => {
            let answer = telemetry::probe(args.address, args.address_file.as_deref(), &args.path)?;
            println!("{answer}");
            Ok(())
        }
    }
}

async fn run_controller(args: ControllerArgs) -> Result<()> {
    telemetry::init_tracing(args.log_format == LogFormat::Json);
    let shutdown = Shutdown::listen()?;
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let server = telemetry::serve(
        args.metrics_bind_address,
        args.health_probe_bind_address,
        args.bound_addresses_dir.clone(),
        metrics.clone(),
        health.clone(),
    );
    let instance = std::env::var("POD_NAME").ok().or_else(hostname);
    let settings = Settings {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        shard: args.shard.clone(),
        instance: instance.clone(),
    };

    let run = || {
        controller::run(
            client.clone(),
            settings,
            metrics.clone(),
            health.clone(),
            shutdown.signalled(),
        )
    };
    let work = async {
        if !args.leader_elect {
            metrics.leader.set(1);
            return run().await;
        }
        let election = Election {
            client: client.clone(),
            lease: args.leader_election_id.clone(),
            namespace: args
                .leader_election_namespace
                .clone()
                .or_else(pod_namespace)
                .unwrap_or_else(|| "default".into()),
            identity: format!(
                "{}-{}",
                instance.unwrap_or_else(|| "stepwise".into()),
                std::process::id()
            ),
            duration: args.lease_duration,
        };
        // A standby replica is ready once it could take over: the CRDs are served.
        controller::check_crds(&client, args.namespace.as_deref()).await?;
        health.set_ready(true);
        let result = election
            .lead(
                || async {
                    metrics.leader.set(1);
                    run().await
                },
                || shutdown.signalled(),
            )
            .await;
        metrics.leader.set(0);
        result
    };
    tokio::select! {
        r = work => r,
        r = server => r,
    }
}

fn pod_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// SIGTERM or Ctrl-C, listened for from the start of the process and kept:
/// a signal that arrives while nothing waits (between the standby's wait and
/// the controllers', say) still stops the operator, where a listener created
/// later would never see it.
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn listen() -> Result<Shutdown> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::Config(format!("listening for SIGTERM: {e}")))?;
        tokio::spawn(async move {
            #[cfg(unix)]
            let term = term.recv();
            #[cfg(not(unix))]
            let term = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term => {},
            }
            let _ = tx.send(true);
        });
        Ok(Shutdown(rx))
    }

    /// Resolves once a signal came, before or after the call.
    fn signalled(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_kubebuilder_defaults() {
        let cli = Cli::parse_from(["stepwise", "controller"]);
        let Command::Controller(a) = cli.command else {
            panic!()
        };
        assert!(!a.leader_elect);
        assert_eq!(a.leader_election_id, "stepwise");
        assert_eq!(a.lease_duration, Duration::from_secs(15));
        assert_eq!(a.metrics_bind_address.to_string(), "0.0.0.0:8080");
        assert_eq!(a.health_probe_bind_address.to_string(), "0.0.0.0:8081");
    }

    #[test]
    fn a_shard_must_be_a_label_value() {
        let cli = Cli::parse_from(["stepwise", "controller", "--shard", "eu-1"]);
        let Command::Controller(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.shard.as_deref(), Some("eu-1"));
        for bad in ["", "-a", "a b", "a/b"] {
            assert!(Cli::try_parse_from(["stepwise", "controller", "--shard", bad]).is_err());
        }
    }

    #[test]
    fn bad_lease_duration_is_refused() {
        assert!(Cli::try_parse_from(["stepwise", "controller", "--lease-duration", "1s"]).is_err());
        assert!(
            Cli::try_parse_from(["stepwise", "controller", "--lease-duration", "soon"]).is_err()
        );
        let cli = Cli::parse_from(["stepwise", "controller", "--lease-duration", "1m"]);
        let Command::Controller(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.lease_duration, Duration::from_secs(60));
    }
}
