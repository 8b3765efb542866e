//! The custom resources: `Deployment` (a release) and `Step` (one step of it),
//! their retry policy and their status. CEL rules sit next to the field they guard.

mod concurrency;
mod deployment;
mod retry;
mod rules;
mod status;
mod step;
mod timeout;

pub use concurrency::{Concurrency, ConcurrencyPolicy};
pub use deployment::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStep, ReleaseFailure, StepSummary,
};
pub use retry::{RetryOn, RetryPolicy};
pub use status::{
    ActionPhase, ActionStatus, ApprovalRecord, AttemptStatus, Decision, DecisionRecord,
    EarlierDecisions, Outcome, Phase, StepStatus, condition_types,
};
pub use step::{
    Action, Approval, Approvers, DEFAULT_START_TIMEOUT_SECONDS, RunWhen, Step, StepSpec, StepType,
};
pub use timeout::{ApprovalTimeout, DECIDED_BY_TIMEOUT, GuidedFailureTimeout};

/// On a Step (and its Jobs and pods): the Deployment it belongs to.
pub const LABEL_DEPLOYMENT: &str = "stepwise.dev/deployment";
/// On a Job and its pod: the Step that owns it.
pub const LABEL_STEP: &str = "stepwise.dev/step";
/// On a Job and its pod: the action it runs.
pub const LABEL_ACTION: &str = "stepwise.dev/action";
/// On a Job and its pod: the 1-based attempt number.
pub const LABEL_ATTEMPT: &str = "stepwise.dev/attempt";
/// On a Deployment: the operator shard that runs it (`stepwise controller
/// --shard NAME`); unlabelled releases belong to the process without
/// `--shard`. Carried on to its Steps, Jobs and pods.
pub const LABEL_SHARD: &str = "stepwise.dev/shard";
/// Set on a Step waiting in guided failure: `retry`, `ignore` or `abort`.
pub const ANNOTATION_DECISION: &str = "stepwise.dev/guided-failure-decision";
/// Set on a ManualIntervention Step: `approved` or `rejected`.
pub const ANNOTATION_APPROVAL: &str = "stepwise.dev/approval";
/// Set on a Deployment (by a person, or `kubectl stepwise cancel`) to cancel
/// a running release: `"true"`. The operator hands it to the running Step,
/// where it stays as the durable record of the cancel.
pub const ANNOTATION_CANCEL: &str = "stepwise.dev/cancel";
/// Stamped by the API server (the `stepwise-decided-by` MutatingAdmissionPolicy)
/// with the user who set a decision or approval annotation; the operator
/// records it as the decision's `by`.
pub const ANNOTATION_DECIDED_BY: &str = "stepwise.dev/decided-by";
/// On a Job: when the operator created it, to the millisecond (creationTimestamp
/// has whole seconds), so an adopted attempt keeps its exact start.
pub const ANNOTATION_CREATED_AT: &str = "stepwise.dev/created-at";
/// On a Job, written by the operator: the decision that answered this
/// attempt's failure (`{"decision":"retry","decidedAt":"...","by":"alice"}`), so a status
/// wipe cannot lose it.
pub const ANNOTATION_RECORDED_DECISION: &str = "stepwise.dev/recorded-decision";
/// On a ManualIntervention Step, written by the operator: the approval as
/// recorded (`{"approval":"approved","decidedAt":"...","by":"alice"}`).
pub const ANNOTATION_RECORDED_APPROVAL: &str = "stepwise.dev/recorded-approval";
/// On a Job, written by the operator before the status records it: the
/// start timeout's outcome (`{"reason":"ImagePullBackOff","message":"...","at":"..."}`);
/// the Job is suspended with it, and reads as that failure once its pod is gone.
pub const ANNOTATION_START_FAILURE: &str = "stepwise.dev/start-failure";
/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "stepwise";
