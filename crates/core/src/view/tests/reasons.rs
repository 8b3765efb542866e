//! Why an attempt failed, as its Job and pod say it: exit codes, init
//! containers, disruptions, evictions, OOM kills, start problems; and that a
//! trimmed pod and the triggers read the same.

use super::*;

fn terminated(name: &str, code: i32, reason: &str) -> k8s_openapi::api::core::v1::ContainerStatus {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
    ContainerStatus {
        name: name.into(),
        image: "registry/app:1".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(reason.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> k8s_openapi::api::core::v1::PodCondition {
    k8s_openapi::api::core::v1::PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

fn failure(view: crate::plan::step::JobView) -> (FailureReason, Option<i32>, String) {
    match view.state {
        JobState::Failed {
            reason,
            exit_code,
            message,
            ..
        } => (reason, exit_code, message),
        other => panic!("not failed: {other:?}"),
    }
}

fn failed_job(reason: &str, message: &str) -> Job {
    let mut j = job(&["Failed"], 0, 0);
    let c = &mut j.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
    c.reason = Some(reason.into());
    c.message = Some(message.into());
    j
}

#[test]
fn an_init_container_failure_records_its_exit_code_and_name() {
    let mut p = pod("Failed");
    let status = p.status.as_mut().unwrap();
    status.init_container_statuses = Some(vec![terminated("migrate-schema", 3, "Error")]);
    let (reason, code, message) = failure(job_view(
        &failed_job("BackoffLimitExceeded", "limit"),
        Some(&p),
        None,
    ));
    assert_eq!((reason, code), (FailureReason::Error, Some(3)));
    assert!(
        message.contains("init container migrate-schema exited with code 3"),
        "{message}"
    );
}

#[test]
fn a_disrupted_pod_reads_as_disruption_target_with_or_without_its_pod() {
    let msg = "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0";
    let j = failed_job("PodFailurePolicy", msg);
    assert_eq!(
        failure(job_view(&j, None, None)).0,
        FailureReason::DisruptionTarget
    );
    let mut p = pod("Failed");
    let status = p.status.as_mut().unwrap();
    status.container_statuses = Some(vec![terminated("main", 137, "Error")]);
    status.conditions = Some(vec![condition(
        "DisruptionTarget",
        "True",
        "EvictionByEvictionAPI",
        "Eviction API: evicting",
    )]);
    assert_eq!(
        failure(job_view(&j, Some(&p), None)).0,
        FailureReason::DisruptionTarget
    );
    // The pod alone says so too, before the Job does.
    let (reason, code, _) = failure(job_view(&job(&[], 0, 0), Some(&p), None));
    assert_eq!((reason, code), (FailureReason::DisruptionTarget, Some(137)));
}

#[test]
fn an_evicted_pod_and_unknown_reasons_keep_the_raw_words() {
    let mut p = pod("Failed");
    p.status.as_mut().unwrap().reason = Some("Evicted".into());
    p.status.as_mut().unwrap().message = Some("low on memory".into());
    let (reason, _, message) = failure(job_view(&job(&[], 0, 0), Some(&p), None));
    assert_eq!(
        (reason, message.as_str()),
        (FailureReason::Evicted, "low on memory")
    );
    let mut p = pod("Failed");
    p.status.as_mut().unwrap().container_statuses =
        Some(vec![terminated("main", 2, "ContainerStatusUnknown")]);
    let (reason, code, message) = failure(job_view(&job(&[], 0, 0), Some(&p), None));
    assert_eq!((reason, code), (FailureReason::PodFailed, Some(2)));
    assert!(message.contains("ContainerStatusUnknown"), "{message}");
    let (reason, _, message) = failure(job_view(
        &failed_job("MaxFailedIndexesExceeded", "x"),
        None,
        None,
    ));
    assert_eq!(reason, FailureReason::PodFailed);
    assert_eq!(message, "reason MaxFailedIndexesExceeded: x");
}

#[test]
fn an_oom_kill_beats_the_jobs_backoff_limit_but_not_its_deadline() {
    let mut p = pod("Failed");
    p.status.as_mut().unwrap().container_statuses =
        Some(vec![terminated("main", 137, "OOMKilled")]);
    let got = failure(job_view(
        &failed_job("BackoffLimitExceeded", "limit"),
        Some(&p),
        None,
    ));
    assert_eq!((got.0, got.1), (FailureReason::OOMKilled, Some(137)));
    let got = failure(job_view(
        &failed_job("DeadlineExceeded", "deadline"),
        Some(&p),
        None,
    ));
    assert_eq!(got.0, FailureReason::DeadlineExceeded);
    let got = failure(job_view(
        &failed_job("BackoffLimitExceeded", "limit"),
        None,
        None,
    ));
    assert_eq!(got.0, FailureReason::BackoffLimitExceeded);
}

#[test]
fn an_unschedulable_pod_is_a_start_problem_of_the_pod() {
    let mut p = pod("Pending");
    p.status.as_mut().unwrap().conditions = Some(vec![condition(
        "PodScheduled",
        "False",
        "Unschedulable",
        "0/3 nodes are available",
    )]);
    let w = job_view(&job(&[], 1, 0), Some(&p), None)
        .waiting
        .expect("waiting");
    assert_eq!(
        (w.problem, w.container.clone()),
        (StartProblem::Unschedulable, None)
    );
    assert_eq!(w.describe(), "pod: Unschedulable: 0/3 nodes are available");
}

#[test]
fn a_job_stopped_by_the_start_timeout_reads_as_its_outcome_once_its_pod_is_gone() {
    use crate::api::ANNOTATION_START_FAILURE;
    let mut j = job(&[], 0, 1);
    let at: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let record = crate::view::StartFailure {
        reason: "ImagePullBackOff".into(),
        message: "did not start".into(),
        at,
    };
    j.metadata.annotations = Some(
        [(
            ANNOTATION_START_FAILURE.to_string(),
            serde_json::to_string(&record).unwrap(),
        )]
        .into(),
    );
    let pending = pod("Pending");
    let view = job_view(&j, Some(&pending), None);
    assert_eq!(view.state, JobState::Running, "its pod still terminates");
    assert!(view.start_failure_recorded);
    j.status.as_mut().unwrap().terminating = Some(0);
    let (reason, code, message) = failure(job_view(&j, None, None));
    assert_eq!(
        (reason, code, message.as_str()),
        (FailureReason::ImagePullBackOff, None, "did not start")
    );
}

#[test]
fn trimmed_pods_read_the_same() {
    let mut p = pod("Failed");
    let status = p.status.as_mut().unwrap();
    status.init_container_statuses = Some(vec![terminated("init", 3, "Error")]);
    status.container_statuses = Some(vec![terminated("main", 137, "OOMKilled")]);
    status.conditions = Some(vec![
        condition("Ready", "False", "PodFailed", ""),
        condition("PodScheduled", "False", "Unschedulable", "0/3 nodes"),
        condition(
            "DisruptionTarget",
            "True",
            "EvictionByEvictionAPI",
            "evicting",
        ),
    ]);
    let before = pod_view(&p);
    trim_pod(&mut p);
    assert_eq!(pod_view(&p), before);
    let status = p.status.as_ref().unwrap();
    assert_eq!(
        status.conditions.as_ref().map(Vec::len),
        Some(2),
        "Ready is dropped"
    );
    assert!(
        status.container_statuses.as_ref().unwrap()[0]
            .image
            .is_empty()
    );
}

#[test]
fn triggers_change_with_what_the_views_read() {
    use crate::view::{job_trigger, pod_trigger};
    let mut p = pod("Running");
    let before = pod_trigger(&p);
    p.metadata.resource_version = Some("2".into());
    assert_eq!(pod_trigger(&p), before, "nothing read changed");
    p.status.as_mut().unwrap().phase = Some("Failed".into());
    assert_ne!(pod_trigger(&p), before);
    let j = job(&["FailureTarget"], 0, 1);
    assert_ne!(
        job_trigger(&j),
        job_trigger(&job(&["FailureTarget"], 0, 0)),
        "the counts falling wake it"
    );
}
