//! The Run walk's sentences, each built in one place: a message names the
//! action and how its last attempt ended the same way wherever it appears.

use super::{describe, plural};
use crate::api::{ANNOTATION_DECISION, Approval, AttemptStatus, Decision};
use crate::plan::clock;
use jiff::Timestamp;

/// "action deploy failed after 2 attempts": the head of every failure sentence.
pub(super) fn failed_after(name: &str, k: u32) -> String {
    format!("action {name} failed after {k} attempt{}", plural(k))
}

/// The failure with how its last attempt ended.
pub(super) fn failed(name: &str, last: &AttemptStatus) -> String {
    format!("{}: {}", failed_after(name, last.number), describe(last))
}

fn how_to_decide() -> String {
    format!("set {ANNOTATION_DECISION} to retry, ignore or abort")
}

pub(super) fn waiting_for_decision(name: &str, last: &AttemptStatus) -> String {
    format!(
        "{}; waiting for a decision: {}",
        failed(name, last),
        how_to_decide()
    )
}

pub(super) fn unknown_decision(name: &str, last: &AttemptStatus, raw: &str) -> String {
    format!(
        "{}; unknown decision {raw:?} ignored: {}",
        failed(name, last),
        how_to_decide()
    )
}

/// The GuidedFailure Event's note.
pub(super) fn guided_failure(name: &str, k: u32) -> String {
    format!("{}; waiting for a decision", failed_after(name, k))
}

pub(super) fn decision_recorded(d: Decision, name: &str) -> String {
    format!(
        "decision {} for action {name} recorded; applying",
        d.as_str()
    )
}

/// The DecisionApplied Event's note.
pub(super) fn decision_applied(d: Decision, name: &str, k: u32) -> String {
    format!("{} after action {name} attempt {k} failed", d.as_str())
}

pub(super) fn aborted(name: &str, last: &AttemptStatus) -> String {
    format!(
        "aborted by decision after action {name} failed: {}",
        describe(last)
    )
}

pub(super) fn retrying(last: &AttemptStatus, allowed: u32, due: Timestamp) -> String {
    format!(
        "attempt {} of {allowed} failed: {}; retrying at {}",
        last.number,
        describe(last),
        clock(due)
    )
}

/// The RetryScheduled Event's note.
pub(super) fn retry_scheduled(name: &str, attempt: u32, due: Timestamp) -> String {
    format!("action {name} attempt {attempt} at {}", clock(due))
}

pub(super) fn all_done(total: usize) -> String {
    format!("all {total} action{} done", plural(total as u32))
}

/// The DecisionTimedOut Event's note for a guided failure.
pub(super) fn decision_timed_out(d: Decision, name: &str, k: u32, seconds: i64) -> String {
    format!(
        "no decision within {seconds} s after action {name} attempt {k} failed: {} applied (guidedFailureTimeout)",
        d.as_str()
    )
}

/// The DecisionTimedOut Event's note for a ManualIntervention step.
pub(super) fn approval_timed_out(a: Approval, seconds: i64) -> String {
    format!(
        "no approval within {seconds} s: {} applied (approvalTimeout)",
        a.as_str()
    )
}

/// What a waiting message adds while a deadline runs.
pub(super) fn unless_decided(default: &str, at: Timestamp) -> String {
    format!("; {default} at {} unless decided first", clock(at))
}
