//! Folding the Jobs on the cluster into the attempts status records.

use super::*;

impl Planner<'_, '_> {
    /// Folds the Jobs on the cluster into the recorded attempts. A recorded
    /// outcome never regresses: a cache a moment behind cannot undo a failure.
    pub(super) fn merge_attempts(&mut self) -> Vec<ActionStatus> {
        let mut out = Vec::with_capacity(self.spec.actions.len());
        for action in &self.spec.actions {
            let mut status = self
                .obs
                .previous
                .actions
                .iter()
                .find(|a| a.name == action.name)
                .cloned()
                .unwrap_or_else(|| ActionStatus {
                    name: action.name.clone(),
                    ..Default::default()
                });
            status.next_attempt_at = None;
            for ((name, number), job) in self.obs.jobs.range((action.name.clone(), 0)..) {
                if *name != action.name {
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
                if attempt.outcome != Outcome::Running {
                    continue;
                }
                attempt.job.clone_from(&job.name);
                if attempt.started_at.is_none() {
                    attempt.started_at = job.created_at;
                }
                match &job.state {
                    JobState::Running => {}
                    JobState::Succeeded { finished_at } => {
                        attempt.outcome = Outcome::Succeeded;
                        attempt.finished_at =
                            not_before(finished_at.unwrap_or(self.now), attempt.started_at);
                    }
                    JobState::Failed {
                        finished_at,
                        reason,
                        exit_code,
                        message,
                        seen_at,
                    } => {
                        attempt.outcome = Outcome::Failed;
                        attempt.failure_seen_at =
                            Some(seen_at.map_or(self.now, |t| t.min(self.now)));
                        attempt.finished_at =
                            not_before(finished_at.unwrap_or(self.now), attempt.started_at);
                        attempt.reason = Some(reason.as_str().into());
                        attempt.exit_code = *exit_code;
                        attempt.message = Some(bounds::capped(message.clone()));
                        self.events.push(
                            PlannedEvent::warning(
                                EventReason::AttemptFailed,
                                format!(
                                    "action {} attempt {} failed: {}",
                                    action.name,
                                    number,
                                    describe(attempt)
                                ),
                            )
                            .about(&attempt.job),
                        );
                    }
                }
            }
            // A running attempt whose name now holds someone else's Job was
            // never this Step's (a status restored onto a new Step, say).
            status.attempts.retain(|a| {
                a.outcome != Outcome::Running
                    || !self
                        .obs
                        .foreign
                        .contains_key(&(action.name.clone(), a.number))
            });
            for attempt in &mut status.attempts {
                let key = (action.name.clone(), attempt.number);
                if attempt.outcome == Outcome::Running && !self.obs.jobs.contains_key(&key) {
                    attempt.outcome = Outcome::Failed;
                    attempt.finished_at = Some(self.now);
                    attempt.reason = Some(FailureReason::JobDeleted.as_str().into());
                    attempt.message = Some(format!(
                        "Job {} was deleted before it finished",
                        attempt.job
                    ));
                    self.events.push(
                        PlannedEvent::warning(
                            EventReason::AttemptFailed,
                            format!(
                                "action {} attempt {}: Job {} was deleted before it finished",
                                action.name, attempt.number, attempt.job
                            ),
                        )
                        .about(&attempt.job),
                    );
                }
                if attempt.outcome == Outcome::Failed && attempt.failure_seen_at.is_none() {
                    attempt.failure_seen_at = Some(self.now);
                }
            }
            status.attempts.sort_by_key(|a| a.number);
            out.push(status);
        }
        out
    }
}
