//! A container that cannot start: the kubelet's reason, as the Step's
//! message and a Warning Event, while its attempt still counts as running;
//! once the action's start timeout has passed since the attempt started
//! (its Job's creation), the attempt fails with reason `StartTimeout`.
//!
//! The failure is the planner's own decision, not read from the Job: it is
//! recorded in the Step's status like any failure, and only after that
//! status write does the shell delete the stuck Job (so its pod goes too).
//! A recorded outcome never regresses and a missing Job counts as
//! `JobDeleted` only for an attempt still running, so the deleted Job of a
//! failed attempt reads as that failure after a restart; the Job's
//! active/terminating counts (the no-overlap rule) are never consulted for
//! it, as its pod never ran a container. Until the Job is gone, every plan
//! asks again to delete it, so a crash between the two writes heals.

use jiff::SignedDuration;

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
/// The attempt's reason when its container did not start in time.
pub const REASON_START_TIMEOUT: &str = "StartTimeout";

/// The Jobs of attempts failed for `StartTimeout` that are still there.
pub(super) fn stuck_jobs(
    actions: &[ActionStatus],
    jobs: &BTreeMap<AttemptKey, JobView>,
) -> Vec<String> {
    actions
        .iter()
        .flat_map(|a| a.attempts.iter().map(move |x| (a, x)))
        .filter(|(_, x)| {
            x.outcome == Outcome::Failed && x.reason.as_deref() == Some(REASON_START_TIMEOUT)
        })
        .filter_map(|(a, x)| jobs.get(&(a.name.clone(), x.number)))
        .map(|j| j.name.clone())
        .collect()
}

impl Planner<'_, '_> {
    /// Fails the running latest attempt of `action` (at `index`) with
    /// `StartTimeout` when its container cannot start, or its Job has no pod,
    /// and the start timeout has passed; before that, wakes at the deadline.
    pub(super) fn start_timeout(&mut self, index: usize, action: &mut ActionStatus) {
        let Some(last) = action.attempts.last_mut() else {
            return;
        };
        let Some(job) = self.obs.jobs.get(&(action.name.clone(), last.number)) else {
            return;
        };
        if last.outcome != Outcome::Running || job.state != JobState::Running {
            return;
        }
        let problem = match (&job.waiting, job.no_pod) {
            (Some(w), _) => format!(
                "container {}: {}: {}",
                w.container,
                w.problem.as_str(),
                w.message
            ),
            (None, true) => "the Job has no pod".to_string(),
            (None, false) => return,
        };
        let Some(start) = job.created_at.or(last.started_at) else {
            return;
        };
        let limit = self.spec.actions.get(index).map_or(
            SignedDuration::from_secs(crate::api::DEFAULT_START_TIMEOUT_SECONDS),
            crate::api::Action::start_timeout,
        );
        let deadline = start + limit;
        if self.now < deadline {
            self.requeue_at = Some(deadline);
            return;
        }
        last.outcome = Outcome::Failed;
        last.finished_at = not_before(self.now, last.started_at);
        last.failure_seen_at = Some(self.now);
        last.reason = Some(REASON_START_TIMEOUT.into());
        last.exit_code = None;
        last.message = Some(bounds::capped(format!(
            "did not start within {} s: {problem}",
            limit.as_secs()
        )));
        let note = format!(
            "action {} attempt {} failed: {}",
            action.name,
            last.number,
            describe(last)
        );
        self.events
            .push(PlannedEvent::warning("AttemptFailed", note).about(&last.job));
    }

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
