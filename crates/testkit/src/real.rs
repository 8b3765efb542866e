//! The real node of the local cluster (scripts/node.sh): finding it, and
//! Stepwise actions pinned to it, for the real-node suites.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{Value, json};

/// The label (and NoSchedule taint) scripts/node.sh puts on the real node.
pub const NODE_KIND_LABEL: &str = "stepwise.dev/node-kind";
pub const NODE_KIND_REAL: &str = "real";
/// The test image scripts/node.sh builds from Debian's static busybox and
/// imports into the node's containerd (`stepwise.local/busybox:<version>`).
pub const TEST_IMAGE_PREFIX: &str = "stepwise.local/busybox:";
pub fn no_real_node(why: &str) -> String {
    format!(
        "no real node in the local cluster: {why}. Start the cluster with one: \
         `scripts/cluster.sh up` without STEPWISE_REAL_NODE=0 (scripts/node.sh; \
         `scripts/tools.sh kubelet` builds the kubelet)"
    )
}

/// The real node's name and its test image; panics when there is no Ready
/// real node or it does not list the test image.
pub async fn real_node(client: &Client) -> (String, String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels(&format!("{NODE_KIND_LABEL}={NODE_KIND_REAL}")))
        .await
        .unwrap_or_else(|e| panic!("cannot list nodes: {e}"));
    let node = list
        .items
        .into_iter()
        .find(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .unwrap_or_else(|| {
            panic!(
                "{}",
                no_real_node(&format!(
                    "no Ready node is labelled {NODE_KIND_LABEL}={NODE_KIND_REAL}"
                ))
            )
        });
    let name = node.metadata.name.clone().expect("node name");
    if let Ok(image) = std::env::var("STEPWISE_TEST_IMAGE") {
        return (name, image);
    }
    // The kubelet reports the images its runtime holds.
    let started = Instant::now();
    loop {
        let node = nodes
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("cannot get node {name}: {e}"));
        let names: Vec<String> = node
            .status
            .and_then(|s| s.images)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|i| i.names.unwrap_or_default())
            .collect();
        if let Some(found) = names.iter().find(|n| n.starts_with(TEST_IMAGE_PREFIX)) {
            return (name, found.clone());
        }
        // The kubelet refreshes the images it reports every ~30 s, and after an
        // API server restart (tests/outage.rs) the list can be empty for a while.
        if started.elapsed() > Duration::from_secs(120) {
            panic!(
                "{}",
                no_real_node(&format!(
                    "node {name} lists no image {TEST_IMAGE_PREFIX}* in status.images \
                     (scripts/node.sh imports it); it lists {names:?}"
                ))
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A Stepwise action whose pod runs `command` in the test image on the
/// real node; `pod` is merged into the pod spec (securityContext,
/// terminationGracePeriodSeconds, ...) and `container` into the container.
pub fn real_action(name: &str, image: &str, command: &str, pod: Value, container: Value) -> Value {
    let mut c = json!({
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", command],
    });
    merge(&mut c, container);
    let mut spec = json!({
        "nodeSelector": { NODE_KIND_LABEL: NODE_KIND_REAL },
        "tolerations": [{
            "key": NODE_KIND_LABEL,
            "operator": "Equal",
            "value": NODE_KIND_REAL,
            "effect": "NoSchedule",
        }],
        "containers": [c],
    });
    merge(&mut spec, pod);
    json!({ "name": name, "template": { "spec": spec } })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}
