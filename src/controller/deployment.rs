//! The Deployment reconciler: create the next Step when the one before it
//! succeeded, and report the release's phase.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, info_span};

use super::{Context, now, observe, publish, retry_later};
use crate::api::{Deployment, FIELD_MANAGER, LABEL_DEPLOYMENT, Phase, Step};
use crate::plan::PlannedEvent;
use crate::plan::deployment::{StepView, plan, step_name, step_spec};
use crate::{Error, KubeContext, Result};

pub async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", kind = "Deployment", namespace = deployment.namespace().unwrap_or_default(), name = %deployment.name_any());
    let started = Instant::now();
    let result = reconcile_inner(&deployment, &ctx).instrument(span).await;
    observe(&ctx.metrics, "deployment", started, &result);
    result
}

pub fn error_policy(_d: Arc<Deployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    retry_later(error)
}

async fn reconcile_inner(d: &Deployment, ctx: &Context) -> Result<Action> {
    ctx.synced().await?;
    let ns = d
        .namespace()
        .ok_or_else(|| Error::Invalid("Deployment without a namespace".into()))?;
    let name = d.name_any();
    let key = format!("{ns}/{name}");
    if d.meta().deletion_timestamp.is_some() {
        ctx.metrics.deployment_phase(key, None);
        return Ok(Action::await_change());
    }
    let uid = d.uid();
    let views: Vec<Option<StepView>> = d
        .spec
        .steps
        .iter()
        .map(|s| {
            let wanted = step_name(&name, &s.name);
            ctx.steps
                .get(&kube::runtime::reflector::ObjectRef::new(&wanted).within(&ns))
                .filter(|st| {
                    st.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == uid.as_ref())
                })
                .map(|st| view(&st))
        })
        .collect();
    let previous = ctx.deployment_status.freshest(
        &ns,
        &name,
        d.metadata.resource_version.as_deref(),
        d.status.clone().unwrap_or_default(),
    );
    let now = now();
    let planned = plan(
        &d.spec,
        &name,
        d.metadata.generation,
        &previous,
        &views,
        now,
    );
    tracing::debug!(phase = ?planned.status.phase, create_step = ?planned.create_step, "planned");
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);

    if let Some(i) = planned.create_step
        && let Err(message) = create_step(d, ctx, &ns, i).await?
    {
        let mut status = planned.status.clone();
        status.phase = Some(Phase::Failed);
        status.message = Some(message.clone());
        status.conditions = crate::status::failed(
            "StepRejected",
            &message,
            &previous.conditions,
            d.metadata.generation,
            now,
        );
        ctx.deployment_status
            .write(&api, &ns, &name, &status)
            .await?;
        publish::<_, Step>(ctx, d, &[PlannedEvent::warning("StepRejected", message)]);
        ctx.metrics.deployment_phase(key, Some(Phase::Failed));
        return Ok(Action::await_change());
    }
    if planned.status != previous {
        ctx.deployment_status
            .write(&api, &ns, &name, &planned.status)
            .await?;
    }
    ctx.metrics.deployment_phase(key, planned.status.phase);
    publish::<_, Step>(ctx, d, &planned.events);
    // Step changes wake the Deployment; the requeue is only a safety net
    // (a Step deleted by hand, say), long enough not to load a large fleet.
    Ok(match planned.status.phase {
        Some(p) if p.is_terminal() => Action::await_change(),
        _ => Action::requeue(std::time::Duration::from_secs(600)),
    })
}

pub(super) fn view(step: &Step) -> StepView {
    let status = step.status.clone().unwrap_or_default();
    StepView {
        name: step.name_any(),
        phase: status.phase.unwrap_or(Phase::Pending),
        message: status.message,
        current_action: status.current_action,
        attempt: status.attempt,
    }
}

/// Creates the Step for step `index`. `Ok(Err(message))` when the API server
/// refuses it for good (the Deployment is then unusable as written).
async fn create_step(
    d: &Deployment,
    ctx: &Context,
    ns: &str,
    index: usize,
) -> Result<Result<(), String>> {
    let name = d.name_any();
    let spec = step_spec(&d.spec, index)
        .ok_or_else(|| Error::Invalid(format!("deployment {name} has no step #{index}")))?;
    let owner = d
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid(format!("deployment {name} has no uid yet")))?;
    let step = Step {
        metadata: ObjectMeta {
            name: Some(step_name(&name, &d.spec.steps[index].name)),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([(
                LABEL_DEPLOYMENT.to_string(),
                name.clone(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec,
        status: None,
    };
    let api: Api<Step> = Api::namespaced(ctx.client.clone(), ns);
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &step,
        )
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Ok(())),
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => Ok(Err(format!(
            "the Step for step {} was rejected by the API server: {}",
            d.spec.steps[index].name, e.message
        ))),
        Err(e) => Err(e).context(|| format!("creating the Step for {ns}/{name} step #{index}")),
    }
}
