//! Stepwise: releases as ordered steps of Jobs, with step retries and guided failure.

pub mod cli;
pub mod controller;
pub mod leader;
pub mod plugin;
pub mod telemetry;

// The decision core, under the paths the shell and the tests have always used.
pub use stepwise_core::{api, crd, jobs, plan, reason, retry, shard, status, view};

/// The crate's one error type. Every variant says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error while {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot load the Kubernetes client configuration: {0}")]
    Config(String),
    #[error("invalid object: {0}")]
    Invalid(String),
    #[error(transparent)]
    Core(#[from] stepwise_core::Error),
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot serve {what} on {address}: {source}")]
    Serve {
        what: &'static str,
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(String),
    #[error("the {0} caches stopped before they were filled")]
    CacheStopped(&'static str),
    #[error("probe failed: {0}")]
    Probe(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a kube error.
pub trait KubeContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KubeContext<T> for std::result::Result<T, kube::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            context: what(),
            source,
        })
    }
}
