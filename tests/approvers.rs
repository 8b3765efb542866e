//! Who decided, and who may (issue 15, part 2): the chart's admission
//! policies on the local API server, with impersonated users. The policies
//! are rendered by the pinned helm from charts/stepwise under a release name
//! of their own, exempting this test's own identity (it plays the operator,
//! as every other test's operator does), so other tests are unaffected.

mod common;
#[path = "approvers/recorded.rs"]
mod recorded;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::operator::namespace_with_crds;
use common::{TestNamespace, client, kubeconfig_path, wait_until};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use stepwise::api::{ANNOTATION_APPROVAL, ANNOTATION_DECIDED_BY, ANNOTATION_DECISION, Step};

const RELEASE: &str = "stepwise-approvers-test";
const SETTLE: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Who this test's client is, as the API server sees it.
async fn own_username(client: &Client) -> String {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .expect("the API server names this client's user")
}

/// Renders the chart's admission policies (and nothing else) with helm and
/// applies them server-side with kubectl.
fn install_policies(operator: &str) {
    let users = serde_json::to_string(&[operator]).expect("json");
    let rendered = Command::new(root().join(".tools/bin/helm"))
        .args([
            "template",
            RELEASE,
            "charts/stepwise",
            "--namespace",
            "stepwise-system",
        ])
        .args(["--show-only", "templates/admission-policies.yaml"])
        .arg(format!(
            "--set-json=admissionPolicies.operatorUsers={users}"
        ))
        .current_dir(root())
        .output()
        .expect("run helm (make tools builds it)");
    assert!(
        rendered.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut apply = Command::new(root().join(".tools/bin/kubectl"))
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl (make tools builds it)");
    use std::io::Write;
    apply
        .stdin
        .take()
        .expect("stdin")
        .write_all(&rendered.stdout)
        .expect("write manifests");
    let out = apply.wait_with_output().expect("kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply of the admission policies failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that acts as `user` in `groups` (impersonation: the admin may).
async fn client_as(user: &str, groups: &[&str]) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config");
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(config).expect("client")
}

/// Lets alice, bob, carol and mallory read and annotate Steps and
/// Deployments in the namespace (RBAC decides who may write at all; the
/// policy decides who may decide).
async fn grant_annotators(ns: &TestNamespace) {
    let subjects: Vec<Value> = ["alice", "bob", "carol", "mallory"]
        .iter()
        .map(|u| json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u }))
        .collect();
    let rbac = json!([
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "annotators", "namespace": ns.name },
            "rules": [{ "apiGroups": ["stepwise.dev"], "resources": ["steps", "deployments"],
                        "verbs": ["get", "list", "watch", "patch", "update"] }]
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "annotators", "namespace": ns.name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "annotators" },
            "subjects": subjects
        }
    ]);
    for (kind, obj) in [("roles", &rbac[0]), ("rolebindings", &rbac[1])] {
        let ar = kube::api::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: obj["kind"].as_str().unwrap_or_default().into(),
            plural: kind.into(),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(ns.client.clone(), &ns.name, &ar);
        let o: kube::api::DynamicObject = serde_json::from_value(obj.clone()).expect("rbac");
        api.create(&PostParams::default(), &o)
            .await
            .expect("create rbac");
    }
}

/// A ManualIntervention Step that alice or the release-managers group may approve.
async fn guarded_step(ns: &TestNamespace, name: &str, approvers: Option<Value>) -> Api<Step> {
    let mut spec = json!({ "type": "ManualIntervention", "instructions": "check the canary" });
    if let Some(a) = approvers {
        spec["approvers"] = a;
    }
    let step: Step = serde_json::from_value(json!({
        "apiVersion": "stepwise.dev/v1alpha1", "kind": "Step",
        "metadata": { "name": name }, "spec": spec,
    }))
    .expect("step");
    let api: Api<Step> = ns.api();
    api.create(&PostParams::default(), &step)
        .await
        .expect("create step");
    api
}

