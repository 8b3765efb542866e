//! The Deployment reconciler: create the next Step when the one before it
//! succeeded, and report the release's phase.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, info_span};

use super::{Context, annotations, now, observe, publish, retry_later, writes};
use crate::api::{
    ANNOTATION_APPROVAL, ANNOTATION_CANCEL, ANNOTATION_DECIDED_BY, ANNOTATION_DECISION, Deployment,
    DeploymentStatus, FIELD_MANAGER, LABEL_DEPLOYMENT, Phase, Step,
};
use crate::plan::deployment::{
    DeploymentPlan, ForeignStep, Owner, StepSlot, StepView, plan, step_name, step_spec,
};
use crate::plan::handoff::{Handoff, cancel_handoff, handoffs, removals};
use crate::plan::rejected;
use crate::{Error, KubeContext, Result};

pub async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", kind = "Deployment", namespace = deployment.namespace().unwrap_or_default(), name = %deployment.name_any());
    let started = Instant::now();
    let result = reconcile_inner(deployment, &ctx).instrument(span).await;
    observe(&ctx.metrics, "deployment", started, &result);
    result
}

pub fn error_policy(_d: Arc<Deployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    retry_later(error)
}

async fn reconcile_inner(cached: Arc<Deployment>, ctx: &Context) -> Result<Action> {
    ctx.synced().await?;
    let summary = crate::view::is_summary_deployment(&cached);
    match super::whole(&ctx.client, cached, summary).await? {
        Some(d) => reconcile_whole(&d, ctx).await,
        None => Ok(Action::await_change()),
    }
}

/// Plans from the whole Deployment (never from a cache's summary).
async fn reconcile_whole(d: &Deployment, ctx: &Context) -> Result<Action> {
    let ns = d
        .namespace()
        .ok_or_else(|| Error::Invalid("Deployment without a namespace".into()))?;
    let name = d.name_any();
    let key = format!("{ns}/{name}");
    if d.meta().deletion_timestamp.is_some() {
        ctx.metrics.deployment_phase(key, None);
        return Ok(Action::await_change());
    }
    let slots: Vec<StepSlot> = d
        .spec
        .steps
        .iter()
        .map(|s| {
            let wanted = step_name(&name, &s.name);
            let found = ctx
                .steps
                .get(&kube::runtime::reflector::ObjectRef::new(&wanted).within(&ns));
            slot(d, found.as_deref())
        })
        .collect();
    let previous = ctx.deployment_status.freshest(
        &ns,
        &name,
        d.metadata.resource_version.as_deref(),
        d.status.clone().unwrap_or_default(),
    );
    let now = now();
    if let Some(action) = super::queue::hold(d, ctx, &previous, &slots, now).await? {
        return Ok(action);
    }
    let cancel = cancel_asked(d, ctx, &ns, &name);
    let plan_with = |slots: &[StepSlot]| {
        plan(
            &d.spec,
            &name,
            d.metadata.generation,
            &previous,
            slots,
            cancel,
            now,
        )
    };
    let mut planned = plan_with(&slots);
    tracing::debug!(phase = ?planned.status.phase, create_step = ?planned.create_step, "planned");
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);

    if let Some(i) = planned.create_step
        && let Some(taken) = create_step(d, ctx, &ns, i).await?
    {
        let message = match taken {
            Created::Taken(found) => {
                // Someone else's Step has the name: plan again knowing it.
                let mut slots = slots;
                slots[i] = slot(d, Some(&found));
                planned = plan_with(&slots);
                None
            }
            Created::Rejected(message) => Some(message),
        };
        if let Some(message) = message {
            return reject(d, ctx, &previous, &planned, message, now).await;
        }
    }
    if planned.status != previous {
        ctx.deployment_status
            .write(&api, &ns, &name, &planned.status)
            .await?;
    }
    ctx.metrics.deployment_phase(key, planned.status.phase);
    publish::<_, Step>(ctx, d, &planned.events);
    hand_off(d, ctx, &api, &previous, &planned.status).await?;
    // Step changes wake the Deployment; the requeue is only a safety net
    // (a Step deleted by hand, say), long enough not to load a large fleet.
    Ok(match planned.status.phase {
        _ if planned.recheck => Action::requeue(std::time::Duration::from_secs(10)),
        Some(p) if p.is_terminal() => Action::await_change(),
        _ => Action::requeue(std::time::Duration::from_secs(600)),
    })
}

