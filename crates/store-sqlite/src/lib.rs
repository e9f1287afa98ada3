//! SQLite backend, the embedded default.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a commit that returned
//! is on disk and survives a power cut. Concurrency: one writer connection
//! (SQLite has one writer anyway; queuing in the pool is cheaper than
//! `SQLITE_BUSY` retries) and several readers, which WAL lets run beside the
//! writer. Write transactions start with `BEGIN IMMEDIATE`, taking the write
//! lock before the first read, so a read-then-write transaction can never
//! fail to upgrade when another process (the CLI) writes too. Concurrent
//! `begin()` transactions share one commit (`group.rs`): each is a savepoint
//! in the writer's open transaction, and none is acknowledged before the
//! COMMIT containing it returned.

mod authorization_endpoint;
mod group;
mod money;
mod read;
mod retention;
mod rows;
mod webhooks;

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use cardcore_domain::activation::ActivationState;
use cardcore_domain::otp::{OtpPurpose, OtpState};
use cardcore_domain::AuthorizationId;
use cardcore_domain::{ApiKeyId, EventId, Timestamp, WebhookEndpointId};
use cardcore_domain::{AuditEntry, Card, CardId, Cardholder, CardholderId, ExternalId, KitNumber, Tenant, TenantId};
use cardcore_store::PanRow;
use cardcore_store::{
    ApiKeyRecord, AuditPage, CardFilter, CardHold, CardRecord, ConsoleSessionRecord, EventQuery, PinSessionRecord,
    Store, StoreError, StoreResult, StoredEvent, StoredKey, TransportKeyRecord, Tx, ZoneKeyRecord,
};
use cardcore_store::{AuthorizationRecord, DueAuthorization, MoneyPage, TransactionRecord};
use cardcore_store::{
    ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, IdempotencyBegin, IdempotencyRecord, IdempotencyStart,
    IdempotentResponse, WebhookDelivery, WebhookEndpointRecord,
};
use cardcore_store::{EventPosition, ExpiredAudit, PurgedEvents, RetentionCounts, RetentionCutoffs};
use rows::{to_json, ts, CARD_COLUMNS};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The rows of a database's migration table `(version, success, checksum)`
/// against this build's migrations (for a file read without the store).
pub fn migration_status(applied: &[(i64, bool, Vec<u8>)]) -> cardcore_store::MigrationStatus {
    cardcore_store::MigrationStatus::compare(
        &MIGRATOR
            .iter()
            .map(|m| (m.version, m.checksum.as_ref()))
            .collect::<Vec<_>>(),
        applied,
    )
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Reader connections (the writer is always one).
    pub readers: u32,
    /// How long a request waits for a connection or a lock before the
    /// database counts as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            readers: 4,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Point reads on the calling thread (see `read.rs`).
    points: Arc<read::Readers>,
    /// `begin()` transactions share commits on `writer` (see `group.rs`).
    group: group::GroupCommit,
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) => {
            // Primary result codes: BUSY 5, LOCKED 6, IOERR 10, FULL 13, CANTOPEN 14.
            let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            match primary {
                Some(5 | 6 | 10 | 13 | 14) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::caused("SQLite statement", e),
            }
        }
        _ => StoreError::caused("SQLite statement", e),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &Path, options: &SqliteOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout);
        // No ping before handing out a connection: it is a round trip to the
        // connection's worker thread on every query, and a local file does
        // not go away like a network peer.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(map_err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await
            .map_err(map_err)?;
        let group = group::GroupCommit::new(writer.clone(), options.acquire_timeout);
        let points = Arc::new(read::Readers::new(
            path,
            options.acquire_timeout,
            options.readers as usize,
        ));
        Ok(Self {
            writer,
            reader,
            points,
            group,
        })
    }

    /// Write transactions committed to disk so far, counting a group commit
    /// once (see `group.rs`): under concurrent writes, fewer than the
    /// transactions. Also exported as `cardcore_sqlite_commits_total`.
    pub fn commits(&self) -> u64 {
        self.group.commits()
    }

    /// Opens the database named by a `sqlite://PATH` URL.
    pub async fn open_url(url: &str, options: &SqliteOptions) -> StoreResult<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::internal(format!("not a sqlite URL: {url}")))?;
        let path = path.split('?').next().unwrap_or(path);
        Self::open(Path::new(path), options).await
    }
}

fn pin_session_row(r: &SqliteRow) -> StoreResult<PinSessionRecord> {
    Ok(PinSessionRecord {
        token_hash: rows::get(r, "token_hash")?,
        tenant_id: rows::id(r, "tenant_id")?,
        card_id: rows::id(r, "card_id")?,
        api_key_id: rows::id(r, "api_key_id")?,
        purpose: rows::get(r, "purpose")?,
        allowed_origin: rows::get(r, "allowed_origin")?,
        created_at: rows::parse_ts(&rows::get::<String>(r, "created_at")?)?,
        expires_at: rows::parse_ts(&rows::get::<String>(r, "expires_at")?)?,
        used_at: rows::opt_ts(r, "used_at")?,
    })
}

