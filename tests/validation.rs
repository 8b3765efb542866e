//! Bad input is refused by the API server itself (OpenAPI schema and CEL
//! rules from the CRDs), with a message naming the field. Server-side dry
//! runs: nothing is stored, no operator is needed.

mod common;

use common::TestNamespace;
use common::operator::namespace_with_crds;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stepwise::api::{Deployment, Step};

fn act(name: &str) -> Value {
    json!({ "name": name, "template": { "spec": { "containers": [{ "name": "main", "image": "busybox" }] } } })
}

fn run_step(name: &str) -> Value {
    json!({ "name": name, "actions": [act("a")] })
}

fn with_step(step: Value) -> Value {
    json!({ "steps": [step] })
}

fn retrying(retries: Value) -> Value {
    with_step(json!({ "name": "s", "retries": retries, "actions": [act("a")] }))
}

/// (what, object name, spec, every fragment the error must contain)
type Case = (&'static str, String, Value, Vec<&'static str>);

fn deployment_cases() -> Vec<Case> {
    [
        name_cases(),
        type_cases(),
        retry_cases(),
        retry_on_cases(),
        shape_cases(),
        vec![(
            "runWhen not one of its values",
            "d".to_string(),
            with_step(json!({ "name": "s", "runWhen": "Sometimes", "actions": [act("a")] })),
            vec!["spec.steps[0].runWhen", "Unsupported value", "OnFailure"],
        )],
    ]
    .concat()
}

/// Names and step types.
fn name_cases() -> Vec<Case> {
    let n = |s: &str| s.to_string();
    let long = "x".repeat(40);
    vec![
        (
            "duplicate step names",
            n("d"),
            json!({ "steps": [run_step("a"), run_step("a")] }),
            vec!["spec.steps", "step names must be unique"],
        ),
        (
            "duplicate action names",
            n("d"),
            with_step(json!({ "name": "s", "actions": [act("a"), act("a")] })),
            vec!["spec.steps[0].actions", "action names must be unique"],
        ),
        (
            "step name not a DNS label",
            n("d"),
            with_step(run_step("Migrate_DB")),
            vec!["spec.steps[0].name", "should match"],
        ),
        (
            "action name not a DNS label",
            n("d"),
            with_step(json!({ "name": "s", "actions": [act("back up")] })),
            vec!["spec.steps[0].actions[0].name", "should match"],
        ),
        (
            "empty step name",
            n("d"),
            with_step(run_step("")),
            vec!["spec.steps[0].name"],
        ),
        (
            "action name over 63 characters",
            n("d"),
            with_step(json!({ "name": "s", "actions": [act(&"a".repeat(64))] })),
            vec!["spec.steps[0].actions[0].name", "Too long"],
        ),
        (
            "deployment plus step name too long for a Step name",
            long.clone(),
            with_step(run_step(&"s".repeat(30))),
            vec!["must be at most 62 characters"],
        ),
    ]
}

/// Step types and what each may carry.
fn type_cases() -> Vec<Case> {
    let n = |s: &str| s.to_string();
    vec![
        (
            "Run step without actions",
            n("d"),
            with_step(json!({ "name": "s" })),
            vec!["spec.steps[0]", "a Run step needs at least one action"],
        ),
        (
            "Run step with an empty action list",
            n("d"),
            with_step(json!({ "name": "s", "type": "Run", "actions": [] })),
            vec!["a Run step needs at least one action"],
        ),
        (
            "ManualIntervention with actions",
            n("d"),
            with_step(json!({ "name": "s", "type": "ManualIntervention", "actions": [act("a")] })),
            vec!["spec.steps[0]", "a ManualIntervention step has no actions"],
        ),
        (
            "ManualIntervention with retries",
            n("d"),
            with_step(
                json!({ "name": "s", "type": "ManualIntervention", "retries": { "limit": 2 } }),
            ),
            vec![
                "spec.steps[0]",
                "retries are not available on manual intervention steps",
            ],
        ),
        (
            "unknown step type",
            n("d"),
            with_step(json!({ "name": "s", "type": "Deploy", "actions": [act("a")] })),
            vec!["spec.steps[0].type", "Unsupported value"],
        ),
    ]
}

