//! The three drivers of the peers phase, as one kind each: Stepwise's
//! `Deployment`, Tekton's `PipelineRun` (one Task per action, chained with
//! `runAfter`) and Argo's `Workflow` (one step per action). Every action is
//! one pod on a kwok node, told to succeed by its `sim.stepwise.dev/`
//! annotation (or to fail its first two attempts, where the driver can say
//! which attempt a pod is).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use stepwise_testkit::manifests::{action, release};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Stepwise,
    Tekton,
    /// Tekton tuned for throughput: `-kube-api-qps 200 -kube-api-burst 400
    /// -threads-per-controller 16`.
    TektonTuned,
    /// Argo at its default requeue time.
    Argo,
    /// Argo with `DEFAULT_REQUEUE_TIME=1s`.
    Argo1s,
    /// Argo tuned for throughput: 1 s requeue and `--qps 400 --burst 800`.
    ArgoTuned,
}

/// Every driver, in the order the phase runs them by default.
pub const ALL: [Driver; 6] = [
    Driver::Stepwise,
    Driver::Tekton,
    Driver::TektonTuned,
    Driver::Argo,
    Driver::Argo1s,
    Driver::ArgoTuned,
];

/// What a release looks like: `steps` x `actions`, and whether its first
/// action fails twice and succeeds on attempt 3 (2 s between attempts).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub steps: usize,
    pub actions: usize,
    pub retry: bool,
}

impl Driver {
    pub fn parse(name: &str) -> Option<Driver> {
        ALL.into_iter().find(|d| d.key() == name)
    }

    /// Its name in settings, scripts/peers.sh and the results.
    pub fn key(self) -> &'static str {
        match self {
            Driver::Stepwise => "stepwise",
            Driver::Tekton => "tekton",
            Driver::TektonTuned => "tekton-tuned",
            Driver::Argo => "argo",
            Driver::Argo1s => "argo-1s",
            Driver::ArgoTuned => "argo-tuned",
        }
    }

    /// Whether this is (a setting of) Tekton, else Argo, when not Stepwise.
    pub fn is_tekton(self) -> bool {
        matches!(self, Driver::Tekton | Driver::TektonTuned)
    }

    pub fn resource(self) -> ApiResource {
        let (g, v, k, p) = match self {
            Driver::Stepwise => ("stepwise.dev", "v1alpha1", "Deployment", "deployments"),
            d if d.is_tekton() => ("tekton.dev", "v1", "PipelineRun", "pipelineruns"),
            _ => ("argoproj.io", "v1alpha1", "Workflow", "workflows"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p)
    }

    /// Whether the driver can make an action fail twice and wait 2 s
    /// between attempts; why not, when it cannot.
    pub fn retry_unsupported(self) -> Option<&'static str> {
        match self {
            d if d.is_tekton() => Some(
                "not run: Tekton retries a Task at once (no wait between attempts can be set), \
                 and its retry pods carry no attempt number kwok could script a failure on",
            ),
            _ => None,
        }
    }

    pub fn manifest(self, name: &str, shape: Shape) -> DynamicObject {
        let value = match self {
            Driver::Stepwise => stepwise(name, shape),
            d if d.is_tekton() => tekton(name, shape),
            _ => argo(name, shape),
        };
        serde_json::from_value(value).expect("a valid object")
    }

    /// Some(true) once it succeeded, Some(false) once it failed for good.
    pub fn outcome(self, o: &DynamicObject) -> Option<bool> {
        let status = o.data.get("status")?;
        match self {
            Driver::Stepwise => phase(status, &["Succeeded"], &["Failed"]),
            d if !d.is_tekton() => phase(status, &["Succeeded"], &["Failed", "Error"]),
            _ => {
                let conditions = status.get("conditions")?.as_array()?;
                let c = conditions.iter().find(|c| c["type"] == "Succeeded")?;
                match c["status"].as_str()? {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                }
            }
        }
    }
}

fn phase(status: &Value, ok: &[&str], failed: &[&str]) -> Option<bool> {
    let p = status.get("phase")?.as_str()?;
    if ok.contains(&p) {
        Some(true)
    } else if failed.contains(&p) {
        Some(false)
    } else {
        None
    }
}

/// (step, action) names in run order: s1-a1, s1-a2, s2-a1, ...
fn actions(shape: Shape) -> Vec<String> {
    (1..=shape.steps)
        .flat_map(|s| (1..=shape.actions).map(move |a| format!("s{s}-a{a}")))
        .collect()
}

fn stepwise(name: &str, shape: Shape) -> Value {
    let steps: Vec<Value> = (1..=shape.steps)
        .map(|s| {
            let acts: Vec<Value> = (1..=shape.actions)
                .map(|a| {
                    let sim: &[(&str, &str)] = if shape.retry && s == 1 && a == 1 {
                        &[("fail-attempts", "1,2")]
                    } else {
                        &[]
                    };
                    action(&format!("a{a}"), sim)
                })
                .collect();
            let mut step = json!({ "name": format!("s{s}"), "actions": acts });
            if shape.retry && s == 1 {
                step["retries"] = json!({ "limit": 2, "delaySeconds": 2 });
            }
            step
        })
        .collect();
    serde_json::to_value(release(name, json!({ "steps": steps }))).expect("a Deployment")
}

fn tekton(name: &str, shape: Shape) -> Value {
    let names = actions(shape);
    let tasks: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut task = json!({
                "name": n,
                "taskSpec": {
                    "metadata": { "annotations": { "sim.stepwise.dev/exit-code": "0" } },
                    "steps": [{ "name": "main", "image": "busybox", "command": ["true"] }],
                },
            });
            if i > 0 {
                task["runAfter"] = json!([names[i - 1]]);
            }
            task
        })
        .collect();
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": { "name": name },
        "spec": { "pipelineSpec": { "tasks": tasks } },
    })
}

fn argo(name: &str, shape: Shape) -> Value {
    let steps: Vec<Value> = actions(shape)
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let template = if shape.retry && i == 0 {
                "flaky"
            } else {
                "act"
            };
            json!([{ "name": n, "template": template }])
        })
        .collect();
    let container = json!({ "image": "busybox", "command": ["true"] });
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": { "name": name },
        "spec": {
            "entrypoint": "main",
            "templates": [
                { "name": "main", "steps": steps },
                { "name": "act", "container": container,
                  "metadata": { "annotations": { "sim.stepwise.dev/exit-code": "0" } } },
                // {{retries}} is the attempt's 0-based retry number: attempts 0
                // and 1 fail, attempt 2 (the third) succeeds.
                { "name": "flaky", "container": container,
                  "retryStrategy": { "limit": "2", "retryPolicy": "Always",
                                     "backoff": { "duration": "2s" } },
                  "metadata": {
                      "annotations": { "sim.stepwise.dev/fail-attempts": "0,1" },
                      "labels": { "stepwise.dev/attempt": "{{retries}}" } } },
            ],
        },
    })
}
