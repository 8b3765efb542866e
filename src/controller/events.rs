//! The operator's Events: one `events.k8s.io/v1` Event per planned Event,
//! created and never patched.
//!
//! kube's `Recorder` keeps every Event it sent for six minutes, to fold
//! repeats into a series. The planners emit an Event only on a transition,
//! so a repeat within six minutes is rare, and the cache cost more than it
//! saved: about 5.6 MiB of the operator's heap at 1,000 releases (a dhat
//! profile), and a scan of the whole cache on every Event. This writer keeps
//! nothing.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::events::{Event as Planned, EventType};
use kube::{Api, Client};

/// Creates Events in the namespace of the object they are about.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
}

impl EventWriter {
    /// `instance` tells replicas apart (the pod name); the controller's name
    /// stands in without one.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
        }
    }

    pub async fn publish(
        &self,
        planned: &Planned,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        api.create(
            &PostParams::default(),
            &self.event(planned, regarding, Timestamp::now()),
        )
        .await
        .map(|_| ())
    }

    /// kube's `Event` says what to publish; this is the object the API server stores.
    fn event(&self, planned: &Planned, regarding: &ObjectReference, now: Timestamp) -> Event {
        // Unique per object and nanosecond, as kubectl's and client-go's names are.
        let owner = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{owner}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(
                match planned.type_ {
                    EventType::Warning => "Warning",
                    EventType::Normal => "Normal",
                }
                .into(),
            ),
            action: Some(planned.action.clone()),
            reason: Some(planned.reason.clone()),
            note: planned.note.clone(),
            regarding: Some(regarding.clone()),
            related: planned.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_names_its_object_reporter_and_reason() {
        // Building an Event needs no server; the client is never called.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let writer = EventWriter::new(Client::try_from(config).unwrap(), "stepwise", None);
        let regarding = ObjectReference {
            name: Some("shop-deploy".into()),
            namespace: Some("team-a".into()),
            kind: Some("Step".into()),
            ..Default::default()
        };
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let planned = Planned {
            type_: EventType::Warning,
            reason: "AttemptFailed".into(),
            note: Some("exit code 1".into()),
            action: "AttemptFailed".into(),
            secondary: None,
        };
        let e = writer.event(&planned, &regarding, at);
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert!(e.metadata.name.unwrap().starts_with("shop-deploy."));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("AttemptFailed"));
        assert_eq!(e.action.as_deref(), Some("AttemptFailed"));
        assert_eq!(e.reporting_controller.as_deref(), Some("stepwise"));
        assert_eq!(e.reporting_instance.as_deref(), Some("stepwise"));
        assert_eq!(e.event_time.map(|t| t.0), Some(at));
        assert!(e.series.is_none(), "never a series: each Event is its own");
    }
}
