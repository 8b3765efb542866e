use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{ApprovalTimeout, GuidedFailureTimeout, RetryPolicy, StepStatus};

/// One step of a release: its actions run in order, each attempt as one Job.
/// The Deployment controller creates Steps; a Step created by hand runs on its own.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "stepwise.dev",
    version = "v1alpha1",
    kind = "Step",
    namespaced,
    status = "StepStatus",
    shortname = "sws",
    category = "stepwise",
    doc = "One step of a Stepwise release: an ordered list of actions, each run as a batch/v1 Job, with an optional retries condition.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Action", type_ = "string", json_path = ".status.currentAction"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".status.attempt"),
    printcolumn(name = "Next Retry", type_ = "string", json_path = ".status.nextAttemptAt"),
    // A string, not a date: kubectl prints a future date as `<invalid>`.
    printcolumn(name = "Deadline", type_ = "string", json_path = ".status.decisionDeadline"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    validation = Rule::new("size(self.metadata.name) <= 63").message("a Step name is used as a label value on its Jobs, so it must be at most 63 characters")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: a Step runs exactly what it was created with"))]
#[x_kube(validation = super::rules::run_needs_actions())]
#[x_kube(validation = super::rules::manual_has_no_actions())]
#[x_kube(validation = super::rules::manual_has_no_retries())]
#[x_kube(validation = super::rules::approval_timeout_is_manual())]
#[x_kube(validation = Rule::new("!has(self.guidedFailureTimeout) || (self.guidedFailure && self.type == 'Run')").message("guidedFailureTimeout needs guidedFailure: true on a Run step: without guided failure no decision is awaited"))]
pub struct StepSpec {
    /// `Run` (default) runs the actions; `ManualIntervention` waits for approval.
    #[serde(default, rename = "type")]
    pub type_: StepType,
    /// What a person should check before approving (ManualIntervention steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub instructions: Option<String>,
    /// The retries condition, already resolved from the Deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// When retries run out: false fails the step, true waits for a decision
    /// (annotation `stepwise.dev/guided-failure-decision`: retry, ignore or abort).
    #[serde(default)]
    pub guided_failure: bool,
    /// The actions, run in order; each one must succeed (or be ignored) before the next starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = super::rules::unique_action_names())]
    pub actions: Vec<Action>,
    /// Who may answer this Step: approve or reject it (ManualIntervention) or
    /// decide after its retries ran out (guided failure). Enforced by the API
    /// server through the `stepwise-approvers` ValidatingAdmissionPolicy;
    /// unset, anyone who may annotate the Step may. Copied from the
    /// Deployment's step (ManualIntervention) or the Deployment (Run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// How long to wait for a guided-failure decision before applying a
    /// default one (recorded `by: timeout`). None: wait until a person decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_failure_timeout: Option<GuidedFailureTimeout>,
    /// How long a ManualIntervention step waits for approval before applying
    /// a default answer (recorded `by: timeout`). None: wait until a person answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<ApprovalTimeout>,
}

/// The users and groups that may decide or approve. A request is allowed
/// when its user is listed or it belongs to a listed group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.groups) + size(self.users) > 0").message("approvers needs at least one group or user: an empty list would let no one decide"))]
pub struct Approvers {
    /// Kubernetes groups (as the API server authenticates them, e.g. `release-managers`).
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub groups: Vec<String>,
    /// Kubernetes user names (e.g. `alice@example.com`, `system:serviceaccount:ci:deployer`).
    #[serde(default)]
    #[schemars(length(max = 20))]
    pub users: Vec<String>,
}

/// The kind of a step.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum StepType {
    /// Runs the step's actions as Jobs.
    #[default]
    Run,
    /// Waits until a person annotates the Step `stepwise.dev/approval=approved|rejected`.
    ManualIntervention,
}

/// When a step of a Deployment runs, given how the release has gone so far.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum RunWhen {
    /// While every step before it succeeded (or was skipped).
    #[default]
    OnSuccess,
    /// Only once the release has failed: a failure handler (cleanup,
    /// rollback, a notice). Skipped in a release that succeeds.
    OnFailure,
    /// Whether the release has failed or not.
    Always,
}

impl RunWhen {
    pub fn is_default(&self) -> bool {
        *self == RunWhen::OnSuccess
    }

    /// Whether a step with this condition runs, once the release has
    /// `failed` or while it has not.
    pub fn runs(self, failed: bool) -> bool {
        match self {
            RunWhen::OnSuccess => !failed,
            RunWhen::OnFailure => failed,
            RunWhen::Always => true,
        }
    }
}

/// One action: a container that runs as a Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// The action's name, a DNS label unique within its step.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The pod to run, as in a Job. `restartPolicy` is forced to `Never`: the
    /// operator alone counts attempts.
    pub template: PodTemplateSpec,
    /// Upper bound on one attempt's run time; becomes the Job's `activeDeadlineSeconds`.
    /// An attempt that runs over fails with reason `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i64>,
    /// How long an attempt may go without starting its container (an image that
    /// cannot be pulled, a bad config, or no pod at all) before it fails with
    /// reason `StartTimeout`, counted from the attempt's start. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub start_timeout_seconds: Option<i64>,
}

/// The start timeout of an action that sets none.
pub const DEFAULT_START_TIMEOUT_SECONDS: i64 = 300;

impl Action {
    /// `startTimeoutSeconds`, or its default.
    pub fn start_timeout(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(
            self.start_timeout_seconds
                .unwrap_or(DEFAULT_START_TIMEOUT_SECONDS),
        )
    }
}

/// A person's answer to a ManualIntervention step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Approval {
    Approved,
    Rejected,
}

impl Approval {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "approved" => Some(Self::Approved),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
    /// As the annotation spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Approved => "approved",
            Approval::Rejected => "rejected",
        }
    }
}

impl Step {
    /// Whether the step has ended (its status says a terminal phase): it
    /// creates no Job again.
    pub fn finished(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(super::Phase::is_terminal)
    }
}
