//! One release at a time per concurrency key (`spec.concurrency`).
//!
//! The queue is not kept anywhere: it is read off the cluster on every
//! reconcile (each release's key, creation time, phase and whether it has a
//! Step), so a restarted operator or a second replica reaches the same answer.
//!
//! | this release            | others with its key (not finished)                | verdict                          |
//! |-------------------------|---------------------------------------------------|----------------------------------|
//! | no key, started, finished | (any)                                           | Start (the queue does not apply) |
//! | waiting                 | a newer one whose policy is Supersede             | Superseded by the newest such    |
//! | waiting                 | one has started                                   | Wait behind it                   |
//! | waiting                 | none started, an older one waits                  | Wait behind the oldest           |
//! | waiting                 | none started, none older                          | Start                            |
//!
//! "Started" means the release has a Step or a phase past `Queued` (Running,
//! Retrying, WaitingForDecision, WaitingForApproval): a release that waits for
//! a decision or an approval keeps the key, and those behind it keep waiting.
//! Only the oldest waiting release may start, so two releases that decide at
//! the same time from the same cluster never both start; an older waiting
//! release that a newer one supersedes must be Failed before the newer starts.
//! Order is creationTimestamp, then name.

use jiff::Timestamp;

use super::deployment::DeploymentPlan;
use super::step::REASON_CANCELLED;
use super::{EventReason, PlannedEvent};
use crate::api::{
    Concurrency, ConcurrencyPolicy, DeploymentSpec, DeploymentStatus, Phase, StepSummary,
};
use crate::status::{GuidedFailure, Health, conditions};

/// Where a release stands, as far as the queue cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started: no status yet, Pending or Queued, and no Step.
    Waiting,
    /// Has a Step, or a phase that only a started release reaches.
    Started,
    /// Succeeded, Failed, or being deleted: it no longer holds the key.
    Finished,
}

impl State {
    /// A release's state from its phase, whether one of its Steps exists, and
    /// whether it is being deleted.
    pub fn of(phase: Option<Phase>, has_step: bool, deleting: bool) -> State {
        match phase {
            _ if deleting => State::Finished,
            Some(p) if p.is_terminal() => State::Finished,
            _ if has_step => State::Started,
            None | Some(Phase::Pending | Phase::Queued) => State::Waiting,
            Some(_) => State::Started,
        }
    }
}

/// One Deployment of the namespace, as the queue sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub created: Timestamp,
    pub concurrency: Option<Concurrency>,
    pub state: State,
}

impl Release {
    fn key(&self) -> Option<&str> {
        self.concurrency.as_ref().map(|c| c.key.as_str())
    }

    fn supersedes(&self) -> bool {
        self.concurrency
            .as_ref()
            .is_some_and(|c| c.policy == ConcurrencyPolicy::Supersede)
    }

    /// Queue order: oldest first, then by name.
    fn before(&self, other: &Release) -> bool {
        (self.created, &self.name) < (other.created, &other.name)
    }
}

/// What the queue says about one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on as without a queue.
    Start,
    /// Wait for `behind` to finish; `place` 1 is next in line.
    Wait { behind: String, place: usize },
    /// A newer release with the key replaces this one, which never started.
    Superseded { by: String },
}

/// The verdict for `me`, given the namespace's releases (`me` among them or not).
pub fn decide(me: &Release, namespace: &[Release]) -> Verdict {
    let Some(key) = me.key() else {
        return Verdict::Start;
    };
    if me.state != State::Waiting {
        return Verdict::Start;
    }
    let mut peers: Vec<&Release> = namespace
        .iter()
        .filter(|r| r.name != me.name && r.key() == Some(key) && r.state != State::Finished)
        .collect();
    peers.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let newest_superseding = peers.iter().rev().find(|r| me.before(r) && r.supersedes());
    if let Some(by) = newest_superseding {
        return Verdict::Superseded {
            by: by.name.clone(),
        };
    }
    let older_waiting: Vec<&&Release> = peers
        .iter()
        .filter(|r| r.state == State::Waiting && r.before(me))
        .collect();
    match peers.iter().find(|r| r.state == State::Started) {
        Some(holder) => Verdict::Wait {
            behind: holder.name.clone(),
            place: older_waiting.len() + 1,
        },
        None => match older_waiting.first() {
            Some(first) => Verdict::Wait {
                behind: first.name.clone(),
                place: older_waiting.len(),
            },
            None => Verdict::Start,
        },
    }
}

