//! The shell around `plan::queue`: reads the namespace's releases from the
//! Deployment cache, holds a release back while the queue says so, and wakes
//! the releases of a key when one of them starts, finishes, arrives or goes.

use std::collections::HashMap;

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::{Context, annotations, publish};
use crate::Result;
use crate::api::{ANNOTATION_CANCEL, Deployment, DeploymentStatus, Phase, Step};
use crate::plan::deployment::{StepSlot, step_name};
use crate::plan::queue::{Release, State, Verdict, cancelled, decide, held};

/// A queued release looks again this often even without a wake (a safety
/// net: the wakes below are what moves the queue).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Holds `d` back when its queue says so: writes Queued (or Failed,
/// Superseded) and returns the next action; `None` lets it go on.
pub(super) async fn hold(
    d: &Deployment,
    ctx: &Context,
    previous: &DeploymentStatus,
    slots: &[StepSlot],
    now: jiff::Timestamp,
) -> Result<Option<Action>> {
    if d.spec.concurrency.is_none() || previous.phase.is_some_and(Phase::is_terminal) {
        return Ok(None);
    }
    let ns = d.namespace().unwrap_or_default();
    let has_step = slots.iter().any(|s| matches!(s, StepSlot::Ours(_)));
    let state = State::of(previous.phase, has_step, false);
    if state != State::Waiting {
        // Started: the queue has nothing more to say about it.
        return Ok(None);
    }
    let me = Release {
        state,
        ..release(d, ctx, &ns)
    };
    let others: Vec<Release> = ctx
        .deployments
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(&ns) && o.name_any() != me.name)
        .filter(|o| o.spec.concurrency.is_some())
        .map(|o| release(o, ctx, &ns))
        .collect();
    let verdict = decide(&me, &others);
    let cancel = d.annotations().contains_key(ANNOTATION_CANCEL);
    let planned = match verdict {
        // A cancel of a queued release: it fails without ever starting.
        Verdict::Wait { .. } if cancel => {
            Some(cancelled(&d.spec, previous, d.metadata.generation, now))
        }
        _ => held(&d.spec, previous, &verdict, d.metadata.generation, now),
    };
    let Some(planned) = planned else {
        return Ok(None);
    };
    tracing::debug!(?verdict, "held by the queue");
    let name = d.name_any();
    if planned.status != *previous {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        ctx.deployment_status
            .write(&api, &ns, &name, &planned.status)
            .await?;
    }
    ctx.metrics
        .deployment_phase(format!("{ns}/{name}"), planned.status.phase);
    publish::<_, Step>(ctx, d, &planned.events);
    if planned.status.phase.is_some_and(Phase::is_terminal) {
        if cancel {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            annotations::remove_if_unchanged(&api, d, ANNOTATION_CANCEL).await?;
        }
        return Ok(Some(Action::await_change()));
    }
    Ok(Some(Action::requeue(RECHECK)))
}

/// A release as the queue sees it: its freshest status (our own last write
/// when the cache is behind it) and whether any of its Steps exists.
fn release(d: &Deployment, ctx: &Context, ns: &str) -> Release {
    let name = d.name_any();
    let phase = ctx
        .deployment_status
        .freshest(
            ns,
            &name,
            d.metadata.resource_version.as_deref(),
            d.status.clone().unwrap_or_default(),
        )
        .phase;
    let uid = d.uid();
    let has_step = d.spec.steps.iter().any(|s| {
        let found = ctx
            .steps
            .get(&ObjectRef::new(&step_name(&name, &s.name)).within(ns));
        found.is_some_and(|step| {
            step.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
    });
    Release {
        created: d.creation_timestamp().map_or(jiff::Timestamp::MIN, |t| t.0),
        concurrency: d.spec.concurrency.clone(),
        state: State::of(phase, has_step, d.metadata.deletion_timestamp.is_some()),
        name,
    }
}

/// Wakes the other releases of a key when one of them arrives, goes, or
/// changes between waiting, started and finished: a finished release lets
/// the next one start, a newcomer may supersede those waiting.
pub(super) struct Wakes {
    store: Store<Deployment>,
    wake: UnboundedSender<ObjectRef<Deployment>>,
    /// What each Deployment (by uid) was last seen as.
    seen: HashMap<String, State>,
}

impl Wakes {
    pub(super) fn new(
        store: Store<Deployment>,
        wake: UnboundedSender<ObjectRef<Deployment>>,
    ) -> Self {
        Self {
            store,
            wake,
            seen: HashMap::new(),
        }
    }

    pub(super) fn saw(&mut self, event: &watcher::Event<Deployment>) {
        let (watcher::Event::Delete(d) | watcher::Event::Apply(d) | watcher::Event::InitApply(d)) =
            event
        else {
            return;
        };
        if d.spec.concurrency.is_none() {
            return;
        }
        let (d, changed) = match event {
            watcher::Event::Delete(d) => {
                self.seen.remove(&d.uid().unwrap_or_default());
                (d, true)
            }
            watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                let phase = d.status.as_ref().and_then(|s| s.phase);
                let state = State::of(phase, false, d.metadata.deletion_timestamp.is_some());
                let before = self.seen.insert(d.uid().unwrap_or_default(), state);
                // At start-up every release is reconciled anyway.
                let init = matches!(event, watcher::Event::InitApply(_));
                (d, !init && before != Some(state))
            }
            _ => return,
        };
        let Some(key) = d.spec.concurrency.as_ref().map(|c| &c.key) else {
            return;
        };
        if !changed {
            return;
        }
        let ns = d.namespace();
        for other in self.store.state() {
            let same_key = other.spec.concurrency.as_ref().map(|c| &c.key) == Some(key);
            if same_key && !other.finished() && other.namespace() == ns && other.uid() != d.uid() {
                // Only fails once the Deployment controller has stopped.
                let _ = self
                    .wake
                    .unbounded_send(ObjectRef::from_obj(other.as_ref()));
            }
        }
    }
}
