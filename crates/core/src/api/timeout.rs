//! Decision deadlines: how long a step waits for a guided-failure decision or
//! an approval before the operator applies a default, as if a person had.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{Approval, Decision};

/// What `by` says of a decision or approval the operator took at its deadline.
pub const DECIDED_BY_TIMEOUT: &str = "timeout";

/// After `seconds` waiting for a guided-failure decision, apply `decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuidedFailureTimeout {
    /// How long to wait, counted from when the operator saw the failure that
    /// exhausted the retries (at least 1).
    #[schemars(range(min = 1, max = 31_536_000))]
    pub seconds: i64,
    /// The decision to apply: retry, ignore or abort.
    pub decision: Decision,
}

/// After `seconds` waiting for approval, apply `decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalTimeout {
    /// How long to wait, counted from the Step's creation (at least 1).
    #[schemars(range(min = 1, max = 31_536_000))]
    pub seconds: i64,
    /// The answer to apply: approved or rejected.
    pub decision: Approval,
}

impl GuidedFailureTimeout {
    pub fn after(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(self.seconds)
    }
}

impl ApprovalTimeout {
    pub fn after(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(self.seconds)
    }
}
