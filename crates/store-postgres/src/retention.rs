//! Retention on PostgreSQL: each purge batch is one statement (data-modifying
//! CTEs), oldest rows first by the age indexes of migration 0013.

use cardcore_domain::Timestamp;
use cardcore_store::{
    candidates_that_fit, next_position, EventPosition, ExpiredAudit, PurgedEvents, RetentionCounts, RetentionCutoffs,
    StoreResult,
};
use uuid::Uuid;

use crate::rows::{self, get};
use crate::{map_err, PostgresStore};

/// An event `e` that retention may delete at cut-off `$1`, with the fan-out
/// cursor passed as `($2, $3)` (as values: joined, the row comparison would
/// scan the table): old enough, fanned out, no delivery still open.
const EVENT_GOES: &str = "e.created_at < $1 AND (e.tx_id, e.seq) <= ($2::xid8, $3) \
    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.tenant_id = e.tenant_id AND o.event_id = e.id \
    AND o.state IN ('pending', 'retrying'))";

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresStore {
    /// The fan-out cursor, `(tx_id as text, seq)`.
    async fn fan_out_cursor(&self) -> StoreResult<(String, i64)> {
        let row = sqlx::query("SELECT tx_id::text AS tx_id, seq FROM webhook_cursor WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok((get(&row, "tx_id")?, get(&row, "seq")?))
    }

    pub(crate) async fn count_retention(&self, cut: &RetentionCutoffs) -> StoreResult<RetentionCounts> {
        self.run(|| async {
            let mut counts = RetentionCounts::default();
            let (tx_id, seq) = self.fan_out_cursor().await?;
            if let Some(before) = cut.events_before {
                let row = sqlx::query(&format!(
                    "SELECT (SELECT count(*) FROM events e WHERE {EVENT_GOES}) AS events, \
                     (SELECT count(*) FROM events e JOIN webhook_deliveries d \
                      ON d.tenant_id = e.tenant_id AND d.event_id = e.id WHERE {EVENT_GOES}) AS deliveries, \
                     (SELECT count(*) FROM events WHERE created_at < $1) AS old"
                ))
                .bind(before)
                .bind(&tx_id)
                .bind(seq)
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
                counts.events = count(get(&row, "events")?);
                counts.event_deliveries = count(get(&row, "deliveries")?);
                counts.events_held = count(get::<i64>(&row, "old")?).saturating_sub(counts.events);
            }
            if let Some(before) = cut.dead_deliveries_before {
                let with_event: i64 = match cut.events_before {
                    Some(events_before) => sqlx::query_scalar(&format!(
                        "SELECT count(*) FROM webhook_deliveries d JOIN events e \
                         ON e.tenant_id = d.tenant_id AND e.id = d.event_id \
                         WHERE d.state = 'dead' AND d.created_at < $4 AND {EVENT_GOES}"
                    ))
                    .bind(events_before)
                    .bind(&tx_id)
                    .bind(seq)
                    .bind(before)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?,
                    None => 0,
                };
                let dead: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM webhook_deliveries WHERE state = 'dead' AND created_at < $1",
                )
                .bind(before)
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
                counts.dead_deliveries = count(dead).saturating_sub(count(with_event));
            }
            if let Some(before) = cut.audit_before {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE created_at < $1")
                    .bind(before)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                counts.audit_entries = count(n);
            }
            Ok(counts)
        })
        .await
    }

    /// One READ COMMITTED transaction. The candidates are locked `FOR UPDATE
    /// SKIP LOCKED`; a redelivery reads its event `FOR SHARE` first, so one
    /// holding it makes the event skipped, one starting later waits and
    /// then finds no event, and one that committed in between is seen by
    /// the DELETE's own (fresh) snapshot, which checks again that no
    /// delivery is open: the event stays with its new delivery.
    pub(crate) async fn purge_old_events(
        &self,
        before: Timestamp,
        after: EventPosition,
        limit: u32,
    ) -> StoreResult<PurgedEvents> {
        self.run(|| async {
            let (tx_id, seq) = self.fan_out_cursor().await?;
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            let rows = sqlx::query(&format!(
                "SELECT e.seq, e.created_at, e.tenant_id, e.id, (SELECT count(*) FROM webhook_deliveries d \
                 WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id) AS deliveries FROM events e \
                 WHERE {EVENT_GOES} AND (e.created_at, e.seq) > ($4, $5) ORDER BY e.created_at, e.seq LIMIT $6 \
                 FOR UPDATE OF e SKIP LOCKED"
            ))
            .bind(before)
            .bind(&tx_id)
            .bind(seq)
            .bind(after.created_at)
            .bind(after.seq)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
            let mut positions = Vec::with_capacity(rows.len());
            let mut counts = Vec::with_capacity(rows.len());
            for row in &rows {
                positions.push(EventPosition {
                    created_at: get(row, "created_at")?,
                    seq: get(row, "seq")?,
                });
                counts.push(count(get(row, "deliveries")?));
            }
            let Some(first) = rows.first() else {
                return Ok(PurgedEvents::default());
            };
            let taken = candidates_that_fit(counts.iter().copied(), limit);
            if taken == 0 {
                // One event with more deliveries than a batch: some of them now.
                let deliveries = sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries \
                     WHERE tenant_id = $1 AND event_id = $2 AND state IN ('succeeded', 'dead') ORDER BY seq LIMIT $3)",
                )
                .bind(get::<Uuid>(first, "tenant_id")?)
                .bind(get::<Uuid>(first, "id")?)
                .bind(i64::from(limit))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                tx.commit().await.map_err(map_err)?;
                // Look at it again, unless nothing went (it gained an open delivery).
                let next = if deliveries > 0 {
                    Some(after)
                } else {
                    Some(positions[0])
                };
                return Ok(PurgedEvents {
                    events: 0,
                    deliveries,
                    next,
                });
            }
            let seqs: Vec<i64> = positions[..taken].iter().map(|p| p.seq).collect();
            let row = sqlx::query(
                "WITH gone_e AS (DELETE FROM events e WHERE e.seq = ANY($1) AND NOT EXISTS \
                  (SELECT 1 FROM webhook_deliveries o WHERE o.tenant_id = e.tenant_id AND o.event_id = e.id \
                  AND o.state IN ('pending', 'retrying')) RETURNING e.tenant_id, e.id), \
                 gone_d AS (DELETE FROM webhook_deliveries d USING gone_e \
                  WHERE d.tenant_id = gone_e.tenant_id AND d.event_id = gone_e.id RETURNING 1) \
                 SELECT (SELECT count(*) FROM gone_e) AS events, (SELECT count(*) FROM gone_d) AS deliveries",
            )
            .bind(&seqs)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(PurgedEvents {
                events: count(get(&row, "events")?),
                deliveries: count(get(&row, "deliveries")?),
                next: next_position(&positions, taken, limit),
            })
        })
        .await
    }

    pub(crate) async fn clock(&self) -> StoreResult<Timestamp> {
        self.run(|| async {
            sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)
        })
        .await
    }

    pub(crate) async fn purge_dead(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.run(|| async {
            let r = sqlx::query(
                "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries \
                 WHERE state = 'dead' AND created_at < $1 ORDER BY created_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected())
        })
        .await
    }

    pub(crate) async fn old_audit(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAudit>> {
        self.run(|| async {
            let rows = sqlx::query(
                "SELECT seq, id, tenant_id, card_id, type, actor, request_id, reason, before, after, created_at \
                 FROM audit_log WHERE created_at < $1 ORDER BY created_at, seq LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(|row| {
                    Ok(ExpiredAudit {
                        seq: get(row, "seq")?,
                        entry: rows::audit(row)?,
                    })
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn drop_audit(&self, seqs: &[i64]) -> StoreResult<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        self.run(|| async {
            let r = sqlx::query("DELETE FROM audit_log WHERE seq = ANY($1)")
                .bind(seqs)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(r.rows_affected())
        })
        .await
    }

    pub(crate) async fn take_lease(
        &self,
        job: &str,
        holder: Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        self.run(|| async {
            let got: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO job_leases (name, holder, lease_until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
                 WHERE job_leases.holder = excluded.holder OR job_leases.lease_until < $4 RETURNING holder",
            )
            .bind(job)
            .bind(holder)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(got.is_some())
        })
        .await
    }

    pub(crate) async fn give_lease(&self, job: &str, holder: Uuid) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
                .bind(job)
                .bind(holder)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}
