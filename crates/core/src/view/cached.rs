//! The Job and pod as the operator caches them: metadata and status only.
//! Their specs are never deserialised, so each cached object is the size of
//! what the views read (a `Job` or `Pod` value is ~2.5 KiB before any of its
//! fields hold data, most of it an unused spec).

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::Deserialize;

use crate::api::{Action, Deployment, Step};

/// A `batch/v1` Job without its spec.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachedJob {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: Option<JobStatus>,
}

/// A `v1` Pod without its spec.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachedPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

/// Served at the same API path as the full kind it stands for.
macro_rules! same_resource_as {
    ($cached:ty, $full:ty) => {
        impl Resource for $cached {
            const API_VERSION: &'static str = <$full as Resource>::API_VERSION;
            const GROUP: &'static str = <$full as Resource>::GROUP;
            const KIND: &'static str = <$full as Resource>::KIND;
            const VERSION: &'static str = <$full as Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$full as Resource>::URL_PATH_SEGMENT;
            type Scope = NamespaceResourceScope;
        }

        impl Metadata for $cached {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

same_resource_as!(CachedJob, Job);
same_resource_as!(CachedPod, Pod);

impl From<Job> for CachedJob {
    fn from(j: Job) -> Self {
        CachedJob {
            metadata: j.metadata,
            status: j.status,
        }
    }
}

impl From<Pod> for CachedPod {
    fn from(p: Pod) -> Self {
        CachedPod {
            metadata: p.metadata,
            status: p.status,
        }
    }
}

/// A finished Step never runs an action again (the planner's contract), so
/// its cached copy drops the actions' pod templates, most of its size: the
/// cache then grows with the releases in flight, not with their history.
pub fn trim_finished_step(s: &mut Step) {
    if s.finished() {
        drop_templates(&mut s.spec.actions);
    }
}

/// A finished Deployment creates no Step again: its cached copy drops the
/// pod templates of its steps' actions.
pub fn trim_finished_deployment(d: &mut Deployment) {
    if d.finished() {
        for step in &mut d.spec.steps {
            drop_templates(&mut step.actions);
        }
    }
}

fn drop_templates(actions: &mut [Action]) {
    for a in actions {
        a.template = Default::default();
    }
}

/// Whether any of these actions lost its template to the cache (or never had a
/// pod spec): what is built from them must be read from the API server first.
pub fn templates_dropped<'a>(mut actions: impl Iterator<Item = &'a Action>) -> bool {
    actions.any(|a| a.template.spec.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    #[test]
    fn reads_a_job_as_the_api_serves_it_without_its_spec() {
        let json = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"active": 1}
        });
        let j: CachedJob = serde_json::from_value(json).unwrap();
        assert_eq!(j.metadata.name.as_deref(), Some("j"));
        assert_eq!(j.status.and_then(|s| s.active), Some(1));
        assert_eq!(<CachedJob as Resource>::URL_PATH_SEGMENT, "jobs");
        assert_eq!(<CachedPod as Resource>::API_VERSION, "v1");
    }

    fn action() -> Action {
        serde_json::from_value(serde_json::json!({
            "name": "a",
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}
        }))
        .unwrap()
    }

    fn step(phase: Option<Phase>) -> Step {
        let mut s = Step::new("s", Default::default());
        s.spec.actions = vec![action(), action()];
        s.status = phase.map(|p| crate::api::StepStatus {
            phase: Some(p),
            ..Default::default()
        });
        s
    }

    #[test]
    fn only_finished_steps_lose_their_templates() {
        for phase in [None, Some(Phase::Running), Some(Phase::WaitingForDecision)] {
            let mut s = step(phase);
            trim_finished_step(&mut s);
            assert!(!templates_dropped(s.spec.actions.iter()), "{phase:?}");
        }
        for phase in [Phase::Succeeded, Phase::Failed] {
            let mut s = step(Some(phase));
            trim_finished_step(&mut s);
            assert!(templates_dropped(s.spec.actions.iter()), "{phase:?}");
            assert_eq!(
                s.spec.actions[1].name, "a",
                "names stay: Jobs are found by them"
            );
        }
    }

    #[test]
    fn only_finished_deployments_lose_their_templates() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "stepwise.dev/v1alpha1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"steps": [{"name": "s", "actions": [action()]}]}
        }))
        .unwrap();
        let actions = |d: &Deployment| {
            d.spec
                .steps
                .iter()
                .flat_map(|s| &s.actions)
                .cloned()
                .collect::<Vec<_>>()
        };
        d.status = Some(crate::api::DeploymentStatus {
            phase: Some(Phase::Running),
            ..Default::default()
        });
        trim_finished_deployment(&mut d);
        assert!(!templates_dropped(actions(&d).iter()));
        d.status.as_mut().unwrap().phase = Some(Phase::Succeeded);
        trim_finished_deployment(&mut d);
        assert!(templates_dropped(actions(&d).iter()));
    }
}
