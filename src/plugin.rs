//! The `kubectl stepwise` plugin's pure half: rendering a release as a tree
//! and choosing which Step a decision or an approval applies to.

use std::fmt::Write;

use jiff::Timestamp;

use crate::api::{
    ANNOTATION_APPROVAL, ANNOTATION_DECISION, ActionPhase, Approval, Decision, Deployment, Outcome,
    Phase, Step,
};
use crate::plan::step::describe;

/// What a person asks of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    Retry,
    Ignore,
    Abort,
    Approve,
    Reject,
}

impl Ask {
    /// The annotation and value that carry the request.
    pub fn annotation(self) -> (&'static str, &'static str) {
        match self {
            Ask::Retry => (ANNOTATION_DECISION, Decision::Retry.as_str()),
            Ask::Ignore => (ANNOTATION_DECISION, Decision::Ignore.as_str()),
            Ask::Abort => (ANNOTATION_DECISION, Decision::Abort.as_str()),
            Ask::Approve => (ANNOTATION_APPROVAL, Approval::Approved.as_str()),
            Ask::Reject => (ANNOTATION_APPROVAL, Approval::Rejected.as_str()),
        }
    }

    fn waits_in(self) -> Phase {
        match self {
            Ask::Retry | Ask::Ignore | Ask::Abort => Phase::WaitingForDecision,
            Ask::Approve | Ask::Reject => Phase::WaitingForApproval,
        }
    }
}

/// The Step `ask` applies to, or a sentence saying why there is none.
pub fn target<'a>(
    deployment: &Deployment,
    steps: &'a [Step],
    ask: Ask,
) -> Result<&'a Step, String> {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let want = ask.waits_in();
    let waiting = steps
        .iter()
        .find(|s| s.status.as_ref().and_then(|st| st.phase) == Some(want));
    waiting.ok_or_else(|| {
        let phase = deployment
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default();
        let what = match want {
            Phase::WaitingForDecision => "waiting for a guided-failure decision",
            _ => "waiting for approval",
        };
        format!("deployment {name} is not {what} (phase {})", phase.as_str())
    })
}

/// The release as a tree: steps, actions, attempts with times, outcomes, the
/// next retry time and the real error.
pub fn render(deployment: &Deployment, steps: &[Step]) -> String {
    render_at(deployment, steps, None)
}

/// As [`render`], with the countdown to a decision deadline as of `now`.
pub fn render_at(deployment: &Deployment, steps: &[Step], now: Option<Timestamp>) -> String {
    let mut out = String::new();
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let ns = deployment.metadata.namespace.as_deref().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    let phase = status.phase.map_or("Pending", Phase::as_str);
    let _ = writeln!(out, "Deployment {ns}/{name}  {phase}");
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "│ {m}");
    }
    if let Some(at) = status.decision_deadline {
        let _ = writeln!(out, "│ {}", deadline(at, now));
    }
    if let Some(c) = &deployment.spec.concurrency {
        let _ = writeln!(
            out,
            "│ one at a time: concurrency key {} ({:?})",
            c.key, c.policy
        );
    }
    let total = deployment.spec.steps.len();
    for (i, spec_step) in deployment.spec.steps.iter().enumerate() {
        let last_step = i + 1 == total;
        let (branch, indent) = if last_step {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        let summary = status.steps.iter().find(|s| s.name == spec_step.name);
        let step = summary
            .and_then(|s| s.step_ref.as_deref())
            .and_then(|r| steps.iter().find(|s| s.metadata.name.as_deref() == Some(r)));
        let step_phase = step
            .and_then(|s| s.status.as_ref()?.phase)
            .or(summary.map(|s| s.phase))
            .unwrap_or_default();
        let kind = match spec_step.type_ {
            crate::api::StepType::ManualIntervention => "  (manual intervention)",
            crate::api::StepType::Run => "",
        };
        let when = match spec_step.run_when {
            crate::api::RunWhen::OnSuccess => "",
            crate::api::RunWhen::OnFailure => "  (failure handler)",
            crate::api::RunWhen::Always => "  (always runs)",
        };
        let _ = writeln!(
            out,
            "{branch} {}  {}{kind}{when}",
            spec_step.name,
            step_phase.as_str()
        );
        let Some(step) = step else { continue };
        let st = step.status.clone().unwrap_or_default();
        if matches!(
            step_phase,
            Phase::WaitingForDecision | Phase::WaitingForApproval | Phase::Failed
        ) && let Some(m) = &st.message
        {
            let _ = writeln!(out, "{indent}│ {m}");
        }
        action_lines(&mut out, indent, &st.actions);
        answers(&mut out, indent, &st);
    }
    out
}

