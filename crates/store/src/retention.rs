//! What retention counts, reads and deletes: old events with their webhook
//! deliveries, dead deliveries, old audit entries; and the lease that lets
//! one node at a time run a background job.

use cardcore_domain::{AuditEntry, Timestamp};

/// The ages past which retention deletes, as instants; `None` keeps that
/// kind of row forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Events made before this, once fanned out and with no open delivery,
    /// go with all their deliveries.
    pub events_before: Option<Timestamp>,
    /// Dead deliveries made before this go.
    pub dead_deliveries_before: Option<Timestamp>,
    /// Audit entries made before this go.
    pub audit_before: Option<Timestamp>,
}

/// How many rows retention would delete at its cut-offs, and how many old
/// events it must keep for now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionCounts {
    /// Events past the cut-off, fanned out, with no open delivery.
    pub events: u64,
    /// The deliveries of those events (every state).
    pub event_deliveries: u64,
    /// Events past the cut-off that stay: a delivery of theirs is still
    /// pending or retrying, or they were not fanned out yet.
    pub events_held: u64,
    /// Dead deliveries past their cut-off (not counting those of `events`).
    pub dead_deliveries: u64,
    /// Audit entries past the cut-off.
    pub audit_entries: u64,
}

/// What one batch of [`Store::purge_events`](crate::Store::purge_events) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedEvents {
    pub events: u64,
    pub deliveries: u64,
}

/// An audit entry past its cut-off, with its position in the log (what
/// [`Store::delete_audit`](crate::Store::delete_audit) takes).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredAudit {
    pub seq: i64,
    pub entry: AuditEntry,
}
