//! What a Job or a pod says, defined once: how an attempt's outcome reads
//! from its Job and pod (`job_view`), what of a pod the operator's cache
//! keeps (`trim_pod`, exactly what `pod_view` reads), and when a change to
//! a Job or pod is worth waking its Step for (`job_trigger`,
//! `pod_trigger`: hashes of what the views read). The shell only looks
//! objects up in its caches and hands them here.

mod cached;
mod job;
mod pod;

pub use cached::{
    CachedJob, CachedPod, JOB_NAME_LABEL, is_summary_deployment, is_summary_step,
    trim_finished_deployment, trim_finished_step, trim_meta,
};
pub use job::{
    StartFailure, attempt_stopped, foreign_job, job_failed, job_trigger, job_view, start_failure,
};
pub use pod::{Ended, PodView, pod_trigger, pod_view, start_problem, trim_pod};

use std::hash::{Hash, Hasher};

/// A stable-enough hash of `value` for a wake-up key (one process only).
fn digest<T: Hash>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
