//! Manifests for releases whose simulated pods follow a script (the kwok
//! nodes read the `sim.stepwise.dev/` annotations).

use serde_json::{Value, json};
use stepwise_core::api::Deployment;

/// An action whose simulated pod follows `sim`: pairs of `sim.stepwise.dev/`
/// annotation names (`exit-code`, `fail-attempts`, `duration`) and values.
pub fn action(name: &str, sim: &[(&str, &str)]) -> Value {
    let annotations: serde_json::Map<String, Value> = sim
        .iter()
        .map(|(k, v)| (format!("sim.stepwise.dev/{k}"), json!(v)))
        .collect();
    json!({
        "name": name,
        "template": {
            "metadata": { "annotations": annotations },
            "spec": { "containers": [{ "name": "main", "image": "busybox" }] }
        }
    })
}

/// A `Deployment` named `name` with `spec`.
pub fn release(name: &str, spec: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a valid Deployment")
}
