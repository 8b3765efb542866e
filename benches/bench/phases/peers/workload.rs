//! The peers phase's workloads, the same for every driver: releases created
//! one after another (each timed from its create to its outcome as the
//! bench's watch saw it), and many created at once (wall time to the last).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use super::driver::{Driver, Shape};
use crate::stats::{log, poll_until, wall_ms};

/// name -> (local receive time in ms, succeeded).
type Seen = Arc<Mutex<HashMap<String, (f64, bool)>>>;

/// Watches the driver's kind in a namespace and keeps each object's outcome.
pub struct Outcomes {
    seen: Seen,
    task: JoinHandle<()>,
    pub api: Api<DynamicObject>,
}

impl Outcomes {
    pub async fn start(client: &Client, ns: &str, d: Driver) -> Outcomes {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &d.resource());
        let seen: Seen = Arc::default();
        let into = seen.clone();
        let events = watcher(api.clone(), watcher::Config::default());
        let task = tokio::spawn(async move {
            let mut objs = events.default_backoff().applied_objects().boxed();
            while let Some(o) = objs.next().await {
                let t = wall_ms();
                let Ok(o) = o else { continue };
                if let (Some(ok), Ok(mut m)) = (d.outcome(&o), into.lock()) {
                    m.entry(o.name_any()).or_insert((t, ok));
                }
            }
        });
        Outcomes { seen, task, api }
    }

    pub fn get(&self, name: &str) -> Option<(f64, bool)> {
        self.seen.lock().ok()?.get(name).copied()
    }

    /// Succeeded and failed outcomes of the objects named `prefix`...: the
    /// namespace also holds the one-by-one workloads' objects.
    pub fn count(&self, prefix: &str) -> (usize, usize) {
        let Ok(m) = self.seen.lock() else {
            return (0, 0);
        };
        let mine: Vec<bool> = m
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, (_, ok))| *ok)
            .collect();
        let ok = mine.iter().filter(|ok| **ok).count();
        (ok, mine.len() - ok)
    }
}

impl Drop for Outcomes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One release at a time; returns the seconds of those that succeeded and
/// how many failed or timed out.
pub async fn one_by_one(
    out: &Outcomes,
    d: Driver,
    prefix: &str,
    n: usize,
    shape: Shape,
    timeout: Duration,
) -> (Vec<f64>, usize) {
    let (mut secs, mut bad) = (Vec::new(), 0);
    for i in 0..n {
        let name = format!("{prefix}-{i:03}");
        let t0 = wall_ms();
        if let Err(e) = out
            .api
            .create(&PostParams::default(), &d.manifest(&name, shape))
            .await
        {
            log(format!("peers: {} create {name} failed: {e}", d.key()));
            bad += 1;
            continue;
        }
        poll_until(timeout, Duration::from_millis(10), || async {
            out.get(&name).is_some()
        })
        .await;
        match out.get(&name) {
            Some((t, true)) => secs.push((t - t0) / 1000.0),
            other => {
                let what = if other.is_some() {
                    "failed"
                } else {
                    "timed out"
                };
                log(format!("peers: {} {name} {what}", d.key()));
                bad += 1;
            }
        }
    }
    (secs, bad)
}

/// The names of the releases `all_at_once` creates start with this.
const ALL_PREFIX: &str = "t-";

/// `n` releases created at once (`concurrency` creates in flight); the wall
/// time from the first create to the last outcome, and how many succeeded.
pub async fn all_at_once(
    out: &Outcomes,
    d: Driver,
    n: usize,
    concurrency: usize,
    timeout: Duration,
) -> (Option<Duration>, usize) {
    let objs: Vec<DynamicObject> = (0..n)
        .map(|i| d.manifest(&format!("{ALL_PREFIX}{i:04}"), throughput_shape()))
        .collect();
    let started = Instant::now();
    let refused = crate::raw::create_all(&out.api, objs, concurrency).await;
    if refused > 0 {
        log(format!("peers: {} refused {refused} creates", d.key()));
    }
    let mut last_report = Instant::now();
    let finished = poll_until(timeout, Duration::from_millis(100), || {
        let (ok, failed) = out.count(ALL_PREFIX);
        if last_report.elapsed() > Duration::from_secs(30) {
            log(format!(
                "peers: {}: {ok}/{n} succeeded ({failed} failed) after {:.0} s",
                d.key(),
                started.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        async move { ok + failed >= n - refused }
    })
    .await;
    let wall = started.elapsed();
    let (ok, _) = out.count(ALL_PREFIX);
    (finished.then_some(wall), ok)
}

pub fn throughput_shape() -> Shape {
    Shape {
        steps: 2,
        actions: 2,
        retry: false,
    }
}
