//! Retention on SQLite: counts on a reader; each purge batch one short
//! write (the oldest rows past their cut-off, by the age indexes of
//! migration 0013), so the writer is held for one batch at a time.

use cardcore_domain::Timestamp;
use cardcore_store::{ExpiredAudit, PurgedEvents, RetentionCounts, RetentionCutoffs, StoreResult};
use uuid::Uuid;

use crate::rows::{self, ts};
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

    pub(crate) async fn purge_old_events(&self, before: Timestamp, limit: u32) -> StoreResult<PurgedEvents> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let doomed: Vec<(i64, String, String)> = sqlx::query_as(&format!(
            "SELECT e.seq, e.tenant_id, e.id FROM events e WHERE {EVENT_GOES} ORDER BY e.created_at, e.seq LIMIT ?2"
        ))
        .bind(ts(&before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        if doomed.is_empty() {
            return Ok(PurgedEvents::default());
        }
        let seqs = serde_json::Value::from(doomed.iter().map(|(seq, _, _)| *seq).collect::<Vec<_>>()).to_string();
        let keys = serde_json::Value::from(
            doomed
                .iter()
                .map(|(_, tenant, id)| serde_json::json!([tenant, id]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        let deliveries = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE seq IN (SELECT d.seq FROM json_each(?1) j \
             JOIN webhook_deliveries d ON d.tenant_id = json_extract(j.value, '$[0]') \
             AND d.event_id = json_extract(j.value, '$[1]'))",
        )
        .bind(keys)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        let events = sqlx::query("DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?1))")
            .bind(seqs)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        tx.commit().await.map_err(map_err)?;
        Ok(PurgedEvents { events, deliveries })
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
