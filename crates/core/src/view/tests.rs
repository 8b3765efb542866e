//! How Jobs and pods read: an attempt's failure counts only once nothing of
//! it runs any more; each outcome's reason; what the cache keeps.

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::PodStatus;

use super::{CachedJob as Job, CachedPod as Pod};

use super::{attempt_stopped, job_view, pod_view, trim_pod};
use crate::plan::step::{JobState, StartProblem};
use crate::reason::FailureReason;

mod reasons;

fn job(conditions: &[&str], active: i32, terminating: i32) -> Job {
    let mut j = Job::default();
    j.metadata.name = Some("s-a-1".into());
    j.status = Some(JobStatus {
        active: Some(active),
        terminating: Some(terminating),
        conditions: Some(
            conditions
                .iter()
                .map(|t| JobCondition {
                    type_: (*t).into(),
                    status: "True".into(),
                    reason: Some("DeadlineExceeded".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    j
}

fn pod(phase: &str) -> Pod {
    Pod {
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn failed(j: &Job, p: Option<&Pod>) -> bool {
    matches!(job_view(j, p, None).state, JobState::Failed { .. })
}

#[test]
fn failure_target_while_the_pod_terminates_is_still_running() {
    // Deadline exceeded: the Job controller has started killing the pod,
    // which ignores TERM through its grace period.
    let j = job(&["FailureTarget"], 0, 1);
    let running = pod("Running");
    assert!(!attempt_stopped(&j, Some(&running)));
    assert!(matches!(
        job_view(&j, Some(&running), None).state,
        JobState::Running
    ));
    // Even with the pod gone from the cache, the Job still counts it.
    assert!(!failed(&j, None));
}

#[test]
fn failure_target_with_a_live_pod_and_no_counts_is_still_running() {
    // The Job's counts can run ahead of the pod cache.
    let j = job(&["FailureTarget"], 0, 0);
    assert!(!failed(&j, Some(&pod("Running"))));
    assert!(!failed(&j, Some(&pod("Pending"))));
}

#[test]
fn failure_counts_once_the_pod_is_terminal_or_gone_and_nothing_is_counted() {
    let j = job(&["FailureTarget"], 0, 0);
    assert!(failed(&j, Some(&pod("Failed"))));
    assert!(failed(&j, None));
    let done = job(&["FailureTarget", "Failed"], 0, 0);
    assert!(failed(&done, Some(&pod("Running"))), "Failed is final");
}

#[test]
fn a_failed_pod_the_job_still_counts_active_waits_for_the_job() {
    let j = job(&[], 1, 0);
    assert!(!failed(&j, Some(&pod("Failed"))));
    let j = job(&[], 0, 0);
    assert!(failed(&j, Some(&pod("Failed"))));
}

#[test]
fn a_succeeded_pod_reads_as_success_before_the_job_says_so() {
    let j = job(&[], 1, 0);
    assert!(matches!(
        job_view(&j, Some(&pod("Succeeded")), None).state,
        JobState::Succeeded { .. }
    ));
}

proptest::proptest! {
    /// Whatever the conditions say, a failure is never read while the Job
    /// counts a pod active or terminating.
    #[test]
    fn never_failed_while_a_pod_is_counted(
        failed_cond in proptest::bool::ANY,
        target in proptest::bool::ANY,
        active in 0i32..3,
        terminating in 0i32..3,
        phase in proptest::option::of(proptest::sample::select(
            vec!["Pending", "Running", "Failed", "Succeeded", "Unknown"])),
    ) {
        let mut conds = Vec::new();
        if failed_cond { conds.push("Failed"); }
        if target { conds.push("FailureTarget"); }
        let j = job(&conds, active, terminating);
        let p = phase.map(pod);
        if active + terminating > 0 {
            proptest::prop_assert!(!failed(&j, p.as_ref()));
        }
    }
}

fn waiting_pod(reason: &str) -> Pod {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
    let mut p = pod("Pending");
    let status = p.status.as_mut().unwrap();
    status.container_statuses = Some(vec![ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some("the kubelet's words".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    p
}

#[test]
fn a_container_that_cannot_start_is_read_from_its_waiting_reason() {
    let j = job(&[], 1, 0);
    for (reason, problem) in [
        ("ErrImagePull", StartProblem::ErrImagePull),
        ("ImagePullBackOff", StartProblem::ImagePullBackOff),
        (
            "CreateContainerConfigError",
            StartProblem::CreateContainerConfigError,
        ),
        ("InvalidImageName", StartProblem::InvalidImageName),
    ] {
        let view = job_view(&j, Some(&waiting_pod(reason)), None);
        assert_eq!(view.state, JobState::Running);
        let w = view.waiting.expect(reason);
        assert_eq!((w.problem, w.container.as_deref()), (problem, Some("main")));
        assert_eq!(w.message, "the kubelet's words");
    }
    // A start under way is not a problem.
    let view = job_view(&j, Some(&waiting_pod("ContainerCreating")), None);
    assert_eq!(view.waiting, None);
}

#[test]
fn a_running_job_has_no_pod_only_when_none_is_cached_or_counted() {
    assert!(job_view(&job(&[], 0, 0), None, None).no_pod);
    // The Job controller counts a pod the cache has not delivered yet.
    assert!(!job_view(&job(&[], 1, 0), None, None).no_pod);
    assert!(!job_view(&job(&[], 0, 0), Some(&pod("Pending")), None).no_pod);
    // A finished attempt is never "without a pod".
    assert!(!job_view(&job(&["Failed"], 0, 0), None, None).no_pod);
}
