//! The due-time lane. When a retry's wait ends, a task of its own creates
//! the next attempt's Job at once, instead of the Step waiting in the Step
//! controller's queue behind other reconciles (50 retries falling due
//! together would otherwise wait for 50 / `--concurrency` reconciles, each
//! with its status write).
//!
//! The lane writes no status. The new Job's watch event wakes the Step, and
//! its reconcile records the attempt as it records any Job created before a
//! lost status write, its start read from the Job's `stepwise.dev/created-at`.
//! The failure and its time were written before the lane was scheduled. The
//! lane creates only what `plan` says at the due time, from the same caches:
//! a Step cancelled, decided or deleted meanwhile creates nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::{Created, counts, create_job, observation};
use crate::Result;
use crate::api::Step;
use crate::controller::{Context, now};
use crate::plan::step::plan;

/// How long after the due time the Step controller looks again itself, in
/// case the lane created nothing (a refused create, or the Step moved on).
pub(super) const BACKSTOP: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// The due time scheduled for each Step, so each retry has one task.
#[derive(Default)]
pub struct Lane {
    due: Mutex<HashMap<(String, String), jiff::Timestamp>>,
}

impl Lane {
    /// Marks `due` as the Step's next due time; false when it already was.
    fn claim(&self, key: &(String, String), due: jiff::Timestamp) -> bool {
        let Ok(mut m) = self.due.lock() else {
            return false;
        };
        m.insert(key.clone(), due) != Some(due)
    }

    /// Whether `due` is still the Step's due time; forgets it either way.
    fn take(&self, key: &(String, String), due: jiff::Timestamp) -> bool {
        let Ok(mut m) = self.due.lock() else {
            return false;
        };
        match m.get(key) {
            Some(d) if *d == due => m.remove(key).is_some(),
            _ => false,
        }
    }
}

/// Creates the Step's next Job at `due` (after its status recorded the failure).
pub(super) fn schedule(ctx: &Arc<Context>, step: &Step, due: jiff::Timestamp) {
    let key = (step.namespace().unwrap_or_default(), step.name_any());
    if !ctx.lane.claim(&key, due) {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let wait = Duration::try_from(due.duration_since(now())).unwrap_or_default();
        tokio::time::sleep(wait).await;
        if !ctx.lane.take(&key, due) {
            return;
        }
        // A summary is a finished Step: nothing falls due on it.
        let found = ctx
            .steps
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .filter(|s| !crate::view::is_summary_step(s));
        if let Some(step) = found
            && let Err(error) = create_due(&step, &ctx).await
        {
            // The Step controller's backstop reconcile tries again.
            tracing::warn!(namespace = %key.0, name = %key.1, %error, "due-time lane");
        }
    });
}

async fn create_due(step: &Step, ctx: &Context) -> Result<()> {
    let (ns, name) = (step.namespace().unwrap_or_default(), step.name_any());
    let uid = step.uid().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let observed = observation(step, ctx, &jobs_api, &name, &uid).await?;
    let at = now();
    let planned = plan(&step.spec, &observed, at);
    let Some(create) = planned.create else {
        return Ok(());
    };
    if let Created::Ours(created_at) = create_job(step, &ctx.client, &jobs_api, create, at).await? {
        tracing::debug!(namespace = %ns, %name, attempt = create.attempt, "due-time lane created the Job");
        ctx.metrics.attempt("started");
        counts::retry_delay(ctx, step, &planned.status, create, created_at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_task_per_due_time() {
        let lane = Lane::default();
        let key = ("ns".to_string(), "s".to_string());
        let (t1, t2) = (
            jiff::Timestamp::from_second(1).unwrap(),
            jiff::Timestamp::from_second(2).unwrap(),
        );
        assert!(lane.claim(&key, t1));
        assert!(!lane.claim(&key, t1), "already scheduled");
        assert!(lane.claim(&key, t2), "a later due time supersedes");
        assert!(!lane.take(&key, t1), "the superseded task does nothing");
        assert!(lane.take(&key, t2));
        assert!(!lane.take(&key, t2), "taken once");
    }
}
