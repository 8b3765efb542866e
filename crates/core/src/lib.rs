//! Stepwise's decision core: what a release is (`api`), what its objects are
//! called (`jobs`, `api`'s labels and annotations), how an attempt's Job reads
//! (`plan::step`'s views), how long to wait (`retry`), what status says
//! (`status`) and what happens next (`plan`). Pure: no API client and no
//! clock (`now` is passed in); `kube` comes with its derive feature only, so
//! the compiler keeps it that way.

pub mod api;
pub mod crd;
pub mod jobs;
pub mod plan;
pub mod reason;
pub mod retry;
pub mod shard;
pub mod status;
pub mod view;

/// What the core refuses: an object it cannot build from, YAML it cannot render.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid object: {0}")]
    Invalid(String),
    #[error("cannot render YAML: {0}")]
    Yaml(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
