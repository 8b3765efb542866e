use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{
    Action, ApprovalTimeout, Approvers, Concurrency, GuidedFailureTimeout, Phase, RetryPolicy,
    RunWhen, StepType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A release: ordered steps, each an ordered list of actions run as Jobs.
/// Its spec is immutable: a new release is a new Deployment.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "stepwise.dev",
    version = "v1alpha1",
    kind = "Deployment",
    namespaced,
    status = "DeploymentStatus",
    shortname = "swd",
    category = "stepwise",
    doc = "A Stepwise release: ordered steps of actions run as Jobs, with step retries and guided failure.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.currentStep"),
    printcolumn(name = "Action", type_ = "string", json_path = ".status.currentAction"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".status.attempt"),
    // A string, not a date: kubectl prints a future date as `<invalid>`.
    printcolumn(name = "Deadline", type_ = "string", json_path = ".status.decisionDeadline"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    validation = Rule::new("self.spec.steps.all(s, size(self.metadata.name) + size(s.name) <= 62)").message("each Step is named <deployment>-<step> and that name is a label value: the deployment name plus a step name must be at most 62 characters")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: a new release is a new Deployment"))]
#[x_kube(validation = Rule::new("self.guidedFailure || (!has(self.guidedFailureTimeout) && self.steps.all(s, !has(s.guidedFailureTimeout)))").message("guidedFailureTimeout needs guidedFailure: true: without guided failure no decision is awaited"))]
pub struct DeploymentSpec {
    /// When a step's retries run out: false fails the deployment; true pauses it
    /// with a `GuidedFailure` condition until a person decides retry, ignore or abort.
    #[serde(default)]
    pub guided_failure: bool,
    /// The default retries condition for every Run step that sets none of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// One release at a time: while another release in the namespace with the
    /// same key has not finished, this one waits in phase `Queued`. None: no queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// The steps, run in order: each starts only when the one before it succeeded.
    #[schemars(length(min = 1, max = 50))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("step names must be unique within a deployment"))]
    pub steps: Vec<DeploymentStep>,
    /// Who may take guided-failure decisions on this release (on the
    /// Deployment or its Steps); enforced by the API server (see `Approvers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// The default for every Run step that sets none of its own: how long to
    /// wait for a guided-failure decision before applying a default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_failure_timeout: Option<GuidedFailureTimeout>,
}

/// One step of a release, as written in the Deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = super::rules::run_needs_actions())]
#[x_kube(validation = super::rules::manual_has_no_actions())]
#[x_kube(validation = super::rules::manual_has_no_retries())]
#[x_kube(validation = super::rules::approval_timeout_is_manual())]
#[x_kube(validation = Rule::new("self.type == 'Run' || !has(self.guidedFailureTimeout)").message("guidedFailureTimeout is for Run steps: a ManualIntervention step takes approvalTimeout"))]
#[x_kube(validation = Rule::new("self.type == 'ManualIntervention' || !has(self.approvers)").message("approvers are for ManualIntervention steps; who may decide a Run step's guided failure is the Deployment's spec.approvers"))]
pub struct DeploymentStep {
    /// The step's name, a DNS label unique within the deployment.
    #[schemars(
        length(min = 1, max = 61),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// `Run` (default) runs the actions; `ManualIntervention` waits for approval.
    #[serde(default, rename = "type")]
    pub type_: StepType,
    /// What a person should check before approving (ManualIntervention steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub instructions: Option<String>,
    /// The step's retries condition; overrides the deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// The actions, run in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = super::rules::unique_action_names())]
    pub actions: Vec<Action>,
    /// Who may approve or reject this ManualIntervention step (see `Approvers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// This Run step's decision deadline; overrides the deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided_failure_timeout: Option<GuidedFailureTimeout>,
    /// How long this ManualIntervention step waits for approval before
    /// applying a default answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<ApprovalTimeout>,
    /// When the step runs: `OnSuccess` (default) while every step before it
    /// succeeded; `OnFailure`, a failure handler, only once the release has
    /// failed (skipped otherwise); `Always` in both cases.
    #[serde(default, skip_serializing_if = "RunWhen::is_default")]
    pub run_when: RunWhen,
}

/// What the operator reports about a release.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Pending, Queued, Running, Retrying, WaitingForDecision, WaitingForApproval, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation this status describes; -1 until the operator first reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled (kstatus) and GuidedFailure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The step running now (or the one that stopped the release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// The current step's action while the step needs attention (Retrying,
    /// WaitingForDecision, WaitingForApproval, Failed); the Step shows it always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_action: Option<String>,
    /// That action's latest attempt number, under the same rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// One line a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every step with its phase, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSummary>,
    /// While the current step waits for a decision or an approval with a
    /// timeout: when its default is applied (copied from the Step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub decision_deadline: Option<jiff::Timestamp>,
    /// What failed the release, from the moment it failed: while its
    /// failure handlers run and after (the message adds what they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ReleaseFailure>,
}

/// The first failure of a release, kept as it was whatever its failure
/// handlers do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct ReleaseFailure {
    /// The step that failed, or the one a cancel stopped the release before.
    pub step: String,
    /// `StepFailed`, `Cancelled` or `StepNameTaken`.
    pub reason: String,
    pub message: String,
}

/// A step as seen from its Deployment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    /// The step's name in the Deployment.
    pub name: String,
    /// The `Step` object that runs it, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ref: Option<String>,
    /// The step's phase; Pending until its Step exists.
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Deployment {
    /// Whether the release has ended (its status says a terminal phase):
    /// it creates no Step again.
    pub fn finished(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(Phase::is_terminal)
    }
}
