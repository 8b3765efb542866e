//! The Events the planners ask the shell to publish, and their reasons as
//! one enum: the shell's metrics and the tests match on it, and
//! [`EventReason::as_str`] is the only place a reason is spelled.

use crate::api::Phase;

/// Why an Event is published (its `reason`, PascalCase as Kubernetes spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    AttemptFailed,
    AttemptCannotStart,
    RetryScheduled,
    GuidedFailure,
    DecisionApplied,
    DecisionIgnored,
    /// No decision or approval came before its deadline: the default was applied.
    DecisionTimedOut,
    Approved,
    Rejected,
    ApprovalIgnored,
    JobNameTaken,
    JobCreateFailed,
    /// The API server refused a Step's Job for good.
    JobRejected,
    StepSucceeded,
    StepFailed,
    StepDeleted,
    StepNameTaken,
    /// The API server refused a Deployment's Step for good.
    StepRejected,
    JobNamesClash,
    DeploymentSucceeded,
    DeploymentFailed,
    /// A release waits for another of its concurrency key.
    Queued,
    /// A newer release of its concurrency key (policy Supersede) replaced it.
    Superseded,
    /// A person cancelled the release (`stepwise.dev/cancel`).
    Cancelled,
    /// A cancel arrived for a release that has nothing running: removed.
    CancelIgnored,
    /// A release failed and runs its failure handlers (`runWhen`) now.
    FailureHandlers,
}

impl EventReason {
    /// Every reason.
    pub const ALL: [EventReason; 26] = [
        Self::AttemptFailed,
        Self::AttemptCannotStart,
        Self::RetryScheduled,
        Self::GuidedFailure,
        Self::DecisionApplied,
        Self::DecisionIgnored,
        Self::DecisionTimedOut,
        Self::Approved,
        Self::Rejected,
        Self::ApprovalIgnored,
        Self::JobNameTaken,
        Self::JobCreateFailed,
        Self::JobRejected,
        Self::StepSucceeded,
        Self::StepFailed,
        Self::StepDeleted,
        Self::StepNameTaken,
        Self::StepRejected,
        Self::JobNamesClash,
        Self::DeploymentSucceeded,
        Self::DeploymentFailed,
        Self::Queued,
        Self::Superseded,
        Self::Cancelled,
        Self::CancelIgnored,
        Self::FailureHandlers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttemptFailed => "AttemptFailed",
            Self::AttemptCannotStart => "AttemptCannotStart",
            Self::RetryScheduled => "RetryScheduled",
            Self::GuidedFailure => "GuidedFailure",
            Self::DecisionApplied => "DecisionApplied",
            Self::DecisionIgnored => "DecisionIgnored",
            Self::DecisionTimedOut => "DecisionTimedOut",
            Self::Approved => "Approved",
            Self::Rejected => "Rejected",
            Self::ApprovalIgnored => "ApprovalIgnored",
            Self::JobNameTaken => "JobNameTaken",
            Self::JobCreateFailed => "JobCreateFailed",
            Self::JobRejected => "JobRejected",
            Self::StepSucceeded => "StepSucceeded",
            Self::StepFailed => "StepFailed",
            Self::StepDeleted => "StepDeleted",
            Self::StepNameTaken => "StepNameTaken",
            Self::StepRejected => "StepRejected",
            Self::JobNamesClash => "JobNamesClash",
            Self::DeploymentSucceeded => "DeploymentSucceeded",
            Self::DeploymentFailed => "DeploymentFailed",
            Self::Queued => "Queued",
            Self::Superseded => "Superseded",
            Self::Cancelled => "Cancelled",
            Self::CancelIgnored => "CancelIgnored",
            Self::FailureHandlers => "FailureHandlers",
        }
    }
}

impl std::fmt::Display for EventReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Event the controller should publish about the object it reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: EventReason,
    pub note: String,
    /// The object the Event is also about (a Step's Job, a Deployment's
    /// Step). Events are aggregated by reason and objects, not by note, so
    /// without it a second attempt's Event would only bump the first's count.
    pub related: Option<String>,
}

impl PlannedEvent {
    pub fn normal(reason: EventReason, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            note: note.into(),
            related: None,
        }
    }
    pub fn warning(reason: EventReason, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            note: note.into(),
            related: None,
        }
    }
    pub fn about(mut self, related: impl Into<String>) -> Self {
        self.related = Some(related.into());
        self
    }

    /// The Event of a Step or a release that reached `phase` (it was
    /// `before`): Normal `*Succeeded` or Warning `*Failed`, the moment it
    /// finishes and never again.
    pub fn finished(
        what: Finished,
        phase: Phase,
        before: Option<Phase>,
        message: &str,
    ) -> Option<Self> {
        if !phase.is_terminal() || before == Some(phase) {
            return None;
        }
        let (succeeded, failed) = match what {
            Finished::Step => (EventReason::StepSucceeded, EventReason::StepFailed),
            Finished::Deployment => (
                EventReason::DeploymentSucceeded,
                EventReason::DeploymentFailed,
            ),
        };
        Some(if phase == Phase::Succeeded {
            Self::normal(succeeded, message)
        } else {
            Self::warning(failed, message)
        })
    }
}

/// What finished, for [`PlannedEvent::finished`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Step,
    Deployment,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<_> = EventReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventReason::ALL.len());
        assert_eq!(EventReason::AttemptFailed.as_str(), "AttemptFailed");
    }
}
