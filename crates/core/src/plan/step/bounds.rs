//! Status stays small whatever the history: messages are capped, each
//! action lists only its latest attempts (the earlier ones, all failed, are
//! summed up), and only the latest decisions are listed (plus those the
//! step still acts on). Every decision is also recorded on its Job, so
//! nothing the planner needs is lost; the API server's object limit and
//! status patches that fail forever are out of reach.

use std::collections::BTreeSet;

use crate::api::{ActionStatus, DecisionRecord, EarlierDecisions};

/// Attempts listed one by one per action (an action has at most 11
/// automatic ones, and any number run by hand).
pub const ATTEMPTS_KEPT: usize = 5;
/// Decisions listed one by one, beyond those still acted on.
pub const DECISIONS_KEPT: usize = 20;

/// Moves the oldest attempts of `action` beyond [`ATTEMPTS_KEPT`] into its
/// `earlierAttempts` count. Only the latest attempt can be unfinished, so
/// the earlier ones are failures.
pub fn trim_attempts(action: &mut ActionStatus) {
    let extra = action.attempts.len().saturating_sub(ATTEMPTS_KEPT);
    if extra == 0 {
        return;
    }
    let dropped: Vec<_> = action.attempts.drain(..extra).collect();
    if let Some(last) = dropped.last() {
        action.earlier_attempts = Some(action.earlier_attempts.unwrap_or(0).max(last.number));
    }
}

/// Keeps the decisions on each action's latest two attempts (what the
/// planner reads) and the newest others up to [`DECISIONS_KEPT`]; sums up
/// the rest in `earlier`.
pub fn trim_decisions(
    decisions: &mut Vec<DecisionRecord>,
    earlier: &mut Option<EarlierDecisions>,
    actions: &[ActionStatus],
) {
    if decisions.len() <= DECISIONS_KEPT {
        return;
    }
    let live: BTreeSet<(&str, u32)> = actions
        .iter()
        .flat_map(|a| {
            a.attempts
                .iter()
                .rev()
                .take(2)
                .map(move |x| (a.name.as_str(), x.number))
        })
        .collect();
    let is_live = |d: &DecisionRecord| live.contains(&(d.action.as_str(), d.attempt));
    let others = decisions.iter().filter(|d| !is_live(d)).count();
    let mut drop = others.saturating_sub(DECISIONS_KEPT);
    let mut kept = Vec::with_capacity(decisions.len() - drop);
    // Oldest first: the first `drop` of the others go.
    for d in decisions.drain(..) {
        if drop > 0 && !is_live(&d) {
            drop -= 1;
            let e = earlier.get_or_insert(EarlierDecisions {
                count: 0,
                through: d.decided_at,
            });
            e.count += 1;
            e.through = e.through.max(d.decided_at);
        } else {
            kept.push(d);
        }
    }
    *decisions = kept;
}

/// Status messages are capped at this many bytes, with the cut marked.
pub const MESSAGE_CAP: usize = 1024;

/// `message` cut to [`MESSAGE_CAP`] bytes (on a character boundary), saying
/// how much was cut.
pub fn capped(message: String) -> String {
    if message.len() <= MESSAGE_CAP {
        return message;
    }
    let mut end = MESSAGE_CAP - 48;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes cut]",
        &message[..end],
        message.len() - end
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AttemptStatus, Decision};

    #[test]
    fn a_long_message_is_cut_and_says_so() {
        let m = capped("é".repeat(3000));
        assert!(m.len() <= MESSAGE_CAP, "{}", m.len());
        assert!(m.ends_with("more bytes cut]"), "{m}");
        assert_eq!(capped("short".into()), "short");
    }

    #[test]
    fn attempts_beyond_the_bound_are_summed_up() {
        let mut a = ActionStatus {
            name: "a".into(),
            attempts: (1..=11)
                .map(|number| AttemptStatus {
                    number,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        trim_attempts(&mut a);
        assert_eq!(a.attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(a.attempts[0].number, 7);
        assert_eq!(a.earlier_attempts, Some(6));
        trim_attempts(&mut a);
        assert_eq!(a.earlier_attempts, Some(6), "idempotent");
    }

    #[test]
    fn decisions_the_planner_reads_are_always_kept() {
        let t = |s| jiff::Timestamp::from_second(s).unwrap();
        let mut decisions: Vec<DecisionRecord> = (1..=40)
            .map(|k| DecisionRecord {
                action: "a".into(),
                attempt: k,
                decision: Decision::Retry,
                decided_at: t(i64::from(k)),
                by: None,
            })
            .collect();
        // Action b's ignore, long ago.
        decisions.insert(
            0,
            DecisionRecord {
                action: "b".into(),
                attempt: 1,
                decision: Decision::Ignore,
                decided_at: t(0),
                by: None,
            },
        );
        let actions = vec![
            ActionStatus {
                name: "b".into(),
                attempts: vec![AttemptStatus {
                    number: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ActionStatus {
                name: "a".into(),
                attempts: (37..=41)
                    .map(|number| AttemptStatus {
                        number,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        ];
        let mut earlier = None;
        trim_decisions(&mut decisions, &mut earlier, &actions);
        assert!(decisions.iter().any(|d| d.action == "b"), "b's ignore kept");
        assert!(decisions.iter().any(|d| d.attempt == 40 && d.action == "a"));
        let e = earlier.unwrap();
        assert_eq!(e.count as usize + decisions.len(), 41);
        assert!(decisions.len() <= DECISIONS_KEPT + 4);
    }
}
