//! The walk over a release's steps, in order, that finds where it stands.
//!
//! Until a step fails, the `OnSuccess` and `Always` steps run one after the
//! other and an `OnFailure` step is skipped (summary `Skipped`). The first
//! step that fails (its retries ran out, it was aborted, rejected or
//! cancelled, or a cancel came between two steps) fails the release; from
//! there the `OnFailure` and `Always` steps after it run in order, the
//! failure handlers, and the `OnSuccess` ones never start (they stay
//! Pending). The release reads as in progress while a handler runs and
//! Failed, with the first failure's reason, once none is left. A handler that
//! fails is reported beside that failure, and the handlers after it still run.

use super::{StepSlot, step_name};
use crate::api::{DeploymentSpec, DeploymentStep, Phase, RunWhen, StepSummary};
use crate::plan::step::REASON_CANCELLED;

/// Where the walk over the steps stopped.
pub(super) struct Walked {
    pub phase: Phase,
    pub reason: &'static str,
    pub message: String,
    pub current: Option<usize>,
    pub create_step: Option<usize>,
    pub recheck: bool,
    /// The step whose failure failed the release, and whether that failure
    /// is a cancel that came before the step started.
    pub failed: Option<Failure>,
}

impl Walked {
    /// A release refused as written, before any step runs.
    pub fn refused(reason: &'static str, message: String) -> Walked {
        Walked {
            phase: Phase::Failed,
            reason,
            message,
            current: None,
            create_step: None,
            recheck: false,
            failed: None,
        }
    }
}

/// The first failure of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Failure {
    pub index: usize,
    pub reason: &'static str,
    pub message: String,
    /// The handlers that ran after it, by name, with the message of each
    /// that failed.
    pub handlers: Vec<(String, Option<String>)>,
}

impl Failure {
    /// The release's message once every handler has run.
    fn final_message(&self) -> String {
        let failed: Vec<String> = self
            .handlers
            .iter()
            .filter_map(|(name, failed)| failed.as_ref().map(|m| format!("handler {name}: {m}")))
            .collect();
        let ran: Vec<&str> = self.handlers.iter().map(|(n, _)| n.as_str()).collect();
        match (ran.is_empty(), failed.is_empty()) {
            (true, _) => self.message.clone(),
            (false, true) => format!(
                "{}; failure handlers succeeded: {}",
                self.message,
                ran.join(", ")
            ),
            (false, false) => format!(
                "{}; a failure handler failed too: {}",
                self.message,
                failed.join("; ")
            ),
        }
    }
}

/// What one step's slot says, as far as the walk cares.
enum Seen {
    Done,
    Failed {
        reason: &'static str,
        message: String,
    },
    /// No Step yet: create it.
    Missing,
    /// Under way, or waiting for a person or for a name to be freed.
    Busy {
        phase: Phase,
        reason: &'static str,
        message: String,
        recheck: bool,
    },
}

/// `cancel`: a cancel is asked for (on the Deployment or one of its Steps),
/// so no `OnSuccess` step starts any more; `failed_before` is the step a
/// cancel stopped the release before, as last written.
pub(super) fn walk(
    spec: &DeploymentSpec,
    name: &str,
    slots: &[StepSlot],
    summaries: &mut [StepSummary],
    cancel: bool,
    failed_before: Option<&str>,
) -> Walked {
    let total = spec.steps.len();
    let mut failure: Option<Failure> = None;
    let mut skipped = 0;
    for (i, s) in spec.steps.iter().enumerate() {
        let head = format!("step {} ({}/{total})", s.name, i + 1);
        if failure.is_none()
            && cancel
            && cancelled_before(s, &slots[i], &summaries[i], failed_before)
        {
            // A cancel between two steps: the release fails here, before
            // this step starts (an `Always` step still runs, as a handler).
            failure = Some(Failure {
                index: i,
                reason: REASON_CANCELLED,
                message: format!("cancelled (stepwise.dev/cancel) before {head} started"),
                handlers: Vec::new(),
            });
        }
        if !s.run_when.runs(failure.is_some()) {
            if failure.is_none() {
                skipped += 1;
                skip(s, &slots[i], &mut summaries[i]);
            }
            continue;
        }
        let seen = see(name, &head, &slots[i], &mut summaries[i]);
        if let Some(stop) = take(seen, i, &head, &mut failure, &mut summaries[i]) {
            if stop.create_step.is_some() {
                summaries[i].step_ref = Some(step_name(name, &s.name));
                // Written as it will read once the Step exists, so that
                // the Step's appearance changes nothing here.
                summaries[i].phase = Phase::Running;
            }
            return Walked {
                failed: failure,
                ..stop
            };
        }
    }
    end(failure, skipped, total)
}

