//! The Prometheus registry: reconcile metrics named as controller-runtime
//! names them, and Stepwise's own (attempts, retries, decisions, phases).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::{Metric, Registry};

use crate::api::{Decision, Phase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// As the annotation spells it (`Decision::as_str`): retry, ignore, abort.
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

/// The controllers' names in the reconcile metrics.
pub const CONTROLLERS: [&str; 2] = ["step", "deployment"];
/// The results a reconcile is counted under.
const RESULTS: [&str; 3] = ["success", "error", "requeue_after"];

/// Every metric the operator exports. Names of the reconcile metrics follow
/// controller-runtime, so existing dashboards work.
pub struct Metrics {
    pub registry: Registry,
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ControllerLabel, Counter>,
    pub reconcile_time: Family<ControllerLabel, Histogram>,
    pub attempts: Family<ResultLabel, Counter>,
    pub retries_scheduled: Counter,
    pub guided_failures: Counter,
    pub decisions: Family<DecisionLabel, Counter>,
    pub retry_delay_error: Histogram,
    pub deployments: Family<PhaseLabel, Gauge>,
    pub leader: Gauge,
    phases: Mutex<HashMap<String, Phase>>,
}

/// Seconds, as controller-runtime buckets its reconcile times.
const RECONCILE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = add(
            &mut registry,
            "controller_runtime_reconcile",
            "Reconciliations per controller and result (success, error, requeue_after)",
            Family::<ReconcileLabels, Counter>::default(),
        );
        let reconcile_errors = add(
            &mut registry,
            "controller_runtime_reconcile_errors",
            "Reconciliations that returned an error",
            Family::<ControllerLabel, Counter>::default(),
        );
        let reconcile_time = add(
            &mut registry,
            "controller_runtime_reconcile_time_seconds",
            "Time spent in one reconciliation",
            Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(RECONCILE_BUCKETS)
            }),
        );
        let attempts = add(
            &mut registry,
            "stepwise_action_attempts",
            "Action attempts by result (started, succeeded, failed)",
            Family::<ResultLabel, Counter>::default(),
        );
        let retries_scheduled = add(
            &mut registry,
            "stepwise_retries_scheduled",
            "Retries scheduled after a failed attempt",
            Counter::default(),
        );
        let guided_failures = add(
            &mut registry,
            "stepwise_guided_failures",
            "Steps that ran out of retries and now wait for a decision",
            Counter::default(),
        );
        let decisions = add(
            &mut registry,
            "stepwise_decisions",
            "Guided-failure decisions applied",
            Family::<DecisionLabel, Counter>::default(),
        );
        let retry_delay_error = add(
            &mut registry,
            "stepwise_retry_delay_error_seconds",
            "Observed minus configured wait before a retry's Job was created",
            Histogram::new([-0.1, 0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0]),
        );
        let deployments = add(
            &mut registry,
            "stepwise_deployments",
            "Deployments by phase, as last reconciled",
            Family::<PhaseLabel, Gauge>::default(),
        );
        let leader = add(
            &mut registry,
            "leader_election_master_status",
            "1 while this replica holds the lease",
            Gauge::default(),
        );
        let metrics = Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            attempts,
            retries_scheduled,
            guided_failures,
            decisions,
            retry_delay_error,
            deployments,
            leader,
            phases: Mutex::default(),
        };
        metrics.zero_series();
        metrics
    }
}

/// Registers `metric` under `name` and hands it back for the struct to keep.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// As controller-runtime does: the series exist at 0 from the start, so
    /// `rate()` alerts on errors work before the first one happens.
    fn zero_series(&self) {
        for controller in CONTROLLERS {
            drop(
                self.reconcile_errors
                    .get_or_create(&ControllerLabel { controller }),
            );
            for result in RESULTS {
                let labels = ReconcileLabels { controller, result };
                drop(self.reconcile_total.get_or_create(&labels));
            }
        }
    }

    pub fn reconciled(&self, controller: &'static str, result: &'static str, took: Duration) {
        self.reconcile_total
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        if result == "error" {
            self.reconcile_errors
                .get_or_create(&ControllerLabel { controller })
                .inc();
        }
        self.reconcile_time
            .get_or_create(&ControllerLabel { controller })
            .observe(took.as_secs_f64());
    }

    pub fn decision(&self, d: Decision) {
        self.decisions
            .get_or_create(&DecisionLabel {
                decision: d.as_str(),
            })
            .inc();
    }

    pub fn attempt(&self, result: &'static str) {
        self.attempts.get_or_create(&ResultLabel { result }).inc();
    }

    /// Records a deployment's phase (None: deleted) and refreshes the gauge.
    pub fn deployment_phase(&self, key: String, phase: Option<Phase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        match phase {
            Some(p) => phases.insert(key, p),
            None => phases.remove(&key),
        };
        let mut counts: HashMap<Phase, i64> = HashMap::new();
        for p in phases.values() {
            *counts.entry(*p).or_default() += 1;
        }
        for p in [
            Phase::Pending,
            Phase::Queued,
            Phase::Running,
            Phase::Retrying,
            Phase::WaitingForDecision,
            Phase::WaitingForApproval,
            Phase::Succeeded,
            Phase::Failed,
        ] {
            self.deployments
                .get_or_create(&PhaseLabel { phase: p.as_str() })
                .set(counts.get(&p).copied().unwrap_or(0));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_controller_runtime_names() {
        let m = Metrics::default();
        m.reconciled("step", "success", Duration::from_millis(3));
        m.attempt("started");
        m.decision(Decision::Retry);
        m.deployment_phase("ns/a".into(), Some(Phase::Running));
        let text = m.encode();
        for name in [
            "controller_runtime_reconcile_total{controller=\"step\",result=\"success\"} 1",
            "controller_runtime_reconcile_time_seconds_bucket",
            "stepwise_action_attempts_total{result=\"started\"} 1",
            "stepwise_decisions_total{decision=\"retry\"} 1",
            "stepwise_deployments{phase=\"Running\"} 1",
            "leader_election_master_status 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn error_counters_exist_at_zero_before_any_error() {
        let text = Metrics::default().encode();
        for controller in CONTROLLERS {
            let errors = format!(
                "controller_runtime_reconcile_errors_total{{controller=\"{controller}\"}} 0"
            );
            assert!(text.contains(&errors), "missing {errors} in\n{text}");
            for result in RESULTS {
                let total = format!(
                    "controller_runtime_reconcile_total{{controller=\"{controller}\",result=\"{result}\"}} 0"
                );
                assert!(text.contains(&total), "missing {total} in\n{text}");
            }
        }
    }
}
