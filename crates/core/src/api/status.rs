use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Condition types the operator writes. Ready, Reconciling and Stalled follow
/// kstatus, so Flux, kpt and `kubectl wait` read them without extra config.
pub mod condition_types {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    pub const GUIDED_FAILURE: &str = "GuidedFailure";
}

/// Where a Step or Deployment stands.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Phase {
    #[default]
    Pending,
    /// A Deployment waits for another release with its concurrency key to finish.
    Queued,
    Running,
    /// An action failed and its next attempt waits for `nextAttemptAt`.
    Retrying,
    /// Retries ran out under guided failure: waits for retry, ignore or abort.
    WaitingForDecision,
    /// A ManualIntervention step waits for approval.
    WaitingForApproval,
    Succeeded,
    Failed,
    /// A Deployment's step that its `runWhen` did not run (step summaries
    /// only): a failure handler of a release that succeeded.
    Skipped,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Queued => "Queued",
            Phase::Running => "Running",
            Phase::Retrying => "Retrying",
            Phase::WaitingForDecision => "WaitingForDecision",
            Phase::WaitingForApproval => "WaitingForApproval",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Skipped => "Skipped",
        }
    }
}

/// Where one action stands.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ActionPhase {
    #[default]
    Pending,
    Running,
    Retrying,
    WaitingForDecision,
    Succeeded,
    Failed,
    /// Failed, and a person chose to carry on.
    Ignored,
}

/// How one attempt ended, as far as the operator has seen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Outcome {
    #[default]
    Running,
    Succeeded,
    Failed,
}

/// One attempt of an action: one Job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptStatus {
    /// 1-based attempt number.
    pub number: u32,
    /// The Job that runs this attempt.
    pub job: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<Timestamp>,
    /// When the operator first saw this attempt fail (sub-second); retry delays count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub failure_seen_at: Option<Timestamp>,
    /// Why it failed: Error, OOMKilled, DeadlineExceeded, BackoffLimitExceeded, JobDeleted, PodFailed, StartTimeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The container's exit code, where its pod reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One action with all its attempts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    pub name: String,
    pub phase: ActionPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptStatus>,
    /// While a retry waits: when the next attempt starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_attempt_at: Option<Timestamp>,
    /// Attempts 1 to this number failed and are no longer listed one by one
    /// (status keeps the latest attempts only; their Jobs tell the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier_attempts: Option<u32>,
}

/// Decisions no longer listed one by one (the oldest), summed up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EarlierDecisions {
    /// How many.
    pub count: u32,
    /// The latest of them was taken then.
    #[schemars(with = "String")]
    pub through: Timestamp,
}

/// A person's decision on an action whose retries ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    /// Run one more attempt now; if it fails, wait for a decision again.
    Retry,
    /// Mark the action Ignored and carry on with the next one.
    Ignore,
    /// Fail the step (reason Aborted).
    Abort,
}

impl Decision {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "retry" => Some(Self::Retry),
            "ignore" => Some(Self::Ignore),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Retry => "retry",
            Decision::Ignore => "ignore",
            Decision::Abort => "abort",
        }
    }
}

/// A decision as the operator applied it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub action: String,
    /// The failed attempt the decision answered.
    pub attempt: u32,
    pub decision: Decision,
    #[schemars(with = "String")]
    pub decided_at: Timestamp,
    /// Who decided: the user the API server stamped into
    /// `stepwise.dev/decided-by` (the `stepwise-decided-by` admission policy).
    /// Absent when nothing stamped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The answer to a ManualIntervention step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub approval: super::Approval,
    #[schemars(with = "String")]
    pub decided_at: Timestamp,
    /// Who approved or rejected (`stepwise.dev/decided-by`, as for decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What the operator reports about a Step. It is rebuilt from the Step's Jobs
/// and the decisions recorded here, so a lost write loses nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation this status describes; -1 until the operator first reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled (kstatus) and GuidedFailure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The action running, waiting or stopped now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_action: Option<String>,
    /// The current action's latest attempt number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// While a retry waits: when the next attempt starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_attempt_at: Option<Timestamp>,
    /// One line a person can act on; keeps the real error visible while retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionStatus>,
    /// Guided-failure decisions applied, oldest first (the latest ones, and
    /// those the step still acts on; each is also recorded on its Job).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionRecord>,
    /// Older decisions, summed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier_decisions: Option<EarlierDecisions>,
    /// The answer to a ManualIntervention step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// While waiting for a decision or an approval with a timeout
    /// (`guidedFailureTimeout`, `approvalTimeout`): when the default is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub decision_deadline: Option<Timestamp>,
}
