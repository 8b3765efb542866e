//! Releases for tests: actions whose simulated pods follow a script, and
//! waiting for a phase.

use std::time::Duration;

use kube::Api;
use serde_json::{Value, json};
use stepwise::api::{Deployment, Phase, Step};

use super::wait_for;

/// How long a release in a test may take to reach a phase.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(90);

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

pub trait HasPhase {
    fn phase(&self) -> Option<Phase>;
}
impl HasPhase for Deployment {
    fn phase(&self) -> Option<Phase> {
        self.status.as_ref()?.phase
    }
}
impl HasPhase for Step {
    fn phase(&self) -> Option<Phase> {
        self.status.as_ref()?.phase
    }
}

/// Waits until the object reports `phase`, and returns it.
pub async fn wait_phase<K>(api: &Api<K>, name: &str, phase: Phase) -> K
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + HasPhase,
{
    wait_for(
        api,
        name,
        PHASE_TIMEOUT,
        &format!("phase {phase:?}"),
        |o: &K| o.phase() == Some(phase),
    )
    .await
}
