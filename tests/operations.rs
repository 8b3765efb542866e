//! Running Stepwise for months: crashes at random moments, two replicas
//! under leader election, restricted Pod Security, objects edited behind the
//! operator's back. Each test has its own namespace and operator processes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::manifests::{action, release};
use common::operator::{
    Operator, launch, leader_status, leading, namespace_with_crds, sample, setup,
};
use common::{wait_for, wait_until};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use rand::{Rng, SeedableRng};
use serde_json::json;
use stepwise::api::{Deployment, Outcome, Phase, Step, condition_types as ct};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn all_jobs(api: &Api<Job>) -> Vec<Job> {
    api.list(&ListParams::default().labels("stepwise.dev/step"))
        .await
        .expect("list jobs")
        .items
}

/// Every Job is an attempt the status knows, and every attempt has its Job:
/// no duplicate, no lost attempt, numbers without gaps.
fn check_accounting(steps: &[Step], jobs: &[Job]) -> Result<(), String> {
    let mut from_jobs: BTreeSet<(String, String, u32)> = BTreeSet::new();
    for j in jobs {
        let l = j.labels();
        let key = (
            l["stepwise.dev/step"].clone(),
            l["stepwise.dev/action"].clone(),
            l["stepwise.dev/attempt"]
                .parse()
                .map_err(|e| format!("bad attempt label: {e}"))?,
        );
        if !from_jobs.insert(key.clone()) {
            return Err(format!("two Jobs for {key:?}"));
        }
    }
    let mut from_status = BTreeSet::new();
    for s in steps {
        for a in &s.status.as_ref().ok_or("a Step without status")?.actions {
            // Status lists the latest attempts; `earlierAttempts` counts the rest.
            let earlier = a.earlier_attempts.unwrap_or(0);
            let numbers: Vec<u32> = a.attempts.iter().map(|x| x.number).collect();
            let expected: Vec<u32> = (earlier + 1..=earlier + numbers.len() as u32).collect();
            if numbers != expected {
                return Err(format!("{}/{}: attempts {numbers:?}", s.name_any(), a.name));
            }
            for n in (1..=earlier).chain(numbers) {
                from_status.insert((s.name_any(), a.name.clone(), n));
            }
        }
    }
    if from_jobs != from_status {
        return Err(format!(
            "Jobs and status disagree: only Jobs {:?}, only status {:?}",
            from_jobs.difference(&from_status).collect::<Vec<_>>(),
            from_status.difference(&from_jobs).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// 50 releases with retries (CI: fewer), the operator SIGKILLed and restarted
/// at random moments: every release ends as scripted, one Job per attempt,
/// no attempt lost, every retry within 1 s of its schedule.
#[tokio::test(flavor = "multi_thread")]
async fn survives_sigkill_at_random_moments() {
    let releases = env_count("STEPWISE_CHAOS_RELEASES", 12);
    let kills = env_count("STEPWISE_CHAOS_KILLS", 6);
    let seed: u64 = std::env::var("STEPWISE_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "chaos: {releases} releases, {kills} kills, seed {seed} (STEPWISE_CHAOS_SEED reproduces it)"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (ns, mut op) = setup("chaos").await;
    let api: Api<Deployment> = ns.api();
    let expected = create_chaos_releases(&api, &mut rng, releases).await;
    let down = kill_at_random(&mut op, &mut rng, kills).await;
    wait_all_finished(&api, Duration::from_secs(60 + 6 * releases as u64)).await;

    let steps: Api<Step> = ns.api();
    let all_steps = steps.list(&ListParams::default()).await.unwrap().items;
    let jobs = all_jobs(&ns.api()).await;
    let mut problems = Vec::new();
    if let Err(e) = check_accounting(&all_steps, &jobs) {
        problems.push(e);
    }
    for (name, want) in &expected {
        let d = api.get(name).await.unwrap();
        problems.extend(check_release(name, *want, &d, &all_steps, &down));
    }
    assert!(
        problems.is_empty(),
        "seed {seed}:\n{}\noperator log:\n{}",
        problems.join("\n"),
        op.log_text()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(op);
    ns.cleanup().await;
}

/// Each release scripted to fail its first action 0 to 3 times (limit 2):
/// its expected phase and number of attempts of that action.
async fn create_chaos_releases(
    api: &Api<Deployment>,
    rng: &mut rand::rngs::StdRng,
    releases: usize,
) -> BTreeMap<String, (Phase, u32)> {
    let mut expected = BTreeMap::new();
    for i in 0..releases {
        let fails: u32 = rng.random_range(0..=3);
        let limit: u32 = 2;
        let delay: u32 = rng.random_range(1..=3);
        let fail_list = (1..=fails)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let spec = json!({ "steps": [
            { "name": "one", "retries": { "limit": limit, "delaySeconds": delay }, "actions": [
                action("a", &[("fail-attempts", &fail_list), ("duration", &format!("{}ms", rng.random_range(0..800)))]),
                action("b", &[]),
            ]},
            { "name": "two", "actions": [action("c", &[])] },
        ]});
        let name = format!("rel-{i}");
        api.create(&PostParams::default(), &release(&name, spec))
            .await
            .expect("create");
        let phase = if fails <= limit {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        expected.insert(name, (phase, fails.min(limit) + 1));
    }
    expected
}

/// Restarts the operator `kills` times at random moments; when it was away.
async fn kill_at_random(
    op: &mut Operator,
    rng: &mut rand::rngs::StdRng,
    kills: usize,
) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
    // A retry due while the operator was away can only start on its return.
    let mut down: Vec<(jiff::Timestamp, jiff::Timestamp)> = Vec::new();
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        let killed = jiff::Timestamp::now();
        op.restart().await;
        let back = jiff::Timestamp::now();
        eprintln!(
            "chaos: kill {} (down {:?})",
            k + 1,
            back.duration_since(killed)
        );
        down.push((killed, back));
    }
    down
}

async fn wait_all_finished(api: &Api<Deployment>, timeout: Duration) {
    wait_until(timeout, "every release to finish", || {
        let api = api.clone();
        async move {
            let all = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let open: Vec<String> = all
                .iter()
                .filter(|d| {
                    !d.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(Phase::is_terminal)
                })
                .map(|d| d.name_any())
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("still running: {open:?}"))
            }
        }
    })
    .await;
}

/// What is wrong with one release: its phase, its attempts, how late its
/// retries came (not counting time the operator was down), a later step
/// after a failure.
fn check_release(
    name: &str,
    (phase, attempts_a): (Phase, u32),
    d: &Deployment,
    all_steps: &[Step],
    down: &[(jiff::Timestamp, jiff::Timestamp)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let got = d.status.as_ref().and_then(|s| s.phase);
    if got != Some(phase) {
        return vec![format!("{name}: {got:?}, expected {phase:?}")];
    }
    let step = all_steps
        .iter()
        .find(|s| s.name_any() == format!("{name}-one"))
        .unwrap();
    let st = step.status.as_ref().unwrap();
    let a = &st.actions[0];
    if a.attempts.len() as u32 != attempts_a {
        problems.push(format!(
            "{name}: action a has {} attempts, expected {attempts_a}",
            a.attempts.len()
        ));
    }
    let delay = step.spec.retries.as_ref().unwrap().delay_seconds;
    for pair in a.attempts.windows(2) {
        let seen = pair[0].failure_seen_at.unwrap();
        let started = pair[1].started_at.unwrap();
        let due = seen + jiff::SignedDuration::from_secs(i64::from(delay));
        let late = started.duration_since(due);
        // Within 1 s of the schedule, not counting time the operator was down.
        let away = time_away(down, due, started);
        if late < jiff::SignedDuration::ZERO || late - away > jiff::SignedDuration::from_secs(1) {
            problems.push(format!(
                "{name}: attempt {} came {late:?} after its schedule ({due}), {away:?} of it with the operator down",
                pair[1].number
            ));
        }
    }
    let later_started = all_steps
        .iter()
        .any(|s| s.name_any() == format!("{name}-two"));
    if phase == Phase::Failed && later_started {
        problems.push(format!("{name}: failed but its second step started"));
    }
    problems
}

/// How much of `due..started` the operator was down.
fn time_away(
    down: &[(jiff::Timestamp, jiff::Timestamp)],
    due: jiff::Timestamp,
    started: jiff::Timestamp,
) -> jiff::SignedDuration {
    down.iter()
        .map(|(k, b)| {
            let from = (*k).max(due);
            let to = (*b).min(started);
            if to > from {
                to.duration_since(from)
            } else {
                jiff::SignedDuration::ZERO
            }
        })
        .sum()
}

/// Two replicas with leader election: one acts; kill it and the other takes
/// over within the lease duration; no duplicate Jobs.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_acts_and_the_other_takes_over() {
    let ns = namespace_with_crds("leader").await;
    let lease = "4s";
    let first = Operator::start_leader_elected(&launch(), &ns.name, lease).await;
    let second = Operator::start_leader_elected(&launch(), &ns.name, lease).await;
    wait_until(Duration::from_secs(30), "exactly one leader", || {
        let (a, b) = (first.metrics_port, second.metrics_port);
        async move {
            let (la, lb) = (leader_status(a).await, leader_status(b).await);
            if la + lb == 1.0 {
                Ok(())
            } else {
                Err(format!("leaders: {la} {lb}"))
            }
        }
    })
    .await;
    let (mut leader, follower) = if leader_status(first.metrics_port).await == 1.0 {
        (first, second)
    } else {
        (second, first)
    };

    let api: Api<Deployment> = ns.api();
    let spec = json!({ "steps": [{ "name": "s", "retries": { "limit": 2, "delaySeconds": 3 }, "actions": [
        action("a", &[("fail-attempts", "1")]), action("b", &[("duration", "2s")]) ] }] });
    api.create(&PostParams::default(), &release("rel", spec))
        .await
        .unwrap();
    let steps: Api<Step> = ns.api();
    wait_for(
        &steps,
        "rel-s",
        Duration::from_secs(60),
        "the retry to be scheduled",
        |s: &Step| s.status.as_ref().and_then(|st| st.phase) == Some(Phase::Retrying),
    )
    .await;
    assert_eq!(
        sample(
            &follower.metrics().await,
            "stepwise_action_attempts_total{result=\"started\"}"
        ),
        0.0,
        "the follower acted"
    );
    let killed_at = std::time::Instant::now();
    leader.kill();
    wait_until(
        Duration::from_secs(10),
        "the follower to take the lease",
        || leading(follower.metrics_port),
    )
    .await;
    let took = killed_at.elapsed();
    assert!(
        // The standby sleeps until the lease expires, then waits up to 1 s
        // (kube-lease-manager's guard against collisions); slack for a busy machine.
        took <= Duration::from_secs(4) + Duration::from_secs(3),
        "takeover took {took:?}, lease is 4s"
    );
    wait_for(
        &api,
        "rel",
        Duration::from_secs(60),
        "the release to finish under the new leader",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded),
    )
    .await;
    let all = steps.list(&ListParams::default()).await.unwrap().items;
    check_accounting(&all, &all_jobs(&ns.api()).await).unwrap();
    assert!(
        sample(
            &follower.metrics().await,
            "stepwise_action_attempts_total{result=\"started\"}"
        ) >= 1.0
    );
    drop(leader);
    drop(follower);
    ns.cleanup().await;
}

/// The Jobs' restricted securityContext defaults pass a namespace that
/// enforces the restricted Pod Security Standard.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_pass_restricted_pod_security() {
    let ns = namespace_with_crds("restricted").await;
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let labels =
        json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "restricted" } } });
    namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    let op = Operator::start(&launch(), &ns.name).await;
    let api: Api<Deployment> = ns.api();
    let spec =
        json!({ "steps": [{ "name": "s", "actions": [action("a", &[]), action("b", &[])] }] });
    api.create(&PostParams::default(), &release("rel", spec))
        .await
        .unwrap();
    wait_for(
        &api,
        "rel",
        Duration::from_secs(60),
        "the release to succeed under restricted PSS",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded),
    )
    .await;
    let pods: Api<Pod> = ns.api();
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2,
        "both pods were admitted"
    );
    drop(op);
    ns.cleanup().await;
}

