//! Bounded polls that panic with the last object seen, and what a Job says.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Interval between polls in [`wait_for`] and [`wait_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `name` until `cond` holds for it and returns it; panics on timeout
/// with `what` and the last object (or error) seen.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, timeout: Duration, what: &str, cond: F) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    <K as Resource>::DynamicType: Default,
    F: Fn(&K) -> bool,
{
    let started = Instant::now();
    let mut last;
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) => {
                if cond(&obj) {
                    return obj;
                }
                last = describe(&obj);
            }
            Ok(None) => last = format!("{name} does not exist"),
            Err(e) => last = format!("error getting {name}: {e}"),
        }
        if started.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what} ({} {name}); last seen:\n{last}",
                K::kind(&Default::default()),
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls until `cond` holds (checked at least once); panics on timeout with
/// `what` and the last description returned by `cond`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let last = match cond().await {
            Ok(()) => return,
            Err(last) => last,
        };
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Pretty JSON of an object, without the noisy managedFields.
pub fn describe<K: Serialize>(obj: &K) -> String {
    let mut value = serde_json::to_value(obj).unwrap_or(serde_json::Value::Null);
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    serde_json::to_string_pretty(&value).unwrap_or_else(|_| "<unprintable>".into())
}

/// Whether the Job has condition `type_` with status True
/// ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget", ...).
pub fn job_has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// "Complete" or "Failed" once the Job has finished, else None.
pub fn job_outcome(job: &Job) -> Option<&'static str> {
    if job_has_condition(job, "Complete") {
        Some("Complete")
    } else if job_has_condition(job, "Failed") {
        Some("Failed")
    } else {
        None
    }
}