async fn annotate_as(
    who: &Client,
    ns: &str,
    name: &str,
    annotations: Value,
) -> Result<Step, kube::Error> {
    let api: Api<Step> = Api::namespaced(who.clone(), ns);
    let patch = json!({ "metadata": { "annotations": annotations } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

fn decided_by(step: &Step) -> Option<String> {
    step.annotations().get(ANNOTATION_DECIDED_BY).cloned()
}

/// Sets up the policies, the namespace and the users, and waits until the
/// API server enforces the policies (it loads new ones within seconds).
async fn setup(prefix: &str) -> TestNamespace {
    let admin = client().await;
    install_policies(&own_username(&admin).await);
    let ns = namespace_with_crds(prefix).await;
    grant_annotators(&ns).await;
    guarded_step(&ns, "probe", Some(json!({ "users": ["alice"] }))).await;
    let bob = client_as("bob", &[]).await;
    let admin: Api<Step> = ns.api();
    wait_until(SETTLE, "the approvers policy to refuse bob", || async {
        let tried = annotate_as(
            &bob,
            &ns.name,
            "probe",
            json!({ ANNOTATION_APPROVAL: "approved" }),
        )
        .await;
        if tried.is_err() {
            return Ok(());
        }
        // Not loaded yet: take the approval back so the next try changes it again.
        let undo = json!({ "metadata": { "annotations": { ANNOTATION_APPROVAL: null } } });
        admin
            .patch("probe", &PatchParams::default(), &Patch::Merge(&undo))
            .await
            .map_err(|e| e.to_string())?;
        Err("bob's approval was accepted".to_string())
    })
    .await;
    ns
}

#[tokio::test]
async fn only_listed_approvers_may_approve_and_the_api_server_names_them() {
    let ns = setup("approvers").await;
    let approvers = json!({ "users": ["alice"], "groups": ["release-managers"] });
    guarded_step(&ns, "gate", Some(approvers)).await;

    let bob = client_as("bob", &["developers"]).await;
    let refused = annotate_as(
        &bob,
        &ns.name,
        "gate",
        json!({ ANNOTATION_APPROVAL: "approved" }),
    )
    .await
    .expect_err("bob is not an approver");
    let message = refused.to_string();
    for part in ["user alice", "group release-managers", "bob may not"] {
        assert!(
            message.contains(part),
            "refusal should name {part:?}: {message}"
        );
    }

    // A member of the group may; the API server stamps who it was.
    let carol = client_as("carol", &["release-managers"]).await;
    let step = annotate_as(
        &carol,
        &ns.name,
        "gate",
        json!({ ANNOTATION_APPROVAL: "approved" }),
    )
    .await
    .expect("carol is in release-managers");
    assert_eq!(decided_by(&step).as_deref(), Some("carol"));
    ns.cleanup().await;
}

#[tokio::test]
async fn decided_by_is_stamped_by_the_api_server_and_cannot_be_made_up() {
    let ns = setup("decided-by").await;
    guarded_step(&ns, "open", None).await;

    // Anyone may decide a Step without approvers; a claimed name is replaced.
    let mallory = client_as("mallory", &[]).await;
    let step = annotate_as(
        &mallory,
        &ns.name,
        "open",
        json!({ ANNOTATION_DECISION: "retry", ANNOTATION_DECIDED_BY: "alice" }),
    )
    .await
    .expect("no approvers: anyone may decide");
    assert_eq!(decided_by(&step).as_deref(), Some("mallory"));

    // Rewriting decided-by alone is stamped too.
    let step = annotate_as(
        &mallory,
        &ns.name,
        "open",
        json!({ ANNOTATION_DECIDED_BY: "alice" }),
    )
    .await
    .expect("annotate");
    assert_eq!(decided_by(&step).as_deref(), Some("mallory"));

    // The operator's own writes (here: this test's identity) are left as they are.
    let admin: Api<Step> = ns.api();
    let patch = json!({ "metadata": { "annotations": { ANNOTATION_DECIDED_BY: "alice" } } });
    let step = admin
        .patch("open", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("operator patch");
    assert_eq!(decided_by(&step).as_deref(), Some("alice"));
    ns.cleanup().await;
}

#[tokio::test]
async fn a_deployments_approvers_guard_its_decisions_and_its_steps_approvals() {
    let ns = setup("release-approvers").await;
    let release = json!({
        "apiVersion": "stepwise.dev/v1alpha1", "kind": "Deployment",
        "metadata": { "name": "rel" },
        "spec": {
            "guidedFailure": true,
            "approvers": { "users": ["alice"] },
            "steps": [
                { "name": "gate", "type": "ManualIntervention",
                  "approvers": { "groups": ["release-managers"] } }
            ]
        }
    });
    let d: stepwise::api::Deployment = serde_json::from_value(release).expect("deployment");
    let admin: Api<stepwise::api::Deployment> = ns.api();
    admin
        .create(&PostParams::default(), &d)
        .await
        .expect("create");

    let bob: Api<stepwise::api::Deployment> =
        Api::namespaced(client_as("bob", &[]).await, &ns.name);
    let alice: Api<stepwise::api::Deployment> =
        Api::namespaced(client_as("alice", &[]).await, &ns.name);
    let patch = |k: &str, v: &str| json!({ "metadata": { "annotations": { k: v } } });
    let pp = PatchParams::default();

    let e = bob
        .patch(
            "rel",
            &pp,
            &Patch::Merge(&patch(ANNOTATION_DECISION, "abort")),
        )
        .await
        .expect_err("bob may not decide");
    assert!(e.to_string().contains("user alice"), "{e}");
    alice
        .patch(
            "rel",
            &pp,
            &Patch::Merge(&patch(ANNOTATION_DECISION, "abort")),
        )
        .await
        .expect("alice may decide");

    // Approving the ManualIntervention step takes its own approvers.
    let e = alice
        .patch(
            "rel",
            &pp,
            &Patch::Merge(&patch(ANNOTATION_APPROVAL, "approved")),
        )
        .await
        .expect_err("alice is not in release-managers");
    assert!(e.to_string().contains("group release-managers"), "{e}");
    ns.cleanup().await;
}
