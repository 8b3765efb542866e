//! Logs: text for people, JSON for log pipelines.

use tracing_subscriber::{EnvFilter, prelude::*};

/// Text logs for people, JSON for log pipelines. `RUST_LOG` filters (default `info`).
pub fn init_tracing(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .init();
    } else {
        // Colours only for a person at a terminal, not in log files.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .init();
    }
}
