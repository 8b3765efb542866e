//! Removing a person's annotation only if it still holds what was read, and
//! passing a Deployment's decision or approval on to its Step.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::{KubeContext, Result};

/// The JSON pointer of an annotation (`/` in the key is escaped as `~1`).
pub fn pointer(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// Removes annotation `key` from `obj` only if it still holds the value read
/// in `obj` (a JSON patch whose `test` fails otherwise). Returns false when
/// the value changed or vanished meanwhile: the change wakes the object
/// again and is read then, never lost.
pub async fn remove_if_unchanged<K>(api: &Api<K>, obj: &K, key: &str) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.name_any();
    let Some(value) = obj.annotations().get(key) else {
        return Ok(true);
    };
    let path = pointer(key);
    let ops = serde_json::json!([
        { "op": "test", "path": path, "value": value },
        { "op": "remove", "path": path },
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|source| crate::Error::Serialize {
            what: "annotation removal",
            source,
        })?;
    match api
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(true),
        // The test failed: someone changed (or removed) the annotation.
        Err(kube::Error::Api(e)) if matches!(e.code, 409 | 422) => Ok(false),
        Err(e) => Err(e).context(|| format!("removing annotation {key} from {name}")),
    }
}

/// Sets annotation `key` to `value` on `name` (a decision or approval passed on).
pub async fn set<K>(api: &Api<K>, name: &str, key: &str, value: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context(|| format!("setting annotation {key} on {name}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_the_slash() {
        assert_eq!(
            pointer("stepwise.dev/guided-failure-decision"),
            "/metadata/annotations/stepwise.dev~1guided-failure-decision"
        );
    }
}
