//! What the Deployment planner reads of each step: its `Step` object as
//! seen, a name held by someone else, or nothing yet.

use jiff::Timestamp;

use super::*;

/// What the controller saw of one step's `Step` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StepView {
    pub name: String,
    pub phase: Phase,
    pub message: Option<String>,
    pub current_action: Option<String>,
    pub attempt: Option<u32>,
    /// Its running attempt's container cannot start: that needs attention too.
    pub cannot_start: bool,
    /// When the default decision or approval is applied, while it waits for one.
    pub decision_deadline: Option<Timestamp>,
}

impl StepView {
    /// The part of a Step the Deployment's status depends on; the Step
    /// watch wakes a Deployment only when this changes.
    pub fn mirrored(mut self) -> Self {
        // A Step that exists is under way: its few milliseconds of Pending
        // before its first reconcile are not worth a write.
        if self.phase == Phase::Pending {
            self.phase = Phase::Running;
        }
        if !needs_attention(self.phase) && !self.cannot_start {
            self.message = None;
            self.current_action = None;
            self.attempt = None;
            self.decision_deadline = None;
        }
        self
    }
}

/// Phases in which the action, attempt and message matter to whoever looks
/// at the release (`kubectl get swd` shows them).
fn needs_attention(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Retrying | Phase::WaitingForDecision | Phase::WaitingForApproval | Phase::Failed
    )
}

/// What the controller found under the name of one step's `Step` object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StepSlot {
    /// No Step by that name.
    #[default]
    Missing,
    /// A Step whose controller ownerReference is this very Deployment (uid).
    Ours(StepView),
    /// A Step by that name that belongs to something else.
    Foreign(ForeignStep),
}

/// A Step that has the name a step needs but is not this Deployment's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignStep {
    pub name: String,
    /// Its controller owner, when it has one.
    pub owner: Option<Owner>,
}

impl ForeignStep {
    /// Another Deployment owns it: the names clash for good.
    fn clashes_with(&self, deployment: &str) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.kind == "Deployment" && o.name != deployment)
    }

    /// Failed when another release owns it, else a wait for it to go.
    pub(super) fn verdict(&self, deployment: &str, head: &str) -> (Phase, &'static str, String) {
        if self.clashes_with(deployment) {
            let msg = format!(
                "{head} cannot start: the Step name {} is already taken by another release ({}); rename this Deployment or its step",
                self.name,
                self.owned_by()
            );
            (Phase::Failed, "StepNameTaken", msg)
        } else {
            let msg = format!(
                "{head} waits: a Step named {} exists, {}, not by this Deployment; it starts once that Step is gone",
                self.name,
                self.owned_by()
            );
            (Phase::Running, "WaitingForStepName", msg)
        }
    }

    fn owned_by(&self) -> String {
        match &self.owner {
            Some(o) => format!("owned by {o}"),
            None => "owned by no controller".to_string(),
        }
    }
}

/// The note a step's summary carries once its Step object is gone after it finished.
pub fn deleted_note(step_ref: &str) -> String {
    format!("Step {step_ref} was deleted after it finished; the step is not run again")
}
