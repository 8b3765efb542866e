//! The CEL rules a step keeps wherever it is written, in a Deployment's
//! `spec.steps` or as a Step's spec: one wording of each refusal, so the
//! two kinds cannot drift apart.

use kube::core::Rule;

pub fn run_needs_actions() -> Rule {
    Rule::new("self.type != 'Run' || (has(self.actions) && size(self.actions) > 0)")
        .message("a Run step needs at least one action")
}

pub fn manual_has_no_actions() -> Rule {
    Rule::new("self.type != 'ManualIntervention' || !has(self.actions) || size(self.actions) == 0")
        .message(
            "a ManualIntervention step has no actions: it waits for a person to approve or reject",
        )
}

pub fn manual_has_no_retries() -> Rule {
    Rule::new("self.type != 'ManualIntervention' || !has(self.retries)").message(
        "retries are not available on manual intervention steps: they wait for approval and have nothing to retry",
    )
}

pub fn approval_timeout_is_manual() -> Rule {
    Rule::new("self.type == 'ManualIntervention' || !has(self.approvalTimeout)").message(
        "approvalTimeout is for ManualIntervention steps: a Run step has no approval to wait for",
    )
}

pub fn unique_action_names() -> Rule {
    Rule::new("self.all(a, self.exists_one(b, b.name == a.name))")
        .message("action names must be unique within a step")
}
