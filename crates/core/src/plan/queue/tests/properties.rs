//! Properties of the queue over random namespaces: never two started per
//! key, oldest first, one view starts at most one, Supersede leaves one waiting.

use super::*;

/// A random namespace: releases r0..rn with keys, policies and creation times (ties too).
fn namespace() -> impl Strategy<Value = Vec<Release>> {
    prop::collection::vec((0..3u8, any::<bool>(), 0..5i64), 1..8).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (key, sup, at))| {
                let key = ["a", "b"].get(usize::from(key)).copied();
                let policy = if sup {
                    ConcurrencyPolicy::Supersede
                } else {
                    ConcurrencyPolicy::Queue
                };
                rel(&format!("r{i}"), at, key, policy, Waiting)
            })
            .collect()
    })
}

fn started_per_key(all: &[Release]) -> Vec<(&str, usize)> {
    ["a", "b"]
        .iter()
        .map(|k| {
            let n = all
                .iter()
                .filter(|r| r.key() == Some(*k) && r.state == Started)
                .count();
            (*k, n)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Reconciles and finishes in any order: never two started with one key,
    /// and each key's releases start oldest first.
    #[test]
    fn never_two_started_and_oldest_first(mut all in namespace(), ops in prop::collection::vec((any::<bool>(), 0..8usize), 0..60)) {
        let mut starts: Vec<Release> = Vec::new();
        for (finish, i) in ops {
            let i = i % all.len();
            if finish {
                if all[i].state == Started {
                    all[i].state = Finished;
                }
                continue;
            }
            if all[i].state != Waiting {
                continue;
            }
            match decide(&all[i], &all) {
                Verdict::Start => {
                    all[i].state = Started;
                    starts.push(all[i].clone());
                }
                Verdict::Superseded { by } => {
                    let newer = all.iter().find(|r| r.name == by).unwrap();
                    prop_assert!(all[i].before(newer) && newer.supersedes());
                    all[i].state = Finished;
                }
                Verdict::Wait { behind, place } => {
                    prop_assert!(place >= 1);
                    prop_assert!(all.iter().any(|r| r.name == behind && r.state != Finished));
                }
            }
            for (k, n) in started_per_key(&all) {
                prop_assert!(n <= 1, "key {k}: {n} started");
            }
        }
        for k in ["a", "b"] {
            let order: Vec<_> = starts.iter().filter(|r| r.key() == Some(k)).collect();
            prop_assert!(order.windows(2).all(|w| w[0].before(w[1])), "key {k}: {order:?}");
        }
    }

    /// Verdicts taken at the same time from one view of the cluster (two
    /// replicas, or reconciles in parallel) start at most one release per key,
    /// and none while one has started.
    #[test]
    fn one_view_starts_at_most_one_per_key(mut all in namespace(), started in prop::collection::vec(any::<bool>(), 8)) {
        for (r, s) in all.iter_mut().zip(started) {
            if s { r.state = Started; }
        }
        for k in ["a", "b"] {
            let holders = all.iter().filter(|r| r.key() == Some(k) && r.state == Started).count();
            let starting = all
                .iter()
                .filter(|r| r.key() == Some(k) && r.state == Waiting && decide(r, &all) == Verdict::Start)
                .count();
            prop_assert!(starting <= 1);
            if holders > 0 { prop_assert_eq!(starting, 0); }
        }
    }

    /// Once everything is reconciled (nothing finishing), a key whose
    /// releases all supersede has at most one release waiting.
    #[test]
    fn supersede_leaves_one_waiting(mut all in namespace(), holder in any::<bool>()) {
        for r in &mut all {
            if let Some(c) = r.concurrency.as_mut() { c.policy = ConcurrencyPolicy::Supersede; }
        }
        if holder { all[0].state = Started; }
        for _ in 0..all.len() + 1 {
            for i in 0..all.len() {
                if all[i].state != Waiting { continue; }
                match decide(&all[i], &all) {
                    Verdict::Start => all[i].state = Started,
                    Verdict::Superseded { .. } => all[i].state = Finished,
                    Verdict::Wait { .. } => {}
                }
            }
        }
        for k in ["a", "b"] {
            let waiting = all.iter().filter(|r| r.key() == Some(k) && r.state == Waiting).count();
            prop_assert!(waiting <= 1, "key {k}: {waiting} waiting");
        }
    }
}
