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
    remove_all_if_unchanged(api, obj, &[key]).await
}

/// Removes the annotations `keys` of `obj` in one JSON patch, each only if it
/// still holds the value read in `obj` (keys it lacks are skipped): all go
/// or none does, so a decision and its `decided-by` leave together. Returns
/// false when one of them changed or vanished meanwhile.
pub async fn remove_all_if_unchanged<K>(api: &Api<K>, obj: &K, keys: &[&str]) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.name_any();
    let mut ops = Vec::new();
    for key in keys {
        let Some(value) = obj.annotations().get(*key) else {
            continue;
        };
        let path = pointer(key);
        ops.push(serde_json::json!({ "op": "test", "path": path, "value": value }));
        ops.push(serde_json::json!({ "op": "remove", "path": path }));
    }
    if ops.is_empty() {
        return Ok(true);
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|source| {
            crate::Error::Serialize {
                what: "annotation removal",
                source,
            }
        })?;
    match api
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(true),
        // The test failed: someone changed (or removed) an annotation.
        Err(kube::Error::Api(e)) if matches!(e.code, 409 | 422) => Ok(false),
        Err(e) => Err(e).context(|| format!("removing annotations {keys:?} from {name}")),
    }
}

/// Sets annotation `key` to `value` on `name` (a decision or approval passed on).
pub async fn set<K>(api: &Api<K>, name: &str, key: &str, value: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    set_all(api, name, &[(key, Some(value))]).await
}

/// Sets (or, with `None`, removes) several annotations of `name` in one merge patch.
pub async fn set_all<K>(api: &Api<K>, name: &str, values: &[(&str, Option<&str>)]) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let map: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.map_or(serde_json::Value::Null, Into::into)))
        .collect();
    let patch = serde_json::json!({ "metadata": { "annotations": map } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context(|| format!("setting annotations {values:?} on {name}"))?;
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
