//! Assembly only: builds the watches (see `triggers`), the shared
//! [`Context`], both controllers and readiness, and runs them until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future, stream};
use kube::runtime::Controller;
use kube::runtime::controller::Config as ControllerConfig;
use kube::{Api, Client};
use tokio::sync::watch;

use super::state::{FailureClock, PodIndex, Refusals, Written};
use super::{Context, Settings, api, deployment, step, triggers};
use crate::api::{Deployment, Step};
use crate::telemetry::{Health, Metrics};
use crate::{KubeContext, Result};

/// How long in-flight reconciles may take after SIGTERM (Kubernetes' default
/// termination grace period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs both controllers until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let ns = settings.namespace.as_deref();
    check_crds(&client, ns).await?;
    let failures_seen = Arc::new(FailureClock::default());
    let pods_by_job = Arc::new(PodIndex::default());
    let shard = settings.shard.as_deref();
    let watches = triggers::job_and_pod_watches(
        &client,
        ns,
        shard,
        failures_seen.clone(),
        pods_by_job.clone(),
    );
    let step_watch = triggers::step_watch(api::<Step>(&client, ns), shard);
    let (deployments_seen, deployment_triggers, queue_woken) =
        triggers::deployment_watch(api::<Deployment>(&client, ns), shard, metrics.clone());

    let (synced_tx, synced_rx) = watch::channel(false);
    let ctx = Arc::new(Context {
        client: client.clone(),
        jobs: watches.jobs,
        pods: watches.pods,
        pods_by_job,
        failures_seen,
        steps: step_watch.steps.clone(),
        deployments: deployments_seen.clone(),
        events: super::events::EventWriter::new(
            client.clone(),
            "stepwise",
            settings.instance.clone(),
        ),
        metrics,
        step_status: Written::default(),
        deployment_status: Written::default(),
        refusals: Refusals::default(),
        lane: Default::default(),
        synced: synced_rx,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let config = ControllerConfig::default().concurrency(settings.concurrency);
    let step_run = Controller::for_stream(stream::pending(), step_watch.steps)
        .with_config(config.clone())
        .reconcile_on(step_watch.asked)
        .reconcile_on(watches.wake_steps)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(step::reconcile, step::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    let deployment_run = Controller::for_stream(deployment_triggers, deployments_seen)
        .with_config(config)
        .reconcile_on(step_watch.wake_deployments)
        .reconcile_on(queue_woken)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(deployment::reconcile, deployment::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    let readiness = readiness(ctx.clone(), synced_tx, health, stopped(stop_rx));

    let running = async {
        tokio::join!(step_run, deployment_run, readiness);
    };
    tokio::select! {
        _ = running => {}
        _ = stopping(shutdown, stop_tx, &ctx) => {}
    }
    Ok(())
}

/// Resolves once `stop` is set.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Marks the operator synced and ready once every cache is filled.
/// Stopped watches never fill their caches: readiness gives up on shutdown.
async fn readiness(
    ctx: Arc<Context>,
    synced: watch::Sender<bool>,
    health: Arc<Health>,
    stopping: impl Future<Output = ()>,
) {
    let all = futures::future::join4(
        ctx.jobs.wait_until_ready(),
        ctx.pods.wait_until_ready(),
        ctx.steps.wait_until_ready(),
        // The queue reads every release of a key.
        ctx.deployments.wait_until_ready(),
    );
    tokio::select! {
        all = all => {
            if let (Ok(()), Ok(()), Ok(()), Ok(())) = all {
                tracing::info!("caches synced; reconciling");
                let _ = synced.send(true);
                health.set_ready(true);
            }
        }
        _ = stopping => {}
    }
}

/// After `shutdown`, tells the controllers to stop and gives in-flight
/// reconciles [`SHUTDOWN_GRACE`] to finish.
async fn stopping(shutdown: impl Future<Output = ()>, stop: watch::Sender<bool>, ctx: &Context) {
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight reconciles");
    let _ = stop.send(true);
    // Before the caches synced nothing can be in flight, and kube's
    // controllers would wait for a sync that will never come: leave now.
    if !*ctx.synced.borrow() {
        return;
    }
    tokio::time::sleep(SHUTDOWN_GRACE).await;
    tracing::warn!("reconciles still running {SHUTDOWN_GRACE:?} after SIGTERM; exiting anyway");
}

/// Fails early and clearly when the CRDs are not installed (or not readable).
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    let deployments: Api<Deployment> = api(client, namespace);
    deployments
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context(|| {
            "checking that the stepwise.dev CRDs are installed (kubectl apply --server-side -f crds/)".into()
        })?;
    Ok(())
}
