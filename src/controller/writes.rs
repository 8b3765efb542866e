//! The shell's writes that every reconciler shares: a whole status with
//! server-side apply (remembered in [`Written`]), and planned Events,
//! published in the background.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Context, Written};
use crate::{KubeContext, Result};

/// Writes a whole status with server-side apply under the operator's field
/// manager: the operator owns `status` and nothing else. Returns the
/// object's new resourceVersion.
async fn write_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &kube::api::PatchParams::apply(crate::api::FIELD_MANAGER).force(),
            &kube::api::Patch::Apply(&patch),
        )
        .await
        .context(|| format!("writing status of {} {name}", K::kind(&())))?;
    Ok(written.resource_version())
}

impl<S: Clone + serde::Serialize> Written<S> {
    /// Writes `status` (see [`write_status`]) and remembers it.
    pub(crate) async fn write<K>(
        &self,
        api: &Api<K>,
        ns: &str,
        name: &str,
        status: &S,
    ) -> Result<()>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let rv = write_status(api, name, status).await?;
        self.remember(ns, name, rv, status);
        Ok(())
    }
}

/// Publishes planned Events in the background: a reconcile does not wait
/// for them, and a failure to publish is logged, never fatal. An Event's
/// related object is an `R` (a Step's Job, a Deployment's Step).
pub(crate) fn publish<K, R>(ctx: &Context, obj: &K, events: &[crate::plan::PlannedEvent])
where
    K: Resource<DynamicType = ()>,
    R: Resource<DynamicType = ()>,
{
    use kube::runtime::events::{Event, EventType};
    if events.is_empty() {
        return;
    }
    let reference = obj.object_ref(&());
    let writer = ctx.events.clone();
    let events: Vec<Event> = events
        .iter()
        .map(|e| Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.as_str().into(),
            note: Some(e.note.chars().take(1000).collect()),
            action: e.reason.as_str().into(),
            secondary: e.related.as_ref().map(|name| ObjectReference {
                api_version: Some(R::api_version(&()).into()),
                kind: Some(R::kind(&()).into()),
                name: Some(name.clone()),
                namespace: reference.namespace.clone(),
                ..Default::default()
            }),
        })
        .collect();
    tokio::spawn(async move {
        for event in events {
            if let Err(error) = writer.publish(&event, &reference).await {
                tracing::warn!(%error, reason = %event.reason, "could not publish event");
            }
        }
    });
}

/// The one rule for the API server's refusals of a create, shared by both
/// reconcilers: 400 (malformed) and 422 (invalid) are permanent, since the
/// object cannot be created as written and asking again changes nothing;
/// anything else (403 from a quota, RBAC or a webhook, 409, 429, 5xx) may
/// pass later.
pub(crate) fn refused_for_good(code: u16) -> bool {
    matches!(code, 400 | 422)
}

/// The message a refused-for-good object is failed with.
pub(crate) fn rejected_message(kind: &str, what: &str, server: &str) -> String {
    format!("the {kind} for {what} was rejected by the API server: {server}")
}

/// Writes the Failed status the core built for a refused object (see
/// `plan::rejected`) and publishes its Warning Event.
pub(crate) async fn reject<K, S, R>(
    ctx: &Context,
    written: &Written<S>,
    obj: &K,
    (status, event): (S, crate::plan::PlannedEvent),
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Clone + serde::Serialize,
    R: Resource<DynamicType = ()>,
{
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    written.write(&api, &ns, &obj.name_any(), &status).await?;
    publish::<_, R>(ctx, obj, &[event]);
    Ok(())
}
