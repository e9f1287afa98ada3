//! Webhook endpoints, the fan-out of the outbox into deliveries, delivery
//! claims with leases, and idempotency keys, on SQLite.
//!
//! SQLite has one writer: every read-then-write here runs in one
//! `BEGIN IMMEDIATE` transaction (or is one statement), so it is atomic
//! against other nodes and processes on the same file without row locks.
//! Outbox order is `seq` order: a writer holds the write lock from before
//! its insert to its commit, so events become visible in `seq` order.

use std::collections::HashMap;

use cardcore_domain::{EventId, EventType, TenantId, Timestamp, WebhookEndpointId};
use cardcore_store::{
    ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, DeliveryState, IdempotencyBegin, IdempotencyRecord,
    IdempotencyStart, IdempotencyStep, IdempotentResponse, SealedData, StoreError, StoreResult, WebhookDelivery,
    WebhookEndpointRecord,
};
use cardcore_store::{EndpointFormat, TenantSmsRecord};
use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;
use uuid::Uuid;

use crate::rows::{self, parse_ts, to_json, ts};
use crate::{id_str, map_err, SqliteStore};

const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, event_types, secret_sealed, secret_key_version, format, created_at";
const DELIVERY_COLUMNS: &str = "seq, id, tenant_id, event_id, endpoint_id, card_id, state, attempts, \
    next_attempt_at, lease_token, last_status, last_error, attempts_log, created_at";
const OPEN: &str = "state IN ('pending', 'retrying')";

fn bad(col: &str) -> StoreError {
    StoreError::internal(format!("column {col}: unexpected value"))
}

fn opt_ts(row: &SqliteRow, col: &str) -> StoreResult<Option<Timestamp>> {
    rows::get::<Option<String>>(row, col)?.map(|t| parse_ts(&t)).transpose()
}

fn endpoint(row: &SqliteRow) -> StoreResult<WebhookEndpointRecord> {
    let types: Option<String> = rows::get(row, "event_types")?;
    let event_types = types
        .map(|t| {
            rows::json::<Vec<String>>(&t, "event_types")?
                .iter()
                .map(|name| EventType::parse(name).ok_or_else(|| bad("event_types")))
                .collect::<StoreResult<Vec<_>>>()
        })
        .transpose()?;
    Ok(WebhookEndpointRecord {
        id: rows::id(row, "id")?,
        tenant_id: rows::id(row, "tenant_id")?,
        url: rows::get(row, "url")?,
        event_types,
        secret: SealedData {
            ciphertext: rows::get(row, "secret_sealed")?,
            key_version: rows::get::<i64>(row, "secret_key_version")? as i32,
        },
        format: EndpointFormat::parse(&rows::get::<String>(row, "format")?).ok_or_else(|| bad("format"))?,
        created_at: parse_ts(&rows::get::<String>(row, "created_at")?)?,
    })
}

fn delivery(row: &SqliteRow) -> StoreResult<(i64, WebhookDelivery)> {
    let state: String = rows::get(row, "state")?;
    let last_status: Option<i64> = rows::get(row, "last_status")?;
    let delivery = WebhookDelivery {
        id: rows::id(row, "id")?,
        tenant_id: rows::id(row, "tenant_id")?,
        event_id: rows::id(row, "event_id")?,
        endpoint_id: rows::id(row, "endpoint_id")?,
        card_id: rows::opt_id(row, "card_id")?,
        state: DeliveryState::parse(&state).ok_or_else(|| bad("state"))?,
        attempts: u32::try_from(rows::get::<i64>(row, "attempts")?).map_err(|_| bad("attempts"))?,
        next_attempt_at: opt_ts(row, "next_attempt_at")?,
        last_status: last_status
            .map(|s| u16::try_from(s).map_err(|_| bad("last_status")))
            .transpose()?,
        last_error: rows::get(row, "last_error")?,
        attempts_log: rows::json(&rows::get::<String>(row, "attempts_log")?, "attempts_log")?,
        created_at: parse_ts(&rows::get::<String>(row, "created_at")?)?,
    };
    Ok((rows::get(row, "seq")?, delivery))
}

fn event_types_json(types: &Option<Vec<EventType>>) -> StoreResult<Option<String>> {
    types
        .as_ref()
        .map(|t| to_json(&t.iter().map(|t| t.as_str()).collect::<Vec<_>>()))
        .transpose()
}

async fn live_endpoints(conn: &mut SqliteConnection, tenant: &str) -> StoreResult<Vec<WebhookEndpointRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND deleted_at IS NULL \
         ORDER BY created_at, id"
    ))
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    rows.iter().map(endpoint).collect()
}

