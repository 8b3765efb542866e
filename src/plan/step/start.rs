//! A container that cannot start: the kubelet's reason, as the Step's
//! message and a Warning Event, while its attempt still counts as running.

use super::*;

/// Why the kubelet cannot start a container (its waiting reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartProblem {
    ErrImagePull,
    ImagePullBackOff,
    CreateContainerConfigError,
    InvalidImageName,
}

impl StartProblem {
    /// The problem a container's waiting reason names, if any (not the
    /// reasons of a start under way, such as ContainerCreating).
    pub fn from_reason(reason: &str) -> Option<StartProblem> {
        Some(match reason {
            "ErrImagePull" => StartProblem::ErrImagePull,
            "ImagePullBackOff" => StartProblem::ImagePullBackOff,
            "CreateContainerConfigError" => StartProblem::CreateContainerConfigError,
            "InvalidImageName" => StartProblem::InvalidImageName,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StartProblem::ErrImagePull => "ErrImagePull",
            StartProblem::ImagePullBackOff => "ImagePullBackOff",
            StartProblem::CreateContainerConfigError => "CreateContainerConfigError",
            StartProblem::InvalidImageName => "InvalidImageName",
        }
    }
}

/// A container of the attempt's pod waiting on a start problem.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub container: String,
    pub problem: StartProblem,
    pub message: String,
}

/// The Step's reason while its running attempt's container cannot start.
pub const REASON_CANNOT_START: &str = "ContainerCannotStart";

impl Planner<'_, '_> {
    /// The verdict for a running attempt: "running", or what keeps its
    /// container from starting, with a Warning Event when that is news.
    pub(super) fn running(&mut self, name: &str, head: String, last: &AttemptStatus) -> Verdict {
        let waiting = self
            .obs
            .jobs
            .get(&(name.to_string(), last.number))
            .and_then(|j| j.waiting.as_ref());
        let Some(w) = waiting else {
            let msg = format!("{head} attempt {} running", last.number);
            return Verdict::new(Phase::Running, "Running", msg, None);
        };
        let msg = bounds::capped(format!(
            "{head} attempt {} cannot start: container {}: {}: {}",
            last.number,
            w.container,
            w.problem.as_str(),
            w.message
        ));
        if self.obs.previous.message.as_deref() != Some(msg.as_str()) {
            self.events
                .push(PlannedEvent::warning("AttemptCannotStart", msg.clone()).about(&last.job));
        }
        Verdict::new(Phase::Running, REASON_CANNOT_START, msg, None)
    }
}
