//! Waiting for a release (or one of its Steps) to reach a phase; the
//! manifests themselves are in `manifests`.

use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use stepwise_core::api::{Deployment, Phase, Step, StepStatus};

use crate::namespace::TestNamespace;
use crate::wait::wait_for;

/// Creates the release in the test's namespace; returns the API it lives in.
pub async fn create_release(ns: &TestNamespace, d: &Deployment) -> Api<Deployment> {
    let api: Api<Deployment> = ns.api();
    api.create(&PostParams::default(), d)
        .await
        .unwrap_or_else(|e| panic!("creating {}: {e}", d.name_any()));
    api
}

/// How long a release in a test may take to reach a phase.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(90);

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

/// The status of release `release`'s step `run` once it reaches `phase`.
pub async fn step_status(ns: &TestNamespace, release: &str, phase: Phase) -> StepStatus {
    let steps: Api<Step> = ns.api();
    let step = wait_phase(&steps, &format!("{release}-run"), phase).await;
    step.status.expect("a status")
}

/// (number, reason, exit code) of each attempt of the step's only action.
pub fn attempts(status: &StepStatus) -> Vec<(u32, Option<String>, Option<i32>)> {
    status.actions[0]
        .attempts
        .iter()
        .map(|a| (a.number, a.reason.clone(), a.exit_code))
        .collect()
}

/// Wipes an object's status the way a restore without status leaves it.
pub async fn wipe_status<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let clear = json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": {} });
    api.patch_status(
        name,
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(&clear),
    )
    .await
    .unwrap_or_else(|e| panic!("clearing {name}: {e}"));
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": null })),
    )
    .await
    .unwrap_or_else(|e| panic!("wiping {name}: {e}"));
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
