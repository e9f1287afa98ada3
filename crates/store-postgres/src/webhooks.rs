//! Webhook endpoints, the fan-out of the outbox into deliveries, delivery
//! claims with leases, and idempotency keys, on PostgreSQL with several
//! nodes on one database.
//!
//! - Fan-out: the single `webhook_cursor` row, locked `FOR UPDATE SKIP
//!   LOCKED`, makes one node at a time do it (the others find it locked and
//!   return at once). It reads the outbox exactly as [`Store::events`] does
//!   (only events of finished transactions, in `(tx_id, seq)` order), so
//!   the cursor never passes an event that commits later.
//! - Claims: `FOR UPDATE SKIP LOCKED` on the candidate deliveries, so two
//!   nodes never claim the same one; a delivery is a candidate only while
//!   no older open delivery of its (endpoint, card) pair exists.
//! - Idempotency keys: `INSERT ... ON CONFLICT DO NOTHING`, then the row
//!   locked `FOR UPDATE` to decide, so the decision is atomic.
//!
//! [`Store::events`]: cardcore_store::Store::events

use std::collections::HashMap;

use cardcore_domain::{EventId, EventType, TenantId, Timestamp, WebhookEndpointId};
use cardcore_store::{
    ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, DeliveryState, IdempotencyBegin, IdempotencyRecord,
    IdempotencyStart, IdempotencyStep, IdempotentResponse, SealedData, StoreError, StoreResult, StoredEvent,
    WebhookDelivery, WebhookEndpointRecord,
};
use cardcore_store::{EndpointFormat, TenantSmsRecord};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::rows::{self, get};
use crate::{map_err, PostgresStore};

const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, event_types, secret_sealed, secret_key_version, format, created_at";
const DELIVERY_COLUMNS: &str = "seq, id, tenant_id, event_id, endpoint_id, card_id, state, attempts, \
    next_attempt_at, last_status, last_error, attempts_log, created_at";
const IDEMPOTENCY_COLUMNS: &str = "tenant_id, key, fingerprint, token, state, status, content_type, body_sealed, \
    body_key_version, created_at, started_at, completed_at";
const OPEN: &str = "state IN ('pending', 'retrying')";

fn bad(col: &str) -> StoreError {
    StoreError::internal(format!("column {col}: unexpected value"))
}

fn endpoint(row: &PgRow) -> StoreResult<WebhookEndpointRecord> {
    let types: Option<Vec<String>> = get(row, "event_types")?;
    let event_types = types
        .map(|t| {
            t.iter()
                .map(|name| EventType::parse(name).ok_or_else(|| bad("event_types")))
                .collect::<StoreResult<Vec<_>>>()
        })
        .transpose()?;
    Ok(WebhookEndpointRecord {
        id: get::<Uuid>(row, "id")?.into(),
        tenant_id: get::<Uuid>(row, "tenant_id")?.into(),
        url: get(row, "url")?,
        event_types,
        secret: SealedData {
            ciphertext: get(row, "secret_sealed")?,
            key_version: get(row, "secret_key_version")?,
        },
        format: EndpointFormat::parse(&get::<String>(row, "format")?).ok_or_else(|| bad("format"))?,
        created_at: get(row, "created_at")?,
    })
}

fn delivery(row: &PgRow) -> StoreResult<(i64, WebhookDelivery)> {
    let state: String = get(row, "state")?;
    let last_status: Option<i32> = get(row, "last_status")?;
    let delivery = WebhookDelivery {
        id: get(row, "id")?,
        tenant_id: get::<Uuid>(row, "tenant_id")?.into(),
        event_id: get::<Uuid>(row, "event_id")?.into(),
        endpoint_id: get::<Uuid>(row, "endpoint_id")?.into(),
        card_id: get::<Option<Uuid>>(row, "card_id")?.map(Into::into),
        state: DeliveryState::parse(&state).ok_or_else(|| bad("state"))?,
        attempts: u32::try_from(get::<i32>(row, "attempts")?).map_err(|_| bad("attempts"))?,
        next_attempt_at: get(row, "next_attempt_at")?,
        last_status: last_status
            .map(|s| u16::try_from(s).map_err(|_| bad("last_status")))
            .transpose()?,
        last_error: get(row, "last_error")?,
        attempts_log: rows::json(row, "attempts_log")?,
        created_at: get(row, "created_at")?,
    };
    Ok((get(row, "seq")?, delivery))
}

