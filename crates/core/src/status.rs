//! Status conditions as kstatus reads them (Flux, kpt, `kubectl wait`):
//! `Reconciling=True` means in progress, `Stalled=True` means failed and needs
//! a person, `Ready=True` means done. Shared by Steps and Deployments.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{Phase, condition_types as ct};

/// The outcome of a plan in the words conditions need.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub phase: Phase,
    /// CamelCase reason for Ready/Reconciling/Stalled, e.g. `Retrying`, `RetriesExhausted`.
    pub reason: String,
    pub message: String,
    /// `None` when guided failure is off: the condition is then not written.
    pub guided_failure: Option<GuidedFailure>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GuidedFailure {
    pub active: bool,
    pub reason: String,
    pub message: String,
}

impl GuidedFailure {
    /// The condition of a Step or release: while it `waits` for a decision,
    /// active with reason `RetriesExhausted` and `message`; otherwise
    /// inactive with `idle` as its reason (`NotTriggered`, `DecisionApplied`).
    pub fn of(waits: bool, idle: &str, message: &str) -> GuidedFailure {
        GuidedFailure {
            active: waits,
            reason: if waits { "RetriesExhausted" } else { idle }.into(),
            message: if waits { message } else { "" }.into(),
        }
    }
}

/// The full condition set for `health`, keeping `lastTransitionTime` of every
/// condition whose status did not change.
pub fn conditions(
    health: &Health,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let (ready, reconciling, stalled) = match health.phase {
        // Skipped is only ever a step summary's phase: done, nothing to wait for.
        Phase::Succeeded | Phase::Skipped => (true, false, false),
        Phase::Failed | Phase::WaitingForDecision => (false, false, true),
        Phase::Pending
        | Phase::Queued
        | Phase::Running
        | Phase::Retrying
        | Phase::WaitingForApproval => (false, true, false),
    };
    let reason = health.reason.as_str();
    let msg = health.message.as_str();
    let mut out = vec![
        condition(ct::READY, ready, reason, msg, previous, generation, now),
        condition(
            ct::RECONCILING,
            reconciling,
            reason,
            msg,
            previous,
            generation,
            now,
        ),
        condition(ct::STALLED, stalled, reason, msg, previous, generation, now),
    ];
    if let Some(g) = &health.guided_failure {
        out.push(condition(
            ct::GUIDED_FAILURE,
            g.active,
            &g.reason,
            &g.message,
            previous,
            generation,
            now,
        ));
    }
    out
}

/// Conditions of an object that failed for good outside the plan (an object
/// the API server refused to create for it).
pub fn failed(
    reason: &str,
    message: &str,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let health = Health {
        phase: Phase::Failed,
        reason: reason.to_string(),
        message: message.to_string(),
        guided_failure: None,
    };
    conditions(&health, previous, generation, now)
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(whole_seconds(now)));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Condition times are whole seconds on the wire; keeping them so makes a
/// rebuilt status compare equal to the stored one.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Reads one condition's status.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(phase: Phase) -> Health {
        Health {
            phase,
            reason: "R".into(),
            message: "m".into(),
            guided_failure: None,
        }
    }

    #[test]
    fn kstatus_reading_of_each_phase() {
        let now = Timestamp::UNIX_EPOCH;
        for (phase, ready, reconciling, stalled) in [
            (Phase::Pending, false, true, false),
            (Phase::Queued, false, true, false),
            (Phase::Running, false, true, false),
            (Phase::Retrying, false, true, false),
            (Phase::WaitingForApproval, false, true, false),
            (Phase::WaitingForDecision, false, false, true),
            (Phase::Failed, false, false, true),
            (Phase::Succeeded, true, false, false),
        ] {
            let c = conditions(&health(phase), &[], Some(1), now);
            assert_eq!(is_true(&c, ct::READY), ready, "{phase:?}");
            assert_eq!(is_true(&c, ct::RECONCILING), reconciling, "{phase:?}");
            assert_eq!(is_true(&c, ct::STALLED), stalled, "{phase:?}");
            assert!(c.iter().all(|c| c.observed_generation == Some(1)));
        }
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let first = conditions(&health(Phase::Running), &[], None, t0);
        let again = conditions(&health(Phase::Retrying), &first, None, t1);
        let ready = again.iter().find(|c| c.type_ == ct::READY).unwrap();
        assert_eq!(ready.last_transition_time.0, t0);
        let done = conditions(&health(Phase::Succeeded), &again, None, t1);
        let ready = done.iter().find(|c| c.type_ == ct::READY).unwrap();
        assert_eq!(ready.last_transition_time.0, t1);
    }
}
