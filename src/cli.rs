//! The `stepwise` command line: `controller`, `crds`, `version`, `probe`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};

use crate::controller::{self, Settings};
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
        instance: instance.clone(),
    };

    let work = async {
        if !args.leader_elect {
            metrics.leader.set(1);
            return controller::run(
                client,
                settings,
                metrics.clone(),
                health.clone(),
                shutdown_signal(),
            )
            .await;
        }
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(pod_namespace)
            .unwrap_or_else(|| "default".into());
        let identity = format!(
            "{}-{}",
            instance.unwrap_or_else(|| "stepwise".into()),
            std::process::id()
        );
        let secs = args.lease_duration.as_secs().max(2);
        let build = || {
            LeaseManagerBuilder::new(client.clone(), &args.leader_election_id)
                .with_namespace(&namespace)
                .with_parameters(LeaseParams::new(identity.clone(), secs, (secs / 3).max(1)))
                .build()
        };
        let manager = build().await.map_err(|e| Error::Lease(e.to_string()))?;
        // A standby replica is ready once it could take over: the CRDs are served.
        controller::check_crds(&client, args.namespace.as_deref()).await?;
        health.set_ready(true);
        let (mut leading, mut lease_task) = manager.watch().await;
        tracing::info!(lease = %args.leader_election_id, %namespace, %identity, "waiting to become leader");
        // kube-lease-manager's standby sleeps until the lease it saw expires:
        // a lease that a leader released when it stopped cleanly would wait
        // for up to a whole lease duration (and a replica started meanwhile
        // would take it first). So the standby also reads the Lease every
        // 2 s (client-go's retry period) and, once it sees it released,
        // starts a new manager, which takes an orphaned lease at once.
        let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
        loop {
            let outcome = tokio::select! {
                r = leading.wait_for(|l| *l) => if r.is_ok() { Wait::Leading } else { Wait::TaskEnded },
                _ = lease_released(&leases, &args.leader_election_id) => Wait::Released,
                _ = shutdown_signal() => return Ok(()),
            };
            match outcome {
                Wait::Leading => break,
                Wait::TaskEnded => {
                    let why = match lease_task.await {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(_)) => "it stopped".into(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Lease(format!("the lease task ended: {why}")));
                }
                Wait::Released => {
                    tracing::info!(lease = %args.leader_election_id, "the lease was released; trying to take it");
                    // A standby's task only reads the Lease or tries to lock
                    // it under our identity, which the new manager renews.
                    lease_task.abort();
                    let manager = build().await.map_err(|e| Error::Lease(e.to_string()))?;
                    (leading, lease_task) = manager.watch().await;
                }
            }
        }
        tracing::info!("became leader");
        metrics.leader.set(1);
        let mut lost = leading.clone();
        let result = tokio::select! {
            r = controller::run(client, settings, metrics.clone(), health.clone(), shutdown_signal()) => r,
            _ = lost.wait_for(|l| !*l) => {
                // Another replica may act from now on: stop at once, as controller-runtime does.
                tracing::error!("lost the lease; exiting");
                std::process::exit(1);
            }
        };
        // Closing the channel makes the lease task release the lease.
        drop(leading);
        drop(lost);
        metrics.leader.set(0);
        match lease_task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease"),
            Err(e) => tracing::warn!(error = %e, "lease task failed"),
        }
        result
    };
    tokio::select! {
        r = work => r,
        r = server => r,
    }
}

/// What ended a standby's wait.
enum Wait {
    Leading,
    TaskEnded,
    Released,
}

/// Resolves once the Lease, seen held, is seen without a holder (a leader
/// that stopped cleanly released it). Reads it every 2 s; errors are retried.
async fn lease_released(leases: &Api<Lease>, name: &str) {
    let mut held = false;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(Some(lease)) = leases.get_opt(name).await else {
            continue;
        };
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty());
        if held && holder.is_none() {
            return;
        }
        held = holder.is_some();
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

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
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