fn idempotency_record(row: &PgRow) -> StoreResult<IdempotencyRecord> {
    let state: String = get(row, "state")?;
    let response = match state.as_str() {
        "in_flight" => None,
        "completed" => {
            let status: i32 = get::<Option<i32>>(row, "status")?.ok_or_else(|| bad("status"))?;
            Some(IdempotentResponse {
                status: u16::try_from(status).map_err(|_| bad("status"))?,
                content_type: get(row, "content_type")?,
                body: SealedData {
                    ciphertext: get::<Option<Vec<u8>>>(row, "body_sealed")?.ok_or_else(|| bad("body_sealed"))?,
                    key_version: get::<Option<i32>>(row, "body_key_version")?.ok_or_else(|| bad("body_key_version"))?,
                },
            })
        }
        _ => return Err(bad("state")),
    };
    Ok(IdempotencyRecord {
        tenant_id: get::<Uuid>(row, "tenant_id")?.into(),
        key: get(row, "key")?,
        fingerprint: get(row, "fingerprint")?,
        token: get(row, "token")?,
        response,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        completed_at: get(row, "completed_at")?,
    })
}

async fn live_endpoints(
    tx: &mut Transaction<'static, Postgres>,
    tenant: Uuid,
) -> StoreResult<Vec<WebhookEndpointRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL \
         ORDER BY created_at, id"
    ))
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await
    .map_err(map_err)?;
    rows.iter().map(endpoint).collect()
}

