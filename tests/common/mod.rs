//! The test kit (`crates/testkit`, `stepwise-testkit`) as the integration
//! tests see it, plus the one thing only this crate knows: where Cargo put
//! the operator binary. Each test file has `mod common;`.
//!
//! A test that needs the cluster and finds none fails with a message saying
//! how to start one (`make cluster`, or `make test`, which starts it): it is
//! never skipped silently.
#![allow(dead_code, unused_imports)]

pub use stepwise_testkit::*;

pub mod operator {
    use std::path::PathBuf;

    pub use stepwise_testkit::operator::*;

    use stepwise_testkit::TestNamespace;

    /// The `stepwise` binary Cargo built for these tests, logging under the
    /// tests' target tmpdir.
    pub fn launch() -> Launch {
        Launch::new(
            env!("CARGO_BIN_EXE_stepwise"),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("operator-logs"),
        )
    }

    /// A fresh test namespace with the CRDs and an operator watching it.
    pub async fn setup(prefix: &str) -> (TestNamespace, Operator) {
        stepwise_testkit::operator::setup(&launch(), prefix).await
    }
}