/// Takes in what step `i` says: `Some` where the walk stops at it (to
/// create its Step, or while it is under way).
fn take(
    seen: Seen,
    i: usize,
    head: &str,
    failure: &mut Option<Failure>,
    summary: &mut StepSummary,
) -> Option<Walked> {
    let stop = |phase, reason, message, create: bool, recheck| Walked {
        phase,
        reason,
        message,
        current: Some(i),
        create_step: create.then_some(i),
        recheck,
        failed: None,
    };
    let name = summary.name.clone();
    match (seen, failure.as_mut()) {
        (Seen::Done, None) => None,
        (Seen::Done, Some(f)) => {
            f.handlers.push((name, None));
            None
        }
        (Seen::Failed { reason, message }, None) => {
            *failure = Some(Failure {
                index: i,
                reason,
                message,
                handlers: Vec::new(),
            });
            None
        }
        (Seen::Failed { message, .. }, Some(f)) => {
            let detail = summary.message.clone().unwrap_or(message);
            f.handlers.push((name, Some(detail)));
            None
        }
        (Seen::Missing, f) => {
            let (reason, message) = handling(f.as_deref(), "Running", format!("{head} running"));
            Some(stop(Phase::Running, reason, message, true, false))
        }
        (
            Seen::Busy {
                phase,
                reason,
                message,
                recheck,
            },
            f,
        ) => {
            let (reason, message) = handling(f.as_deref(), reason, message);
            Some(stop(phase, reason, message, false, recheck))
        }
    }
}

/// Where a walk that passed every step ends.
fn end(failure: Option<Failure>, skipped: usize, total: usize) -> Walked {
    let (phase, reason, message, current) = match &failure {
        None => (
            Phase::Succeeded,
            "Succeeded",
            match skipped {
                0 => format!("all {total} steps succeeded"),
                n => format!(
                    "{} of {total} steps succeeded, {n} skipped (runWhen: OnFailure)",
                    total - n
                ),
            },
            None,
        ),
        Some(f) => (Phase::Failed, f.reason, f.final_message(), Some(f.index)),
    };
    Walked {
        phase,
        reason,
        message,
        current,
        create_step: None,
        recheck: false,
        failed: failure,
    }
}

/// Whether a cancel failed the release just before step `s`, the walk
/// having found no failure before it: `s` is where the release would go on
/// (not started yet: it never will now), or it started only as a failure
/// handler of that cancel (an `OnFailure` step, or the one the status names).
fn cancelled_before(
    s: &DeploymentStep,
    slot: &StepSlot,
    summary: &StepSummary,
    failed_before: Option<&str>,
) -> bool {
    let started = *slot != StepSlot::Missing || summary.step_ref.is_some();
    match s.run_when {
        // Skipped while the release had not failed.
        RunWhen::OnFailure => started,
        RunWhen::OnSuccess | RunWhen::Always => !started || failed_before == Some(s.name.as_str()),
    }
}

/// A failure handler of a release that has not failed: Skipped, unless a
/// Step of it exists after all (then it reads as that Step says).
fn skip(s: &DeploymentStep, slot: &StepSlot, summary: &mut StepSummary) {
    if *slot == StepSlot::Missing && summary.step_ref.is_none() {
        summary.phase = Phase::Skipped;
        summary.step_ref = None;
        summary.message = Some(format!(
            "skipped: {} runs only when the release fails (runWhen: OnFailure)",
            s.name
        ));
    }
}

/// A handler's reason and message: the release's first failure comes first.
fn handling(
    failure: Option<&Failure>,
    reason: &'static str,
    message: String,
) -> (&'static str, String) {
    match failure {
        None => (reason, message),
        Some(f) => (
            if reason == "Running" {
                "RunningFailureHandlers"
            } else {
                reason
            },
            format!("{}; failure handler {message}", f.message),
        ),
    }
}

/// What one step's slot says; fills in its summary where the slot decides it.
fn see(name: &str, head: &str, slot: &StepSlot, summary: &mut StepSummary) -> Seen {
    let view = match slot {
        StepSlot::Missing => {
            return match summary.phase {
                Phase::Succeeded => Seen::Done,
                // Gone after it failed: it stays failed, never runs again.
                Phase::Failed => Seen::Failed {
                    reason: "StepFailed",
                    message: format!("{head}: {}", summary.message.clone().unwrap_or_default()),
                },
                _ => Seen::Missing,
            };
        }
        StepSlot::Foreign(f) => {
            let (phase, reason, msg) = f.verdict(name, head);
            summary.step_ref = Some(f.name.clone());
            summary.phase = phase;
            summary.message = Some(msg.clone());
            return match phase {
                Phase::Failed => Seen::Failed {
                    reason,
                    message: msg,
                },
                _ => Seen::Busy {
                    phase,
                    reason,
                    message: msg,
                    recheck: phase == Phase::Running,
                },
            };
        }
        StepSlot::Ours(view) => view,
    };
    let message = match &view.message {
        Some(detail) => format!("{head}: {detail}"),
        None => format!("{head} running"),
    };
    let (phase, reason) = match view.phase {
        Phase::Succeeded | Phase::Skipped => return Seen::Done,
        Phase::Failed => {
            return Seen::Failed {
                reason: "StepFailed",
                message,
            };
        }
        Phase::WaitingForDecision => (Phase::WaitingForDecision, "GuidedFailure"),
        Phase::WaitingForApproval => (Phase::WaitingForApproval, "WaitingForApproval"),
        Phase::Retrying => (Phase::Retrying, "Retrying"),
        Phase::Pending | Phase::Queued | Phase::Running => (Phase::Running, "Running"),
    };
    Seen::Busy {
        phase,
        reason,
        message,
        recheck: false,
    }
}