/// Each action with its attempts: times, outcome, error and Job.
fn action_lines(out: &mut String, indent: &str, actions: &[crate::api::ActionStatus]) {
    for (j, a) in actions.iter().enumerate() {
        let last_action = j + 1 == actions.len();
        let (abranch, aindent) = if last_action {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        let mut line = format!("{indent}{abranch} {}  {}", a.name, action_phase(a.phase));
        if let Some(next) = a.next_attempt_at {
            let _ = write!(line, "  next attempt at {}", clock(next));
        }
        let _ = writeln!(out, "{line}");
        if let Some(n) = a.earlier_attempts {
            let _ = writeln!(out, "{indent}{aindent}├─ #1-#{n}  Failed (not listed)");
        }
        for (k, at) in a.attempts.iter().enumerate() {
            let tbranch = if k + 1 == a.attempts.len() {
                "└─"
            } else {
                "├─"
            };
            let outcome = match at.outcome {
                Outcome::Running => "Running",
                Outcome::Succeeded => "Succeeded",
                Outcome::Failed => "Failed",
            };
            let times = match (at.started_at, at.finished_at) {
                (Some(s), Some(f)) => format!("{} → {}", clock(s), clock(f)),
                (Some(s), None) => format!("{} →", clock(s)),
                _ => String::new(),
            };
            let error = if at.outcome == Outcome::Failed {
                format!("  {}", describe(at))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{indent}{aindent}{tbranch} #{}  {outcome:<9}  {times}{error}  job/{}",
                at.number, at.job
            );
        }
    }
}

/// The decisions and the approval a step recorded, with who took them.
fn answers(out: &mut String, indent: &str, st: &crate::api::StepStatus) {
    if let Some(e) = &st.earlier_decisions {
        let _ = writeln!(
            out,
            "{indent}  {} earlier decision{} (not listed), the last at {}",
            e.count,
            if e.count == 1 { "" } else { "s" },
            clock(e.through)
        );
    }
    for d in &st.decisions {
        let _ = writeln!(
            out,
            "{indent}  decision {} on {} attempt {} at {}{}",
            d.decision.as_str(),
            d.action,
            d.attempt,
            clock(d.decided_at),
            by(d.by.as_deref())
        );
    }
    if let Some(a) = &st.approval {
        let _ = writeln!(
            out,
            "{indent}  {} at {}{}",
            a.approval.as_str(),
            clock(a.decided_at),
            by(a.by.as_deref())
        );
    }
}

/// "decision deadline 12:00:30.000Z (in 1m 5s)": when the default applies.
pub fn deadline(at: Timestamp, now: Option<Timestamp>) -> String {
    let left = now.map(|n| {
        let secs = at.duration_since(n).as_secs().max(0);
        let (m, s) = (secs / 60, secs % 60);
        match (m, s) {
            (0, s) => format!(" (in {s}s)"),
            (m, 0) => format!(" (in {m}m)"),
            (m, s) => format!(" (in {m}m {s}s)"),
        }
    });
    format!(
        "decision deadline {}{}: the default applies unless someone decides first",
        clock(at),
        left.unwrap_or_default()
    )
}

/// " by alice", or nothing when no one was recorded.
fn by(who: Option<&str>) -> String {
    who.map(|w| format!(" by {w}")).unwrap_or_default()
}

fn action_phase(p: ActionPhase) -> &'static str {
    match p {
        ActionPhase::Pending => "Pending",
        ActionPhase::Running => "Running",
        ActionPhase::Retrying => "Retrying",
        ActionPhase::WaitingForDecision => "WaitingForDecision",
        ActionPhase::Succeeded => "Succeeded",
        ActionPhase::Failed => "Failed",
        ActionPhase::Ignored => "Ignored",
    }
}

fn clock(t: Timestamp) -> String {
    t.strftime("%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests;
