//! From an action and an attempt number to the `batch/v1` Job that runs it.
//! Pure: the name is a function of (step, action, attempt), so creating an
//! attempt twice finds the first Job instead of starting a second one.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodTemplateSpec, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::api::{
    ANNOTATION_CREATED_AT, LABEL_ACTION, LABEL_ATTEMPT, LABEL_DEPLOYMENT, LABEL_STEP, Step,
};

const MAX_NAME: usize = 63;

/// The Pod Security label whose `restricted` value makes the kubelet and
/// admission refuse a root container.
pub const LABEL_PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// How far a Job's pod is hardened where its template is silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hardening {
    /// The namespace enforces `restricted`: also `runAsNonRoot`, which a
    /// root image (busybox, alpine) cannot bear.
    Restricted,
    /// Only what a root image bears: no privilege escalation, capabilities
    /// dropped, seccomp RuntimeDefault.
    RootAllowed,
}

impl Hardening {
    /// The hardening a namespace with these labels asks for.
    pub fn for_namespace(labels: &BTreeMap<String, String>) -> Hardening {
        match labels.get(LABEL_PSA_ENFORCE).map(String::as_str) {
            Some("restricted") => Hardening::Restricted,
            _ => Hardening::RootAllowed,
        }
    }
}

/// `<step>-<action>-<attempt>`, or, when that is over 63 characters, a
/// truncated prefix plus a hash of the full name, keeping the attempt readable.
/// A shortened name is always a DNS label: the prefix keeps only lowercase
/// letters, digits and inner dashes (a Deployment's name may hold dots).
pub fn job_name(step: &str, action: &str, attempt: u32) -> String {
    let full = format!("{step}-{action}-{attempt}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = Sha256::digest(format!("{step}-{action}").as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let suffix = format!("-{hash}-{attempt}");
    let keep = MAX_NAME - suffix.len();
    let prefix: String = full
        .chars()
        .take(keep)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// A DNS label (RFC 1123): 1-63 lowercase letters, digits and dashes,
/// beginning and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars().all(|c| ok(c) || c == '-')
        && s.starts_with(ok)
        && s.ends_with(ok)
}

/// The Job for attempt `attempt` (1-based) of the step's action at `action_index`,
/// created at `now`, its pod hardened as far as `hardening` says.
pub fn build(
    step: &Step,
    action_index: usize,
    attempt: u32,
    now: Timestamp,
    hardening: Hardening,
) -> Result<Job, Error> {
    let step_name = step.name_any();
    let action =
        step.spec.actions.get(action_index).ok_or_else(|| {
            Error::Invalid(format!("step {step_name} has no action #{action_index}"))
        })?;
    let owner = step
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid(format!("step {step_name} has no uid yet")))?;

    let mut labels = BTreeMap::from([
        (LABEL_STEP.to_string(), step_name.clone()),
        (LABEL_ACTION.to_string(), action.name.clone()),
        (LABEL_ATTEMPT.to_string(), attempt.to_string()),
    ]);
    if let Some(d) = step.labels().get(LABEL_DEPLOYMENT) {
        labels.insert(LABEL_DEPLOYMENT.to_string(), d.clone());
    }
    labels.extend(crate::shard::carried(step.labels()));

    let mut template: PodTemplateSpec = action.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .extend(labels.clone());
    let pod = template.spec.get_or_insert_with(Default::default);
    // The operator counts attempts; the kubelet must not restart in place.
    pod.restart_policy = Some("Never".into());
    restrict(pod, hardening);

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&step_name, &action.name, attempt)),
            namespace: step.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_CREATED_AT.to_string(),
                now.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: action.timeout_seconds,
            pod_failure_policy: Some(disruption_fails_the_job()),
            template,
            ..Default::default()
        }),
        status: None,
    })
}

/// A disrupted pod (Eviction API, preemption, taint, node loss) fails the
/// Job with reason `PodFailurePolicy` and a message naming `DisruptionTarget`,
/// so the cause outlives the pod. `backoffLimit` is 0, so the Job fails
/// either way; only the condition says more.
fn disruption_fails_the_job() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "FailJob".into(),
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: Some("True".into()),
            }]),
            on_exit_codes: None,
        }],
    }
}

/// Restricted Pod Security defaults wherever the template leaves the choice open,
/// so a namespace enforcing `restricted` admits the Jobs as they are; elsewhere
/// all of them but `runAsNonRoot`, so root images run.
fn restrict(pod: &mut k8s_openapi::api::core::v1::PodSpec, hardening: Hardening) {
    let psc = pod
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    if hardening == Hardening::Restricted {
        psc.run_as_non_root.get_or_insert(true);
    }
    psc.seccomp_profile.get_or_insert_with(|| SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    });
    for c in pod
        .containers
        .iter_mut()
        .chain(pod.init_containers.iter_mut().flatten())
    {
        let sc = c
            .security_context
            .get_or_insert_with(SecurityContext::default);
        sc.allow_privilege_escalation.get_or_insert(false);
        sc.capabilities.get_or_insert_with(|| Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        });
    }
}

