//! The operator's Events in a test's namespace.

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

use crate::namespace::TestNamespace;

/// How long a test waits for an Event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(90);

/// The operator's Events as (type, reason, note).
pub async fn operator_events(ns: &TestNamespace) -> Vec<(String, String, String)> {
    let api: Api<Event> = ns.api();
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("stepwise"))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// The reasons of the operator's Events.
pub async fn operator_event_reasons(ns: &TestNamespace) -> Vec<String> {
    operator_events(ns).await.into_iter().map(|e| e.1).collect()
}

/// Waits until the operator has published a Warning Event with `reason`; returns its note.
pub async fn wait_warning(ns: &TestNamespace, reason: &str) -> String {
    let started = Instant::now();
    loop {
        let all = operator_events(ns).await;
        if let Some(e) = all.iter().find(|e| e.0 == "Warning" && e.1 == reason) {
            return e.2.clone();
        }
        if started.elapsed() > EVENT_TIMEOUT {
            panic!("no Warning Event {reason} within {EVENT_TIMEOUT:?}; seen: {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