/// The message of a release that waits in the queue.
pub fn queued_message(key: &str, behind: &str, place: usize) -> String {
    format!(
        "queued: waits for release {behind} to finish (place {place} in the queue for concurrency key {key})"
    )
}

/// The message of a release that a newer one superseded.
pub fn superseded_message(key: &str, by: &str) -> String {
    format!(
        "superseded by the newer release {by} (concurrency key {key}, policy Supersede); it never started"
    )
}

/// The plan of a release the queue holds back (`None` for [`Verdict::Start`]):
/// no Step is created; the status says Queued (in progress) or Failed with
/// reason `Superseded`.
pub fn held(
    spec: &DeploymentSpec,
    previous: &DeploymentStatus,
    verdict: &Verdict,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<DeploymentPlan> {
    let key = spec.concurrency.as_ref().map_or("", |c| c.key.as_str());
    let (phase, reason, message) = match verdict {
        Verdict::Start => return None,
        Verdict::Wait { behind, place } => {
            (Phase::Queued, "Queued", queued_message(key, behind, *place))
        }
        Verdict::Superseded { by } => (Phase::Failed, "Superseded", superseded_message(key, by)),
    };
    let mut events = Vec::new();
    if previous.phase != Some(phase) {
        events.push(match phase {
            Phase::Failed => PlannedEvent::warning(EventReason::Superseded, message.clone()),
            _ => PlannedEvent::normal(EventReason::Queued, message.clone()),
        });
        if phase == Phase::Failed {
            events.push(PlannedEvent::warning(
                EventReason::DeploymentFailed,
                message.clone(),
            ));
        }
    }
    let standing = Standing {
        phase,
        reason,
        message,
    };
    Some(unstarted(spec, previous, standing, events, generation, now))
}

/// The plan of a queued release that a person cancelled
/// (`stepwise.dev/cancel`): Failed with reason `Cancelled`; it never
/// started, so it has nothing to stop and no failure handler runs.
pub fn cancelled(
    spec: &DeploymentSpec,
    previous: &DeploymentStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> DeploymentPlan {
    let message = "cancelled (stepwise.dev/cancel) while queued: it never started".to_string();
    let events = vec![
        PlannedEvent::warning(EventReason::Cancelled, message.clone()),
        PlannedEvent::warning(EventReason::DeploymentFailed, message.clone()),
    ];
    let standing = Standing {
        phase: Phase::Failed,
        reason: REASON_CANCELLED,
        message,
    };
    unstarted(spec, previous, standing, events, generation, now)
}

/// Where a release that has not started stands.
struct Standing {
    phase: Phase,
    reason: &'static str,
    message: String,
}

/// A plan that creates no Step: every step Pending, the release `standing`.
fn unstarted(
    spec: &DeploymentSpec,
    previous: &DeploymentStatus,
    standing: Standing,
    events: Vec<PlannedEvent>,
    generation: Option<i64>,
    now: Timestamp,
) -> DeploymentPlan {
    let Standing {
        phase,
        reason,
        message,
    } = standing;
    let health = Health {
        phase,
        reason: reason.to_string(),
        message: message.clone(),
        guided_failure: spec
            .guided_failure
            .then(|| GuidedFailure::of(false, "NotTriggered", "")),
    };
    let steps = spec
        .steps
        .iter()
        .map(|s| StepSummary {
            name: s.name.clone(),
            step_ref: None,
            phase: Phase::Pending,
            message: None,
        })
        .collect();
    let status = DeploymentStatus {
        phase: Some(phase),
        observed_generation: generation,
        conditions: conditions(&health, &previous.conditions, generation, now),
        current_step: None,
        current_action: None,
        attempt: None,
        message: Some(message),
        steps,
        decision_deadline: None,
        failure: None,
    };
    DeploymentPlan {
        create_step: None,
        status,
        events,
        recheck: false,
    }
}

#[cfg(test)]
mod tests;