fn id_str(id: &impl std::fmt::Display) -> String {
    id.to_string()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::caused("migration failed", e))
    }

    async fn migration_status(&self) -> StoreResult<cardcore_store::MigrationStatus> {
        let exists: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_one(&self.reader)
                .await
                .map_err(map_err)?;
        let rows: Vec<(i64, bool, Vec<u8>)> = if exists > 0 {
            sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?
        } else {
            Vec::new()
        };
        Ok(migration_status(&rows))
    }

    async fn row_counts(&self) -> StoreResult<cardcore_store::RowCounts> {
        let (tenants, cards, events): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM cards), (SELECT count(*) FROM events)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(map_err)?;
        Ok(cardcore_store::RowCounts {
            tenants: tenants.max(0) as u64,
            cards: cards.max(0) as u64,
            events: events.max(0) as u64,
        })
    }

    async fn wrapped_keys(&self) -> StoreResult<Vec<cardcore_store::WrappedKey>> {
        use cardcore_store::{WrappedKey, WrappedKeyId};
        let parse = |s: String| -> StoreResult<uuid::Uuid> {
            s.parse().map_err(|_| StoreError::internal("a key's id is not a UUID"))
        };
        let mut out = Vec::new();
        let rows: Vec<(String, i32, Vec<u8>)> = sqlx::query_as("SELECT purpose, version, wrapped FROM service_keys")
            .fetch_all(&self.writer)
            .await
            .map_err(map_err)?;
        for (purpose, version, wrapped) in rows {
            out.push(WrappedKey {
                id: WrappedKeyId::Service { purpose, version },
                wrapped,
            });
        }
        let rows: Vec<(String, i32, Vec<u8>)> =
            sqlx::query_as("SELECT tenant_id, version, wrapped FROM tenant_transport_keys")
                .fetch_all(&self.writer)
                .await
                .map_err(map_err)?;
        for (tenant, version, wrapped) in rows {
            out.push(WrappedKey {
                id: WrappedKeyId::Transport {
                    tenant: TenantId(parse(tenant)?),
                    version,
                },
                wrapped,
            });
        }
        let rows: Vec<(String, String, String, Vec<u8>)> =
            sqlx::query_as("SELECT id, tenant_id, algorithm, wrapped FROM zone_keys")
                .fetch_all(&self.writer)
                .await
                .map_err(map_err)?;
        for (id, tenant, algorithm, wrapped) in rows {
            out.push(WrappedKey {
                id: WrappedKeyId::Zone {
                    tenant: TenantId(parse(tenant)?),
                    id: parse(id)?.into(),
                    algorithm,
                },
                wrapped,
            });
        }
        Ok(out)
    }

    async fn rewrap_keys(
        &self,
        old_check: &str,
        new_check: &str,
        keys: &[cardcore_store::WrappedKey],
    ) -> StoreResult<bool> {
        use cardcore_store::WrappedKeyId;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let swapped = sqlx::query("UPDATE meta SET value = ? WHERE key = 'master_key_check' AND value = ?")
            .bind(new_check)
            .bind(old_check)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if swapped.rows_affected() != 1 {
            return Ok(false);
        }
        for k in keys {
            let q = match &k.id {
                WrappedKeyId::Service { purpose, version } => {
                    sqlx::query("UPDATE service_keys SET wrapped = ? WHERE purpose = ? AND version = ?")
                        .bind(&k.wrapped)
                        .bind(purpose.clone())
                        .bind(*version)
                }
                WrappedKeyId::Transport { tenant, version } => {
                    sqlx::query("UPDATE tenant_transport_keys SET wrapped = ? WHERE tenant_id = ? AND version = ?")
                        .bind(&k.wrapped)
                        .bind(id_str(tenant))
                        .bind(*version)
                }
                WrappedKeyId::Zone { id, .. } => sqlx::query("UPDATE zone_keys SET wrapped = ? WHERE id = ?")
                    .bind(&k.wrapped)
                    .bind(id_str(id)),
            };
            q.execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(map_err)?;
        Ok(())
    }

    fn pool_status(&self) -> Option<cardcore_store::PoolStatus> {
        let (size, idle) = [&self.writer, &self.reader]
            .iter()
            .fold((0u32, 0u32), |(s, i), p| (s + p.size(), i + p.num_idle() as u32));
        Some(cardcore_store::PoolStatus {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.writer.options().get_max_connections() + self.reader.options().get_max_connections(),
        })
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let member = self.group.begin().await?;
        Ok(Box::new(SqliteTx { member }))
    }

    async fn hold_card(&self, tenant: TenantId, id: CardId) -> StoreResult<CardHold> {
        // One server process owns a SQLite database (`cardcore serve` holds
        // a lock file) and orders its own decisions, so the hold is the point
        // read: it sees every commit that returned before it started.
        Ok(CardHold::new(self.card(tenant, id).await?, None))
    }

    async fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
        let r = sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn service_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows =
            sqlx::query("SELECT purpose, version, wrapped, created_at FROM service_keys ORDER BY purpose, version")
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    purpose: r.try_get("purpose").map_err(map_err)?,
                    version: r.try_get::<i64, _>("version").map_err(map_err)? as i32,
                    wrapped: r.try_get("wrapped").map_err(map_err)?,
                    created_at: rows::parse_ts(&r.try_get::<String, _>("created_at").map_err(map_err)?)?,
                })
            })
            .collect()
    }

    async fn insert_service_key(&self, key: &StoredKey) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO service_keys (purpose, version, wrapped, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&key.purpose)
        .bind(key.version)
        .bind(&key.wrapped)
        .bind(ts(&key.created_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn zone_keys(&self, tenant: TenantId) -> StoreResult<Vec<ZoneKeyRecord>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, algorithm, wrapped, kcv, created_at FROM zone_keys WHERE tenant_id = ? ORDER BY created_at, id",
        )
        .bind(id_str(&tenant))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id").map_err(map_err)?;
                Ok(ZoneKeyRecord {
                    id: id.parse().map_err(|_| StoreError::internal("zone key id"))?,
                    tenant_id: tenant,
                    algorithm: r.try_get("algorithm").map_err(map_err)?,
                    wrapped: r.try_get("wrapped").map_err(map_err)?,
                    kcv: r.try_get("kcv").map_err(map_err)?,
                    created_at: rows::parse_ts(&r.try_get::<String, _>("created_at").map_err(map_err)?)?,
                })
            })
            .collect()
    }

    async fn insert_zone_key(&self, key: &ZoneKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO zone_keys (id, tenant_id, algorithm, wrapped, kcv, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id_str(&key.id))
        .bind(id_str(&key.tenant_id))
        .bind(&key.algorithm)
        .bind(&key.wrapped)
        .bind(&key.kcv)
        .bind(ts(&key.created_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn transport_keys(&self, tenant: TenantId) -> StoreResult<Vec<TransportKeyRecord>> {
        let rows = sqlx::query(
            "SELECT version, wrapped, created_at, retires_at FROM tenant_transport_keys WHERE tenant_id = ? \
             ORDER BY version",
        )
        .bind(id_str(&tenant))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(TransportKeyRecord {
                    tenant_id: tenant,
                    version: rows::get::<i64>(r, "version")? as i32,
                    wrapped: rows::get(r, "wrapped")?,
                    created_at: rows::parse_ts(&rows::get::<String>(r, "created_at")?)?,
                    retires_at: rows::opt_ts(r, "retires_at")?,
                })
            })
            .collect()
    }

    async fn insert_transport_key(&self, key: &TransportKeyRecord) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO tenant_transport_keys (tenant_id, version, wrapped, created_at, retires_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id_str(&key.tenant_id))
        .bind(key.version)
        .bind(&key.wrapped)
        .bind(ts(&key.created_at))
        .bind(key.retires_at.as_ref().map(ts))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn retire_transport_keys(&self, tenant: TenantId, below_version: i32, at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE tenant_transport_keys SET retires_at = ? \
             WHERE tenant_id = ? AND version < ? AND (retires_at IS NULL OR retires_at > ?)",
        )
        .bind(ts(&at))
        .bind(id_str(&tenant))
        .bind(below_version)
        .bind(ts(&at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn transport_key_tenants(&self) -> StoreResult<Vec<TenantId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM tenant_transport_keys")
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        ids.iter()
            .map(|s| s.parse().map_err(|_| StoreError::internal("tenant id")))
            .collect()
    }

    async fn create_tenant(&self, tenant: &Tenant, key: &ApiKeyRecord) -> StoreResult<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        let r = sqlx::query(
            "INSERT INTO tenants (id, name, default_program_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id_str(&tenant.id))
        .bind(&tenant.name)
        .bind(id_str(&tenant.default_program_id))
        .bind(ts(&tenant.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        insert_api_key(&mut tx, key).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        insert_api_key(&mut tx, key).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn tenant_count(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
            .fetch_one(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    }

    async fn tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = ?")
            .bind(id_str(&id))
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::tenant).transpose()
    }

    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::tenant).transpose()
    }

    async fn tenant_settings(&self, id: TenantId) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT settings FROM tenants WHERE id = ?")
            .bind(id_str(&id))
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)
    }

    async fn set_tenant_settings(&self, id: TenantId, settings: &str) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE tenants SET settings = ? WHERE id = ?")
            .bind(settings)
            .bind(id_str(&id))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<(ApiKeyRecord, Tenant)>> {
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS}, t.* FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = ? AND k.revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        match row {
            Some(r) => Ok(Some((rows::api_key(&r)?, rows::tenant(&r)?))),
            None => Ok(None),
        }
    }

    async fn api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<(ApiKeyRecord, Tenant)>> {
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS}, t.* FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.id = ? AND k.revoked_at IS NULL"
        ))
        .bind(id_str(&id))
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        match row {
            Some(r) => Ok(Some((rows::api_key(&r)?, rows::tenant(&r)?))),
            None => Ok(None),
        }
    }

    async fn api_keys(&self, tenant: TenantId) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = ? ORDER BY k.created_at, k.id"
        ))
        .bind(id_str(&tenant))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId, at: Timestamp) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE tenant_id = ? AND id = ?")
            .bind(ts(&at))
            .bind(id_str(&tenant))
            .bind(id_str(&id))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = ? AND k.id = ?"
        ))
        .bind(id_str(&tenant))
        .bind(id_str(&id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)")
            .bind(ts(&at))
            .bind(id_str(&id))
            .bind(ts(&at))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn cardholder(&self, tenant: TenantId, id: CardholderId) -> StoreResult<Option<Cardholder>> {
        self.points.row(
            "SELECT * FROM cardholders WHERE tenant_id = ? AND id = ?",
            (id_str(&tenant), id_str(&id)),
            |row| rows::cardholder(row),
        )
    }

    async fn cardholder_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &ExternalId,
    ) -> StoreResult<Option<Cardholder>> {
        self.points.row(
            "SELECT * FROM cardholders WHERE tenant_id = ? AND external_id = ?",
            (id_str(&tenant), external_id.as_str()),
            |row| rows::cardholder(row),
        )
    }

    async fn card(&self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardRecord>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = ? AND id = ?"));
        self.points
            .row(&SQL, (id_str(&tenant), id_str(&id)), |row| rows::card(row))
    }

    async fn card_by_kit(&self, tenant: TenantId, kit: &KitNumber) -> StoreResult<Option<CardRecord>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = ? AND kit_number = ?"));
        self.points
            .row(&SQL, (id_str(&tenant), kit.as_str()), |row| rows::card(row))
    }

    async fn card_id_by_kit_of_holder(
        &self,
        tenant: TenantId,
        external_id: &ExternalId,
        kit: &KitNumber,
    ) -> StoreResult<Option<CardId>> {
        // One read on the two unique indexes, only the id mapped.
        self.points.row(
            "SELECT cards.id AS id FROM cards JOIN cardholders ON cardholders.id = cards.cardholder_id \
             WHERE cards.tenant_id = ?1 AND cards.kit_number = ?2 AND cardholders.tenant_id = ?1 \
             AND cardholders.external_id = ?3",
            (id_str(&tenant), kit.as_str(), external_id.as_str()),
            |row| rows::Columns::uuid(row, "id"),
        )
    }

    async fn pan_rows(&self, after: Option<CardId>, limit: u32) -> StoreResult<Vec<PanRow>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, pan_sealed, data_key_version FROM cards WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after.map(|a| id_str(&a)).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id").map_err(map_err)?;
                let tenant: String = r.try_get("tenant_id").map_err(map_err)?;
                Ok(PanRow {
                    id: id.parse().map_err(|_| StoreError::internal("cards.id is not a UUID"))?,
                    tenant_id: tenant
                        .parse()
                        .map_err(|_| StoreError::internal("cards.tenant_id is not a UUID"))?,
                    pan_sealed: r.try_get("pan_sealed").map_err(map_err)?,
                    data_key_version: r.try_get::<i64, _>("data_key_version").map_err(map_err)? as i32,
                })
            })
            .collect()
    }

    async fn set_pan_hashes(&self, hashes: &[(CardId, Vec<u8>)]) -> StoreResult<Option<(CardId, CardId)>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        for (id, hash) in hashes {
            let other: Option<String> = sqlx::query_scalar("SELECT id FROM cards WHERE pan_hash = ? AND id <> ?")
                .bind(hash)
                .bind(id_str(id))
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            if let Some(other) = other {
                let other = other
                    .parse()
                    .map_err(|_| StoreError::internal("cards.id is not a UUID"))?;
                return Ok(Some((*id, other)));
            }
            sqlx::query("UPDATE cards SET pan_hash = ? WHERE id = ?")
                .bind(hash)
                .bind(id_str(id))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(None)
    }

    async fn card_by_pan_hash(&self, tenant: TenantId, pan_hash: &[u8]) -> StoreResult<Option<CardRecord>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = ? AND pan_hash = ?"));
        self.points
            .row(&SQL, (id_str(&tenant), pan_hash), |row| rows::card(row))
    }

    async fn cards(&self, tenant: TenantId, filter: &CardFilter) -> StoreResult<Vec<Card>> {
        let mut sql = format!("SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = ?");
        if filter.cardholder_id.is_some() {
            sql.push_str(" AND cardholder_id = ?");
        }
        if filter.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if filter.after.is_some() {
            sql.push_str(" AND id > ?");
        }
        if filter.last_four.is_some() {
            sql.push_str(" AND last_four = ?");
        }
        if filter.expiry.is_some() {
            sql.push_str(" AND expiry_month = ? AND expiry_year = ?");
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        let mut q = sqlx::query(&sql).bind(id_str(&tenant));
        if let Some(c) = filter.cardholder_id {
            q = q.bind(id_str(&c));
        }
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(a) = filter.after {
            q = q.bind(id_str(&a));
        }
        if let Some(l) = &filter.last_four {
            q = q.bind(l.clone());
        }
        if let Some(e) = filter.expiry {
            q = q.bind(i64::from(e.month())).bind(i64::from(e.year()));
        }
        let rows = q
            .bind(i64::from(filter.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        rows.iter().map(|r| rows::card(r).map(|c| c.card)).collect()
    }

    async fn audit_entries(&self, tenant: TenantId, card: CardId, page: &AuditPage) -> StoreResult<Vec<AuditEntry>> {
        let before_seq: Option<i64> = match page.before {
            Some(id) => Some(
                sqlx::query_scalar("SELECT seq FROM audit_log WHERE tenant_id = ? AND card_id = ? AND id = ?")
                    .bind(id_str(&tenant))
                    .bind(id_str(&card))
                    .bind(id_str(&id))
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(map_err)?
                    .ok_or(StoreError::NotFound("cursor"))?,
            ),
            None => None,
        };
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE tenant_id = ? AND card_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(id_str(&tenant))
        .bind(id_str(&card))
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(page.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::audit).collect()
    }

    async fn events(&self, tenant: TenantId, query: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
        let after_seq: i64 = match query.after {
            Some(id) => sqlx::query_scalar("SELECT seq FROM events WHERE tenant_id = ? AND id = ?")
                .bind(id_str(&tenant))
                .bind(id_str(&id))
                .fetch_optional(&self.reader)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound("cursor"))?,
            None => 0,
        };
        let mut sql = String::from("SELECT * FROM events WHERE tenant_id = ? AND seq > ?");
        if query.event_type.is_some() {
            sql.push_str(" AND type = ?");
        }
        if query.card_id.is_some() {
            sql.push_str(" AND card_id = ?");
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        let mut q = sqlx::query(&sql).bind(id_str(&tenant)).bind(after_seq);
        if let Some(t) = query.event_type {
            q = q.bind(t.as_str());
        }
        if let Some(c) = query.card_id {
            q = q.bind(id_str(&c));
        }
        let rows = q
            .bind(i64::from(query.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        rows.iter().map(rows::event).collect()
    }

    async fn event(&self, tenant: TenantId, id: EventId) -> StoreResult<Option<StoredEvent>> {
        self.event_one(tenant, id).await
    }

    async fn recent_events(&self, tenant: TenantId, card: Option<CardId>, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        let sql = if card.is_some() {
            "SELECT * FROM events WHERE tenant_id = ? AND card_id = ? ORDER BY seq DESC LIMIT ?"
        } else {
            "SELECT * FROM events WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?"
        };
        let mut q = sqlx::query(sql).bind(id_str(&tenant));
        if let Some(c) = card {
            q = q.bind(id_str(&c));
        }
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map_err)?;
        rows.iter().map(rows::event).collect()
    }

    async fn cardholders_by_phone(&self, tenant: TenantId, number: &str, limit: u32) -> StoreResult<Vec<Cardholder>> {
        let rows = sqlx::query(
            "SELECT * FROM cardholders WHERE tenant_id = ? \
             AND (phone_number = ? OR phone_country_code || phone_number = ?) ORDER BY created_at, id LIMIT ?",
        )
        .bind(id_str(&tenant))
        .bind(number)
        .bind(number)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::cardholder).collect()
    }

    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < ?")
            .bind(ts(&session.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, tenant_id, api_key_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&session.token_hash)
        .bind(id_str(&session.tenant_id))
        .bind(id_str(&session.api_key_id))
        .bind(ts(&session.created_at))
        .bind(ts(&session.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn console_session(&self, token_hash: &[u8], now: Timestamp) -> StoreResult<Option<ConsoleSessionRecord>> {
        let row = sqlx::query("SELECT * FROM console_sessions WHERE token_hash = ? AND expires_at > ?")
            .bind(token_hash)
            .bind(ts(&now))
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref()
            .map(|r| {
                Ok(ConsoleSessionRecord {
                    token_hash: rows::get(r, "token_hash")?,
                    tenant_id: rows::id(r, "tenant_id")?,
                    api_key_id: rows::id(r, "api_key_id")?,
                    created_at: rows::parse_ts(&rows::get::<String>(r, "created_at")?)?,
                    expires_at: rows::parse_ts(&rows::get::<String>(r, "expires_at")?)?,
                })
            })
            .transpose()
    }

    async fn delete_console_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn insert_pin_session(&self, session: &PinSessionRecord) -> StoreResult<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        sqlx::query("DELETE FROM pin_sessions WHERE expires_at < ?")
            .bind(ts(&(session.created_at - chrono::Duration::days(1))))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO pin_sessions (token_hash, tenant_id, card_id, api_key_id, purpose, allowed_origin, \
             created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.token_hash)
        .bind(id_str(&session.tenant_id))
        .bind(id_str(&session.card_id))
        .bind(id_str(&session.api_key_id))
        .bind(&session.purpose)
        .bind(&session.allowed_origin)
        .bind(ts(&session.created_at))
        .bind(ts(&session.expires_at))
        .bind(session.used_at.as_ref().map(ts))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn pin_session(&self, token_hash: &[u8]) -> StoreResult<Option<PinSessionRecord>> {
        let row = sqlx::query("SELECT * FROM pin_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?;
        row.as_ref().map(pin_session_row).transpose()
    }

    async fn claim_pin_session(&self, token_hash: &[u8], now: Timestamp) -> StoreResult<Option<PinSessionRecord>> {
        let row = sqlx::query(
            "UPDATE pin_sessions SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? \
             RETURNING *",
        )
        .bind(ts(&now))
        .bind(token_hash)
        .bind(ts(&now))
        .fetch_optional(&self.writer)
        .await
        .map_err(map_err)?;
        row.as_ref().map(pin_session_row).transpose()
    }

    async fn release_pin_session(&self, token_hash: &[u8], used_at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE pin_sessions SET used_at = NULL WHERE token_hash = ? AND used_at = ?")
            .bind(token_hash)
            .bind(ts(&used_at))
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn webhook_endpoints(&self, tenant: TenantId) -> StoreResult<Vec<WebhookEndpointRecord>> {
        self.endpoints_of(tenant).await
    }

    async fn webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpointRecord>> {
        self.endpoint_one(tenant, id).await
    }

    async fn authorization_endpoint(
        &self,
        tenant: TenantId,
    ) -> StoreResult<Option<cardcore_store::AuthorizationEndpointRecord>> {
        self.authorization_endpoint_of(tenant).await
    }

    async fn fan_out_events(&self, limit: u32, now: Timestamp) -> StoreResult<u32> {
        self.fan_out(limit, now).await
    }

    async fn tenant_sms(&self, tenant: TenantId) -> StoreResult<Option<cardcore_store::TenantSmsRecord>> {
        self.sms_settings(tenant).await
    }

    async fn put_tenant_sms(&self, settings: &cardcore_store::TenantSmsRecord) -> StoreResult<()> {
        self.put_sms_settings(settings).await
    }

    async fn redeliver_event(&self, tenant: TenantId, event: EventId, now: Timestamp) -> StoreResult<Option<u32>> {
        self.redeliver(tenant, event, now).await
    }

    async fn claim_deliveries_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        skip: &[TenantId],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.claim(now, lease_until, limit, skip).await
    }

    async fn release_delivery(&self, delivery: uuid::Uuid, lease: uuid::Uuid) -> StoreResult<bool> {
        self.release(delivery, lease).await
    }

    async fn record_delivery_attempt(
        &self,
        delivery: uuid::Uuid,
        lease: uuid::Uuid,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool> {
        self.record_attempt(delivery, lease, attempt, outcome).await
    }

    async fn event_deliveries(&self, tenant: TenantId, event: EventId) -> StoreResult<Vec<WebhookDelivery>> {
        self.deliveries_of(tenant, event).await
    }

    async fn begin_idempotent(&self, start: &IdempotencyStart<'_>) -> StoreResult<IdempotencyBegin> {
        self.begin_idem(start).await
    }

    async fn finish_idempotent(
        &self,
        tenant: TenantId,
        key: &str,
        token: uuid::Uuid,
        response: &IdempotentResponse,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.finish_idem(tenant, key, token, response, now).await
    }

    async fn abandon_idempotent(&self, tenant: TenantId, key: &str, token: uuid::Uuid) -> StoreResult<bool> {
        self.abandon_idem(tenant, key, token).await
    }

    async fn idempotency_record(&self, tenant: TenantId, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        self.idem_record(tenant, key).await
    }

    async fn authorization(&self, tenant: TenantId, id: AuthorizationId) -> StoreResult<Option<AuthorizationRecord>> {
        self.authorization_one(tenant, id).await
    }

    async fn authorization_by_reference(
        &self,
        tenant: TenantId,
        network_reference: &str,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        self.authorization_by_ref(tenant, network_reference).await
    }

    async fn authorizations(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<AuthorizationRecord>> {
        self.authorizations_of(tenant, card, page).await
    }

    async fn transaction_by_reference(
        &self,
        tenant: TenantId,
        network_reference: &str,
    ) -> StoreResult<Option<TransactionRecord>> {
        self.transaction_by_ref(tenant, network_reference).await
    }

    async fn transactions(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<TransactionRecord>> {
        self.transactions_of(tenant, card, page).await
    }

    async fn due_authorizations(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<DueAuthorization>> {
        self.due(now, limit).await
    }

    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64> {
        self.purge_idem(created_before).await
    }

    async fn retention_counts(&self, cut: &RetentionCutoffs) -> StoreResult<RetentionCounts> {
        self.count_retention(cut).await
    }

    async fn purge_events(&self, before: Timestamp, after: EventPosition, limit: u32) -> StoreResult<PurgedEvents> {
        self.purge_old_events(before, after, limit).await
    }

    async fn purge_dead_deliveries(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.purge_dead(before, limit).await
    }

    async fn expired_audit(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAudit>> {
        self.old_audit(before, limit).await
    }

    async fn delete_audit(&self, seqs: &[i64]) -> StoreResult<u64> {
        self.drop_audit(seqs).await
    }

    async fn lease_job(&self, job: &str, holder: uuid::Uuid, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        self.take_lease(job, holder, now, until).await
    }

    async fn release_job(&self, job: &str, holder: uuid::Uuid) -> StoreResult<()> {
        self.give_lease(job, holder).await
    }
}

/// The columns `rows::api_key` reads, from `api_keys k`.
const API_KEY_COLUMNS: &str = "k.id AS key_id, k.tenant_id AS key_tenant_id, k.key_hash, k.prefix, k.can_reveal, \
    k.created_at AS key_created_at, k.name AS key_name, k.last_used_at, k.revoked_at";

async fn insert_api_key(tx: &mut Transaction<'static, Sqlite>, key: &ApiKeyRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, can_reveal, created_at, name, last_used_at, \
         revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_str(&key.id))
    .bind(id_str(&key.tenant_id))
    .bind(&key.key_hash)
    .bind(&key.prefix)
    .bind(key.can_reveal)
    .bind(ts(&key.created_at))
    .bind(&key.name)
    .bind(key.last_used_at.as_ref().map(ts))
    .bind(key.revoked_at.as_ref().map(ts))
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// A write transaction on the single writer connection: a savepoint in the
/// writer's current commit group. Writes are queued and sent with the next
/// read or the commit (see `group.rs`): one round trip each instead of one
/// per statement, while the writer is held.
struct SqliteTx {
    member: group::Member,
}

impl SqliteTx {
    /// Sends the queued statements; the rows of the last one.
    async fn fetch(&mut self) -> StoreResult<Vec<SqliteRow>> {
        self.member.fetch().await
    }
}

#[async_trait]
impl Tx for SqliteTx {
    async fn lock_card(&mut self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardRecord>> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        self.member
            .batch()
            .push(&format!(
                "SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = ? AND id = ?"
            ))
            .bind(id_str(&tenant))
            .bind(id_str(&id));
        self.fetch().await?.first().map(rows::card).transpose()
    }

    async fn insert_card(&mut self, rec: &CardRecord) -> StoreResult<bool> {
        let c = &rec.card;
        let s = &rec.secrets;
        self.member
            .batch()
            .push(&format!(
                "INSERT INTO cards ({CARD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING RETURNING id"
            ))
            .bind(id_str(&c.id))
            .bind(id_str(&c.tenant_id))
            .bind(id_str(&c.cardholder_id))
            .bind(id_str(&c.account_id))
            .bind(id_str(&c.program_id))
            .bind(c.card_type.as_str())
            .bind(c.status.as_str())
            .bind(c.status_reason.as_ref().map(|r| r.code.as_str().to_owned()))
            .bind(c.status_reason.as_ref().and_then(|r| r.message.clone()))
            .bind(c.pin_status.as_str())
            .bind(c.brand.as_str())
            .bind(c.last_four.clone())
            .bind(i64::from(c.expiry.month()))
            .bind(i64::from(c.expiry.year()))
            .bind(c.card_name.clone())
            .bind(c.printed_name.clone())
            .bind(c.kit_number.as_str().to_owned())
            .bind(c.replacement_for.map(|r| id_str(&r)))
            .bind(to_json(&c.limits)?)
            .bind(s.pan_hash.clone())
            .bind(s.pan_sealed.clone())
            // The CVV2 is not stored (computed from the CVK); the column stays, empty.
            .bind(Vec::<u8>::new())
            .bind(s.data_key_version)
            .bind(s.activation_code.as_ref().map(|v| v.value.clone()))
            .bind(s.activation_code.as_ref().map(|v| v.key_version))
            .bind(s.pin.as_ref().map(|v| v.value.clone()))
            .bind(s.pin.as_ref().map(|v| v.key_version))
            .bind(i64::from(s.pin_failures))
            .bind(ts(&c.created_at))
            .bind(ts(&c.updated_at))
            .bind(rec.usage.controls.as_ref().map(to_json).transpose()?)
            .bind(to_json(&rec.usage.totals)?);
        Ok(!self.fetch().await?.is_empty())
    }

    async fn update_card(&mut self, rec: &CardRecord) -> StoreResult<()> {
        let c = &rec.card;
        let s = &rec.secrets;
        self.member
            .batch()
            .push(
                "UPDATE cards SET status = ?, reason_code = ?, reason_message = ?, pin_status = ?, card_name = ?, \
                 printed_name = ?, limits = ?, pan_sealed = ?, cvv_sealed = ?, data_key_version = ?, \
                 activation_verifier = ?, activation_key_version = ?, pin_verifier = ?, pin_key_version = ?, \
                 pin_failures = ?, updated_at = ?, controls = ?, spend = ? WHERE tenant_id = ? AND id = ?",
            )
            .bind(c.status.as_str())
            .bind(c.status_reason.as_ref().map(|r| r.code.as_str().to_owned()))
            .bind(c.status_reason.as_ref().and_then(|r| r.message.clone()))
            .bind(c.pin_status.as_str())
            .bind(c.card_name.clone())
            .bind(c.printed_name.clone())
            .bind(to_json(&c.limits)?)
            .bind(s.pan_sealed.clone())
            .bind(Vec::<u8>::new())
            .bind(s.data_key_version)
            .bind(s.activation_code.as_ref().map(|v| v.value.clone()))
            .bind(s.activation_code.as_ref().map(|v| v.key_version))
            .bind(s.pin.as_ref().map(|v| v.value.clone()))
            .bind(s.pin.as_ref().map(|v| v.key_version))
            .bind(i64::from(s.pin_failures))
            .bind(ts(&c.updated_at))
            .bind(rec.usage.controls.as_ref().map(to_json).transpose()?)
            .bind(to_json(&rec.usage.totals)?)
            .bind(id_str(&c.tenant_id))
            .bind(id_str(&c.id));
        Ok(())
    }

    async fn replacement_of(&mut self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardId>> {
        self.member
            .batch()
            .push("SELECT id FROM cards WHERE tenant_id = ? AND replacement_for = ? LIMIT 1")
            .bind(id_str(&tenant))
            .bind(id_str(&id));
        self.fetch().await?.first().map(|row| rows::id(row, "id")).transpose()
    }

    async fn insert_cardholder(&mut self, c: &Cardholder) -> StoreResult<bool> {
        self.member
            .batch()
            .push(
                "INSERT INTO cardholders (id, tenant_id, external_id, name, phone_country_code, phone_number, email, \
                 date_of_birth, default_account_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(id_str(&c.id))
            .bind(id_str(&c.tenant_id))
            .bind(c.external_id.as_str().to_owned())
            .bind(c.name.clone())
            .bind(c.phone.country_code.clone())
            .bind(c.phone.number.clone())
            .bind(c.email.clone())
            .bind(c.date_of_birth.map(|d| d.format("%Y-%m-%d").to_string()))
            .bind(id_str(&c.default_account_id))
            .bind(ts(&c.created_at));
        Ok(!self.fetch().await?.is_empty())
    }

    async fn update_cardholder(&mut self, c: &Cardholder) -> StoreResult<bool> {
        self.member
            .batch()
            .push(
                "UPDATE cardholders SET name = ?, phone_country_code = ?, phone_number = ?, email = ?, \
                 date_of_birth = ? WHERE tenant_id = ? AND id = ? RETURNING id",
            )
            .bind(c.name.clone())
            .bind(c.phone.country_code.clone())
            .bind(c.phone.number.clone())
            .bind(c.email.clone())
            .bind(c.date_of_birth.map(|d| d.format("%Y-%m-%d").to_string()))
            .bind(id_str(&c.tenant_id))
            .bind(id_str(&c.id));
        Ok(!self.fetch().await?.is_empty())
    }

    async fn otp_state(&mut self, card: CardId, purpose: OtpPurpose) -> StoreResult<OtpState> {
        self.member
            .batch()
            .push("SELECT failures, locked_until, codes FROM otp_states WHERE card_id = ? AND purpose = ?")
            .bind(id_str(&card))
            .bind(purpose.as_str());
        let rows = self.fetch().await?;
        let Some(row) = rows.first() else {
            return Ok(OtpState::default());
        };
        let locked: Option<String> = row.try_get("locked_until").map_err(map_err)?;
        let codes: String = row.try_get("codes").map_err(map_err)?;
        Ok(OtpState {
            failures: row.try_get::<i64, _>("failures").map_err(map_err)? as u32,
            locked_until: locked.map(|l| rows::parse_ts(&l)).transpose()?,
            codes: serde_json::from_str(&codes).map_err(|e| StoreError::caused("otp codes", e))?,
        })
    }

    async fn save_otp_state(&mut self, card: CardId, purpose: OtpPurpose, state: &OtpState) -> StoreResult<()> {
        self.member
            .batch()
            .push(
                "INSERT INTO otp_states (card_id, purpose, failures, locked_until, codes) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (card_id, purpose) DO UPDATE SET failures = excluded.failures, \
                 locked_until = excluded.locked_until, codes = excluded.codes",
            )
            .bind(id_str(&card))
            .bind(purpose.as_str())
            .bind(i64::from(state.failures))
            .bind(state.locked_until.as_ref().map(ts))
            .bind(to_json(&state.codes)?);
        Ok(())
    }

    async fn activation_state(&mut self, card: CardId) -> StoreResult<ActivationState> {
        self.member
            .batch()
            .push("SELECT failures, locked_until FROM activation_states WHERE card_id = ?")
            .bind(id_str(&card));
        let rows = self.fetch().await?;
        let Some(row) = rows.first() else {
            return Ok(ActivationState::default());
        };
        let locked: Option<String> = row.try_get("locked_until").map_err(map_err)?;
        Ok(ActivationState {
            failures: row.try_get::<i64, _>("failures").map_err(map_err)? as u32,
            locked_until: locked.map(|l| rows::parse_ts(&l)).transpose()?,
        })
    }

    async fn save_activation_state(&mut self, card: CardId, state: &ActivationState) -> StoreResult<()> {
        self.member
            .batch()
            .push(
                "INSERT INTO activation_states (card_id, failures, locked_until) VALUES (?, ?, ?) \
                 ON CONFLICT (card_id) DO UPDATE SET failures = excluded.failures, \
                 locked_until = excluded.locked_until",
            )
            .bind(id_str(&card))
            .bind(i64::from(state.failures))
            .bind(state.locked_until.as_ref().map(ts));
        Ok(())
    }

    async fn insert_audit(&mut self, e: &AuditEntry) -> StoreResult<()> {
        self.member
            .batch()
            .push(
                "INSERT INTO audit_log (id, tenant_id, card_id, type, actor, request_id, reason, before, after, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id_str(&e.id))
            .bind(id_str(&e.tenant_id))
            .bind(e.card_id.map(|c| id_str(&c)))
            .bind(e.entry_type.clone())
            .bind(to_json(&e.actor)?)
            .bind(e.request_id.clone())
            .bind(e.reason.as_ref().map(to_json).transpose()?)
            .bind(e.before.as_ref().map(to_json).transpose()?)
            .bind(e.after.as_ref().map(to_json).transpose()?)
            .bind(ts(&e.created_at));
        Ok(())
    }

    async fn insert_event(&mut self, e: &StoredEvent) -> StoreResult<()> {
        let ev = &e.event;
        let data = if e.sealed_data.is_some() {
            None
        } else {
            Some(to_json(&ev.data)?)
        };
        self.member
            .batch()
            .push(
                "INSERT INTO events (id, tenant_id, card_id, type, data, sealed_data, sealed_key_version, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id_str(&ev.id))
            .bind(id_str(&ev.tenant_id))
            .bind(ev.card_id.map(|c| id_str(&c)))
            .bind(ev.event_type.as_str())
            .bind(data)
            .bind(e.sealed_data.as_ref().map(|s| s.ciphertext.clone()))
            .bind(e.sealed_data.as_ref().map(|s| s.key_version))
            .bind(ts(&ev.created_at));
        Ok(())
    }

    async fn insert_authorization(&mut self, rec: &AuthorizationRecord) -> StoreResult<bool> {
        let b = self.member.batch();
        b.push(&format!(
            "INSERT INTO authorizations ({}) VALUES ({}) ON CONFLICT (tenant_id, network_reference) DO NOTHING \
             RETURNING id",
            money::AUTH_COLUMNS,
            ["?"; 23].join(", ")
        ));
        money::bind_authorization(b, rec)?;
        Ok(!self.fetch().await?.is_empty())
    }

    async fn authorization_in_tx(
        &mut self,
        tenant: TenantId,
        id: AuthorizationId,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        self.member
            .batch()
            .push(&format!(
                "SELECT {} FROM authorizations WHERE tenant_id = ? AND id = ?",
                money::AUTH_COLUMNS
            ))
            .bind(id_str(&tenant))
            .bind(id_str(&id));
        self.fetch().await?.first().map(money::authorization).transpose()
    }

    async fn update_authorization(&mut self, rec: &AuthorizationRecord) -> StoreResult<()> {
        self.member
            .batch()
            .push(
                "UPDATE authorizations SET status = ?, approved_amount = ?, pending_amount = ?, captured_amount = ?, \
                 reversed_amount = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
            )
            .bind(rec.status.as_str().to_owned())
            .bind(i64::try_from(rec.amounts.approved).unwrap_or(i64::MAX))
            .bind(i64::try_from(rec.amounts.pending).unwrap_or(i64::MAX))
            .bind(i64::try_from(rec.amounts.captured).unwrap_or(i64::MAX))
            .bind(i64::try_from(rec.amounts.reversed).unwrap_or(i64::MAX))
            .bind(ts(&rec.updated_at))
            .bind(id_str(&rec.tenant_id))
            .bind(id_str(&rec.id));
        Ok(())
    }

    async fn insert_transaction(&mut self, rec: &TransactionRecord) -> StoreResult<bool> {
        let b = self.member.batch();
        b.push(&format!(
            "INSERT INTO card_transactions ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, network_reference) DO NOTHING RETURNING id",
            money::TXN_COLUMNS
        ));
        money::bind_transaction(b, rec)?;
        Ok(!self.fetch().await?.is_empty())
    }

    async fn insert_webhook_endpoint(&mut self, endpoint: &WebhookEndpointRecord) -> StoreResult<()> {
        webhooks::insert_endpoint(self.member.conn().await?, endpoint).await
    }

    async fn delete_webhook_endpoint(
        &mut self,
        tenant: TenantId,
        id: WebhookEndpointId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        webhooks::delete_endpoint(self.member.conn().await?, tenant, id, now).await
    }

    async fn put_authorization_endpoint(
        &mut self,
        endpoint: &cardcore_store::AuthorizationEndpointRecord,
        replacing: Option<Timestamp>,
    ) -> StoreResult<bool> {
        authorization_endpoint::put(self.member.conn().await?, endpoint, replacing).await
    }

    async fn delete_authorization_endpoint(&mut self, tenant: TenantId) -> StoreResult<bool> {
        authorization_endpoint::delete(self.member.conn().await?, tenant).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.member.commit().await
    }
}
