//! A pod that cannot start: the cause (a container's waiting reason, an
//! unschedulable pod, a pod the Job controller cannot create) as the Step's
//! message and a Warning Event, while its attempt still counts as running;
//! once the action's start timeout has passed since the attempt started
//! (its Job's creation), the attempt fails with that cause as its reason
//! (`ImagePullBackOff`, `CreateContainerConfigError`, `InvalidImageName`,
//! `Unschedulable`, `FailedCreate`), or `StartTimeout` when none is known.
//! `retryOn.reasons: [StartTimeout]` matches all of them.
//!
//! The failure is the planner's own decision, not read from the Job, so it
//! is kept on the Job too: before the status write, the shell annotates the
//! stuck Job with the outcome (`stepwise.dev/start-failure`) and suspends it
//! (the Job controller deletes its pod). The view reads such a Job as failed
//! with that outcome once its pod is gone, so a wiped status reads the same
//! failure back and never runs the attempt again. Until the Job carries
//! the outcome, every plan asks again to stop it.

use jiff::SignedDuration;

use super::*;
use crate::reason::FailureReason;
use crate::view::StartFailure;

/// Why an attempt's pod cannot start: a container's waiting reason, the
/// scheduler's, or the Job controller's when it cannot create the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartProblem {
    ErrImagePull,
    ImagePullBackOff,
    CreateContainerConfigError,
    InvalidImageName,
    /// The pod's `PodScheduled` condition is False with this reason.
    Unschedulable,
    /// The Job controller's `FailedCreate` Warning Event (admission, quota).
    FailedCreate,
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
            StartProblem::Unschedulable => "Unschedulable",
            StartProblem::FailedCreate => "FailedCreate",
        }
    }

    /// The reason an attempt that the start timeout fails with this problem records.
    pub fn reason(self) -> FailureReason {
        match self {
            // The kubelet alternates the two while it retries the pull.
            StartProblem::ErrImagePull | StartProblem::ImagePullBackOff => {
                FailureReason::ImagePullBackOff
            }
            StartProblem::CreateContainerConfigError => FailureReason::CreateContainerConfigError,
            StartProblem::InvalidImageName => FailureReason::InvalidImageName,
            StartProblem::Unschedulable => FailureReason::Unschedulable,
            StartProblem::FailedCreate => FailureReason::FailedCreate,
        }
    }
}

/// What keeps the attempt's pod from starting: a container (`container`
/// set), or the pod as a whole (unschedulable, never created).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Waiting {
    pub container: Option<String>,
    pub problem: StartProblem,
    pub message: String,
}

impl Waiting {
    /// The problem in a person's words, e.g. `container main: ImagePullBackOff: ...`.
    pub fn describe(&self) -> String {
        let (problem, message) = (self.problem.as_str(), &self.message);
        match (&self.container, self.problem) {
            (Some(c), _) => format!("container {c}: {problem}: {message}"),
            (None, StartProblem::FailedCreate) => format!("pod not created: {problem}: {message}"),
            (None, _) => format!("pod: {problem}: {message}"),
        }
    }
}

/// The Step's reason while its running attempt's container cannot start.
pub const REASON_CANNOT_START: &str = "ContainerCannotStart";
/// The attempt's reason when it did not start in time and no cause is known.
pub const REASON_START_TIMEOUT: &str = "StartTimeout";
/// How soon a running attempt whose Job has no pod is looked at again.
const LOOK_AGAIN_SECONDS: i64 = 2;

/// Whether the start timeout failed this attempt.
fn start_failed(x: &AttemptStatus) -> bool {
    x.outcome == Outcome::Failed
        && x.reason
            .as_deref()
            .and_then(FailureReason::parse)
            .is_some_and(FailureReason::is_start_failure)
}

/// The Jobs of attempts the start timeout failed that do not carry the
/// outcome yet: each to be annotated and suspended before the status write.
pub(super) fn stuck_jobs(
    actions: &[ActionStatus],
    jobs: &BTreeMap<AttemptKey, JobView>,
) -> Vec<StopJob> {
    actions
        .iter()
        .flat_map(|a| a.attempts.iter().map(move |x| (a, x)))
        .filter(|(_, x)| start_failed(x))
        .filter_map(|(a, x)| {
            let job = jobs.get(&(a.name.clone(), x.number))?;
            let record = StartFailure {
                reason: x.reason.clone()?,
                message: x.message.clone().unwrap_or_default(),
                at: x.finished_at?,
            };
            (!job.start_failure_recorded).then(|| StopJob {
                name: job.name.clone(),
                record,
            })
        })
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
        let (reason, problem) = match (&job.waiting, job.no_pod) {
            (Some(w), _) => (w.problem.reason(), w.describe()),
            (None, true) => (
                FailureReason::StartTimeout,
                "the Job has no pod".to_string(),
            ),
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
            // No pod and no word why: look again soon for the Job
            // controller's FailedCreate Event.
            let soon = self.now + SignedDuration::from_secs(LOOK_AGAIN_SECONDS);
            self.requeue_at = Some(match (&job.waiting, job.no_pod) {
                (None, true) => deadline.min(soon),
                _ => deadline,
            });
            return;
        }
        last.outcome = Outcome::Failed;
        last.finished_at = not_before(self.now, last.started_at);
        last.failure_seen_at = Some(self.now);
        last.reason = Some(reason.as_str().into());
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
            .push(PlannedEvent::warning(EventReason::AttemptFailed, note).about(&last.job));
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
            "{head} attempt {} cannot start: {}",
            last.number,
            w.describe()
        ));
        if self.obs.previous.message.as_deref() != Some(msg.as_str()) {
            self.events.push(
                PlannedEvent::warning(EventReason::AttemptCannotStart, msg.clone())
                    .about(&last.job),
            );
        }
        Verdict::new(Phase::Running, REASON_CANNOT_START, msg, None)
    }
}
