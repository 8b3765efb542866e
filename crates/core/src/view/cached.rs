//! The Job and pod as the operator caches them: metadata and status only.
//! Their specs are never deserialised, so each cached object is the size of
//! what the views read (a `Job` or `Pod` value is ~2.5 KiB before any of its
//! fields hold data, most of it an unused spec).

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::Deserialize;

use crate::api::{Deployment, Step};

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

/// The label the Job controller puts on a Job's pods: the pod index reads it.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Keeps of a cached Job's or pod's metadata what the operator reads: name,
/// namespace, uid, resourceVersion, times, owners, and the labels and
/// annotations that are the operator's own (`stepwise.dev/...`) plus the
/// pod's Job name. The rest (managed fields, the Job controller's other
/// labels and finalizer, an action template's own annotations) is dropped.
pub fn trim_meta(meta: &mut ObjectMeta) {
    const OURS: &str = "stepwise.dev/";
    meta.managed_fields = None;
    meta.finalizers = None;
    meta.generate_name = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| k.starts_with(OURS) || k == JOB_NAME_LABEL);
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with(OURS));
    }
}

/// A finished Step never runs an action again (the planner's contract), so
/// its cached copy is a summary: what the Deployment reconciler and the
/// queue read of it (metadata, phase, conditions, message, current action,
/// attempt, deadline), without its actions or their attempts. Emptied, not
/// only stripped of their pod templates: an `Action` is ~2 KiB inline even
/// without a pod spec. Every reconcile of a summary reads the whole object
/// from the API server first ([`is_summary_step`]), so the cache grows with
/// the releases in flight, not with their history.
pub fn trim_finished_step(s: &mut Step) {
    if s.finished() {
        s.spec.actions = Vec::new();
        if let Some(status) = s.status.as_mut() {
            status.actions = Vec::new();
            status.decisions = Vec::new();
        }
    }
}

/// A finished Deployment creates no Step again: its cached copy keeps its
/// steps' names (the queue and the Step lookups read them) and its status
/// without the step summaries, as for Steps ([`is_summary_deployment`]).
pub fn trim_finished_deployment(d: &mut Deployment) {
    if d.finished() {
        for step in &mut d.spec.steps {
            step.actions = Vec::new();
        }
        if let Some(status) = d.status.as_mut() {
            status.steps = Vec::new();
        }
    }
}

/// Whether this cached Step may be a summary: then a reconcile reads the whole
/// object first. A finished step without actions (a ManualIntervention
/// step) is read again too: harmless, and it keeps the rule simple.
pub fn is_summary_step(s: &Step) -> bool {
    s.finished() && s.spec.actions.is_empty()
}

/// Whether this cached Deployment may be a summary (see [`is_summary_step`]).
pub fn is_summary_deployment(d: &Deployment) -> bool {
    d.finished() && d.spec.steps.iter().all(|s| s.actions.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, Phase};

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
    fn cached_metadata_keeps_what_the_operator_reads() {
        let mut meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "p", "namespace": "ns", "uid": "u", "generateName": "j-",
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "labels": {"stepwise.dev/step": "s", "batch.kubernetes.io/job-name": "j",
                       "job-name": "j", "controller-uid": "x", "app": "shop"},
            "annotations": {"stepwise.dev/created-at": "t", "team/owner": "a"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "x", "controller": true}]
        }))
        .unwrap();
        trim_meta(&mut meta);
        let keys = |m: &Option<std::collections::BTreeMap<String, String>>| {
            m.iter().flat_map(|m| m.keys().cloned()).collect::<Vec<_>>()
        };
        assert_eq!(
            keys(&meta.labels),
            ["batch.kubernetes.io/job-name", "stepwise.dev/step"]
        );
        assert_eq!(keys(&meta.annotations), ["stepwise.dev/created-at"]);
        assert_eq!(meta.finalizers, None);
        assert_eq!(meta.generate_name, None);
        assert_eq!(meta.uid.as_deref(), Some("u"));
        assert_eq!(meta.owner_references.map(|o| o.len()), Some(1));
    }

    #[test]
    fn only_finished_steps_become_summaries() {
        for phase in [None, Some(Phase::Running), Some(Phase::WaitingForDecision)] {
            let mut s = step(phase);
            let before = s.clone();
            trim_finished_step(&mut s);
            assert_eq!(
                (&s.spec, &s.status),
                (&before.spec, &before.status),
                "{phase:?}: kept whole"
            );
            assert!(!is_summary_step(&s), "{phase:?}");
        }
        for phase in [Phase::Succeeded, Phase::Failed] {
            let mut s = step(Some(phase));
            if let Some(st) = s.status.as_mut() {
                st.current_action = Some("a".into());
                st.actions = vec![Default::default()];
            }
            trim_finished_step(&mut s);
            assert!(is_summary_step(&s), "{phase:?}");
            assert!(s.spec.actions.is_empty());
            let st = s.status.as_ref().unwrap();
            assert!(st.actions.is_empty());
            assert_eq!(st.phase, Some(phase), "what the Deployment mirrors stays");
            assert_eq!(st.current_action.as_deref(), Some("a"));
        }
    }

    #[test]
    fn only_finished_deployments_become_summaries() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "stepwise.dev/v1alpha1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"steps": [{"name": "s", "actions": [action()]}]}
        }))
        .unwrap();
        d.status = Some(crate::api::DeploymentStatus {
            phase: Some(Phase::Running),
            steps: vec![Default::default()],
            ..Default::default()
        });
        let before = d.clone();
        trim_finished_deployment(&mut d);
        assert_eq!((&d.spec, &d.status), (&before.spec, &before.status));
        assert!(!is_summary_deployment(&d));
        d.status.as_mut().unwrap().phase = Some(Phase::Succeeded);
        trim_finished_deployment(&mut d);
        assert!(is_summary_deployment(&d));
        assert_eq!(
            d.spec.steps[0].name, "s",
            "names stay: Steps are found by them"
        );
        assert!(d.spec.steps[0].actions.is_empty());
        assert!(d.status.as_ref().unwrap().steps.is_empty());
    }
}
