//! Retention on SQLite: counts on a reader; each purge batch one short
//! write (the oldest rows past their cut-off, by the age indexes of
//! migration 0013), so the writer is held for one batch at a time.

use cardcore_domain::Timestamp;
use cardcore_store::{
    candidates_that_fit, next_position, EventPosition, ExpiredAudit, PurgedEvents, RetentionCounts, RetentionCutoffs,
    StoreResult,
};
use uuid::Uuid;

use crate::rows::{self, parse_ts, ts};
use crate::{map_err, SqliteStore};

/// An event `e` that retention may delete at cut-off `?1`: old enough,
/// fanned out (a writer holds the write lock from its insert to its commit,
/// so `seq` order is commit order and the cursor never passes a later
/// commit), and with no delivery still open.
const EVENT_GOES: &str = "e.created_at < ?1 AND e.seq <= (SELECT seq FROM webhook_cursor WHERE id = 1) \
    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.tenant_id = e.tenant_id AND o.event_id = e.id \
    AND o.state IN ('pending', 'retrying'))";

impl SqliteStore {
    pub(crate) async fn count_retention(&self, cut: &RetentionCutoffs) -> StoreResult<RetentionCounts> {
        let mut counts = RetentionCounts::default();
        let count = |sql: String, at: Timestamp| async move {
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(ts(&at))
                .fetch_one(&self.reader)
                .await
                .map_err(map_err)?;
            StoreResult::Ok(u64::try_from(n).unwrap_or(0))
        };
        if let Some(before) = cut.events_before {
            counts.events = count(format!("SELECT COUNT(*) FROM events e WHERE {EVENT_GOES}"), before).await?;
            counts.event_deliveries = count(
                format!(
                    "SELECT COUNT(*) FROM events e JOIN webhook_deliveries d \
                     ON d.tenant_id = e.tenant_id AND d.event_id = e.id WHERE {EVENT_GOES}"
                ),
                before,
            )
            .await?;
            let old = count("SELECT COUNT(*) FROM events WHERE created_at < ?1".into(), before).await?;
            counts.events_held = old.saturating_sub(counts.events);
        }
        if let Some(before) = cut.dead_deliveries_before {
            // Those that go with their event are counted there.
            let with_event = match cut.events_before {
                Some(events_before) => {
                    let n: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM webhook_deliveries d JOIN events e \
                         ON e.tenant_id = d.tenant_id AND e.id = d.event_id \
                         WHERE d.state = 'dead' AND d.created_at < ?2 AND {EVENT_GOES}"
                    ))
                    .bind(ts(&events_before))
                    .bind(ts(&before))
                    .fetch_one(&self.reader)
                    .await
                    .map_err(map_err)?;
                    u64::try_from(n).unwrap_or(0)
                }
                None => 0,
            };
            let dead = count(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead' AND created_at < ?1".into(),
                before,
            )
            .await?;
            counts.dead_deliveries = dead.saturating_sub(with_event);
        }
        if let Some(before) = cut.audit_before {
            counts.audit_entries = count("SELECT COUNT(*) FROM audit_log WHERE created_at < ?1".into(), before).await?;
        }
        Ok(counts)
    }

    /// Candidates are found on a reader (the held events at the head of the
    /// age index cost no writer time) and checked again by primary key in
    /// the write transaction, which holds the write lock, so no fan-out or
    /// redelivery can come in between.
    pub(crate) async fn purge_old_events(
        &self,
        before: Timestamp,
        after: EventPosition,
        limit: u32,
    ) -> StoreResult<PurgedEvents> {
        let rows = sqlx::query(&format!(
            "SELECT e.seq, e.created_at, e.tenant_id, e.id, (SELECT COUNT(*) FROM webhook_deliveries d \
             WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id) AS deliveries FROM events e \
             WHERE {EVENT_GOES} AND (e.created_at, e.seq) > (?2, ?3) ORDER BY e.created_at, e.seq LIMIT ?4"
        ))
        .bind(ts(&before))
        .bind(ts(&after.created_at))
        .bind(after.seq)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        let mut positions = Vec::with_capacity(rows.len());
        let mut counts = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            positions.push(EventPosition {
                created_at: parse_ts(&rows::get::<String>(row, "created_at")?)?,
                seq: rows::get(row, "seq")?,
            });
            counts.push(u64::try_from(rows::get::<i64>(row, "deliveries")?).unwrap_or(0));
            keys.push((rows::get::<String>(row, "tenant_id")?, rows::get::<String>(row, "id")?));
        }
        let Some(first) = keys.first() else {
            return Ok(PurgedEvents::default());
        };
        let taken = candidates_that_fit(counts.iter().copied(), limit);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        if taken == 0 {
            // One event with more deliveries than a batch: some of them now.
            let deliveries = sqlx::query(
                "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries \
                 WHERE tenant_id = ?1 AND event_id = ?2 AND state IN ('succeeded', 'dead') ORDER BY seq LIMIT ?3)",
            )
            .bind(&first.0)
            .bind(&first.1)
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
        let seqs = serde_json::Value::from(positions[..taken].iter().map(|p| p.seq).collect::<Vec<_>>()).to_string();
        // Checked again under the write lock.
        let gone: Vec<(String, String)> = sqlx::query_as(&format!(
            "DELETE FROM events AS e WHERE e.seq IN (SELECT value FROM json_each(?4)) AND {EVENT_GOES} \
             RETURNING tenant_id, id"
        ))
        .bind(ts(&before))
        .bind(ts(&after.created_at))
        .bind(after.seq)
        .bind(seqs)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let gone_keys = serde_json::Value::from(
            gone.iter()
                .map(|(tenant, id)| serde_json::json!([tenant, id]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        let deliveries = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE seq IN (SELECT d.seq FROM json_each(?1) j \
             JOIN webhook_deliveries d ON d.tenant_id = json_extract(j.value, '$[0]') \
             AND d.event_id = json_extract(j.value, '$[1]'))",
        )
        .bind(gone_keys)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        tx.commit().await.map_err(map_err)?;
        Ok(PurgedEvents {
            events: gone.len() as u64,
            deliveries,
            next: next_position(&positions, taken, limit),
        })
    }

    pub(crate) async fn purge_dead(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries \
             WHERE state = 'dead' AND created_at < ?1 ORDER BY created_at, seq LIMIT ?2)",
        )
        .bind(ts(&before))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    pub(crate) async fn old_audit(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAudit>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE created_at < ?1 ORDER BY created_at, seq LIMIT ?2")
            .bind(ts(&before))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok(ExpiredAudit {
                    seq: rows::get(row, "seq")?,
                    entry: rows::audit(row)?,
                })
            })
            .collect()
    }

    pub(crate) async fn drop_audit(&self, seqs: &[i64]) -> StoreResult<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let r = sqlx::query("DELETE FROM audit_log WHERE seq IN (SELECT value FROM json_each(?1))")
            .bind(serde_json::Value::from(seqs.to_vec()).to_string())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected())
    }

    pub(crate) async fn take_lease(
        &self,
        job: &str,
        holder: Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let got: Option<String> = sqlx::query_scalar(
            "INSERT INTO job_leases (name, holder, lease_until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
             WHERE job_leases.holder = excluded.holder OR job_leases.lease_until < ?4 RETURNING holder",
        )
        .bind(job)
        .bind(holder.to_string())
        .bind(ts(&until))
        .bind(ts(&now))
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(got.is_some())
    }

    pub(crate) async fn give_lease(&self, job: &str, holder: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM job_leases WHERE name = ?1 AND holder = ?2")
            .bind(job)
            .bind(holder.to_string())
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
