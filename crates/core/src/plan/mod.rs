//! The decision core: given what is on the cluster and the time, what happens
//! next. Pure functions, no client, no clock, no I/O; the controllers gather
//! observations, call these and apply the result.

pub mod deployment;
mod event;
pub mod handoff;
pub mod queue;
pub mod rejected;
pub mod step;

pub use event::{EventReason, Finished, PlannedEvent};

/// An object's controller ownerReference, as messages name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (uid {})", self.kind, self.name, self.uid)
    }
}

/// Formats a time the way messages show it: UTC, to the second.
pub(crate) fn clock(t: jiff::Timestamp) -> String {
    t.strftime("%H:%M:%SZ").to_string()
}
