//! Why an attempt failed: one vocabulary for the reasons Stepwise records in
//! `status.actions[].attempts[].reason` and the reasons `retryOn.reasons`
//! may list (its CEL rule is generated from `FailureReason::ALL`).
//!
//! On the wire a reason stays a string, so statuses written before this
//! list (or by a newer operator) still parse; `FailureReason::parse` reads
//! one back.

use std::fmt;

/// Why an attempt failed.
///
/// | reason | what happened |
/// |---|---|
/// | `Error` | a container exited with a non-zero code (see `exitCode`) |
/// | `OOMKilled` | a container was killed for exceeding its memory limit |
/// | `StartError` | the runtime could not start the container's process |
/// | `ContainerCannotRun` | the runtime refused to run the container |
/// | `DeadlineExceeded` | the action's `timeoutSeconds` passed |
/// | `BackoffLimitExceeded` | the Job failed and said no more |
/// | `JobDeleted` | the attempt's Job was deleted before it finished |
/// | `PodFailed` | the pod failed for a reason not in this list (the fallback: the message keeps the raw reason) |
/// | `Evicted` | the kubelet evicted the pod (node pressure) |
/// | `DisruptionTarget` | the pod was disrupted: Eviction API, preemption, taint, node loss |
/// | `ImagePullBackOff` | the image cannot be pulled (the kubelet's `ErrImagePull` is recorded as this; `ErrImagePull` is accepted as its alias in `retryOn.reasons`) |
/// | `CreateContainerConfigError` | the container's config cannot be made, e.g. `runAsNonRoot` with a root image |
/// | `InvalidImageName` | the image name cannot be parsed |
/// | `Unschedulable` | no node can take the pod |
/// | `FailedCreate` | the Job controller cannot create the pod (admission, quota) |
/// | `StartTimeout` | the start timeout passed and no cause is known |
/// | `Cancelled` | a person cancelled the release (`stepwise.dev/cancel`); never retried, and not accepted by `retryOn.reasons` |
///
/// The last six are start failures: recorded only when the start timeout
/// fails an attempt whose pod cannot start, with the cause the kubelet (or
/// the API server) gives. `retryOn.reasons: [StartTimeout]` matches each of
/// them, so it keeps matching every attempt the start timeout failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    Error,
    OOMKilled,
    StartError,
    ContainerCannotRun,
    DeadlineExceeded,
    BackoffLimitExceeded,
    JobDeleted,
    PodFailed,
    Evicted,
    DisruptionTarget,
    ImagePullBackOff,
    CreateContainerConfigError,
    InvalidImageName,
    Unschedulable,
    FailedCreate,
    StartTimeout,
    /// Not in [`FailureReason::ALL`]: `retryOn.reasons` cannot list it, and
    /// a cancelled attempt is never retried.
    Cancelled,
}

/// Other names accepted for a reason: (alias, reason).
pub const ALIASES: [(&str, FailureReason); 1] = [("ErrImagePull", FailureReason::ImagePullBackOff)];

impl FailureReason {
    /// Every reason, in the order of the table above.
    pub const ALL: [FailureReason; 16] = [
        FailureReason::Error,
        FailureReason::OOMKilled,
        FailureReason::StartError,
        FailureReason::ContainerCannotRun,
        FailureReason::DeadlineExceeded,
        FailureReason::BackoffLimitExceeded,
        FailureReason::JobDeleted,
        FailureReason::PodFailed,
        FailureReason::Evicted,
        FailureReason::DisruptionTarget,
        FailureReason::ImagePullBackOff,
        FailureReason::CreateContainerConfigError,
        FailureReason::InvalidImageName,
        FailureReason::Unschedulable,
        FailureReason::FailedCreate,
        FailureReason::StartTimeout,
    ];