/// The retry condition and its Deployment default.
fn retry_cases() -> Vec<Case> {
    let n = |s: &str| s.to_string();
    vec![
        (
            "limit above 10",
            n("d"),
            retrying(json!({ "limit": 11 })),
            vec!["spec.steps[0].retries.limit", "less than or equal to 10"],
        ),
        (
            "negative limit",
            n("d"),
            retrying(json!({ "limit": -1 })),
            vec!["spec.steps[0].retries.limit", "greater than or equal to 0"],
        ),
        (
            "negative delay",
            n("d"),
            retrying(json!({ "delaySeconds": -5 })),
            vec![
                "spec.steps[0].retries.delaySeconds",
                "greater than or equal to 0",
            ],
        ),
        (
            "delay over a day",
            n("d"),
            retrying(json!({ "delaySeconds": 90000 })),
            vec![
                "spec.steps[0].retries.delaySeconds",
                "less than or equal to 86400",
            ],
        ),
        (
            "backoff factor below 1",
            n("d"),
            retrying(json!({ "backoffFactor": 0.5 })),
            vec!["spec.steps[0].retries.backoffFactor"],
        ),
        (
            "max delay below delay",
            n("d"),
            retrying(json!({ "delaySeconds": 30, "maxDelaySeconds": 10 })),
            vec![
                "spec.steps[0].retries",
                "maxDelaySeconds must not be less than delaySeconds",
            ],
        ),
        (
            "jitter over 100 percent",
            n("d"),
            retrying(json!({ "jitterPercent": 150 })),
            vec!["spec.steps[0].retries.jitterPercent"],
        ),
    ]
}

/// retryOn and the retry fields' types.
fn retry_on_cases() -> Vec<Case> {
    let n = |s: &str| s.to_string();
    vec![
        (
            "empty retryOn",
            n("d"),
            retrying(json!({ "retryOn": {} })),
            vec![
                "spec.steps[0].retries.retryOn",
                "retryOn needs at least one exit code or reason",
            ],
        ),
        (
            "unknown retryOn reason",
            n("d"),
            retrying(json!({ "retryOn": { "reasons": ["Flaky"] } })),
            vec!["spec.steps[0].retries.retryOn.reasons", "reasons may be"],
        ),
        (
            "retries.enabled not a boolean",
            n("d"),
            retrying(json!({ "enabled": "yes" })),
            vec!["spec.steps[0].retries.enabled", "boolean"],
        ),
        (
            "deployment default limit above 10",
            n("d"),
            json!({ "retries": { "limit": 20 }, "steps": [run_step("s")] }),
            vec!["spec.retries.limit", "less than or equal to 10"],
        ),
        (
            "guidedFailure not a boolean",
            n("d"),
            json!({ "guidedFailure": "yes", "steps": [run_step("s")] }),
            vec!["spec.guidedFailure", "boolean"],
        ),
    ]
}

/// Sizes, required parts and timeouts.
fn shape_cases() -> Vec<Case> {
    let n = |s: &str| s.to_string();
    vec![
        (
            "no steps",
            n("d"),
            json!({ "steps": [] }),
            vec!["spec.steps", "at least 1 items"],
        ),
        (
            "steps missing",
            n("d"),
            json!({}),
            vec!["spec.steps", "Required value"],
        ),
        (
            "more than 50 steps",
            n("d"),
            json!({ "steps": (0..51).map(|i| run_step(&format!("s{i}"))).collect::<Vec<_>>() }),
            vec!["spec.steps", "Too many"],
        ),
        (
            "more than 20 actions",
            n("d"),
            with_step(
                json!({ "name": "s", "actions": (0..21).map(|i| act(&format!("a{i}"))).collect::<Vec<_>>() }),
            ),
            vec!["spec.steps[0].actions", "Too many"],
        ),
        (
            "action without template",
            n("d"),
            with_step(json!({ "name": "s", "actions": [{ "name": "a" }] })),
            vec!["spec.steps[0].actions[0].template", "Required value"],
        ),
        (
            "pod template without containers",
            n("d"),
            with_step(
                json!({ "name": "s", "actions": [{ "name": "a", "template": { "spec": {} } }] }),
            ),
            vec![
                "spec.steps[0].actions[0].template.spec.containers",
                "Required value",
            ],
        ),
        (
            "timeout of zero seconds",
            n("d"),
            with_step(
                json!({ "name": "s", "actions": [{ "name": "a", "timeoutSeconds": 0, "template": { "spec": { "containers": [{ "name": "m" }] } } }] }),
            ),
            vec![
                "spec.steps[0].actions[0].timeoutSeconds",
                "greater than or equal to 1",
            ],
        ),
        (
            "start timeout of zero seconds",
            n("d"),
            with_step(
                json!({ "name": "s", "actions": [{ "name": "a", "startTimeoutSeconds": 0, "template": { "spec": { "containers": [{ "name": "m" }] } } }] }),
            ),
            vec![
                "spec.steps[0].actions[0].startTimeoutSeconds",
                "greater than or equal to 1",
            ],
        ),
        (
            "instructions over 4096 characters",
            n("d"),
            with_step(
                json!({ "name": "s", "type": "ManualIntervention", "instructions": "x".repeat(5000) }),
            ),
            vec!["spec.steps[0].instructions", "Too long"],
        ),
    ]
}

