//! Waiting for a release (or one of its Steps) to reach a phase; the
//! manifests themselves are in `manifests`.

use std::time::Duration;

use kube::api::PostParams;
use kube::{Api, ResourceExt};
use stepwise_core::api::{Deployment, Phase, Step};

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
