//! API economy of the throughput phase: which of the API server's writes
//! are the operator's.
//!
//! apiserver_request_total has no namespace or client label, so the
//! operator's writes are read from the kinds only it writes: Job creates,
//! Steps (create, status, annotation patches), Deployment status, and
//! events.k8s.io Events less what the cluster writes there per Job (the
//! scheduler's Scheduled events), taken from the raw run. Every other row
//! must match between the runs (the cluster's own work per Job: pods,
//! bindings, pod and Job status); where it does not, another client wrote
//! meanwhile and the row is listed as foreign.

use crate::apiserver::{
    OperatorWrite, Requests, WriteKey, expected_foreign, operator_write, server_latency_ms,
};
use crate::results::{ApiWrites, ForeignWrite, LocalCounts, WriteRow};
use crate::stats::round3;

/// What the two runs of the throughput phase wrote.
pub struct RunWrites<'a> {
    /// Every request of the operator run (for server latencies).
    pub op_requests: &'a Requests,
    pub op: &'a Requests,
    pub raw: &'a Requests,
    pub releases: usize,
    /// Action attempts of the operator run (4 per release).
    pub attempts: f64,
}

pub fn api_writes(w: &RunWrites, local: LocalCounts) -> ApiWrites {
    let mut keys: Vec<&WriteKey> = w.raw.keys().chain(w.op.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    let mut foreign = Vec::new();
    for k in keys {
        let op_d = w.op.get(k).copied().unwrap_or(0.0);
        let raw_d = w.raw.get(k).copied().unwrap_or(0.0);
        let operator = match operator_write(k) {
            Some(OperatorWrite::Own) => op_d,
            Some(OperatorWrite::BeyondCluster) => op_d - raw_d,
            None => {
                let expected = expected_foreign(k, w.releases, raw_d);
                if (op_d - expected).abs() > (0.02 * w.attempts).max(2.0) {
                    foreign.push(ForeignWrite {
                        write: k.label(),
                        operator_run: op_d,
                        raw_run: raw_d,
                    });
                }
                continue;
            }
        };
        rows.push(WriteRow {
            write: k.label(),
            operator_run: op_d,
            raw_run: raw_d,
            operator_attributed: operator,
            operator_per_attempt: round3(operator / w.attempts),
            server_mean_ms_operator_run: server_latency_ms(w.op_requests, k).map(|l| l.mean_ms),
        });
    }
    rows.sort_by(|a, b| b.operator_attributed.total_cmp(&a.operator_attributed));
    let operator_total: f64 = rows.iter().map(|r| r.operator_attributed).sum();
    let op_all: f64 = w.op.values().sum();
    let raw_all: f64 = w.raw.values().sum();
    ApiWrites {
        attempts: w.attempts,
        operator_writes: operator_total,
        operator_writes_per_attempt: round3(operator_total / w.attempts),
        all_writes_operator_run: op_all,
        all_writes_raw_run: raw_all,
        all_writes_per_job_operator_run: round3(op_all / w.attempts),
        all_writes_per_job_raw_run: round3(raw_all / w.attempts),
        rows,
        foreign_writes: foreign,
        namespace_local_per_attempt: round3(local.total() / w.attempts),
        namespace_local_counts: local,
    }
}