/// Restarts with finished and failed releases on the cluster never write
/// them back to an unfinished phase (a reconcile that read a half-filled cache
/// once did, and GitOps tools saw the release flap).
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_never_reopens_a_finished_release() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let (ns, mut op) = setup("reopen").await;
    let api: Api<Deployment> = ns.api();
    let names: Vec<String> = (0..6).map(|i| format!("rel-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let a = if i % 2 == 0 {
            action("a", &[])
        } else {
            action("a", &[("exit-code", "1")])
        };
        let spec = json!({ "steps": [
            { "name": "one", "actions": [a] },
            { "name": "two", "actions": [action("b", &[])] } ] });
        api.create(&PostParams::default(), &release(name, spec))
            .await
            .unwrap();
    }
    let finished = |d: &Deployment| {
        d.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(Phase::is_terminal)
    };
    for name in &names {
        wait_for(
            &api,
            name,
            Duration::from_secs(60),
            "the release to finish",
            finished,
        )
        .await;
    }
    // Every status change from here on, as the API server reports it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = tokio::spawn({
        let seen = seen.clone();
        let api = api.clone();
        async move {
            watcher(api, watcher::Config::default())
                .applied_objects()
                .for_each(|d| {
                    if let Ok(d) = d {
                        let phase = d.status.and_then(|s| s.phase);
                        seen.lock()
                            .unwrap()
                            .push((d.metadata.name.unwrap_or_default(), phase));
                    }
                    futures::future::ready(())
                })
                .await;
        }
    });
    for _ in 0..4 {
        op.restart().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() >= names.len(),
        "the watch saw every release: {seen:?}"
    );
    let reopened: Vec<_> = seen
        .iter()
        .filter(|(_, phase)| !phase.is_some_and(Phase::is_terminal))
        .collect();
    assert!(
        reopened.is_empty(),
        "finished releases reopened: {reopened:?}"
    );
    drop(op);
    ns.cleanup().await;
}

