//! `kubectl stepwise`: follow a release and answer it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use stepwise::api::{ANNOTATION_CANCEL, Deployment, LABEL_DEPLOYMENT, Step};
use stepwise::plugin::{Ask, render, render_at, target};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-stepwise",
    version,
    about = "Follow and steer Stepwise releases"
)]
struct Cli {
    /// Namespace of the release (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the release as a tree: steps, actions, attempts, next retry, errors.
    Status {
        deployment: String,
        /// Keep printing until the release has succeeded or failed.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Guided failure: run the failed action once more.
    Retry { deployment: String },
    /// Guided failure: mark the failed action Ignored and carry on.
    Ignore { deployment: String },
    /// Guided failure: fail the release.
    Abort { deployment: String },
    /// Manual intervention: approve.
    Approve { deployment: String },
    /// Manual intervention: reject.
    Reject { deployment: String },
    /// Cancel a running release: its running Job is deleted, it fails (Cancelled).
    Cancel { deployment: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let ns = cli
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let steps: Api<Step> = Api::namespaced(client, &ns);
    let (name, ask) = match cli.command {
        Command::Status { deployment, watch } => {
            return status(&deployments, &steps, &deployment, watch).await;
        }
        Command::Retry { deployment } => (deployment, Ask::Retry),
        Command::Ignore { deployment } => (deployment, Ask::Ignore),
        Command::Abort { deployment } => (deployment, Ask::Abort),
        Command::Approve { deployment } => (deployment, Ask::Approve),
        Command::Reject { deployment } => (deployment, Ask::Reject),
        Command::Cancel { deployment } => return cancel(&deployments, &deployment).await,
    };
    let (d, all) = fetch(&deployments, &steps, &name).await?;
    let step = target(&d, &all, ask)?;
    let step_name = step.metadata.name.clone().unwrap_or_default();
    let (key, value) = ask.annotation();
    let patch = json!({ "metadata": { "annotations": { key: value } } });
    steps
        .patch(&step_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("cannot annotate step {step_name}: {e}"))?;
    println!("step {step_name} of deployment {name}: {key}={value}");
    Ok(())
}

/// Sets `stepwise.dev/cancel` on the Deployment; the operator hands it to
/// the running Step. A finished release is refused here already.
async fn cancel(deployments: &Api<Deployment>, name: &str) -> Result<(), String> {
    let d = deployments
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read deployment {name}: {e}"))?
        .ok_or_else(|| format!("deployment {name} not found"))?;
    if d.finished() {
        let phase = d.status.and_then(|s| s.phase).unwrap_or_default();
        return Err(format!(
            "deployment {name} has already finished (phase {}): nothing to cancel",
            phase.as_str()
        ));
    }
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_CANCEL: "true" } } });
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("cannot annotate deployment {name}: {e}"))?;
    println!("deployment {name}: {ANNOTATION_CANCEL}=true");
    Ok(())
}

async fn fetch(
    deployments: &Api<Deployment>,
    steps: &Api<Step>,
    name: &str,
) -> Result<(Deployment, Vec<Step>), String> {
    let d = deployments
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read deployment {name}: {e}"))?
        .ok_or_else(|| {
            format!(
                "deployment {name} not found in namespace {} (kubectl get swd lists them)",
                deployments_ns(deployments)
            )
        })?;
    let all = steps
        .list(&ListParams::default().labels(&format!("{LABEL_DEPLOYMENT}={name}")))
        .await
        .map_err(|e| format!("cannot list the steps of {name}: {e}"))?
        .items;
    Ok((d, all))
}

fn deployments_ns(api: &Api<Deployment>) -> String {
    api.resource_url()
        .split('/')
        .skip_while(|p| *p != "namespaces")
        .nth(1)
        .unwrap_or("default")
        .to_string()
}

async fn status(
    deployments: &Api<Deployment>,
    steps: &Api<Step>,
    name: &str,
    watch: bool,
) -> Result<(), String> {
    let mut last = String::new();
    loop {
        let (d, all) = fetch(deployments, steps, name).await?;
        // A change is what the release says, not the countdown ticking.
        let tree = render(&d, &all);
        if tree != last {
            if watch && !last.is_empty() {
                println!();
            }
            print!("{}", render_at(&d, &all, Some(jiff::Timestamp::now())));
            last = tree;
        }
        if !watch || d.finished() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
