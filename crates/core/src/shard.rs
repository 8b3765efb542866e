//! Shards: several operator processes split the releases of a cluster by
//! the `stepwise.dev/shard` label, as Flux's controllers do. A process
//! started with `--shard NAME` owns the Deployments labelled with NAME; one
//! without `--shard` owns those without the label. A release's Steps, Jobs
//! and pods carry its label, so every watch of a process is filtered the
//! same way and no process caches (or acts on) another's objects.

use std::collections::BTreeMap;

use crate::api::LABEL_SHARD;

/// The label selector of the objects a process owns.
pub fn selector(shard: Option<&str>) -> String {
    match shard {
        Some(name) => format!("{LABEL_SHARD}={name}"),
        None => format!("!{LABEL_SHARD}"),
    }
}

/// `selector`, narrowed by the `also` selector (e.g. "has a Step label").
pub fn selector_with(shard: Option<&str>, also: &str) -> String {
    format!("{also},{}", selector(shard))
}

/// The shard label an object created for `owner` carries on, if any.
pub fn carried(owner: &BTreeMap<String, String>) -> Option<(String, String)> {
    owner
        .get(LABEL_SHARD)
        .map(|v| (LABEL_SHARD.to_string(), v.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_owns_its_label_and_the_default_owns_the_unlabelled() {
        assert_eq!(selector(Some("a")), "stepwise.dev/shard=a");
        assert_eq!(selector(None), "!stepwise.dev/shard");
        assert_eq!(
            selector_with(Some("a"), "stepwise.dev/step"),
            "stepwise.dev/step,stepwise.dev/shard=a"
        );
    }

    #[test]
    fn the_label_is_carried_from_owner_to_child() {
        let labels = BTreeMap::from([(LABEL_SHARD.to_string(), "b".to_string())]);
        assert_eq!(
            carried(&labels),
            Some(("stepwise.dev/shard".into(), "b".into()))
        );
        assert_eq!(carried(&BTreeMap::new()), None);
    }
}
