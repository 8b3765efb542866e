use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Releases in one namespace that share `key` run one at a time: while one of
/// them has started and not finished, the others wait in phase `Queued`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Concurrency {
    /// Releases with the same key (in the same namespace) run one at a time.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// `Queue` (default) starts waiting releases oldest first; `Supersede`
    /// fails every older queued release when this one arrives.
    #[serde(default)]
    pub policy: ConcurrencyPolicy,
}

/// What a newer release does to the older ones that wait for the same key.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ConcurrencyPolicy {
    /// Wait in line: releases start oldest first (creationTimestamp, then name).
    #[default]
    Queue,
    /// Fail every older release that has not started yet (reason `Superseded`);
    /// a release that has started is never touched.
    Supersede,
}
