//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager):
//! a standby waits until it holds the Lease, the leader runs the
//! controllers, and a leader that loses the Lease exits at once, as
//! controller-runtime does, because another replica may act from then on.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// The Lease this replica competes for.
pub struct Election {
    pub client: Client,
    pub lease: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// A running lease manager: whether we lead, and its task.
type Watching = (
    watch::Receiver<bool>,
    JoinHandle<kube_lease_manager::Result<LeaseManager>>,
);

/// What ended a standby's wait.
enum Wait {
    Leading,
    TaskEnded,
    Released,
}

impl Election {
    async fn manager(&self) -> Result<Watching> {
        let secs = self.duration.as_secs().max(2);
        let params = LeaseParams::new(self.identity.clone(), secs, (secs / 3).max(1));
        let manager = LeaseManagerBuilder::new(self.client.clone(), &self.lease)
            .with_namespace(&self.namespace)
            .with_parameters(params)
            .build()
            .await
            .map_err(|e| Error::Lease(e.to_string()))?;
        Ok(manager.watch().await)
    }

    /// Waits for the Lease, then runs `work` while leading. Returns early,
    /// without running it, on `shutdown`.
    pub async fn lead<W, S>(&self, work: impl FnOnce() -> W, shutdown: impl Fn() -> S) -> Result<()>
    where
        W: Future<Output = Result<()>>,
        S: Future<Output = ()>,
    {
        let watching = self.manager().await?;
        let Some((leading, lease_task)) = self.standby(watching, &shutdown).await? else {
            return Ok(());
        };
        tracing::info!("became leader");
        let mut lost = leading.clone();
        let result = tokio::select! {
            r = work() => r,
            _ = lost.wait_for(|l| !*l) => {
                tracing::error!("lost the lease; exiting");
                std::process::exit(1);
            }
        };
        // Closing the channel makes the lease task release the lease.
        drop(leading);
        drop(lost);
        match lease_task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease"),
            Err(e) => tracing::warn!(error = %e, "lease task failed"),
        }
        result
    }

    /// Waits until this replica leads; `None` when shut down first.
    ///
    /// kube-lease-manager's standby sleeps until the lease it saw expires: a
    /// lease that a leader released when it stopped cleanly would wait for up
    /// to a whole lease duration (and a replica started meanwhile would take
    /// it first). So the standby also reads the Lease every 2 s (client-go's
    /// retry period) and, once it sees it released, starts a new manager,
    /// which takes an orphaned lease at once.
    async fn standby<S: Future<Output = ()>>(
        &self,
        (mut leading, mut lease_task): Watching,
        shutdown: &impl Fn() -> S,
    ) -> Result<Option<Watching>> {
        tracing::info!(lease = %self.lease, namespace = %self.namespace, identity = %self.identity, "waiting to become leader");
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        loop {
            let outcome = tokio::select! {
                r = leading.wait_for(|l| *l) => if r.is_ok() { Wait::Leading } else { Wait::TaskEnded },
                _ = lease_released(&leases, &self.lease) => Wait::Released,
                _ = shutdown() => return Ok(None),
            };
            match outcome {
                Wait::Leading => return Ok(Some((leading, lease_task))),
                Wait::TaskEnded => {
                    let why = match lease_task.await {
                        Ok(Err(e)) => e.to_string(),
                        Ok(Ok(_)) => "it stopped".into(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Lease(format!("the lease task ended: {why}")));
                }
                Wait::Released => {
                    tracing::info!(lease = %self.lease, "the lease was released; trying to take it");
                    // A standby's task only reads the Lease or tries to lock
                    // it under our identity, which the new manager renews.
                    lease_task.abort();
                    (leading, lease_task) = self.manager().await?;
                }
            }
        }
    }
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
