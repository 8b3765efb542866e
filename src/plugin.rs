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

/// Whether the release has finished, for `status -w`.
pub fn finished(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(Phase::is_terminal)
}

/// The release as a tree: steps, actions, attempts with times, outcomes, the
/// next retry time and the real error.
pub fn render(deployment: &Deployment, steps: &[Step]) -> String {
    let mut out = String::new();
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let ns = deployment.metadata.namespace.as_deref().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    let phase = status.phase.map_or("Pending", Phase::as_str);
    let _ = writeln!(out, "Deployment {ns}/{name}  {phase}");
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "│ {m}");
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
        let _ = writeln!(
            out,
            "{branch} {}  {}{kind}",
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
        let actions = &st.actions;
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
        answers(&mut out, indent, &st);
    }
    out
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
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r#"
apiVersion: stepwise.dev/v1alpha1
kind: Deployment
metadata: {name: shop-1, namespace: team-a}
spec:
  guidedFailure: true
  steps:
  - name: migrate
    retries: {limit: 1, delaySeconds: 15}
    actions:
    - {name: backup, template: {spec: {containers: [{name: m}]}}}
    - {name: schema, template: {spec: {containers: [{name: m}]}}}
  - name: approve
    type: ManualIntervention
status:
  phase: Retrying
  message: "step migrate (1/2): attempt 1 of 2 failed: exit code 1 (Error); retrying at 12:00:17Z"
  steps:
  - {name: migrate, stepRef: shop-1-migrate, phase: Retrying}
  - {name: approve, phase: Pending}
"#;

    const STEP: &str = r#"
apiVersion: stepwise.dev/v1alpha1
kind: Step
metadata: {name: shop-1-migrate, namespace: team-a}
spec:
  guidedFailure: true
  retries: {enabled: true, limit: 1, delaySeconds: 15}
  actions:
  - {name: backup, template: {spec: {containers: [{name: m}]}}}
  - {name: schema, template: {spec: {containers: [{name: m}]}}}
status:
  phase: Retrying
  message: "attempt 1 of 2 failed: exit code 1 (Error); retrying at 12:00:17Z"
  actions:
  - name: backup
    phase: Succeeded
    attempts:
    - {number: 1, job: shop-1-migrate-backup-1, outcome: Succeeded, startedAt: "2026-11-29T12:00:00.100Z", finishedAt: "2026-11-29T12:00:01Z"}
  - name: schema
    phase: Retrying
    nextAttemptAt: "2026-11-29T12:00:17.250Z"
    attempts:
    - {number: 1, job: shop-1-migrate-schema-1, outcome: Failed, startedAt: "2026-11-29T12:00:01.200Z", finishedAt: "2026-11-29T12:00:02Z", failureSeenAt: "2026-11-29T12:00:02.250Z", reason: Error, exitCode: 1}
"#;

    fn fixtures() -> (Deployment, Vec<Step>) {
        (
            serde_norway::from_str(DEPLOYMENT).unwrap(),
            vec![serde_norway::from_str(STEP).unwrap()],
        )
    }

    #[test]
    fn tree_shows_attempts_next_retry_and_error() {
        let (d, steps) = fixtures();
        insta::assert_snapshot!(render(&d, &steps));
    }

    #[test]
    fn tree_says_what_a_bounded_status_leaves_out() {
        let (d, mut steps) = fixtures();
        let st = steps[0].status.as_mut().unwrap();
        st.actions[1].earlier_attempts = Some(6);
        st.earlier_decisions = Some(crate::api::EarlierDecisions {
            count: 3,
            through: "2026-11-29T12:00:00Z".parse().unwrap(),
        });
        let tree = render(&d, &steps);
        assert!(tree.contains("#1-#6  Failed (not listed)"), "{tree}");
        assert!(tree.contains("3 earlier decisions (not listed)"), "{tree}");
    }

    #[test]
    fn tree_says_who_decided_and_who_approved() {
        let (mut d, mut steps) = fixtures();
        let at: Timestamp = "2026-11-29T12:00:20Z".parse().unwrap();
        let st = steps[0].status.as_mut().unwrap();
        st.decisions = vec![
            crate::api::DecisionRecord {
                action: "schema".into(),
                attempt: 1,
                decision: Decision::Retry,
                decided_at: at,
                by: Some("alice".into()),
            },
            crate::api::DecisionRecord {
                action: "schema".into(),
                attempt: 2,
                decision: Decision::Ignore,
                decided_at: at,
                by: None,
            },
        ];
        let mut gate: Step = serde_norway::from_str(STEP).unwrap();
        gate.metadata.name = Some("shop-1-approve".into());
        gate.status = Some(crate::api::StepStatus {
            phase: Some(Phase::Succeeded),
            approval: Some(crate::api::ApprovalRecord {
                approval: Approval::Approved,
                decided_at: at,
                by: Some("carol".into()),
            }),
            ..Default::default()
        });
        d.status.as_mut().unwrap().steps[1].step_ref = Some("shop-1-approve".into());
        steps.push(gate);
        let tree = render(&d, &steps);
        assert!(
            tree.contains("decision retry on schema attempt 1 at 12:00:20.000Z by alice\n"),
            "{tree}"
        );
        assert!(
            tree.contains("decision ignore on schema attempt 2 at 12:00:20.000Z\n"),
            "{tree}"
        );
        assert!(
            tree.contains("approved at 12:00:20.000Z by carol"),
            "{tree}"
        );
    }

    #[test]
    fn tree_shows_a_queued_release_and_what_it_waits_for() {
        let (mut d, _) = fixtures();
        d.spec.concurrency = Some(crate::api::Concurrency {
            key: "shop".into(),
            policy: crate::api::ConcurrencyPolicy::Queue,
        });
        let st = d.status.as_mut().unwrap();
        st.phase = Some(Phase::Queued);
        st.message = Some(crate::plan::queue::queued_message("shop", "shop-0", 1));
        st.current_step = None;
        let tree = render(&d, &[]);
        let head: Vec<&str> = tree.lines().take(3).collect();
        assert_eq!(
            head,
            [
                "Deployment team-a/shop-1  Queued",
                "│ queued: waits for release shop-0 to finish (place 1 in the queue for concurrency key shop)",
                "│ one at a time: concurrency key shop (Queue)",
            ]
        );
        assert!(!finished(&d));
    }

    #[test]
    fn decisions_need_a_step_that_waits_for_one() {
        let (d, mut steps) = fixtures();
        let err = target(&d, &steps, Ask::Retry).unwrap_err();
        assert_eq!(
            err,
            "deployment shop-1 is not waiting for a guided-failure decision (phase Retrying)"
        );
        assert!(target(&d, &steps, Ask::Approve).is_err());
        steps[0].status.as_mut().unwrap().phase = Some(Phase::WaitingForDecision);
        assert_eq!(
            target(&d, &steps, Ask::Abort)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("shop-1-migrate")
        );
        assert_eq!(Ask::Approve.annotation(), (ANNOTATION_APPROVAL, "approved"));
    }
}