fn dynamic<K: kube::Resource<DynamicType = ()>>(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::erase::<K>(&()))
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1",
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("object")
}

async fn expect_rejected(
    api: &Api<DynamicObject>,
    what: &str,
    obj: &DynamicObject,
    fragments: &[&str],
) -> Result<(), String> {
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&dry, obj).await {
        Ok(_) => Err(format!("{what}: accepted, expected a rejection")),
        Err(kube::Error::Api(e)) => {
            if e.code != 422 {
                return Err(format!(
                    "{what}: HTTP {} ({}), expected 422",
                    e.code, e.message
                ));
            }
            match fragments.iter().find(|f| !e.message.contains(*f)) {
                Some(missing) => Err(format!("{what}: message lacks {missing:?}: {}", e.message)),
                None => Ok(()),
            }
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_deployments_are_rejected_naming_the_field() {
    let ns = namespace_with_crds("invalid").await;
    let api = dynamic::<Deployment>(&ns);
    let cases = deployment_cases();
    assert!(cases.len() >= 30, "the table keeps at least 30 cases");
    let mut failures = Vec::new();
    for (what, name, spec, fragments) in &cases {
        if let Err(e) = expect_rejected(
            &api,
            what,
            &object("Deployment", name, spec.clone()),
            fragments,
        )
        .await
        {
            failures.push(e);
        }
    }
    // A valid one passes the same dry run, so the table is not testing a broken CRD.
    let ok = object(
        "Deployment",
        "ok",
        json!({ "guidedFailure": true, "retries": {}, "steps": [run_step("s"), { "name": "m", "type": "ManualIntervention" }] }),
    );
    if let Err(e) = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &ok,
        )
        .await
    {
        failures.push(format!("a valid Deployment was rejected: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_steps_are_rejected_naming_the_field() {
    let ns = namespace_with_crds("invalid-step").await;
    let api = dynamic::<Step>(&ns);
    let cases = [
        (
            "Step name over 63 characters",
            "s".repeat(64),
            json!({ "actions": [act("a")] }),
            vec!["at most 63 characters"],
        ),
        (
            "manual Step with retries",
            "m".to_string(),
            json!({ "type": "ManualIntervention", "retries": {} }),
            vec!["retries are not available on manual intervention steps"],
        ),
        (
            "Run Step without actions",
            "r".to_string(),
            json!({}),
            vec!["a Run step needs at least one action"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, name, spec, fragments) in &cases {
        if let Err(e) =
            expect_rejected(&api, what, &object("Step", name, spec.clone()), fragments).await
        {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_changes_after_creation_are_refused() {
    let ns = namespace_with_crds("immutable").await;
    let api = dynamic::<Deployment>(&ns);
    let original = object("Deployment", "rel", with_step(run_step("s")));
    api.create(&PostParams::default(), &original)
        .await
        .expect("create");
    let changed = object(
        "Deployment",
        "rel",
        json!({ "steps": [run_step("s"), run_step("t")] }),
    );
    let err = api
        .patch(
            "rel",
            &PatchParams::apply("gitops").force(),
            &Patch::Apply(&changed),
        )
        .await
        .expect_err("a changed spec must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("spec is immutable: a new release is a new Deployment"),
        "{msg}"
    );
    // Metadata (labels, annotations) stays editable.
    let labels = json!({ "metadata": { "labels": { "team": "shop" } } });
    api.patch("rel", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("labels are not spec");
    ns.cleanup().await;
}