    /// The fallback for a failure whose reason is not in the list.
    pub const FALLBACK: FailureReason = FailureReason::PodFailed;

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Error => "Error",
            FailureReason::OOMKilled => "OOMKilled",
            FailureReason::StartError => "StartError",
            FailureReason::ContainerCannotRun => "ContainerCannotRun",
            FailureReason::DeadlineExceeded => "DeadlineExceeded",
            FailureReason::BackoffLimitExceeded => "BackoffLimitExceeded",
            FailureReason::JobDeleted => "JobDeleted",
            FailureReason::PodFailed => "PodFailed",
            FailureReason::Evicted => "Evicted",
            FailureReason::DisruptionTarget => "DisruptionTarget",
            FailureReason::ImagePullBackOff => "ImagePullBackOff",
            FailureReason::CreateContainerConfigError => "CreateContainerConfigError",
            FailureReason::InvalidImageName => "InvalidImageName",
            FailureReason::Unschedulable => "Unschedulable",
            FailureReason::FailedCreate => "FailedCreate",
            FailureReason::StartTimeout => "StartTimeout",
            FailureReason::Cancelled => "Cancelled",
        }
    }

    /// The reason a name (or an alias) stands for; `None` when not listed.
    pub fn parse(name: &str) -> Option<FailureReason> {
        Self::ALL
            .into_iter()
            .chain([FailureReason::Cancelled])
            .find(|r| r.as_str() == name)
            .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, r)| *r))
    }

    /// A reason as the kubelet or the Job controller says it: the listed
    /// reason, else the fallback (the caller keeps the raw text in the message).
    pub fn read(raw: &str) -> FailureReason {
        Self::parse(raw).unwrap_or(Self::FALLBACK)
    }

    /// Whether only the start timeout records this reason.
    pub fn is_start_failure(self) -> bool {
        matches!(
            self,
            FailureReason::ImagePullBackOff
                | FailureReason::CreateContainerConfigError
                | FailureReason::InvalidImageName
                | FailureReason::Unschedulable
                | FailureReason::FailedCreate
                | FailureReason::StartTimeout
        )
    }

    /// Whether `listed` (a `retryOn.reasons` entry) matches a failure with
    /// this reason: the same reason, or `StartTimeout` for any start failure.
    pub fn matched_by(self, listed: FailureReason) -> bool {
        self == listed || (listed == FailureReason::StartTimeout && self.is_start_failure())
    }

    /// Every name `retryOn.reasons` accepts: the reasons, then the aliases.
    pub fn accepted_names() -> Vec<&'static str> {
        let names = Self::ALL.iter().map(|r| r.as_str());
        names.chain(ALIASES.iter().map(|(a, _)| *a)).collect()
    }

    /// The CEL rule on `retryOn.reasons`, from the list above.
    pub fn cel_rule() -> String {
        let quoted: Vec<String> = Self::accepted_names()
            .iter()
            .map(|n| format!("'{n}'"))
            .collect();
        format!("self.all(r, r in [{}])", quoted.join(", "))
    }

    /// What the API server says when the rule refuses a reason.
    pub fn cel_message() -> String {
        format!("reasons may be {}", Self::accepted_names().join(", "))
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_and_aliases_map_to_a_reason() {
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(
            FailureReason::parse("ErrImagePull"),
            Some(FailureReason::ImagePullBackOff)
        );
        assert_eq!(FailureReason::parse("Completed"), None);
        assert_eq!(
            FailureReason::read("ContainerStatusUnknown"),
            FailureReason::PodFailed
        );
    }

    #[test]
    fn start_timeout_matches_every_start_failure_and_nothing_else() {
        use FailureReason::*;
        for r in FailureReason::ALL {
            assert!(r.matched_by(r));
            assert_eq!(r.matched_by(StartTimeout), r.is_start_failure(), "{r}");
        }
        assert!(!StartTimeout.matched_by(ImagePullBackOff));
        assert!(!Error.matched_by(OOMKilled));
    }

    #[test]
    fn cancelled_parses_but_retry_on_cannot_list_it() {
        assert_eq!(
            FailureReason::parse("Cancelled"),
            Some(FailureReason::Cancelled)
        );
        assert!(!FailureReason::accepted_names().contains(&"Cancelled"));
        assert!(!FailureReason::cel_rule().contains("Cancelled"));
    }

    #[test]
    fn the_readme_lists_every_reason() {
        let readme = include_str!("../../../README.md");
        for name in FailureReason::accepted_names() {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not list the failure reason {name}"
            );
        }
    }
}