/// A status wiped by someone is rebuilt from the Jobs; nothing runs twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_cleared_status_is_rebuilt_from_the_jobs() {
    let (ns, op) = setup("cleared").await;
    let api: Api<Deployment> = ns.api();
    let spec = json!({ "steps": [{ "name": "s", "actions": [
        action("a", &[]), action("b", &[("duration", "4s")]), action("c", &[]) ] }] });
    api.create(&PostParams::default(), &release("rel", spec))
        .await
        .unwrap();
    let steps: Api<Step> = ns.api();
    wait_for(
        &steps,
        "rel-s",
        Duration::from_secs(60),
        "action b running",
        |s: &Step| {
            s.status
                .as_ref()
                .and_then(|st| st.current_action.clone())
                .as_deref()
                == Some("b")
        },
    )
    .await;
    let clear = json!({ "apiVersion": "stepwise.dev/v1alpha1", "kind": "Step", "status": { "actions": [] } });
    steps
        .patch_status(
            "rel-s",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&clear),
        )
        .await
        .unwrap();
    steps
        .patch_status(
            "rel-s",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": null })),
        )
        .await
        .unwrap();
    wait_for(
        &api,
        "rel",
        Duration::from_secs(60),
        "the release to finish",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded),
    )
    .await;
    let st = steps.get("rel-s").await.unwrap().status.unwrap();
    for a in &st.actions {
        assert_eq!(a.attempts.len(), 1, "{} ran again", a.name);
        assert_eq!(a.attempts[0].outcome, Outcome::Succeeded);
    }
    assert_eq!(all_jobs(&ns.api()).await.len(), 3);
    drop(op);
    ns.cleanup().await;
}