/// Passes a decision or approval annotated on the Deployment to its waiting
/// Step (or removes it with a warning when none waits), then removes it from
/// the Deployment if it still holds the value read.
async fn hand_off(
    d: &Deployment,
    ctx: &Context,
    api: &Api<Deployment>,
    previous: &DeploymentStatus,
    status: &DeploymentStatus,
) -> Result<()> {
    let read = |key: &str| d.annotations().get(key).map(String::as_str);
    let by = read(ANNOTATION_DECIDED_BY);
    let mut planned = handoffs(
        status,
        read(ANNOTATION_DECISION),
        read(ANNOTATION_APPROVAL),
        by,
    );
    planned.extend(cancel_handoff(previous, status, read(ANNOTATION_CANCEL)));
    let steps: Api<Step> = Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    for h in &planned {
        match h {
            Handoff::Pass { step, .. } => {
                annotations::set_all(&steps, step, &h.step_annotations()).await?;
            }
            Handoff::Ignore { event, .. } => {
                publish::<_, Step>(ctx, d, std::slice::from_ref(event));
            }
            Handoff::Drop { .. } => {}
        }
    }
    annotations::remove_all_if_unchanged(api, d, &removals(&planned, by)).await?;
    Ok(())
}

/// A cancel is asked for: on the Deployment, or already handed to one of
/// its Steps (which keeps it), so no further Step is ever created.
fn cancel_asked(d: &Deployment, ctx: &Context, ns: &str, name: &str) -> bool {
    d.annotations().contains_key(ANNOTATION_CANCEL)
        || d.spec.steps.iter().any(|s| {
            let wanted = step_name(name, &s.name);
            ctx.steps
                .get(&kube::runtime::reflector::ObjectRef::new(&wanted).within(ns))
                .is_some_and(|step| step.annotations().contains_key(ANNOTATION_CANCEL))
        })
}

/// What stands under a step's Step name: ours only when its controller
/// ownerReference is this very Deployment (uid).
fn slot(d: &Deployment, found: Option<&Step>) -> StepSlot {
    let Some(step) = found else {
        return StepSlot::Missing;
    };
    let controller = step
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(o) if d.uid().as_deref() == Some(o.uid.as_str()) => StepSlot::Ours(view(step)),
        _ => StepSlot::Foreign(ForeignStep {
            name: step.name_any(),
            owner: controller.map(|o| Owner {
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
            }),
        }),
    }
}

/// The API server refused the Step for good: the Deployment is unusable as written.
async fn reject(
    d: &Deployment,
    ctx: &Context,
    previous: &DeploymentStatus,
    planned: &DeploymentPlan,
    message: String,
    now: jiff::Timestamp,
) -> Result<Action> {
    let failed = rejected::deployment(
        &planned.status,
        previous,
        d.metadata.generation,
        &message,
        now,
    );
    writes::reject::<_, _, Step>(ctx, &ctx.deployment_status, d, failed).await?;
    let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
    ctx.metrics.deployment_phase(key, Some(Phase::Failed));
    Ok(Action::await_change())
}

pub(super) fn view(step: &Step) -> StepView {
    let status = step.status.clone().unwrap_or_default();
    let cannot_start = status.conditions.iter().any(|c| {
        c.type_ == crate::api::condition_types::READY
            && c.reason == crate::plan::step::REASON_CANNOT_START
    });
    StepView {
        cannot_start,
        name: step.name_any(),
        phase: status.phase.unwrap_or(Phase::Pending),
        message: status.message,
        current_action: status.current_action,
        attempt: status.attempt,
        decision_deadline: status.decision_deadline,
    }
}

/// Why a Step could not be created.
enum Created {
    /// The name is taken by this Step, which is not ours.
    Taken(Box<Step>),
    /// The API server refuses it for good.
    Rejected(String),
}

/// Creates the Step for step `index`; `None` once it exists and is ours
/// (created now, or before a lost status write).
async fn create_step(
    d: &Deployment,
    ctx: &Context,
    ns: &str,
    index: usize,
) -> Result<Option<Created>> {
    let name = d.name_any();
    let spec = step_spec(&d.spec, index)
        .ok_or_else(|| Error::Invalid(format!("deployment {name} has no step #{index}")))?;
    let owner = d
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid(format!("deployment {name} has no uid yet")))?;
    let step_name = step_name(&name, &d.spec.steps[index].name);
    let step = Step {
        metadata: ObjectMeta {
            name: Some(step_name.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(
                BTreeMap::from([(LABEL_DEPLOYMENT.to_string(), name.clone())])
                    .into_iter()
                    .chain(crate::shard::carried(d.labels()))
                    .collect(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec,
        status: None,
    };
    let api: Api<Step> = Api::namespaced(ctx.client.clone(), ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &step).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Ours only if its controller is this very Deployment.
            let found = api
                .get_opt(&step_name)
                .await
                .context(|| format!("reading Step {ns}/{step_name}"))?;
            Ok(found
                .filter(|s| !matches!(slot(d, Some(s)), StepSlot::Ours(_)))
                .map(|s| Created::Taken(Box::new(s))))
        }
        Err(kube::Error::Api(e)) if writes::refused_for_good(e.code) => {
            Ok(Some(Created::Rejected(writes::rejected_message(
                "Step",
                &format!("step {}", d.spec.steps[index].name),
                &e.message,
            ))))
        }
        Err(e) => Err(e).context(|| format!("creating the Step for {ns}/{name} step #{index}")),
    }
}
