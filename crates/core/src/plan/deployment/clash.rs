//! Job names are `<deployment>-<step>-<action>-<attempt>`, so step `db`
//! with action `seed-users` and step `db-seed` with action `users` would
//! share them. The API server cannot refuse such a release within its CEL
//! cost budget (50 steps x 20 actions, pairwise), so the planner does, before
//! any Step is created.

use crate::api::DeploymentSpec;

/// Two (step, action) pairs whose Jobs would have the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clash {
    pub first: (String, String),
    pub second: (String, String),
}

impl Clash {
    pub fn message(&self) -> String {
        let ((s, a), (t, b)) = (&self.first, &self.second);
        format!(
            "step {s} action {a} and step {t} action {b} would run as the same Jobs (<deployment>-{s}-{a}-<attempt>): rename one of the steps or actions"
        )
    }
}

/// The first clash in the spec, if any. Only a step whose name is another's
/// plus `-` and more can clash with it.
pub fn job_name_clash(spec: &DeploymentSpec) -> Option<Clash> {
    for s in &spec.steps {
        let prefix = format!("{}-", s.name);
        for t in spec.steps.iter().filter(|t| t.name.starts_with(&prefix)) {
            let rest = &t.name[prefix.len()..];
            for b in &t.actions {
                let wanted = format!("{rest}-{}", b.name);
                if let Some(a) = s.actions.iter().find(|a| a.name == wanted) {
                    return Some(Clash {
                        first: (s.name.clone(), a.name.clone()),
                        second: (t.name.clone(), b.name.clone()),
                    });
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, DeploymentStep, StepType};
    use proptest::prelude::*;

    fn spec(steps: &[(&str, &[&str])]) -> DeploymentSpec {
        DeploymentSpec {
            guided_failure: false,
            guided_failure_timeout: None,
            retries: None,
            concurrency: None,
            approvers: None,
            steps: steps
                .iter()
                .map(|(name, actions)| DeploymentStep {
                    run_when: Default::default(),
                    approvers: None,
                    guided_failure_timeout: None,
                    approval_timeout: None,
                    name: name.to_string(),
                    type_: StepType::Run,
                    instructions: None,
                    retries: None,
                    actions: actions
                        .iter()
                        .map(|a| Action {
                            name: a.to_string(),
                            template: Default::default(),
                            timeout_seconds: None,
                            start_timeout_seconds: None,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_issues_example_clashes_and_names_both() {
        let c = job_name_clash(&spec(&[("db", &["seed-users"]), ("db-seed", &["users"])])).unwrap();
        let m = c.message();
        assert!(
            m.contains("step db action seed-users") && m.contains("step db-seed action users"),
            "{m}"
        );
        assert_eq!(
            job_name_clash(&spec(&[("db", &["seed"]), ("db-seed", &["users"])])),
            None
        );
    }

    proptest! {
        /// A clash is reported exactly when two distinct pairs make the same name.
        #[test]
        fn reports_exactly_the_shared_names(
            steps in prop::collection::btree_map("[ab](-[ab]){0,2}", prop::collection::btree_set("[ab](-[ab]){0,2}", 1..4), 1..5)
        ) {
            let owned: Vec<(String, Vec<String>)> = steps.into_iter().map(|(s, a)| (s, a.into_iter().collect())).collect();
            let refs: Vec<(&str, Vec<&str>)> = owned.iter().map(|(s, a)| (s.as_str(), a.iter().map(String::as_str).collect())).collect();
            let slices: Vec<(&str, &[&str])> = refs.iter().map(|(s, a)| (*s, a.as_slice())).collect();
            let mut seen = std::collections::HashSet::new();
            let shared = owned.iter().flat_map(|(s, a)| a.iter().map(move |a| format!("{s}-{a}"))).any(|n| !seen.insert(n));
            prop_assert_eq!(job_name_clash(&spec(&slices)).is_some(), shared);
        }
    }
}
