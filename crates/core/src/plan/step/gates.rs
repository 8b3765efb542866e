//! Starting an attempt (unless a foreign Job or a refusal blocks it), the
//! annotations a step reads, and ManualIntervention steps.

use super::*;

impl Planner<'_, '_> {
    pub(super) fn start(
        &mut self,
        action: &mut ActionStatus,
        index: usize,
        attempt: u32,
    ) -> Verdict {
        let name = action.name.clone();
        if let Some(v) = self.blocked(action, index, attempt) {
            return v;
        }
        action.phase = ActionPhase::Running;
        let job = crate::jobs::job_name(self.obs.step_name, &name, attempt);
        action.attempts.push(AttemptStatus {
            number: attempt,
            job: job.clone(),
            started_at: Some(self.now),
            ..Default::default()
        });
        self.create = Some(CreateJob {
            action: index,
            attempt,
        });
        // No Event: the Job's creation shows the attempt, and an Event per
        // attempt was a quarter of the operator's API writes (issue 16).
        let total = self.spec.actions.len();
        let msg = format!(
            "action {name} ({}/{total}) attempt {attempt} running",
            index + 1
        );
        Verdict::new(Phase::Running, "Running", msg, Some(index))
    }

    /// Attempt `attempt` cannot start yet: a foreign Job has its name, or
    /// its create was refused for now. Nothing is counted as an attempt.
    pub(super) fn blocked(
        &mut self,
        action: &mut ActionStatus,
        index: usize,
        attempt: u32,
    ) -> Option<Verdict> {
        let name = action.name.clone();
        let key = (name.clone(), attempt);
        let total = self.spec.actions.len();
        let head = format!("action {name} ({}/{total}) attempt {attempt}", index + 1);
        let (reason, msg, at) = if let Some(f) = self.obs.foreign.get(&key) {
            let owner = f
                .owner
                .as_ref()
                .map_or_else(|| "no controller".to_string(), ToString::to_string);
            let msg = format!(
                "{head} waits: Job {} already exists and is owned by {owner}, not by this Step; the attempt starts once that Job is gone",
                f.name
            );
            (EventReason::JobNameTaken, msg, self.now + FOREIGN_RECHECK)
        } else {
            let r = self
                .obs
                .refused
                .as_ref()
                .filter(|r| r.action == name && r.attempt == attempt)?;
            let msg = format!(
                "{head} waits: the API server refused its Job for now: {}; trying again at {}",
                r.message,
                clock(r.retry_at)
            );
            (EventReason::JobCreateFailed, msg, r.retry_at)
        };
        action.phase = ActionPhase::Pending;
        self.requeue_at = Some(at);
        if self.obs.previous.message.as_deref() != Some(msg.as_str()) {
            self.events.push(PlannedEvent::warning(reason, msg.clone()));
        }
        Some(Verdict::new(
            Phase::Running,
            reason.as_str(),
            msg,
            Some(index),
        ))
    }

    pub(super) fn remove(&mut self, key: &'static str) {
        if !self.remove_annotations.contains(&key) {
            self.remove_annotations.push(key);
        }
    }

    /// An approval means nothing to a Run step: say so and remove it.
    pub(super) fn ignore_approval_annotation(&mut self) {
        self.remove(ANNOTATION_APPROVAL);
        self.events.push(PlannedEvent::warning(
            EventReason::ApprovalIgnored,
            format!(
                "{ANNOTATION_APPROVAL}={:?} ignored: step is not a ManualIntervention step",
                self.obs.approval_annotation.unwrap_or_default()
            ),
        ));
    }

    pub(super) fn ignore_decision_annotation(&mut self) {
        self.remove(ANNOTATION_DECISION);
        self.events.push(PlannedEvent::warning(
            EventReason::DecisionIgnored,
            format!(
                "{ANNOTATION_DECISION}={:?} ignored: the step is not waiting for a decision",
                self.obs.decision_annotation.unwrap_or_default()
            ),
        ));
    }

    pub(super) fn manual(&mut self) -> Verdict {
        if self.obs.decision_annotation.is_some() {
            self.ignore_decision_annotation();
        }
        let raw = self.obs.approval_annotation;
        // An answer that differs from the one recorded cannot undo it: say so.
        if let (Some(record), Some(value)) = (&self.approval, raw)
            && Approval::parse(value) != Some(record.approval)
        {
            self.events.push(PlannedEvent::warning(
                EventReason::ApprovalIgnored,
                format!(
                    "{ANNOTATION_APPROVAL}={value:?} ignored: this step's approval is already recorded"
                ),
            ));
        }
        if self.approval.is_none()
            && let Some(a) = raw.and_then(Approval::parse)
        {
            self.approval = Some(ApprovalRecord {
                approval: a,
                decided_at: self.now,
                by: self.obs.decided_by.map(String::from),
            });
            let (reason, word) = match a {
                Approval::Approved => (EventReason::Approved, "approved"),
                Approval::Rejected => (EventReason::Rejected, "rejected"),
            };
            self.events.push(PlannedEvent::normal(
                reason,
                format!("manual intervention {word}"),
            ));
        }
        // No answer yet: the default once its deadline passed, else wait for it.
        let deadline = self.approval_deadline();
        if self.approval.is_some() && raw.is_some() {
            self.remove(ANNOTATION_APPROVAL);
        }
        let mut v = self.manual_verdict(raw);
        if let (Some(at), Some(t)) = (deadline, self.spec.approval_timeout) {
            v.message
                .push_str(&super::messages::unless_decided(t.decision.as_str(), at));
            v.decision_deadline = Some(at);
        }
        v
    }

    fn manual_verdict(&self, raw: Option<&str>) -> Verdict {
        match (&self.approval, raw) {
            (Some(record), _) => match record.approval {
                Approval::Approved => {
                    Verdict::new(Phase::Succeeded, "Approved", "approved".into(), None)
                }
                Approval::Rejected => Verdict::new(
                    Phase::Failed,
                    "Rejected",
                    "rejected by a person".into(),
                    None,
                ),
            },
            (None, Some(bad)) => Verdict::new(
                Phase::WaitingForApproval,
                "WaitingForApproval",
                format!(
                    "unknown approval {bad:?} ignored: set {ANNOTATION_APPROVAL} to approved or rejected"
                ),
                None,
            ),
            (None, None) => Verdict::new(
                Phase::WaitingForApproval,
                "WaitingForApproval",
                match &self.spec.instructions {
                    Some(i) => format!("waiting for approval: {i}"),
                    None => format!(
                        "waiting for approval: set {ANNOTATION_APPROVAL} to approved or rejected"
                    ),
                },
                None,
            ),
        }
    }
}
