//! What the Step planner is given: the Step's Jobs as views, its
//! annotations and recorded answers, and what the API server refused.

use super::*;

/// What the controller saw of one attempt's Job (and its pod).
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub name: String,
    pub created_at: Option<Timestamp>,
    pub state: JobState,
    /// The decision that answered this attempt's failure, as the operator
    /// recorded it on the Job.
    pub decision: Option<JobDecision>,
    /// While it runs: a container the kubelet cannot start, and why.
    pub waiting: Option<Waiting>,
    /// While it runs: the Job has no pod at all (admission refused it, say).
    pub no_pod: bool,
    /// The Job carries its start timeout's outcome (`stepwise.dev/start-failure`).
    pub start_failure_recorded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    Running,
    Succeeded {
        finished_at: Option<Timestamp>,
    },
    Failed {
        finished_at: Option<Timestamp>,
        reason: FailureReason,
        exit_code: Option<i32>,
        message: String,
        /// When the operator's watch first delivered the failure; retry
        /// delays count from here rather than from a later reconcile.
        seen_at: Option<Timestamp>,
    },
}

/// Everything the planner reads.
#[derive(Clone, Debug, Default)]
pub struct StepObservation<'a> {
    /// The Step's name; Job names derive from it.
    pub step_name: &'a str,
    pub generation: Option<i64>,
    /// Stable per Step (its uid): spreads jitter between steps.
    pub seed: &'a str,
    /// The status as last written (default when none).
    pub previous: StepStatus,
    /// The Step's Jobs found on the cluster.
    pub jobs: BTreeMap<AttemptKey, JobView>,
    pub decision_annotation: Option<&'a str>,
    pub approval_annotation: Option<&'a str>,
    /// `stepwise.dev/decided-by`: who set the decision or approval annotation
    /// (stamped by the API server's admission policy; absent without it).
    pub decided_by: Option<&'a str>,
    /// `stepwise.dev/cancel` on the Step, handed over by its Deployment.
    pub cancel_annotation: Option<&'a str>,
    /// Jobs that have the name an attempt needs but whose controller is not
    /// this Step (by uid): never an attempt of it, only a reason to wait.
    pub foreign: BTreeMap<AttemptKey, ForeignJob>,
    /// The last create of an attempt's Job was refused for now.
    pub refused: Option<Refused>,
    /// The approval as the operator recorded it on the Step.
    pub recorded_approval: Option<ApprovalRecord>,
    /// The Step's creationTimestamp: a ManualIntervention step waits for
    /// approval from then (its `approvalTimeout` counts from here).
    pub created_at: Option<Timestamp>,
}

/// A Job under an attempt's name that belongs to something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignJob {
    pub name: String,
    pub owner: Option<Owner>,
}

/// A create the API server refused for now (quota, forbidden, a foreign
/// Job under the name, throttling, its own errors, a timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub action: String,
    pub attempt: u32,
    /// The API server's words (or the client's, for a timeout).
    pub message: String,
    /// When to try again.
    pub retry_at: Timestamp,
}
