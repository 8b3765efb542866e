//! The decision core: given what is on the cluster and the time, what happens
//! next. Pure functions, no client, no clock, no I/O; the controllers gather
//! observations, call these and apply the result.

pub mod deployment;
pub mod handoff;
pub mod queue;
pub mod step;

/// An Event the controller should publish about the object it reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    /// PascalCase, e.g. `AttemptFailed`, `RetryScheduled`.
    pub reason: &'static str,
    pub note: String,
    /// The object the Event is also about (a Step's Job, a Deployment's
    /// Step). Events are aggregated by reason and objects, not by note, so
    /// without it a second attempt's Event would only bump the first's count.
    pub related: Option<String>,
}

impl PlannedEvent {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            note: note.into(),
            related: None,
        }
    }
    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            note: note.into(),
            related: None,
        }
    }
    pub fn about(mut self, related: impl Into<String>) -> Self {
        self.related = Some(related.into());
        self
    }
}

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