async fn insert_delivery(
    tx: &mut Transaction<'static, Postgres>,
    tenant: Uuid,
    event: Uuid,
    endpoint: WebhookEndpointId,
    card: Option<Uuid>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, card_id, state, attempts, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(tenant)
    .bind(event)
    .bind(endpoint.0)
    .bind(card)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

impl PostgresStore {
    pub(crate) async fn event_one(&self, tenant: TenantId, id: EventId) -> StoreResult<Option<StoredEvent>> {
        self.run(|| async {
            let row = sqlx::query(
                "SELECT id, tenant_id, card_id, type, data, sealed_data, sealed_key_version, created_at FROM events \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::event).transpose()
        })
        .await
    }

    pub(crate) async fn sms_settings(&self, tenant: TenantId) -> StoreResult<Option<TenantSmsRecord>> {
        self.run(|| async {
            let row =
                sqlx::query("SELECT tenant_id, text, otp_in_events, updated_at FROM tenant_sms WHERE tenant_id = $1")
                    .bind(tenant.0)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
            row.map(|row| {
                Ok(TenantSmsRecord {
                    tenant_id: get::<Uuid>(&row, "tenant_id")?.into(),
                    text: get(&row, "text")?,
                    otp_in_events: get(&row, "otp_in_events")?,
                    updated_at: get(&row, "updated_at")?,
                })
            })
            .transpose()
        })
        .await
    }

    pub(crate) async fn put_sms_settings(&self, settings: &TenantSmsRecord) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query(
                "INSERT INTO tenant_sms (tenant_id, text, otp_in_events, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id) DO UPDATE SET text = excluded.text, otp_in_events = excluded.otp_in_events, \
                 updated_at = excluded.updated_at",
            )
            .bind(settings.tenant_id.0)
            .bind(&settings.text)
            .bind(settings.otp_in_events)
            .bind(settings.updated_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn endpoints_of(&self, tenant: TenantId) -> StoreResult<Vec<WebhookEndpointRecord>> {
        self.run(|| async {
            let rows = sqlx::query(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL \
                 ORDER BY created_at, id"
            ))
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter().map(endpoint).collect()
        })
        .await
    }

    pub(crate) async fn endpoint_one(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpointRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
                 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
            ))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(endpoint).transpose()
        })
        .await
    }

    pub(crate) async fn fan_out(&self, limit: u32, now: Timestamp) -> StoreResult<u32> {
        self.run(|| async {
            // Plain reads first, so an idle poll locks nothing and takes
            // no transaction id. The cursor is read on its own and passed
            // as values: joined to `events`, the row comparison is a join
            // filter and the planner scans the whole table (1.5 s per poll
            // at 2,000,000 events); against constants it is an index range
            // on `events_outbox`.
            let cursor = sqlx::query("SELECT tx_id::text AS tx_id, seq FROM webhook_cursor WHERE id = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
            let pending: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, seq) > ($1::xid8, $2) \
                 AND tx_id < pg_snapshot_xmin(pg_current_snapshot()))",
            )
            .bind(get::<String>(&cursor, "tx_id")?)
            .bind(get::<i64>(&cursor, "seq")?)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
            if !pending {
                return Ok(0);
            }
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            // Another node holding the row is fanning out right now.
            let Some(cursor) =
                sqlx::query("SELECT tx_id::text AS tx_id, seq FROM webhook_cursor WHERE id = 1 FOR UPDATE SKIP LOCKED")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?
            else {
                return Ok(0);
            };
            let after_tx: String = get(&cursor, "tx_id")?;
            let after_seq: i64 = get(&cursor, "seq")?;
            // The rules of `events`: only finished transactions' events, in
            // (tx_id, seq) order, so nothing can later appear behind the cursor.
            let events = sqlx::query(
                "SELECT tx_id::text AS tx_id, seq, id, tenant_id, card_id, type, created_at FROM events \
                 WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND (tx_id, seq) > ($1::xid8, $2) \
                 ORDER BY tx_id, seq LIMIT $3",
            )
            .bind(&after_tx)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
            let Some(last) = events.last() else {
                return Ok(0);
            };
            let last_tx: String = get(last, "tx_id")?;
            let last_seq: i64 = get(last, "seq")?;
            let mut endpoints: HashMap<Uuid, Vec<WebhookEndpointRecord>> = HashMap::new();
            for e in &events {
                let tenant: Uuid = get(e, "tenant_id")?;
                let event_id: Uuid = get(e, "id")?;
                let card: Option<Uuid> = get(e, "card_id")?;
                let event_type = EventType::parse(&get::<String>(e, "type")?).ok_or_else(|| bad("type"))?;
                let created_at: Timestamp = get(e, "created_at")?;
                if let std::collections::hash_map::Entry::Vacant(slot) = endpoints.entry(tenant) {
                    slot.insert(live_endpoints(&mut tx, tenant).await?);
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
                    insert_delivery(&mut tx, tenant, event_id, ep, card, now).await?;
                }
            }
            sqlx::query("UPDATE webhook_cursor SET tx_id = $1::xid8, seq = $2 WHERE id = 1")
                .bind(&last_tx)
                .bind(last_seq)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
        })
        .await
    }

    pub(crate) async fn redeliver(&self, tenant: TenantId, event: EventId, now: Timestamp) -> StoreResult<Option<u32>> {
        self.run(|| async {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            // FOR SHARE: retention deletes events it holds FOR UPDATE, so a
            // redelivery either waits and finds no event or comes first.
            let row = sqlx::query("SELECT type, card_id FROM events WHERE tenant_id = $1 AND id = $2 FOR SHARE")
                .bind(tenant.0)
                .bind(event.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let event_type = EventType::parse(&get::<String>(&row, "type")?).ok_or_else(|| bad("type"))?;
            let card: Option<Uuid> = get(&row, "card_id")?;
            let mut n = 0;
            for ep in live_endpoints(&mut tx, tenant.0).await? {
                if ep.redelivers(event_type) {
                    insert_delivery(&mut tx, tenant.0, event.0, ep.id, card, now).await?;
                    n += 1;
                }
            }
            tx.commit().await.map_err(map_err)?;
            Ok(Some(n))
        })
        .await
    }

    pub(crate) async fn claim(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        skip: &[TenantId],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let skip: Vec<Uuid> = skip.iter().map(|t| *t.as_uuid()).collect();
        self.run(|| async {
            let lease = Uuid::now_v7();
            // SKIP LOCKED: a candidate another node is claiming right now is
            // passed over; an older open delivery of the same pair (leased
            // or locked or not) keeps its successors out.
            let rows = sqlx::query(&format!(
                "UPDATE webhook_deliveries SET lease_until = $1, lease_token = $2 WHERE seq IN ( \
                   SELECT d.seq FROM webhook_deliveries d \
                   WHERE d.{OPEN} AND d.next_attempt_at <= $3 \
                     AND (d.lease_until IS NULL OR d.lease_until <= $3) \
                     AND NOT (d.tenant_id = ANY($5)) \
                     AND (d.card_id IS NULL OR NOT EXISTS ( \
                       SELECT 1 FROM webhook_deliveries e \
                       WHERE e.endpoint_id = d.endpoint_id AND e.card_id = d.card_id AND e.{OPEN} \
                         AND e.seq < d.seq)) \
                   ORDER BY d.next_attempt_at, d.seq LIMIT $4 \
                   FOR UPDATE OF d SKIP LOCKED) \
                 RETURNING {DELIVERY_COLUMNS}"
            ))
            .bind(lease_until)
            .bind(lease)
            .bind(now)
            .bind(i64::from(limit))
            .bind(&skip)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            let mut claimed = rows.iter().map(delivery).collect::<StoreResult<Vec<_>>>()?;
            claimed.sort_by_key(|(seq, _)| *seq);
            Ok(claimed
                .into_iter()
                .map(|(_, delivery)| ClaimedDelivery { delivery, lease })
                .collect())
        })
        .await
    }

    pub(crate) async fn release(&self, id: Uuid, lease: Uuid) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query(&format!(
                "UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL \
                 WHERE id = $1 AND lease_token = $2 AND {OPEN}"
            ))
            .bind(id)
            .bind(lease)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
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
            DeliveryOutcome::Retry(at) => (DeliveryState::Retrying, Some(at)),
            DeliveryOutcome::Dead => (DeliveryState::Dead, None),
        };
        self.run(|| async {
            let r = sqlx::query(&format!(
                "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
                 last_status = $3, last_error = $4, attempts_log = attempts_log || jsonb_build_array($5::jsonb), \
                 lease_until = NULL, lease_token = NULL WHERE id = $6 AND lease_token = $7 AND {OPEN}"
            ))
            .bind(state.as_str())
            .bind(next)
            .bind(attempt.status.map(i32::from))
            .bind(&attempt.error)
            .bind(Json(attempt))
            .bind(id)
            .bind(lease)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    pub(crate) async fn deliveries_of(&self, tenant: TenantId, event: EventId) -> StoreResult<Vec<WebhookDelivery>> {
        self.run(|| async {
            let rows = sqlx::query(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND event_id = $2 ORDER BY seq"
            ))
            .bind(tenant.0)
            .bind(event.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter().map(|r| delivery(r).map(|(_, d)| d)).collect()
        })
        .await
    }

    pub(crate) async fn begin_idem(&self, start: &IdempotencyStart<'_>) -> StoreResult<IdempotencyBegin> {
        self.run(|| async {
            // A row can vanish between the insert and the lock (its request
            // was abandoned, or purged): then try again, a bounded number of times.
            for _ in 0..4 {
                let token = Uuid::now_v7();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Waits for a concurrent inserter of the same key to finish.
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, token, state, created_at, started_at) \
                     VALUES ($1, $2, $3, $4, 'in_flight', $5, $5) ON CONFLICT (tenant_id, key) DO NOTHING",
                )
                .bind(start.tenant_id.0)
                .bind(start.key)
                .bind(start.fingerprint)
                .bind(token)
                .bind(start.now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if inserted.rows_affected() == 1 {
                    tx.commit().await.map_err(map_err)?;
                    return Ok(IdempotencyBegin::Started { token });
                }
                let row = sqlx::query(&format!(
                    "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 FOR UPDATE"
                ))
                .bind(start.tenant_id.0)
                .bind(start.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(row) = row else {
                    continue;
                };
                match idempotency_record(&row)?.step(start) {
                    IdempotencyStep::Replace => {
                        sqlx::query(
                            "UPDATE idempotency_keys SET fingerprint = $3, token = $4, state = 'in_flight', \
                             status = NULL, content_type = NULL, body_sealed = NULL, body_key_version = NULL, \
                             created_at = $5, started_at = $5, completed_at = NULL WHERE tenant_id = $1 AND key = $2",
                        )
                        .bind(start.tenant_id.0)
                        .bind(start.key)
                        .bind(start.fingerprint)
                        .bind(token)
                        .bind(start.now)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    IdempotencyStep::TakeOver => {
                        sqlx::query(
                            "UPDATE idempotency_keys SET token = $3, started_at = $4 WHERE tenant_id = $1 AND key = $2",
                        )
                        .bind(start.tenant_id.0)
                        .bind(start.key)
                        .bind(token)
                        .bind(start.now)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    IdempotencyStep::Mismatch => return Ok(IdempotencyBegin::Mismatch),
                    IdempotencyStep::Replay(response) => return Ok(IdempotencyBegin::Completed(response)),
                    IdempotencyStep::Wait => return Ok(IdempotencyBegin::InFlight),
                }
                tx.commit().await.map_err(map_err)?;
                return Ok(IdempotencyBegin::Started { token });
            }
            Err(StoreError::Unavailable(
                "the idempotency key kept changing under concurrent requests".into(),
            ))
        })
        .await
    }

    pub(crate) async fn finish_idem(
        &self,
        tenant: TenantId,
        key: &str,
        token: Uuid,
        response: &IdempotentResponse,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query(
                "UPDATE idempotency_keys SET state = 'completed', status = $4, content_type = $5, body_sealed = $6, \
                 body_key_version = $7, completed_at = $8 \
                 WHERE tenant_id = $1 AND key = $2 AND token = $3 AND state = 'in_flight'",
            )
            .bind(tenant.0)
            .bind(key)
            .bind(token)
            .bind(i32::from(response.status))
            .bind(&response.content_type)
            .bind(&response.body.ciphertext)
            .bind(response.body.key_version)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    pub(crate) async fn abandon_idem(&self, tenant: TenantId, key: &str, token: Uuid) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND token = $3 AND state = 'in_flight'",
            )
            .bind(tenant.0)
            .bind(key)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    pub(crate) async fn idem_record(&self, tenant: TenantId, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE tenant_id = $1 AND key = $2"
            ))
            .bind(tenant.0)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(idempotency_record).transpose()
        })
        .await
    }

    pub(crate) async fn purge_idem(&self, created_before: Timestamp) -> StoreResult<u64> {
        self.run(|| async {
            let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(created_before)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(r.rows_affected())
        })
        .await
    }
}

pub(crate) async fn insert_endpoint(
    tx: &mut Transaction<'static, Postgres>,
    ep: &WebhookEndpointRecord,
) -> StoreResult<()> {
    let types: Option<Vec<&str>> = ep.event_types.as_ref().map(|t| t.iter().map(|t| t.as_str()).collect());
    sqlx::query(&format!(
        "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(ep.id.0)
    .bind(ep.tenant_id.0)
    .bind(&ep.url)
    .bind(types)
    .bind(&ep.secret.ciphertext)
    .bind(ep.secret.key_version)
    .bind(ep.format.as_str())
    .bind(ep.created_at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn delete_endpoint(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    id: WebhookEndpointId,
    now: Timestamp,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at = $1 WHERE tenant_id = $2 AND id = $3 AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(tenant.0)
    .bind(id.0)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(&format!(
        "UPDATE webhook_deliveries SET state = 'dead', next_attempt_at = NULL, last_error = 'endpoint deleted', \
         lease_until = NULL, lease_token = NULL WHERE endpoint_id = $1 AND {OPEN}"
    ))
    .bind(id.0)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(true)
}
