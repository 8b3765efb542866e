use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A step's `retries` condition: when one of its actions fails, only that
/// action is run again, after a delay, up to `limit` times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxDelaySeconds) || self.maxDelaySeconds >= self.delaySeconds").message("maxDelaySeconds must not be less than delaySeconds"))]
pub struct RetryPolicy {
    /// Whether failed actions are retried. `false` makes the first failure fail the step.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How many times a failed action is retried after its first failure (0-10).
    #[serde(default = "default_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub limit: u32,
    /// Seconds to wait after a failure before the next attempt (default 15).
    #[serde(default = "default_delay")]
    #[schemars(range(min = 0, max = 86400))]
    pub delay_seconds: u32,
    /// Multiplies the delay after each further failure (1-10; 1 or unset keeps it fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub backoff_factor: Option<f64>,
    /// Upper bound for a delay grown by `backoffFactor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_delay_seconds: Option<u32>,
    /// Adds up to this percentage of the delay, spread evenly per attempt, so that
    /// many steps failing together do not retry in lockstep. Never shortens a delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub jitter_percent: Option<u32>,
    /// Retry only failures that match; unset retries every failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<RetryOn>,
}

/// Which failures are worth retrying. A failure matches when its exit code
/// is listed in `exitCodes` or its reason in `reasons`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.exitCodes) + size(self.reasons) > 0").message("retryOn needs at least one exit code or reason"))]
pub struct RetryOn {
    /// Container exit codes that make a failure retryable, e.g. `[75]` for a temporary failure.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub exit_codes: Vec<i32>,
    /// Failure reasons that make a failure retryable, from Stepwise's failure
    /// vocabulary (README "What the operator does with each real outcome"):
    /// `Error` (non-zero exit), `OOMKilled`, `StartError`, `ContainerCannotRun`,
    /// `DeadlineExceeded` (action timeout), `BackoffLimitExceeded`, `JobDeleted`,
    /// `PodFailed`, `Evicted`, `DisruptionTarget`, `ImagePullBackOff` (alias
    /// `ErrImagePull`), `CreateContainerConfigError`, `InvalidImageName`,
    /// `Unschedulable`, `FailedCreate`, `StartTimeout` (any attempt the start
    /// timeout failed, whatever its cause).
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new(crate::reason::FailureReason::cel_rule()).message(kube::core::Message::Message(crate::reason::FailureReason::cel_message())))]
    pub reasons: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_limit() -> u32 {
    3
}
fn default_delay() -> u32 {
    15
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            limit: default_limit(),
            delay_seconds: default_delay(),
            backoff_factor: None,
            max_delay_seconds: None,
            jitter_percent: None,
            retry_on: None,
        }
    }
}
