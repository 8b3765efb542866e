//! Folding the Jobs on the cluster into the attempts status records.

use super::*;

impl Planner<'_, '_> {
    /// Folds the Jobs on the cluster into the recorded attempts. A recorded
    /// outcome never regresses: a cache a moment behind cannot undo a failure.
    pub(super) fn merge_attempts(&mut self) -> Vec<ActionStatus> {
        let spec = self.spec;
        spec.actions
            .iter()
            .map(|a| self.merge_action(&a.name))
            .collect()
    }

    fn merge_action(&mut self, action: &str) -> ActionStatus {
        let mut status = self
            .obs
            .previous
            .actions
            .iter()
            .find(|a| a.name == action)
            .cloned()
            .unwrap_or_else(|| ActionStatus {
                name: action.to_string(),
                ..Default::default()
            });
        status.next_attempt_at = None;
        for ((name, number), job) in self.obs.jobs.range((action.to_string(), 0)..) {
            if name != action {
                break;
            }
            // Summed up in `earlierAttempts` already.
            if status.earlier_attempts.is_some_and(|n| *number <= n) {
                continue;
            }
            let idx = match status.attempts.iter().position(|a| a.number == *number) {
                Some(i) => i,
                None => {
                    status.attempts.push(AttemptStatus {
                        number: *number,
                        job: job.name.clone(),
                        started_at: job.created_at,
                        ..Default::default()
                    });
                    status.attempts.len() - 1
                }
            };
            let attempt = &mut status.attempts[idx];
            if attempt.outcome == Outcome::Running
                && let Some(event) = fold_job(attempt, job, action, self.now)
            {
                self.events.push(event);
            }
        }
        // A running attempt whose name now holds someone else's Job was
        // never this Step's (a status restored onto a new Step, say).
        status.attempts.retain(|a| {
            a.outcome != Outcome::Running
                || !self
                    .obs
                    .foreign
                    .contains_key(&(action.to_string(), a.number))
        });
        for attempt in &mut status.attempts {
            let key = (action.to_string(), attempt.number);
            if attempt.outcome == Outcome::Running && !self.obs.jobs.contains_key(&key) {
                self.events.push(job_deleted(attempt, action, self.now));
            }
            if attempt.outcome == Outcome::Failed && attempt.failure_seen_at.is_none() {
                attempt.failure_seen_at = Some(self.now);
            }
        }
        status.attempts.sort_by_key(|a| a.number);
        status
    }
}

/// Folds what a running attempt's Job says into it; the Event when it failed.
fn fold_job(
    attempt: &mut AttemptStatus,
    job: &JobView,
    action: &str,
    now: Timestamp,
) -> Option<PlannedEvent> {
    attempt.job.clone_from(&job.name);
    if attempt.started_at.is_none() {
        attempt.started_at = job.created_at;
    }
    match &job.state {
        JobState::Running => None,
        JobState::Succeeded { finished_at } => {
            attempt.outcome = Outcome::Succeeded;
            attempt.finished_at = not_before(finished_at.unwrap_or(now), attempt.started_at);
            None
        }
        JobState::Failed {
            finished_at,
            reason,
            exit_code,
            message,
            seen_at,
        } => {
            attempt.outcome = Outcome::Failed;
            attempt.failure_seen_at = Some(seen_at.map_or(now, |t| t.min(now)));
            attempt.finished_at = not_before(finished_at.unwrap_or(now), attempt.started_at);
            attempt.reason = Some(reason.as_str().into());
            attempt.exit_code = *exit_code;
            attempt.message = Some(bounds::capped(message.clone()));
            let note = format!(
                "action {action} attempt {} failed: {}",
                attempt.number,
                describe(attempt)
            );
            Some(PlannedEvent::warning(EventReason::AttemptFailed, note).about(&attempt.job))
        }
    }
}

/// A running attempt whose Job is gone failed: JobDeleted.
fn job_deleted(attempt: &mut AttemptStatus, action: &str, now: Timestamp) -> PlannedEvent {
    attempt.outcome = Outcome::Failed;
    attempt.finished_at = Some(now);
    attempt.reason = Some(FailureReason::JobDeleted.as_str().into());
    let what = format!("Job {} was deleted before it finished", attempt.job);
    attempt.message = Some(what.clone());
    let note = format!("action {action} attempt {}: {what}", attempt.number);
    PlannedEvent::warning(EventReason::AttemptFailed, note).about(&attempt.job)
}