/// Whether `job` is one of the step's Jobs (owned by it, not merely named like one).
pub fn owned_by(job: &impl Resource, step: &Step) -> bool {
    let uid = step.meta().uid.as_deref();
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, StepSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn step() -> Step {
        let mut s = Step::new(
            "shop-1-migrate",
            StepSpec {
                actions: vec![Action {
                    name: "backup".into(),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            annotations: Some(BTreeMap::from([(
                                "sim.stepwise.dev/exit-code".to_string(),
                                "3".to_string(),
                            )])),
                            ..Default::default()
                        }),
                        spec: Some(PodSpec {
                            containers: vec![Container {
                                name: "main".into(),
                                image: Some("busybox".into()),
                                ..Default::default()
                            }],
                            restart_policy: Some("Always".into()),
                            ..Default::default()
                        }),
                    },
                    timeout_seconds: Some(600),
                    start_timeout_seconds: None,
                }],
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("team-a".into());
        s.metadata.uid = Some("1234".into());
        s.metadata.labels = Some(BTreeMap::from([(
            LABEL_DEPLOYMENT.to_string(),
            "shop-1".to_string(),
        )]));
        s
    }

    #[test]
    fn names_are_deterministic_and_fit() {
        assert_eq!(
            job_name("shop-1-migrate", "backup", 2),
            "shop-1-migrate-backup-2"
        );
        let long = "s".repeat(60);
        let a = job_name(&long, "action", 10);
        assert!(a.len() <= 63, "{a}");
        assert!(a.ends_with("-10"));
        assert_eq!(a, job_name(&long, "action", 10));
        assert_ne!(a, job_name(&long, "action2", 10));
        assert_ne!(job_name(&long, "x", 1), job_name(&long, "y", 1));
    }

    #[test]
    fn a_shortened_name_never_ends_in_a_dot_or_dash() {
        // Deployment names are DNS subdomains: dots may fall at the cut.
        for cut in 40..62 {
            let mut step: String = "a".repeat(cut);
            step.push_str(".b-c.d");
            let name = job_name(&step, "action-with-a-long-name", 3);
            assert!(is_dns_label(&name), "{name}");
            assert!(name.ends_with("-3"));
        }
    }

    proptest::proptest! {
        #[test]
        fn every_shortened_name_is_a_dns_label(
            step in "[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?",
            action in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
            attempt in 1u32..200,
        ) {
            let name = job_name(&step, &action, attempt);
            if name.len() < format!("{step}-{action}-{attempt}").len() {
                proptest::prop_assert!(is_dns_label(&name), "{}", name);
            }
            proptest::prop_assert!(name.len() <= 63);
        }
    }

    #[test]
    fn job_matches_golden() {
        let job = build(
            &step(),
            0,
            2,
            Timestamp::from_millisecond(1_800_000_000_123).unwrap(),
            Hardening::Restricted,
        )
        .unwrap();
        insta::assert_yaml_snapshot!(job);
    }

    #[test]
    fn template_choices_win_over_restricted_defaults() {
        let mut s = step();
        let pod = s.spec.actions[0].template.spec.as_mut().unwrap();
        pod.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(false),
            ..Default::default()
        });
        let job = build(&s, 0, 1, Timestamp::UNIX_EPOCH, Hardening::Restricted).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(false));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn run_as_non_root_only_where_the_namespace_enforces_restricted() {
        let psc = |h| {
            let job = build(&step(), 0, 1, Timestamp::UNIX_EPOCH, h).unwrap();
            let pod = job.spec.unwrap().template.spec.unwrap();
            let c = pod.containers[0].security_context.clone().unwrap();
            (pod.security_context.unwrap(), c)
        };
        let (pod, c) = psc(Hardening::RootAllowed);
        assert_eq!(pod.run_as_non_root, None, "a root image runs");
        assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        assert_eq!(psc(Hardening::Restricted).0.run_as_non_root, Some(true));
    }

    #[test]
    fn only_the_enforced_restricted_level_asks_for_non_root() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let of = |pairs: &[(&str, &str)]| Hardening::for_namespace(&labels(pairs));
        assert_eq!(
            of(&[(LABEL_PSA_ENFORCE, "restricted")]),
            Hardening::Restricted
        );
        assert_eq!(
            of(&[(LABEL_PSA_ENFORCE, "baseline")]),
            Hardening::RootAllowed
        );
        assert_eq!(of(&[]), Hardening::RootAllowed);
        // Warn and audit do not refuse a pod.
        assert_eq!(
            of(&[("pod-security.kubernetes.io/warn", "restricted")]),
            Hardening::RootAllowed
        );
    }

    #[test]
    fn missing_action_or_uid_is_an_error() {
        assert!(build(&step(), 5, 1, Timestamp::UNIX_EPOCH, Hardening::Restricted).is_err());
        let mut s = step();
        s.metadata.uid = None;
        assert!(build(&s, 0, 1, Timestamp::UNIX_EPOCH, Hardening::Restricted).is_err());
    }
}
