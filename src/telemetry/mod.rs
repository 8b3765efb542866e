//! Logs, metrics and probes: tracing setup (`logs`), the Prometheus
//! registry (`metrics`), and the HTTP endpoints `/metrics`, `/healthz` and
//! `/readyz` with the `stepwise probe` client (`probes`).

mod logs;
mod metrics;
mod probes;

pub use logs::init_tracing;
pub use metrics::{
    CONTROLLERS, ControllerLabel, DecisionLabel, Metrics, PhaseLabel, ReconcileLabels, ResultLabel,
};
pub use probes::{Health, probe, serve};