async fn insert_delivery(
    conn: &mut SqliteConnection,
    tenant: &str,
    event: &str,
    endpoint: WebhookEndpointId,
    card: Option<&str>,
    now: &Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, card_id, state, attempts, \
         next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(tenant)
    .bind(event)
    .bind(id_str(&endpoint))
    .bind(card)
    .bind(ts(now))
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

fn idempotency_record(row: &SqliteRow) -> StoreResult<IdempotencyRecord> {
    let state: String = rows::get(row, "state")?;
    let response = match state.as_str() {
        "in_flight" => None,
        "completed" => {
            let status: i64 = rows::get::<Option<i64>>(row, "status")?.ok_or_else(|| bad("status"))?;
            Some(IdempotentResponse {
                status: u16::try_from(status).map_err(|_| bad("status"))?,
                content_type: rows::get(row, "content_type")?,
                body: SealedData {
                    ciphertext: rows::get::<Option<Vec<u8>>>(row, "body_sealed")?.ok_or_else(|| bad("body_sealed"))?,
                    key_version: rows::get::<Option<i64>>(row, "body_key_version")?
                        .ok_or_else(|| bad("body_key_version"))? as i32,
                },
            })
        }
        _ => return Err(bad("state")),
    };
    Ok(IdempotencyRecord {
        tenant_id: rows::id(row, "tenant_id")?,
        key: rows::get(row, "key")?,
        fingerprint: rows::get(row, "fingerprint")?,
        token: rows::id(row, "token")?,
        response,
        created_at: parse_ts(&rows::get::<String>(row, "created_at")?)?,
        started_at: parse_ts(&rows::get::<String>(row, "started_at")?)?,
        completed_at: opt_ts(row, "completed_at")?,
    })
}

impl SqliteStore {
    pub(crate) async fn event_one(
        &self,
        tenant: TenantId,
        id: EventId,
    ) -> StoreResult<Option<cardcore_store::StoredEvent>> {
        let row = sqlx::query("SELECT * FROM events WHERE tenant_id = ? AND id = ?")
            .bind(id_str(&tenant))
            .bind(id_str(&id))
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::event).transpose()
    }

    pub(crate) async fn endpoints_of(&self, tenant: TenantId) -> StoreResult<Vec<WebhookEndpointRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND deleted_at IS NULL \
             ORDER BY created_at, id"
        ))
        .bind(id_str(&tenant))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(endpoint).collect()
    }

    pub(crate) async fn endpoint_one(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpointRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL"
        ))
        .bind(id_str(&tenant))
        .bind(id_str(&id))
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.as_ref().map(endpoint).transpose()
    }

    pub(crate) async fn fan_out(&self, limit: u32, now: Timestamp) -> StoreResult<u32> {
        // Asked on a reader first, so an idle poll never takes the write lock.
        let pending: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE seq > (SELECT seq FROM webhook_cursor WHERE id = 1))",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(map_err)?;
        if pending == 0 {
            return Ok(0);
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let cursor: i64 = sqlx::query_scalar("SELECT seq FROM webhook_cursor WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let events = sqlx::query(
            "SELECT seq, id, tenant_id, card_id, type, created_at FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let last_seq: i64 = rows::get(last, "seq")?;
        let mut endpoints: HashMap<String, Vec<WebhookEndpointRecord>> = HashMap::new();
        for e in &events {
            let tenant: String = rows::get(e, "tenant_id")?;
            let event_id: String = rows::get(e, "id")?;
            let card: Option<String> = rows::get(e, "card_id")?;
            let event_type = EventType::parse(&rows::get::<String>(e, "type")?).ok_or_else(|| bad("type"))?;
            let created_at = parse_ts(&rows::get::<String>(e, "created_at")?)?;
            if let std::collections::hash_map::Entry::Vacant(slot) = endpoints.entry(tenant.clone()) {
                slot.insert(live_endpoints(&mut tx, &tenant).await?);
            }
            let wanted: Vec<WebhookEndpointId> = endpoints
                .get(&tenant)
                .map(|list| {
                    list.iter()
                        .filter(|ep| ep.wants(event_type, created_at))
                        .map(|ep| ep.id)
                        .collect()
                })
                .unwrap_or_default();
            for ep in wanted {
                insert_delivery(&mut tx, &tenant, &event_id, ep, card.as_deref(), &now).await?;
            }
        }
        sqlx::query("UPDATE webhook_cursor SET seq = ? WHERE id = 1")
            .bind(last_seq)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(events.len() as u32)
    }

    pub(crate) async fn redeliver(&self, tenant: TenantId, event: EventId, now: Timestamp) -> StoreResult<Option<u32>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let row = sqlx::query("SELECT type, card_id FROM events WHERE tenant_id = ? AND id = ?")
            .bind(id_str(&tenant))
            .bind(id_str(&event))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let event_type = EventType::parse(&rows::get::<String>(&row, "type")?).ok_or_else(|| bad("type"))?;
        let card: Option<String> = rows::get(&row, "card_id")?;
        let tenant_s = id_str(&tenant);
        let mut n = 0;
        for ep in live_endpoints(&mut tx, &tenant_s).await? {
            if ep.redelivers(event_type) {
                insert_delivery(&mut tx, &tenant_s, &id_str(&event), ep.id, card.as_deref(), &now).await?;
                n += 1;
            }
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Some(n))
    }

    pub(crate) async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        skip: &[TenantId],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let skip = serde_json::to_string(&skip.iter().map(id_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::caused("encoding tenants to skip", e))?;
        let due: i64 = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE {OPEN} AND next_attempt_at <= ?1 \
             AND (lease_until IS NULL OR lease_until <= ?1))"
        ))
        .bind(ts(&now))
        .fetch_one(&self.reader)
        .await
        .map_err(map_err)?;
        if due == 0 {
            return Ok(Vec::new());
        }
        let lease = Uuid::now_v7();
        // One statement: atomic under SQLite's write lock, across processes too.
        let rows = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET lease_until = ?1, lease_token = ?2 WHERE seq IN ( \
               SELECT d.seq FROM webhook_deliveries d \
               WHERE d.{OPEN} AND d.next_attempt_at <= ?3 \
                 AND (d.lease_until IS NULL OR d.lease_until <= ?3) \
                 AND d.tenant_id NOT IN (SELECT value FROM json_each(?5)) \
                 AND (d.card_id IS NULL OR NOT EXISTS ( \
                   SELECT 1 FROM webhook_deliveries e \
                   WHERE e.endpoint_id = d.endpoint_id AND e.card_id = d.card_id AND e.{OPEN} AND e.seq < d.seq)) \
               ORDER BY d.next_attempt_at, d.seq LIMIT ?4) \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(ts(&lease_until))
        .bind(lease.to_string())
        .bind(ts(&now))
        .bind(i64::from(limit))
        .bind(skip)
        .fetch_all(&self.writer)
        .await
        .map_err(map_err)?;
        let mut claimed = rows.iter().map(delivery).collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed
            .into_iter()
            .map(|(_, delivery)| ClaimedDelivery { delivery, lease })
            .collect())
    }

    pub(crate) async fn release(&self, id: Uuid, lease: Uuid) -> StoreResult<bool> {
        let r = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL \
             WHERE id = ? AND lease_token = ? AND {OPEN}"
        ))
        .bind(id.to_string())
        .bind(lease.to_string())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn record_attempt(
        &self,
        id: Uuid,
        lease: Uuid,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool> {
        let (state, next) = match outcome {
            DeliveryOutcome::Succeeded => (DeliveryState::Succeeded, None),
            DeliveryOutcome::Retry(at) => (DeliveryState::Retrying, Some(ts(&at))),
            DeliveryOutcome::Dead => (DeliveryState::Dead, None),
        };
        let r = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, \
             last_status = ?, last_error = ?, attempts_log = json_insert(attempts_log, '$[#]', json(?)), \
             lease_until = NULL, lease_token = NULL WHERE id = ? AND lease_token = ? AND {OPEN}"
        ))
        .bind(state.as_str())
        .bind(next)
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.error)
        .bind(to_json(attempt)?)
        .bind(id.to_string())
        .bind(lease.to_string())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn deliveries_of(&self, tenant: TenantId, event: EventId) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = ? AND event_id = ? ORDER BY seq"
        ))
        .bind(id_str(&tenant))
        .bind(id_str(&event))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(|r| delivery(r).map(|(_, d)| d)).collect()
    }

    pub(crate) async fn begin_idem(&self, start: &IdempotencyStart<'_>) -> StoreResult<IdempotencyBegin> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let row = sqlx::query("SELECT * FROM idempotency_keys WHERE tenant_id = ? AND key = ?")
            .bind(id_str(&start.tenant_id))
            .bind(start.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let token = Uuid::now_v7();
        let step = match row.as_ref().map(idempotency_record).transpose()? {
            None => IdempotencyStep::Replace,
            Some(existing) => existing.step(start),
        };
        match step {
            IdempotencyStep::Replace => {
                sqlx::query(
                    "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, token, state, created_at, started_at) \
                     VALUES (?, ?, ?, ?, 'in_flight', ?, ?) ON CONFLICT (tenant_id, key) DO UPDATE SET \
                     fingerprint = excluded.fingerprint, token = excluded.token, state = 'in_flight', status = NULL, \
                     content_type = NULL, body_sealed = NULL, body_key_version = NULL, \
                     created_at = excluded.created_at, started_at = excluded.started_at, completed_at = NULL",
                )
                .bind(id_str(&start.tenant_id))
                .bind(start.key)
                .bind(start.fingerprint)
                .bind(token.to_string())
                .bind(ts(&start.now))
                .bind(ts(&start.now))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
            IdempotencyStep::TakeOver => {
                sqlx::query("UPDATE idempotency_keys SET token = ?, started_at = ? WHERE tenant_id = ? AND key = ?")
                    .bind(token.to_string())
                    .bind(ts(&start.now))
                    .bind(id_str(&start.tenant_id))
                    .bind(start.key)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            IdempotencyStep::Mismatch => return Ok(IdempotencyBegin::Mismatch),
            IdempotencyStep::Replay(response) => return Ok(IdempotencyBegin::Completed(response)),
            IdempotencyStep::Wait => return Ok(IdempotencyBegin::InFlight),
        }
        tx.commit().await.map_err(map_err)?;
        Ok(IdempotencyBegin::Started { token })
    }

    pub(crate) async fn finish_idem(
        &self,
        tenant: TenantId,
        key: &str,
        token: Uuid,
        response: &IdempotentResponse,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', status = ?, content_type = ?, body_sealed = ?, \
             body_key_version = ?, completed_at = ? \
             WHERE tenant_id = ? AND key = ? AND token = ? AND state = 'in_flight'",
        )
        .bind(i64::from(response.status))
        .bind(&response.content_type)
        .bind(&response.body.ciphertext)
        .bind(response.body.key_version)
        .bind(ts(&now))
        .bind(id_str(&tenant))
        .bind(key)
        .bind(token.to_string())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn abandon_idem(&self, tenant: TenantId, key: &str, token: Uuid) -> StoreResult<bool> {
        let r = sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ? AND token = ? AND state = 'in_flight'",
        )
        .bind(id_str(&tenant))
        .bind(key)
        .bind(token.to_string())
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub(crate) async fn idem_record(&self, tenant: TenantId, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query("SELECT * FROM idempotency_keys WHERE tenant_id = ? AND key = ?")
            .bind(id_str(&tenant))
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(idempotency_record).transpose()
    }

    pub(crate) async fn sms_settings(&self, tenant: TenantId) -> StoreResult<Option<TenantSmsRecord>> {
        let row = sqlx::query("SELECT tenant_id, text, otp_in_events, updated_at FROM tenant_sms WHERE tenant_id = ?")
            .bind(id_str(&tenant))
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.map(|row| {
            Ok(TenantSmsRecord {
                tenant_id: rows::id(&row, "tenant_id")?,
                text: rows::get(&row, "text")?,
                otp_in_events: rows::get::<i64>(&row, "otp_in_events")? != 0,
                updated_at: parse_ts(&rows::get::<String>(&row, "updated_at")?)?,
            })
        })
        .transpose()
    }

    pub(crate) async fn put_sms_settings(&self, settings: &TenantSmsRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tenant_sms (tenant_id, text, otp_in_events, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET text = excluded.text, otp_in_events = excluded.otp_in_events, \
             updated_at = excluded.updated_at",
        )
        .bind(id_str(&settings.tenant_id))
        .bind(&settings.text)
        .bind(i64::from(settings.otp_in_events))
        .bind(ts(&settings.updated_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(crate) async fn purge_idem(&self, created_before: Timestamp) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(ts(&created_before))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected())
    }
}

pub(crate) async fn insert_endpoint(conn: &mut SqliteConnection, ep: &WebhookEndpointRecord) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(id_str(&ep.id))
    .bind(id_str(&ep.tenant_id))
    .bind(&ep.url)
    .bind(event_types_json(&ep.event_types)?)
    .bind(&ep.secret.ciphertext)
    .bind(ep.secret.key_version)
    .bind(ep.format.as_str())
    .bind(ts(&ep.created_at))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn delete_endpoint(
    conn: &mut SqliteConnection,
    tenant: TenantId,
    id: WebhookEndpointId,
    now: Timestamp,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at = ? WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
    )
    .bind(ts(&now))
    .bind(id_str(&tenant))
    .bind(id_str(&id))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(&format!(
        "UPDATE webhook_deliveries SET state = 'dead', next_attempt_at = NULL, last_error = 'endpoint deleted', \
         lease_until = NULL, lease_token = NULL WHERE endpoint_id = ? AND {OPEN}"
    ))
    .bind(id_str(&id))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(true)
}
