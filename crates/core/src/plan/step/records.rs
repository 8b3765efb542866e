//! Decisions and approvals kept where a status wipe cannot take them: each
//! decision as an annotation on the failed attempt's Job, the approval as an
//! annotation on the Step, both written by the operator. Status is rebuilt
//! from them, so a status restored from a backup without it (or wiped)
//! reads as before.

use std::collections::BTreeMap;

use super::{AttemptKey, JobView};
use crate::api::{ApprovalRecord, Decision, DecisionRecord, EarlierDecisions};

/// What a Job's `stepwise.dev/recorded-decision` annotation holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDecision {
    pub decision: Decision,
    pub decided_at: jiff::Timestamp,
    /// Who decided (`stepwise.dev/decided-by`), when something stamped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Ask to annotate `job` with the decision that answered its failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordDecision {
    pub job: String,
    pub record: JobDecision,
}

/// The decisions in status, plus those only the Jobs still remember,
/// oldest first.
/// Those summed up in `earlier` are not listed again.
pub fn merged(
    previous: &[DecisionRecord],
    earlier: Option<&EarlierDecisions>,
    jobs: &BTreeMap<AttemptKey, JobView>,
) -> Vec<DecisionRecord> {
    let mut out = previous.to_vec();
    for ((action, attempt), job) in jobs {
        let Some(d) = &job.decision else { continue };
        if out
            .iter()
            .any(|r| r.action == *action && r.attempt == *attempt)
            || earlier.is_some_and(|e| d.decided_at <= e.through)
        {
            continue;
        }
        out.push(DecisionRecord {
            action: action.clone(),
            attempt: *attempt,
            decision: d.decision,
            decided_at: d.decided_at,
            by: d.by.clone(),
        });
    }
    out.sort_by_key(|d| d.decided_at);
    out
}

/// The decisions whose Job does not carry them yet.
pub fn unrecorded(
    decisions: &[DecisionRecord],
    jobs: &BTreeMap<AttemptKey, JobView>,
) -> Vec<RecordDecision> {
    decisions
        .iter()
        .filter_map(|d| {
            let job = jobs.get(&(d.action.clone(), d.attempt))?;
            let record = JobDecision {
                decision: d.decision,
                decided_at: d.decided_at,
                by: d.by.clone(),
            };
            (job.decision.as_ref() != Some(&record)).then(|| RecordDecision {
                job: job.name.clone(),
                record,
            })
        })
        .collect()
}

/// The approval to write on the Step, when it does not carry it yet.
pub fn unrecorded_approval(
    approval: Option<&ApprovalRecord>,
    on_step: Option<&ApprovalRecord>,
) -> Option<ApprovalRecord> {
    approval.filter(|a| Some(*a) != on_step).cloned()
}
