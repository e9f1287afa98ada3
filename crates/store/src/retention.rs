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

/// Where an event is in the order retention deletes in: oldest first, then
/// by outbox position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPosition {
    pub created_at: Timestamp,
    pub seq: i64,
}

impl EventPosition {
    /// Before every event (the start of a run).
    pub fn start() -> Self {
        Self {
            created_at: Timestamp::UNIX_EPOCH,
            seq: 0,
        }
    }
}

/// What one batch of [`Store::purge_events`](crate::Store::purge_events) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedEvents {
    pub events: u64,
    pub deliveries: u64,
    /// Where the next batch starts; `None` when no candidate is left.
    pub next: Option<EventPosition>,
}

/// How many of a batch's candidates (oldest first, each with its number of
/// deliveries) fit in `limit` rows, the event itself counting as one. Zero
/// when even the first does not: then only `limit` of its deliveries go.
pub fn candidates_that_fit(deliveries: impl IntoIterator<Item = u64>, limit: u32) -> usize {
    let mut rows = 0u64;
    let mut taken = 0;
    for n in deliveries {
        rows += 1 + n;
        if rows > u64::from(limit) {
            break;
        }
        taken += 1;
    }
    taken
}

/// Where the batch after one that looked at `positions` (at most `limit`,
/// oldest first) and deleted the first `taken` starts: after the last one
/// deleted when it stopped short, after the last one looked at when it saw
/// a full batch, nowhere (done) when it saw fewer.
pub fn next_position(positions: &[EventPosition], taken: usize, limit: u32) -> Option<EventPosition> {
    if taken < positions.len() {
        taken.checked_sub(1).map(|i| positions[i])
    } else if positions.len() >= limit as usize {
        positions.last().copied()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: i64) -> EventPosition {
        EventPosition {
            created_at: Timestamp::UNIX_EPOCH,
            seq,
        }
    }

    #[test]
    fn a_batch_takes_the_candidates_whose_rows_fit() {
        assert_eq!(candidates_that_fit([1, 1, 1], 10), 3);
        assert_eq!(
            candidates_that_fit([1, 1, 1], 4),
            2,
            "2 + 2 rows fit, a third would be 6"
        );
        assert_eq!(candidates_that_fit([0, 0, 0], 3), 3);
        assert_eq!(candidates_that_fit([20, 0], 10), 0, "the first alone is too big");
        assert_eq!(candidates_that_fit([], 10), 0);
    }

    #[test]
    fn the_next_batch_starts_after_what_was_deleted_or_looked_at() {
        let seen = [at(1), at(2), at(3)];
        assert_eq!(next_position(&seen, 3, 3), Some(at(3)), "a full batch: more may follow");
        assert_eq!(next_position(&seen, 3, 10), None, "fewer than asked: done");
        assert_eq!(
            next_position(&seen, 2, 10),
            Some(at(2)),
            "stopped short: the rest again"
        );
        assert_eq!(next_position(&seen, 0, 10), None, "the caller handles a first too big");
        assert_eq!(next_position(&[], 0, 10), None);
    }
}

/// An audit entry past its cut-off, with its position in the log (what
/// [`Store::delete_audit`](crate::Store::delete_audit) takes).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredAudit {
    pub seq: i64,
    pub entry: AuditEntry,
}
