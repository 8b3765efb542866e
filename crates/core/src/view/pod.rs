//! What a pod says about its attempt.

use k8s_openapi::api::core::v1::ContainerStatus;

use super::cached::CachedPod as Pod;
use crate::plan::step::{StartProblem, Waiting};
use crate::reason::FailureReason;

/// A container that ended: the one that says most how the pod ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ended {
    pub container: String,
    pub init: bool,
    pub exit_code: i32,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub finished_at: Option<jiff::Timestamp>,
}

/// Everything the operator reads of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodView {
    pub phase: Option<String>,
    /// A failed container first (init containers before the others), else any that ended.
    pub ended: Option<Ended>,
    /// The pod's own reason and message (the kubelet's `Evicted`).
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The `DisruptionTarget` condition's message, when it is True.
    pub disrupted: Option<String>,
    /// What keeps it from starting.
    pub waiting: Option<Waiting>,
}

impl PodView {
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Failed" | "Succeeded"))
    }

    /// Why the pod failed, with its exit code and message, when it says.
    pub fn failure(&self) -> Option<(FailureReason, Option<i32>, String)> {
        let code = self.ended.as_ref().map(|e| e.exit_code);
        if let Some(m) = &self.disrupted {
            return Some((FailureReason::DisruptionTarget, code, m.clone()));
        }
        let own = |reason: &str| {
            let message = self.message.clone().unwrap_or_default();
            (FailureReason::read(reason), code, raw_kept(reason, message))
        };
        if let Some(r) = self.reason.as_deref().filter(|r| *r == "Evicted") {
            return Some(own(r));
        }
        if let Some(e) = self.ended.as_ref().filter(|e| e.exit_code != 0) {
            let raw = e.reason.as_deref().unwrap_or("Error");
            let message = e.message.clone().unwrap_or_default();
            let message = if e.init {
                let why = format!(
                    "init container {} exited with code {}",
                    e.container, e.exit_code
                );
                if message.is_empty() {
                    why
                } else {
                    format!("{why}: {message}")
                }
            } else {
                message
            };
            return Some((
                FailureReason::read(raw),
                Some(e.exit_code),
                raw_kept(raw, message),
            ));
        }
        self.reason.as_deref().map(own)
    }
}

/// The message, prefixed with the raw reason when it is not in the vocabulary.
pub(super) fn raw_kept(raw: &str, message: String) -> String {
    if FailureReason::parse(raw).is_some() {
        message
    } else if message.is_empty() {
        format!("reason {raw}")
    } else {
        format!("reason {raw}: {message}")
    }
}

fn ended(c: &ContainerStatus, init: bool) -> Option<Ended> {
    let t = c.state.as_ref()?.terminated.as_ref()?;
    Some(Ended {
        container: c.name.clone(),
        init,
        exit_code: t.exit_code,
        reason: t.reason.clone(),
        message: t.message.clone(),
        finished_at: t.finished_at.as_ref().map(|t| t.0),
    })
}

/// Reads a pod (trimmed or not: the same either way).
pub fn pod_view(pod: &Pod) -> PodView {
    let Some(status) = pod.status.as_ref() else {
        return PodView::default();
    };
    let inits = status.init_container_statuses.iter().flatten();
    let mains = status.container_statuses.iter().flatten();
    let all: Vec<Ended> = inits
        .filter_map(|c| ended(c, true))
        .chain(mains.filter_map(|c| ended(c, false)))
        .collect();
    // A failed container says most; an init container that succeeded says nothing.
    let pick = all.iter().find(|e| e.exit_code != 0);
    let pick = pick.or_else(|| all.iter().find(|e| !e.init));
    let disrupted = condition(pod, "DisruptionTarget", "True")
        .map(|(reason, message)| format!("{reason}: {message}"));
    PodView {
        phase: status.phase.clone(),
        ended: pick.cloned(),
        reason: status.reason.clone(),
        message: status.message.clone(),
        disrupted,
        waiting: start_problem(pod),
    }
}

/// The reason and message of the pod's condition `type_` when it has `status`.
fn condition(pod: &Pod, type_: &str, status: &str) -> Option<(String, String)> {
    let cs = pod.status.as_ref()?.conditions.as_ref()?;
    let c = cs.iter().find(|c| c.type_ == type_ && c.status == status)?;
    Some((
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

/// What keeps the pod from starting: the first container (init containers
/// first) the kubelet cannot start, else a scheduler that finds no node.
pub fn start_problem(pod: &Pod) -> Option<Waiting> {
    let status = pod.status.as_ref()?;
    let all = status.init_container_statuses.iter().flatten();
    let container = all
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(Waiting {
                container: Some(c.name.clone()),
                problem: StartProblem::from_reason(w.reason.as_deref()?)?,
                message: w.message.clone().unwrap_or_default(),
            })
        });
    container.or_else(|| {
        let (reason, message) = condition(pod, "PodScheduled", "False")?;
        (reason == "Unschedulable").then_some(Waiting {
            container: None,
            problem: StartProblem::Unschedulable,
            message,
        })
    })
}

/// Keeps of a pod what `pod_view` reads, and its owners and the labels the
/// cache's index reads (see [`super::trim_meta`]). The cache holds one per
/// attempt, so this is most of its size.
pub fn trim_pod(p: &mut Pod) {
    super::trim_meta(&mut p.metadata);
    if let Some(status) = p.status.as_mut() {
        // Only the conditions pod_view reads.
        if let Some(cs) = status.conditions.as_mut() {
            cs.retain(|c| matches!(c.type_.as_str(), "PodScheduled" | "DisruptionTarget"));
            for c in cs.iter_mut() {
                c.last_probe_time = None;
            }
        }
        status.pod_ips = None;
        status.host_ips = None;
        // Init containers stay: one that cannot start, or fails, is reported too.
        for c in status
            .init_container_statuses
            .iter_mut()
            .chain(status.container_statuses.iter_mut())
            .flatten()
        {
            c.image = String::new();
            c.image_id = String::new();
            c.last_state = None;
            c.volume_mounts = None;
            c.resources = None;
            c.allocated_resources = None;
        }
    }
}

/// The wake-up key of a pod: a hash of what `pod_view` reads.
pub fn pod_trigger(pod: &Pod) -> u64 {
    super::digest(&pod_view(pod))
}
