//! What the shell remembers between reconciles, in memory only: when each
//! Job's failure was first seen, which pods belong to which Job, the status
//! this operator last wrote, and how many Job creates were refused in a row.
//! A restarted operator starts them afresh; none of them is a decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::view::CachedPod as Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::now;

/// When the watches first delivered each Job's failure (its pod Failed, or
/// its Failed condition), by (namespace, Job name). An entry is dropped once
/// the Step's status records the failure, and when the Job is deleted.
#[derive(Default)]
pub struct FailureClock {
    first_seen: Mutex<HashMap<(String, String), jiff::Timestamp>>,
}

impl FailureClock {
    pub(super) fn saw(&self, ns: Option<String>, job: Option<String>) {
        let (Some(ns), Some(job)) = (ns, job) else {
            return;
        };
        if let Ok(mut m) = self.first_seen.lock() {
            m.entry((ns, job)).or_insert_with(now);
        }
    }

    pub fn get(&self, ns: &str, job: &str) -> Option<jiff::Timestamp> {
        let m = self.first_seen.lock().ok()?;
        m.get(&(ns.to_string(), job.to_string())).copied()
    }

    pub fn forget(&self, ns: &str, job: &str) {
        if let Ok(mut m) = self.first_seen.lock() {
            m.remove(&(ns.to_string(), job.to_string()));
        }
    }
}

/// Pod names by (namespace, Job name). Entries of deleted pods linger until
/// their Job's reconcile finds them gone from the store and drops them.
#[derive(Default)]
pub struct PodIndex {
    names: Mutex<HashMap<(String, String), Vec<String>>>,
}

impl PodIndex {
    pub(super) fn add(&self, pod: &Pod) {
        let (Some(ns), Some(job)) = (
            pod.namespace(),
            pod.labels().get(crate::view::JOB_NAME_LABEL),
        ) else {
            return;
        };
        if let Ok(mut m) = self.names.lock() {
            let names = m.entry((ns, job.clone())).or_default();
            let name = pod.name_any();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }

    /// The newest pod in `store` of the Job named `job` whose uid is
    /// `job_uid`: a Job deleted and made again under the same name (a
    /// re-created Step's attempt) must not read its predecessor's pod.
    pub fn newest(
        &self,
        store: &Store<Pod>,
        ns: &str,
        job: &str,
        job_uid: Option<&str>,
    ) -> Option<Arc<Pod>> {
        let mut m = self.names.lock().ok()?;
        let key = (ns.to_string(), job.to_string());
        let names = m.get_mut(&key)?;
        let found: Vec<Arc<Pod>> = names
            .iter()
            .filter_map(|n| store.get(&ObjectRef::new(n).within(ns)))
            .collect();
        names.retain(|n| found.iter().any(|p| p.name_any() == *n));
        if names.is_empty() {
            m.remove(&key);
        }
        found
            .into_iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == job_uid)
            })
            .max_by_key(|p| p.creation_timestamp().map(|t| t.0))
    }
}

/// The status this operator last wrote for each object, with the
/// resourceVersion that write produced. A cache a moment behind our own write
/// would otherwise make the next reconcile redo it: a second status patch and
/// a create that ends in 409. (Writing goes through `writes`.)
pub struct Written<S> {
    by_object: Mutex<HashMap<(String, String), (u64, S)>>,
}

impl<S> Default for Written<S> {
    fn default() -> Self {
        Self {
            by_object: Mutex::default(),
        }
    }
}

impl<S: Clone> Written<S> {
    pub(super) fn remember(
        &self,
        ns: &str,
        name: &str,
        resource_version: Option<String>,
        status: &S,
    ) {
        let Some(rv) = resource_version.and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        if let Ok(mut m) = self.by_object.lock() {
            m.insert((ns.to_string(), name.to_string()), (rv, status.clone()));
        }
    }

    /// Our own last write when the cached object predates it, else the cached status.
    pub fn freshest(&self, ns: &str, name: &str, cached_rv: Option<&str>, cached: S) -> S {
        let Ok(mut m) = self.by_object.lock() else {
            return cached;
        };
        let key = (ns.to_string(), name.to_string());
        if let (Some((ours, status)), Some(seen)) =
            (m.get(&key), cached_rv.and_then(|v| v.parse::<u64>().ok()))
            && seen < *ours
        {
            return status.clone();
        }
        m.remove(&key);
        cached
    }
}

/// Consecutive refused Job creates per Step, so that the tries back off.
/// Kept in memory: a restarted operator simply starts the backoff again.
#[derive(Default)]
pub struct Refusals {
    counts: Mutex<HashMap<(String, String), u32>>,
}

impl Refusals {
    /// Counts one more refusal and returns how many in a row.
    pub(super) fn count(&self, ns: &str, name: &str) -> u32 {
        let Ok(mut m) = self.counts.lock() else {
            return 1;
        };
        let n = m.entry((ns.to_string(), name.to_string())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    pub(super) fn clear(&self, ns: &str, name: &str) {
        if let Ok(mut m) = self.counts.lock() {
            m.remove(&(ns.to_string(), name.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failure_clock_keeps_the_first_sighting_until_forgotten() {
        let clock = FailureClock::default();
        clock.saw(Some("ns".into()), Some("j".into()));
        let first = clock.get("ns", "j").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        clock.saw(Some("ns".into()), Some("j".into()));
        assert_eq!(clock.get("ns", "j"), Some(first));
        clock.forget("ns", "j");
        assert_eq!(clock.get("ns", "j"), None);
        clock.saw(None, Some("j".into()));
        assert_eq!(clock.get("ns", "j"), None);
    }
}