/// A pod template the schema admits but the Job API refuses: the release
/// stalls with the API server's words instead of crash-looping.
#[tokio::test(flavor = "multi_thread")]
async fn an_action_the_api_server_refuses_stalls_with_its_message() {
    let (ns, op) = setup("refused").await;
    let api: Api<Deployment> = ns.api();
    let spec = json!({ "steps": [{ "name": "s", "actions": [{ "name": "bad", "template": {
        "spec": { "containers": [{ "name": "Not_A_DNS_Label", "image": "busybox" }] } } }] }] });
    api.create(&PostParams::default(), &release("rel", spec))
        .await
        .unwrap();
    let steps: Api<Step> = ns.api();
    let step = wait_for(
        &steps,
        "rel-s",
        Duration::from_secs(60),
        "the step to stall",
        |s: &Step| s.status.as_ref().and_then(|st| st.phase) == Some(Phase::Failed),
    )
    .await;
    let stalled = step
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == ct::STALLED)
        .unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "JobRejected")
    );
    assert!(
        stalled
            .message
            .contains("action bad was rejected by the API server")
            && stalled.message.contains("Not_A_DNS_Label"),
        "{}",
        stalled.message
    );
    wait_for(
        &api,
        "rel",
        Duration::from_secs(30),
        "the release to fail",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed),
    )
    .await;
    assert!(op.log_text().matches("panicked").next().is_none());
    drop(op);
    ns.cleanup().await;
}

/// SIGTERM lets the leader finish its work and release the Lease (no
/// holder left behind); the standby then takes over within the lease duration.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_releases_the_lease() {
    let ns = namespace_with_crds("sigterm").await;
    let lease = "6s";
    let mut first = Operator::start_leader_elected(&launch(), &ns.name, lease).await;
    wait_until(Duration::from_secs(30), "the first replica to lead", || {
        leading(first.metrics_port)
    })
    .await;
    let second = Operator::start_leader_elected(&launch(), &ns.name, lease).await;
    let stopped_in = first.terminate();
    assert!(
        first.log_text().contains("lease released"),
        "{}",
        first.log_text()
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = ns.api();
    let lease = leases.get("stepwise").await.unwrap();
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    // Released: no holder, or already the standby on a slow machine; never the stopped one.
    let log = first.log_text();
    let first_identity = log
        .split("identity=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    assert!(!first_identity.is_empty(), "{log}");
    assert_ne!(
        holder, first_identity,
        "the stopped replica still holds the lease"
    );
    let since = std::time::Instant::now();
    wait_until(
        Duration::from_secs(6 + 3),
        "the standby to lead within the lease duration",
        || leading(second.metrics_port),
    )
    .await;
    eprintln!(
        "graceful stop took {stopped_in:?}, takeover {:?}",
        since.elapsed()
    );
    drop(second);
    ns.cleanup().await;
}
