//! Hand-offs: "previous Job done -> next Job created", as the bench's
//! watcher saw them, and where the operator's time goes in between.

use std::collections::HashMap;

use kube::api::ListParams;
use kube::{Api, Client};
use stepwise::api::Step;

use crate::results::Decomposed;
use crate::stats::summary;
use crate::watch::Recorder;

/// Hand-offs in one namespace: next Job first seen minus previous Job done
/// first seen, for each consecutive pair of each chain; and how many pairs
/// were not seen.
pub fn handoffs(rec: &Recorder, chains: &[Vec<String>]) -> (Vec<f64>, usize) {
    rec.with(|x| {
        let mut out = Vec::new();
        let mut missing = 0;
        for pair in chains.iter().flat_map(|c| c.windows(2)) {
            match (x.done_ms(&pair[0]), x.jobs.get(&pair[1])) {
                (Some(done), Some(next)) => out.push(next.seen_ms - done),
                _ => missing += 1,
            }
        }
        (out, missing)
    })
}

/// Job name -> the operator's `startedAt` of that attempt (ms since the
/// epoch): the moment it planned the Job, just before the create request.
pub async fn started_at_by_job(client: &Client, ns: &str) -> HashMap<String, f64> {
    let steps = Api::<Step>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    steps
        .into_iter()
        .flat_map(|step| step.status.map(|s| s.actions).unwrap_or_default())
        .flat_map(|action| action.attempts)
        .filter_map(|a| Some((a.job.clone(), a.started_at?.as_millisecond() as f64)))
        .collect()
}

/// Splits hand-offs `(previous, next)` into the operator's reaction (previous
/// Job done, as the bench saw it -> the operator's startedAt of the next) and
/// the create (startedAt -> the next Job seen by the bench).
pub fn decompose(
    rec: &Recorder,
    pairs: &[(String, String)],
    started: &HashMap<String, f64>,
) -> Decomposed {
    let (mut react, mut create) = (Vec::new(), Vec::new());
    rec.with(|x| {
        for (prev, next) in pairs {
            if let (Some(done), Some(st), Some(seen)) =
                (x.done_ms(prev), started.get(next), x.jobs.get(next))
            {
                react.push(st - done);
                create.push(seen.seen_ms - st);
            }
        }
    });
    Decomposed {
        react_ms: summary(&react),
        create_ms: summary(&create),
    }
}

/// The consecutive pairs of each chain whose index `which` picks.
pub fn pairs_of(chains: &[Vec<String>], which: impl Fn(usize) -> bool) -> Vec<(String, String)> {
    chains
        .iter()
        .flat_map(|c| {
            c.windows(2)
                .enumerate()
                .filter(|(i, _)| which(*i))
                .map(|(_, w)| (w[0].clone(), w[1].clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Next Job seen minus previous Job done, for the pairs seen.
pub fn hop_latencies(rec: &Recorder, pairs: &[(String, String)]) -> Vec<f64> {
    rec.with(|x| {
        pairs
            .iter()
            .filter_map(|(p, n)| Some(x.jobs.get(n)?.seen_ms - x.done_ms(p)?))
            .collect()
    })
}
