//! PostgreSQL backend, for several stateless cardcore nodes sharing one
//! database.
//!
//! Concurrency: transactions run at READ COMMITTED and [`Tx::lock_card`] is
//! the card's advisory lock then `SELECT ... FOR UPDATE`, so two nodes
//! changing one card queue on the card and the second reads what the first
//! committed. [`Store::hold_card`] queues on the same advisory lock without
//! locking the row, for decisions that usually write nothing (a right PIN). Inserts whose
//! duplicate is an expected answer use `ON CONFLICT DO NOTHING`: in
//! PostgreSQL any error aborts the whole transaction, so a unique violation
//! must never be raised inside one.
//!
//! Round trips: a transaction's writes that return nothing are queued and
//! sent together, as one statement, with its next read or its COMMIT (see
//! `queue.rs`); a PIN write is BEGIN, lock, writes, COMMIT.
//!
//! Availability: the pool tests each connection before handing it out and
//! replaces dead ones, so it recovers by itself when PostgreSQL restarts.
//! While the server is down or unreachable every call fails with
//! [`StoreError::Unavailable`] after the acquire timeout; a statement that
//! runs too long is cancelled by the server (`statement_timeout`), and a
//! client-side deadline covers a server that stopped answering altogether.
//!
//! Durability: every session runs with `synchronous_commit = on`, whatever
//! the server's default, so a commit returns only once its WAL is flushed
//! (and, with synchronous standbys configured, flushed on them too): an
//! acknowledged write survives a crash or a failover. A server running with
//! `fsync` or `full_page_writes` off cannot promise that; `connect` logs a
//! warning.
//!
//! Needs PostgreSQL 13 or later (`xid8`, `pg_current_xact_id`).

mod authorization_endpoint;
mod money;
mod queue;
mod retention;
mod rows;
mod webhooks;

use std::future::Future;
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
use queue::{Binder, Kind, Queue};
use rows::CARD_COLUMNS;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pool and session settings.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections this node opens.
    pub max_connections: u32,
    /// How long a call waits for a connection before the database counts as
    /// unavailable; also bounds connecting while the server is down.
    pub acquire_timeout: Duration,
    /// Server-side limit on one statement, waiting for a row lock included
    /// (zero: none). A statement cancelled by it fails as unavailable.
    pub statement_timeout: Duration,
    /// Schema to create if missing and use for everything (tests isolate
    /// themselves this way); `None` keeps the server's `search_path`.
    pub schema: Option<String>,
    /// Shown in `pg_stat_activity`, to tell nodes apart.
    pub application_name: String,
    /// The isolation level of every transaction (`default_transaction_isolation`).
    pub isolation: Isolation,
    /// How often a call the database aborted (40001, 40P01) runs again.
    pub retry: cardcore_store::retry::RetryPolicy,
}

/// Transaction isolation. cardcore's card lock makes READ COMMITTED correct;
/// SERIALIZABLE is what CockroachDB runs by default, and running PostgreSQL
/// with it exercises the retry path (contended transactions fail with 40001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    #[default]
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    /// The PostgreSQL setting's value, as a startup option (the space escaped).
    pub fn as_setting(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read\\ committed",
            Self::RepeatableRead => "repeatable\\ read",
            Self::Serializable => "serializable",
        }
    }
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            schema: None,
            application_name: "cardcore".into(),
            isolation: Isolation::ReadCommitted,
            retry: cardcore_store::retry::RetryPolicy::default(),
        }
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Client-side bound on one call (see [`PostgresStore::connect`]).
    deadline: Option<Duration>,
    /// Bounds on running an aborted call again.
    retry: cardcore_store::retry::RetryPolicy,
}

/// SQLSTATEs that mean "the database is not there right now" rather than
/// "this request is wrong".
fn unavailable_sqlstate(code: &str) -> bool {
    // Class 08: connection exception. Class 53: insufficient resources (disk
    // full, out of memory, too many connections), as SQLite's FULL is.
    // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
    // 57014: query cancelled, which is what statement_timeout raises.
    // 25006: read-only transaction, i.e. we reached a standby mid-failover.
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "25006")
}

/// SQLSTATEs after which the transaction was rolled back whole and may run
/// again: 40001 serialization failure (SERIALIZABLE or REPEATABLE READ here;
/// any contention on CockroachDB and YugabyteDB), 40P01 deadlock detected.
fn retryable_sqlstate(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// Maps a driver error. sqlx never prints bound values and PostgreSQL's
/// `detail` (which can echo a key's value) is not part of its message, so
/// the text is safe for logs.
fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_sqlstate(&c)) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| retryable_sqlstate(&c)) => {
            StoreError::Retryable(e.to_string())
        }
        _ => StoreError::caused("PostgreSQL statement", e),
    }
}

/// Runs one call under the client-side deadline.
async fn bounded<T>(deadline: Option<Duration>, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match deadline {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {limit:?}")))),
        None => call.await,
    }
}

/// Schema names are interpolated into SQL, so only plain lower-case
/// identifiers are accepted.
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PostgresStore {
    /// Opens a pool to the database at `url` (`postgres://...`); fails as
    /// unavailable when the server does not answer within the acquire timeout.
    pub async fn connect(url: &str, options: &PostgresOptions) -> StoreResult<Self> {
        if let Some(schema) = &options.schema {
            if !valid_schema(schema) {
                return Err(StoreError::internal(
                    "schema must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 characters)",
                ));
            }
        }
        // The URL may carry a password: never echo it.
        let mut connect: PgConnectOptions = url
            .parse()
            .map_err(|_| StoreError::internal("invalid PostgreSQL URL"))?;
        connect = connect.application_name(&options.application_name);
        // Startup parameters rather than SET after connecting: every
        // connection the pool ever opens, including after a server restart,
        // has them from its first statement, at no extra round trip.
        let statement_ms = options.statement_timeout.as_millis();
        connect = connect.options([
            ("statement_timeout", statement_ms.to_string()),
            // `off` or `local` (per server, role or database) would let a
            // commit return before its WAL is safe.
            ("synchronous_commit", "on".to_owned()),
            // A transaction left open (a stuck client task) would hold its
            // card's row lock and hold back outbox readers; end it.
            ("idle_in_transaction_session_timeout", "60000".to_owned()),
            (
                "default_transaction_isolation",
                options.isolation.as_setting().to_owned(),
            ),
        ]);
        if let Some(schema) = &options.schema {
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // A connection that died with a server restart is found and
            // replaced here instead of failing the caller's request.
            .test_before_acquire(true)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        // A server that stops answering (a partition, not a refusal) leaves a
        // query waiting for TCP to give up, which takes minutes. The longest
        // legitimate call waits for a connection and runs a few statements,
        // each cut by statement_timeout; past that the outcome is unknown
        // and the call fails as unavailable, as the trait promises.
        let deadline = (!options.statement_timeout.is_zero())
            .then(|| options.acquire_timeout + options.statement_timeout * 2 + Duration::from_secs(1));
        let store = Self {
            pool,
            deadline,
            retry: options.retry,
        };
        store
            .run(|| async {
                if let Some(schema) = &options.schema {
                    store.create_schema(schema).await?;
                }
                store.warn_if_not_crash_safe().await;
                Ok(())
            })
            .await?;
        Ok(store)
    }

    async fn create_schema(&self, schema: &str) -> StoreResult<()> {
        let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&self.pool)
            .await;
        match created {
            // Two nodes creating it at once: the loser sees a unique
            // violation on the catalogue even with IF NOT EXISTS.
            Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("23505" | "42P06")) => Ok(()),
            other => other.map(drop).map_err(map_err),
        }
    }

    /// Logs a warning when the server is configured to lose commits on a
    /// crash; cardcore cannot change that, the operator can.
    async fn warn_if_not_crash_safe(&self) {
        for setting in ["fsync", "full_page_writes"] {
            let value: Result<String, _> = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(setting)
                .fetch_one(&self.pool)
                .await;
            if let Ok(value) = value {
                if value != "on" {
                    tracing::warn!(
                        setting,
                        value,
                        "PostgreSQL is not crash-safe: acknowledged writes can be lost"
                    );
                }
            }
        }
    }

    /// Closes every connection, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs one self-contained call (its statements are one transaction or
    /// one statement) under the client-side deadline; when the database
    /// aborts it as [`StoreError::Retryable`] (only under SERIALIZABLE or
    /// REPEATABLE READ, or on a deadlock) the whole call runs again, within
    /// the retry policy's bounds. Calls that hand back an open transaction
    /// (`begin`, `hold_card`) are not the unit of work: the service retries
    /// those.
    async fn run<T, F, Fut>(&self, mut call: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match bounded(self.deadline, call()).await {
                Err(StoreError::Retryable(cause)) => {
                    match self
                        .retry
                        .next_wait(attempt, started.elapsed(), cardcore_store::retry::jitter())
                    {
                        Some(wait) => {
                            tracing::debug!(%cause, attempt, "retrying a call the database aborted");
                            tokio::time::sleep(wait).await;
                        }
                        None => return Err(StoreError::Retryable(cause)),
                    }
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        // Not under the call deadline nor the statement timeout: a migration
        // may legitimately rewrite a large table. The connection is closed
        // afterwards rather than returned with the timeout lifted.
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        conn.close_on_drop();
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        MIGRATOR.run_direct(&mut *conn).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                match map_err(e) {
                    StoreError::Internal(f) => StoreError::caused("migration failed", f),
                    other => other,
                }
            }
            e => StoreError::caused("migration failed", e),
        })
    }

    async fn migration_status(&self) -> StoreResult<cardcore_store::MigrationStatus> {
        self.run(|| async {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
            let rows: Vec<(i64, bool, Vec<u8>)> = if exists {
                sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?
            } else {
                Vec::new()
            };
            Ok(cardcore_store::MigrationStatus::compare(
                &MIGRATOR
                    .iter()
                    .map(|m| (m.version, m.checksum.as_ref()))
                    .collect::<Vec<_>>(),
                &rows,
            ))
        })
        .await
    }

    async fn row_counts(&self) -> StoreResult<cardcore_store::RowCounts> {
        self.run(|| async {
            let (tenants, cards, events): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM cards), (SELECT count(*) FROM events)",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(cardcore_store::RowCounts {
                tenants: tenants.max(0) as u64,
                cards: cards.max(0) as u64,
                events: events.max(0) as u64,
            })
        })
        .await
    }

    async fn wrapped_keys(&self) -> StoreResult<Vec<cardcore_store::WrappedKey>> {
        use cardcore_store::{WrappedKey, WrappedKeyId};
        self.run(|| async {
            let mut out = Vec::new();
            let rows: Vec<(String, i32, Vec<u8>)> =
                sqlx::query_as("SELECT purpose, version, wrapped FROM service_keys")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
            for (purpose, version, wrapped) in rows {
                out.push(WrappedKey {
                    id: WrappedKeyId::Service { purpose, version },
                    wrapped,
                });
            }
            let rows: Vec<(uuid::Uuid, i32, Vec<u8>)> =
                sqlx::query_as("SELECT tenant_id, version, wrapped FROM tenant_transport_keys")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
            for (tenant, version, wrapped) in rows {
                out.push(WrappedKey {
                    id: WrappedKeyId::Transport {
                        tenant: TenantId(tenant),
                        version,
                    },
                    wrapped,
                });
            }
            let rows: Vec<(uuid::Uuid, uuid::Uuid, String, Vec<u8>)> =
                sqlx::query_as("SELECT id, tenant_id, algorithm, wrapped FROM zone_keys")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
            for (id, tenant, algorithm, wrapped) in rows {
                out.push(WrappedKey {
                    id: WrappedKeyId::Zone {
                        tenant: TenantId(tenant),
                        id: id.into(),
                        algorithm,
                    },
                    wrapped,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn rewrap_keys(
        &self,
        old_check: &str,
        new_check: &str,
        keys: &[cardcore_store::WrappedKey],
    ) -> StoreResult<bool> {
        use cardcore_store::WrappedKeyId;
        self.run(|| async {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            let swapped = sqlx::query("UPDATE meta SET value = $1 WHERE key = 'master_key_check' AND value = $2")
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
                        sqlx::query("UPDATE service_keys SET wrapped = $1 WHERE purpose = $2 AND version = $3")
                            .bind(&k.wrapped)
                            .bind(purpose.clone())
                            .bind(*version)
                    }
                    WrappedKeyId::Transport { tenant, version } => sqlx::query(
                        "UPDATE tenant_transport_keys SET wrapped = $1 WHERE tenant_id = $2 AND version = $3",
                    )
                    .bind(&k.wrapped)
                    .bind(tenant.0)
                    .bind(*version),
                    WrappedKeyId::Zone { id, .. } => sqlx::query("UPDATE zone_keys SET wrapped = $1 WHERE id = $2")
                        .bind(&k.wrapped)
                        .bind(id.0),
                };
                q.execute(&mut *tx).await.map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
            Ok(())
        })
        .await
    }

    fn pool_status(&self) -> Option<cardcore_store::PoolStatus> {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(cardcore_store::PoolStatus {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        })
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        self.run(|| async {
            let tx = self.pool.begin().await.map_err(map_err)?;
            Ok(Box::new(PostgresTx {
                tx,
                deadline: self.deadline,
                queue: Queue::default(),
            }) as Box<dyn Tx>)
        })
        .await
    }

    async fn hold_card(&self, tenant: TenantId, id: CardId) -> StoreResult<CardHold> {
        self.run(|| async {
            // The advisory lock is the card's order (see `lock_card`): taken
            // with BEGIN in one round trip (the key is an integer we made, so
            // it is safe to write into the statement). Waiting on it and
            // holding it draw no transaction id, and the read below takes no
            // row lock, so a hold released unwritten writes nothing: no WAL,
            // no commit to flush. The read is a statement of its own: under
            // READ COMMITTED it takes its snapshot once the lock is held, so
            // it sees what the previous holder committed.
            let mut tx = self
                .pool
                .begin_with(format!("BEGIN; SELECT pg_advisory_xact_lock({})", card_lock_key(id)))
                .await
                .map_err(map_err)?;
            let row = sqlx::query(&format!(
                "SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
            let record = row.as_ref().map(rows::card).transpose()?;
            let held = PostgresTx {
                tx,
                deadline: self.deadline,
                queue: Queue::default(),
            };
            Ok(CardHold::new(record, Some(Box::new(held))))
        })
        .await
    }

    async fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.run(|| async {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)
        })
        .await
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn service_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.run(|| async {
            let rows =
                sqlx::query("SELECT purpose, version, wrapped, created_at FROM service_keys ORDER BY purpose, version")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredKey {
                        purpose: rows::get(r, "purpose")?,
                        version: rows::get(r, "version")?,
                        wrapped: rows::get(r, "wrapped")?,
                        created_at: rows::get(r, "created_at")?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn insert_service_key(&self, key: &StoredKey) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query(
                "INSERT INTO service_keys (purpose, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&key.purpose)
            .bind(key.version)
            .bind(&key.wrapped)
            .bind(key.created_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn zone_keys(&self, tenant: TenantId) -> StoreResult<Vec<ZoneKeyRecord>> {
        self.run(|| async {
            let rows = sqlx::query(
                "SELECT id, algorithm, wrapped, kcv, created_at FROM zone_keys WHERE tenant_id = $1 \
                 ORDER BY created_at, id",
            )
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(|r| {
                    Ok(ZoneKeyRecord {
                        id: rows::get::<uuid::Uuid>(r, "id")?.into(),
                        tenant_id: tenant,
                        algorithm: rows::get(r, "algorithm")?,
                        wrapped: rows::get(r, "wrapped")?,
                        kcv: rows::get(r, "kcv")?,
                        created_at: rows::get(r, "created_at")?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn insert_zone_key(&self, key: &ZoneKeyRecord) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query(
                "INSERT INTO zone_keys (id, tenant_id, algorithm, wrapped, kcv, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(key.id.0)
            .bind(key.tenant_id.0)
            .bind(&key.algorithm)
            .bind(&key.wrapped)
            .bind(&key.kcv)
            .bind(key.created_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn transport_keys(&self, tenant: TenantId) -> StoreResult<Vec<TransportKeyRecord>> {
        self.run(|| async {
            let rows = sqlx::query(
                "SELECT version, wrapped, created_at, retires_at FROM tenant_transport_keys WHERE tenant_id = $1 \
                 ORDER BY version",
            )
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(|r| {
                    Ok(TransportKeyRecord {
                        tenant_id: tenant,
                        version: rows::get(r, "version")?,
                        wrapped: rows::get(r, "wrapped")?,
                        created_at: rows::get(r, "created_at")?,
                        retires_at: rows::get(r, "retires_at")?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn insert_transport_key(&self, key: &TransportKeyRecord) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query(
                "INSERT INTO tenant_transport_keys (tenant_id, version, wrapped, created_at, retires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(key.tenant_id.0)
            .bind(key.version)
            .bind(&key.wrapped)
            .bind(key.created_at)
            .bind(key.retires_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn retire_transport_keys(&self, tenant: TenantId, below_version: i32, at: Timestamp) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query(
                "UPDATE tenant_transport_keys SET retires_at = $3 \
                 WHERE tenant_id = $1 AND version < $2 AND (retires_at IS NULL OR retires_at > $3)",
            )
            .bind(tenant.0)
            .bind(below_version)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn transport_key_tenants(&self) -> StoreResult<Vec<TenantId>> {
        self.run(|| async {
            let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM tenant_transport_keys")
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(ids.into_iter().map(TenantId::from).collect())
        })
        .await
    }

    async fn create_tenant(&self, tenant: &Tenant, key: &ApiKeyRecord) -> StoreResult<bool> {
        self.run(|| async {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            // A concurrent creator of the same name makes this wait for its
            // commit, then do nothing: no error, so nothing to retry.
            let r = sqlx::query(
                "INSERT INTO tenants (id, name, default_program_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.id.0)
            .bind(&tenant.name)
            .bind(tenant.default_program_id.0)
            .bind(tenant.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            if r.rows_affected() == 0 {
                return Ok(false);
            }
            insert_api_key(&mut tx, key).await?;
            tx.commit().await.map_err(map_err)?;
            Ok(true)
        })
        .await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        self.run(|| async {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            insert_api_key(&mut tx, key).await?;
            tx.commit().await.map_err(map_err)
        })
        .await
    }

    async fn tenant_count(&self) -> StoreResult<u64> {
        self.run(|| async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
            u64::try_from(n).map_err(|_| StoreError::internal("negative count"))
        })
        .await
    }

    async fn tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>> {
        self.run(|| async {
            let row = sqlx::query("SELECT id, name, default_program_id, created_at FROM tenants WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            row.as_ref().map(rows::tenant).transpose()
        })
        .await
    }

    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        self.run(|| async {
            let row = sqlx::query("SELECT id, name, default_program_id, created_at FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            row.as_ref().map(rows::tenant).transpose()
        })
        .await
    }

    async fn tenant_settings(&self, id: TenantId) -> StoreResult<Option<String>> {
        self.run(|| async {
            sqlx::query_scalar("SELECT settings FROM tenants WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)
        })
        .await
    }

    async fn set_tenant_settings(&self, id: TenantId, settings: &str) -> StoreResult<bool> {
        self.run(|| async {
            let r = sqlx::query("UPDATE tenants SET settings = $1 WHERE id = $2")
                .bind(settings)
                .bind(id.0)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<(ApiKeyRecord, Tenant)>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS}, t.id, t.name, t.default_program_id, t.created_at \
                 FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                 WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
            ))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            match row {
                Some(r) => Ok(Some((rows::api_key(&r)?, rows::tenant(&r)?))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<(ApiKeyRecord, Tenant)>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS}, t.id, t.name, t.default_program_id, t.created_at \
                 FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                 WHERE k.id = $1 AND k.revoked_at IS NULL"
            ))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            match row {
                Some(r) => Ok(Some((rows::api_key(&r)?, rows::tenant(&r)?))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn api_keys(&self, tenant: TenantId) -> StoreResult<Vec<ApiKeyRecord>> {
        self.run(|| async {
            let rows = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = $1 ORDER BY k.created_at, k.id"
            ))
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter().map(rows::api_key).collect()
        })
        .await
    }

    async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId, at: Timestamp) -> StoreResult<Option<ApiKeyRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "UPDATE api_keys k SET revoked_at = COALESCE(k.revoked_at, $3) WHERE k.tenant_id = $1 AND k.id = $2 \
                 RETURNING {API_KEY_COLUMNS}"
            ))
            .bind(tenant.0)
            .bind(id.0)
            .bind(at)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::api_key).transpose()
        })
        .await
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id.0)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn cardholder(&self, tenant: TenantId, id: CardholderId) -> StoreResult<Option<Cardholder>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {CARDHOLDER_COLUMNS} FROM cardholders WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::cardholder).transpose()
        })
        .await
    }

    async fn cardholder_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &ExternalId,
    ) -> StoreResult<Option<Cardholder>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {CARDHOLDER_COLUMNS} FROM cardholders WHERE tenant_id = $1 AND external_id = $2"
            ))
            .bind(tenant.0)
            .bind(external_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::cardholder).transpose()
        })
        .await
    }

    async fn card(&self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::card).transpose()
        })
        .await
    }

    async fn card_by_pan_hash(&self, tenant: TenantId, pan_hash: &[u8]) -> StoreResult<Option<CardRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND pan_hash = $2"
            ))
            .bind(tenant.0)
            .bind(pan_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::card).transpose()
        })
        .await
    }

    async fn card_by_kit(&self, tenant: TenantId, kit: &KitNumber) -> StoreResult<Option<CardRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = $1 AND kit_number = $2"
            ))
            .bind(tenant.0)
            .bind(kit.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::card).transpose()
        })
        .await
    }

    async fn pan_rows(&self, after: Option<CardId>, limit: u32) -> StoreResult<Vec<PanRow>> {
        use sqlx::Row as _;
        self.run(|| async {
            let rows = sqlx::query(
                "SELECT id, tenant_id, pan_sealed, data_key_version FROM cards \
                 WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
            )
            .bind(after.map(|a| *a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter()
                .map(|r| {
                    Ok(PanRow {
                        id: CardId(r.try_get::<uuid::Uuid, _>("id").map_err(map_err)?),
                        tenant_id: TenantId(r.try_get::<uuid::Uuid, _>("tenant_id").map_err(map_err)?),
                        pan_sealed: r.try_get("pan_sealed").map_err(map_err)?,
                        data_key_version: r.try_get("data_key_version").map_err(map_err)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn set_pan_hashes(&self, hashes: &[(CardId, Vec<u8>)]) -> StoreResult<Option<(CardId, CardId)>> {
        self.run(|| async {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            for (id, hash) in hashes {
                let other: Option<uuid::Uuid> =
                    sqlx::query_scalar("SELECT id FROM cards WHERE pan_hash = $1 AND id <> $2")
                        .bind(hash)
                        .bind(id.as_uuid())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map_err)?;
                if let Some(other) = other {
                    return Ok(Some((*id, CardId(other))));
                }
                sqlx::query("UPDATE cards SET pan_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            Ok(None)
        })
        .await
    }

    async fn cards(&self, tenant: TenantId, filter: &CardFilter) -> StoreResult<Vec<Card>> {
        self.run(|| async {
            // Conditions are added only when filtered on, rather than
            // `$n IS NULL OR ...`, so that PostgreSQL's cached generic plan
            // can still use the index for each shape.
            let mut sql = format!("SELECT {CARD_COLUMNS} FROM cards WHERE tenant_id = $1");
            let mut n = 1;
            if filter.cardholder_id.is_some() {
                n += 1;
                sql.push_str(&format!(" AND cardholder_id = ${n}"));
            }
            if filter.status.is_some() {
                n += 1;
                sql.push_str(&format!(" AND status = ${n}"));
            }
            if filter.after.is_some() {
                n += 1;
                sql.push_str(&format!(" AND id > ${n}"));
            }
            if filter.last_four.is_some() {
                n += 1;
                sql.push_str(&format!(" AND last_four = ${n}"));
            }
            if filter.expiry.is_some() {
                sql.push_str(&format!(" AND expiry_month = ${} AND expiry_year = ${}", n + 1, n + 2));
                n += 2;
            }
            sql.push_str(&format!(" ORDER BY id LIMIT ${}", n + 1));
            let mut q = sqlx::query(&sql).bind(tenant.0);
            if let Some(c) = filter.cardholder_id {
                q = q.bind(c.0);
            }
            if let Some(st) = filter.status {
                q = q.bind(st.as_str());
            }
            if let Some(a) = filter.after {
                q = q.bind(a.0);
            }
            if let Some(l) = &filter.last_four {
                q = q.bind(l.clone());
            }
            if let Some(e) = filter.expiry {
                q = q.bind(i32::from(e.month())).bind(i32::from(e.year()));
            }
            let rows = q
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
            rows.iter().map(|r| rows::card(r).map(|c| c.card)).collect()
        })
        .await
    }

    async fn audit_entries(&self, tenant: TenantId, card: CardId, page: &AuditPage) -> StoreResult<Vec<AuditEntry>> {
        self.run(|| async {
            let before_seq: i64 = match page.before {
                Some(id) => {
                    sqlx::query_scalar("SELECT seq FROM audit_log WHERE tenant_id = $1 AND card_id = $2 AND id = $3")
                        .bind(tenant.0)
                        .bind(card.0)
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_err)?
                        .ok_or(StoreError::NotFound("cursor"))?
                }
                None => i64::MAX,
            };
            let rows = sqlx::query(
                "SELECT id, tenant_id, card_id, type, actor, request_id, reason, before, after, created_at \
                 FROM audit_log WHERE tenant_id = $1 AND card_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4",
            )
            .bind(tenant.0)
            .bind(card.0)
            .bind(before_seq)
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter().map(rows::audit).collect()
        })
        .await
    }

    /// Never skips an event, however writers interleave.
    ///
    /// A `bigserial` is drawn at insert but seen at commit, so ordering by
    /// `seq` alone lets a reader page past seq 11 while seq 10's transaction
    /// is still open, and never see 10. Two rules close that gap:
    ///
    /// 1. Only events whose writing transaction (`tx_id`, from
    ///    `pg_current_xact_id()`) is below `pg_snapshot_xmin` of the reading
    ///    statement's snapshot are listed. Every transaction below that xmin
    ///    has finished, so this set is final: nothing can ever join it.
    /// 2. Pages are ordered by `(tx_id, seq)`, not by `seq`. Transaction ids
    ///    are drawn at a transaction's first write, not at its insert into
    ///    `events`, so an old transaction can insert its event after a young
    ///    one did; in `seq` order the young one's event could be listed (once
    ///    the old one ends) ahead of a lower-seq event that then turns up
    ///    behind the cursor. In `(tx_id, seq)` order everything that can still
    ///    appear sorts after everything already listed.
    ///
    /// Per card, (tx_id, seq) order is the order of its changes: every
    /// change starts with [`Tx::lock_card`], which draws the transaction id
    /// only once the card is held (see there).
    ///
    /// The price is latency, never loss: a committed event is listed once
    /// every transaction that started writing before it has ended, anywhere
    /// in the cluster (xids are cluster-wide). A webhook dispatcher reading
    /// the outbox must read it the same way.
    async fn events(&self, tenant: TenantId, query: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
        self.run(|| async {
            // xid8 has no Rust type in sqlx: the cursor travels as text.
            let after: Option<(String, i64)> = match query.after {
                Some(id) => {
                    let row =
                        sqlx::query("SELECT tx_id::text AS tx_id, seq FROM events WHERE tenant_id = $1 AND id = $2")
                            .bind(tenant.0)
                            .bind(id.0)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(map_err)?
                            .ok_or(StoreError::NotFound("cursor"))?;
                    Some((rows::get(&row, "tx_id")?, rows::get(&row, "seq")?))
                }
                None => None,
            };
            let mut sql = String::from(
                "SELECT id, tenant_id, card_id, type, data, sealed_data, sealed_key_version, created_at FROM events \
                 WHERE tenant_id = $1 AND tx_id < pg_snapshot_xmin(pg_current_snapshot())",
            );
            let mut n = 1;
            if after.is_some() {
                sql.push_str(&format!(" AND (tx_id, seq) > (${}::xid8, ${})", n + 1, n + 2));
                n += 2;
            }
            if query.event_type.is_some() {
                n += 1;
                sql.push_str(&format!(" AND type = ${n}"));
            }
            if query.card_id.is_some() {
                n += 1;
                sql.push_str(&format!(" AND card_id = ${n}"));
            }
            sql.push_str(&format!(" ORDER BY tx_id, seq LIMIT ${}", n + 1));
            let mut q = sqlx::query(&sql).bind(tenant.0);
            if let Some((tx_id, seq)) = after {
                q = q.bind(tx_id).bind(seq);
            }
            if let Some(t) = query.event_type {
                q = q.bind(t.as_str());
            }
            if let Some(c) = query.card_id {
                q = q.bind(c.0);
            }
            let rows = q
                .bind(i64::from(query.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
            rows.iter().map(rows::event).collect()
        })
        .await
    }

    async fn event(&self, tenant: TenantId, id: EventId) -> StoreResult<Option<StoredEvent>> {
        self.event_one(tenant, id).await
    }

    async fn recent_events(&self, tenant: TenantId, card: Option<CardId>, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        self.run(|| async {
            let columns = "id, tenant_id, card_id, type, data, sealed_data, sealed_key_version, created_at";
            let sql = if card.is_some() {
                format!(
                    "SELECT {columns} FROM events WHERE tenant_id = $1 AND card_id = $2 \
                     ORDER BY tx_id DESC, seq DESC LIMIT $3"
                )
            } else {
                format!("SELECT {columns} FROM events WHERE tenant_id = $1 ORDER BY tx_id DESC, seq DESC LIMIT $2")
            };
            let mut q = sqlx::query(&sql).bind(tenant.0);
            if let Some(c) = card {
                q = q.bind(c.0);
            }
            let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(map_err)?;
            rows.iter().map(rows::event).collect()
        })
        .await
    }

    async fn cardholders_by_phone(&self, tenant: TenantId, number: &str, limit: u32) -> StoreResult<Vec<Cardholder>> {
        self.run(|| async {
            let rows = sqlx::query(&format!(
                "SELECT {CARDHOLDER_COLUMNS} FROM cardholders WHERE tenant_id = $1 \
                 AND (phone_number = $2 OR phone_country_code || phone_number = $2) ORDER BY created_at, id LIMIT $3"
            ))
            .bind(tenant.0)
            .bind(number)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            rows.iter().map(rows::cardholder).collect()
        })
        .await
    }

    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query(
                "WITH gone AS (DELETE FROM console_sessions WHERE expires_at < $4) \
                 INSERT INTO console_sessions (token_hash, tenant_id, api_key_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&session.token_hash)
            .bind(session.tenant_id.0)
            .bind(session.api_key_id.0)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn console_session(&self, token_hash: &[u8], now: Timestamp) -> StoreResult<Option<ConsoleSessionRecord>> {
        self.run(|| async {
            let row = sqlx::query(
                "SELECT token_hash, tenant_id, api_key_id, created_at, expires_at FROM console_sessions \
                 WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref()
                .map(|r| {
                    Ok(ConsoleSessionRecord {
                        token_hash: rows::get(r, "token_hash")?,
                        tenant_id: rows::get::<uuid::Uuid>(r, "tenant_id")?.into(),
                        api_key_id: rows::get::<uuid::Uuid>(r, "api_key_id")?.into(),
                        created_at: rows::get(r, "created_at")?,
                        expires_at: rows::get(r, "expires_at")?,
                    })
                })
                .transpose()
        })
        .await
    }

    async fn delete_console_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn insert_pin_session(&self, session: &PinSessionRecord) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query(
                "WITH gone AS (DELETE FROM pin_sessions WHERE expires_at < $10) \
                 INSERT INTO pin_sessions (token_hash, tenant_id, card_id, api_key_id, purpose, allowed_origin, \
                 created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&session.token_hash)
            .bind(session.tenant_id.0)
            .bind(session.card_id.0)
            .bind(session.api_key_id.0)
            .bind(&session.purpose)
            .bind(&session.allowed_origin)
            .bind(session.created_at)
            .bind(session.expires_at)
            .bind(session.used_at)
            .bind(session.created_at - chrono::Duration::days(1))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn pin_session(&self, token_hash: &[u8]) -> StoreResult<Option<PinSessionRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "SELECT {PIN_SESSION_COLUMNS} FROM pin_sessions WHERE token_hash = $1"
            ))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(pin_session_row).transpose()
        })
        .await
    }

    async fn claim_pin_session(&self, token_hash: &[u8], now: Timestamp) -> StoreResult<Option<PinSessionRecord>> {
        self.run(|| async {
            let row = sqlx::query(&format!(
                "UPDATE pin_sessions SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                 RETURNING {PIN_SESSION_COLUMNS}"
            ))
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
            row.as_ref().map(pin_session_row).transpose()
        })
        .await
    }

    async fn release_pin_session(&self, token_hash: &[u8], used_at: Timestamp) -> StoreResult<()> {
        self.run(|| async {
            sqlx::query("UPDATE pin_sessions SET used_at = NULL WHERE token_hash = $1 AND used_at = $2")
                .bind(token_hash)
                .bind(used_at)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
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
        self.run(|| self.authorization_one(tenant, id)).await
    }

    async fn authorization_by_reference(
        &self,
        tenant: TenantId,
        network_reference: &str,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        self.run(|| self.authorization_by_ref(tenant, network_reference)).await
    }

    async fn authorizations(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<AuthorizationRecord>> {
        self.run(|| self.authorizations_of(tenant, card, page)).await
    }

    async fn transaction_by_reference(
        &self,
        tenant: TenantId,
        network_reference: &str,
    ) -> StoreResult<Option<TransactionRecord>> {
        self.run(|| self.transaction_by_ref(tenant, network_reference)).await
    }

    async fn transactions(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<TransactionRecord>> {
        self.run(|| self.transactions_of(tenant, card, page)).await
    }

    async fn due_authorizations(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<DueAuthorization>> {
        self.run(|| self.due(now, limit)).await
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

    async fn database_time(&self) -> StoreResult<Timestamp> {
        self.clock().await
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

const CARDHOLDER_COLUMNS: &str = "id, tenant_id, external_id, name, phone_country_code, phone_number, email, \
    date_of_birth, default_account_id, created_at";

/// The columns `rows::api_key` reads, from `api_keys k`.
const API_KEY_COLUMNS: &str = "k.id AS key_id, k.tenant_id AS key_tenant_id, k.key_hash, k.prefix, k.can_reveal, \
    k.created_at AS key_created_at, k.name AS key_name, k.last_used_at, k.revoked_at";

async fn insert_api_key(tx: &mut Transaction<'static, Postgres>, key: &ApiKeyRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, can_reveal, created_at, name, last_used_at, \
         revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key.id.0)
    .bind(key.tenant_id.0)
    .bind(&key.key_hash)
    .bind(&key.prefix)
    .bind(key.can_reveal)
    .bind(key.created_at)
    .bind(&key.name)
    .bind(key.last_used_at)
    .bind(key.revoked_at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Json<&T> {
    Json(value)
}

/// The advisory lock key of a card: its 128 bits folded to 64. A collision
/// only makes two cards queue behind each other.
const PIN_SESSION_COLUMNS: &str =
    "token_hash, tenant_id, card_id, api_key_id, purpose, allowed_origin, created_at, expires_at, used_at";

fn pin_session_row(r: &sqlx::postgres::PgRow) -> StoreResult<PinSessionRecord> {
    Ok(PinSessionRecord {
        token_hash: rows::get(r, "token_hash")?,
        tenant_id: rows::get::<uuid::Uuid>(r, "tenant_id")?.into(),
        card_id: rows::get::<uuid::Uuid>(r, "card_id")?.into(),
        api_key_id: rows::get::<uuid::Uuid>(r, "api_key_id")?.into(),
        purpose: rows::get(r, "purpose")?,
        allowed_origin: rows::get(r, "allowed_origin")?,
        created_at: rows::get(r, "created_at")?,
        expires_at: rows::get(r, "expires_at")?,
        used_at: rows::get(r, "used_at")?,
    })
}

fn card_lock_key(id: CardId) -> i64 {
    let (hi, lo) = id.0.as_u64_pair();
    i64::from_ne_bytes((hi ^ lo).to_ne_bytes())
}

/// A write transaction on one pooled connection. Dropped without commit, sqlx
/// queues a ROLLBACK that the pool sends when it takes the connection back,
/// releasing the row locks.
///
/// Writes that return nothing (card update, audit entry, event, OTP state)
/// are queued and sent as one statement with the next call that reads or
/// with the commit ([`queue`]); an error in one of them fails that call.
struct PostgresTx {
    tx: Transaction<'static, Postgres>,
    deadline: Option<Duration>,
    queue: Queue,
}

impl PostgresTx {
    /// Sends the queued writes, if any, as one statement.
    async fn flush(&mut self) -> StoreResult<()> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let (sql, args) = self.queue.take()?;
        sqlx::query_with(&sql, args)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Queues a write; if one of its kind is already queued, sends that first.
    async fn enqueue(
        &mut self,
        kind: Kind,
        sql: &str,
        bind: impl FnOnce(&mut Binder<'_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        if self.queue.holds(kind) {
            bounded(self.deadline, self.flush()).await?;
        }
        self.queue.push(kind, sql, bind)
    }
}

#[async_trait]
impl Tx for PostgresTx {
    async fn lock_card(&mut self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardRecord>> {
        bounded(self.deadline, async {
            self.flush().await?;
            // Queue on the card's advisory lock first, then take the row.
            // Several transactions queued on the row lock itself are not
            // served in the order they drew their transaction ids: one woken
            // by a commit can draw its id, then queue again behind another
            // (seen on PostgreSQL 15 with a few writers on one card), so the
            // card's events would be listed (by tx_id, see `events`) out of
            // the order of its changes. Waiting on an advisory lock draws no
            // id: the row lock, the transaction's first write, draws it once
            // every earlier holder has committed, so per card tx_id order is
            // commit order.
            //
            // One statement, one round trip: the materialised CTE takes the
            // advisory lock as the join reads it, and FOR UPDATE locks the
            // joined row only after that (LockRows sits above the join). The
            // row is then the one the previous holder committed: READ
            // COMMITTED re-reads a row updated since the statement began.
            let row = sqlx::query(&format!(
                "WITH queued AS MATERIALIZED (SELECT pg_advisory_xact_lock($3)) \
                 SELECT {CARD_COLUMNS} FROM cards, queued WHERE tenant_id = $1 AND id = $2 FOR UPDATE OF cards"
            ))
            .bind(tenant.0)
            .bind(id.0)
            .bind(card_lock_key(id))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)?;
            row.as_ref().map(rows::card).transpose()
        })
        .await
    }

    async fn insert_card(&mut self, rec: &CardRecord) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            let c = &rec.card;
            let s = &rec.secrets;
            // ON CONFLICT DO NOTHING without a target covers both the PAN hash
            // and the kit number, and leaves the transaction usable.
            let r = sqlx::query(&format!(
                "INSERT INTO cards ({CARD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                 $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(c.id.0)
            .bind(c.tenant_id.0)
            .bind(c.cardholder_id.0)
            .bind(c.account_id.0)
            .bind(c.program_id.0)
            .bind(c.card_type.as_str())
            .bind(c.status.as_str())
            .bind(c.status_reason.as_ref().map(|r| r.code.as_str()))
            .bind(c.status_reason.as_ref().and_then(|r| r.message.as_deref()))
            .bind(c.pin_status.as_str())
            .bind(c.brand.as_str())
            .bind(&c.last_four)
            .bind(i32::from(c.expiry.month()))
            .bind(i32::from(c.expiry.year()))
            .bind(&c.card_name)
            .bind(&c.printed_name)
            .bind(c.kit_number.as_str())
            .bind(c.replacement_for.map(|r| r.0))
            .bind(json(&c.limits))
            .bind(&s.pan_hash)
            .bind(&s.pan_sealed)
            // The CVV2 is not stored (computed from the CVK); the column stays, empty.
            .bind(&[] as &[u8])
            .bind(s.data_key_version)
            .bind(s.activation_code.as_ref().map(|v| v.value.as_slice()))
            .bind(s.activation_code.as_ref().map(|v| v.key_version))
            .bind(s.pin.as_ref().map(|v| v.value.as_slice()))
            .bind(s.pin.as_ref().map(|v| v.key_version))
            .bind(i64::from(s.pin_failures))
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(rec.usage.controls.as_ref().map(json))
            .bind(json(&rec.usage.totals))
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn update_card(&mut self, rec: &CardRecord) -> StoreResult<()> {
        let c = &rec.card;
        let s = &rec.secrets;
        let sql = "UPDATE cards SET status = $1, reason_code = $2, reason_message = $3, pin_status = $4, \
                   card_name = $5, printed_name = $6, limits = $7, pan_sealed = $8, cvv_sealed = $9, \
                   data_key_version = $10, activation_verifier = $11, activation_key_version = $12, \
                   pin_verifier = $13, pin_key_version = $14, pin_failures = $15, updated_at = $16, \
                   controls = $17, spend = $18 WHERE tenant_id = $19 AND id = $20";
        self.enqueue(Kind::Card, sql, |b| {
            b.bind(c.status.as_str())?
                .bind(c.status_reason.as_ref().map(|r| r.code.as_str()))?
                .bind(c.status_reason.as_ref().and_then(|r| r.message.as_deref()))?
                .bind(c.pin_status.as_str())?
                .bind(&c.card_name)?
                .bind(&c.printed_name)?
                .bind(json(&c.limits))?
                .bind(&s.pan_sealed)?
                .bind(&[] as &[u8])?
                .bind(s.data_key_version)?
                .bind(s.activation_code.as_ref().map(|v| v.value.as_slice()))?
                .bind(s.activation_code.as_ref().map(|v| v.key_version))?
                .bind(s.pin.as_ref().map(|v| v.value.as_slice()))?
                .bind(s.pin.as_ref().map(|v| v.key_version))?
                .bind(i64::from(s.pin_failures))?
                .bind(c.updated_at)?
                .bind(rec.usage.controls.as_ref().map(json))?
                .bind(json(&rec.usage.totals))?
                .bind(c.tenant_id.0)?
                .bind(c.id.0)?;
            Ok(())
        })
        .await
    }

    async fn replacement_of(&mut self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardId>> {
        bounded(self.deadline, async {
            self.flush().await?;
            let r: Option<uuid::Uuid> = sqlx::query_scalar(
                "SELECT id FROM cards WHERE tenant_id = $1 AND replacement_for = $2 ORDER BY id LIMIT 1",
            )
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(r.map(CardId::from))
        })
        .await
    }

    async fn insert_cardholder(&mut self, c: &Cardholder) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            let r = sqlx::query(&format!(
                "INSERT INTO cardholders ({CARDHOLDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(c.id.0)
            .bind(c.tenant_id.0)
            .bind(c.external_id.as_str())
            .bind(&c.name)
            .bind(&c.phone.country_code)
            .bind(&c.phone.number)
            .bind(&c.email)
            .bind(c.date_of_birth)
            .bind(c.default_account_id.0)
            .bind(c.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn update_cardholder(&mut self, c: &Cardholder) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            let r = sqlx::query(
                "UPDATE cardholders SET name = $1, phone_country_code = $2, phone_number = $3, email = $4, \
                 date_of_birth = $5 WHERE tenant_id = $6 AND id = $7",
            )
            .bind(&c.name)
            .bind(&c.phone.country_code)
            .bind(&c.phone.number)
            .bind(&c.email)
            .bind(c.date_of_birth)
            .bind(c.tenant_id.0)
            .bind(c.id.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn otp_state(&mut self, card: CardId, purpose: OtpPurpose) -> StoreResult<OtpState> {
        bounded(self.deadline, async {
            self.flush().await?;
            let row =
                sqlx::query("SELECT failures, locked_until, codes FROM otp_states WHERE card_id = $1 AND purpose = $2")
                    .bind(card.0)
                    .bind(purpose.as_str())
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
            let Some(row) = row else {
                return Ok(OtpState::default());
            };
            Ok(OtpState {
                failures: rows::count(&row, "failures")?,
                locked_until: rows::get(&row, "locked_until")?,
                codes: rows::json(&row, "codes")?,
            })
        })
        .await
    }

    async fn save_otp_state(&mut self, card: CardId, purpose: OtpPurpose, state: &OtpState) -> StoreResult<()> {
        let sql =
            "INSERT INTO otp_states (card_id, purpose, failures, locked_until, codes) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (card_id, purpose) DO UPDATE SET failures = excluded.failures, \
                   locked_until = excluded.locked_until, codes = excluded.codes";
        self.enqueue(Kind::Otp, sql, |b| {
            b.bind(card.0)?
                .bind(purpose.as_str())?
                .bind(i64::from(state.failures))?
                .bind(state.locked_until)?
                .bind(json(&state.codes))?;
            Ok(())
        })
        .await
    }

    async fn activation_state(&mut self, card: CardId) -> StoreResult<ActivationState> {
        bounded(self.deadline, async {
            self.flush().await?;
            let row = sqlx::query("SELECT failures, locked_until FROM activation_states WHERE card_id = $1")
                .bind(card.0)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
            let Some(row) = row else {
                return Ok(ActivationState::default());
            };
            Ok(ActivationState {
                failures: rows::count(&row, "failures")?,
                locked_until: rows::get(&row, "locked_until")?,
            })
        })
        .await
    }

    async fn save_activation_state(&mut self, card: CardId, state: &ActivationState) -> StoreResult<()> {
        let sql = "INSERT INTO activation_states (card_id, failures, locked_until) VALUES ($1, $2, $3) \
                   ON CONFLICT (card_id) DO UPDATE SET failures = excluded.failures, \
                   locked_until = excluded.locked_until";
        self.enqueue(Kind::Activation, sql, |b| {
            b.bind(card.0)?
                .bind(i64::from(state.failures))?
                .bind(state.locked_until)?;
            Ok(())
        })
        .await
    }

    async fn insert_audit(&mut self, e: &AuditEntry) -> StoreResult<()> {
        let sql = "INSERT INTO audit_log (id, tenant_id, card_id, type, actor, request_id, reason, before, after, \
                   created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        self.enqueue(Kind::Audit, sql, |b| {
            b.bind(e.id.0)?
                .bind(e.tenant_id.0)?
                .bind(e.card_id.map(|c| c.0))?
                .bind(&e.entry_type)?
                .bind(json(&e.actor))?
                .bind(&e.request_id)?
                .bind(e.reason.as_ref().map(json))?
                .bind(e.before.as_ref().map(json))?
                .bind(e.after.as_ref().map(json))?
                .bind(e.created_at)?;
            Ok(())
        })
        .await
    }

    async fn insert_event(&mut self, e: &StoredEvent) -> StoreResult<()> {
        let ev = &e.event;
        // tx_id is left to its default, pg_current_xact_id().
        let sql =
            "INSERT INTO events (id, tenant_id, card_id, type, data, sealed_data, sealed_key_version, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        self.enqueue(Kind::Event, sql, |b| {
            b.bind(ev.id.0)?
                .bind(ev.tenant_id.0)?
                .bind(ev.card_id.map(|c| c.0))?
                .bind(ev.event_type.as_str())?
                .bind(e.sealed_data.is_none().then(|| json(&ev.data)))?
                .bind(e.sealed_data.as_ref().map(|s| s.ciphertext.as_slice()))?
                .bind(e.sealed_data.as_ref().map(|s| s.key_version))?
                .bind(ev.created_at)?;
            Ok(())
        })
        .await
    }

    async fn insert_authorization(&mut self, r: &AuthorizationRecord) -> StoreResult<bool> {
        use money::sql_amount as a;
        bounded(self.deadline, async {
            self.flush().await?;
            let res = sqlx::query(&format!(
                "INSERT INTO authorizations ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                 $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) ON CONFLICT (tenant_id, network_reference) DO NOTHING",
                money::AUTH_COLUMNS
            ))
            .bind(r.id.0)
            .bind(r.tenant_id.0)
            .bind(r.card_id.map(|c| c.0))
            .bind(r.status.as_str())
            .bind(r.decline_reason.map(|d| d.as_str()))
            .bind(&r.response_code)
            .bind(r.decided_by.as_str())
            .bind(a(r.amount))
            .bind(&r.currency)
            .bind(a(r.billing_amount))
            .bind(&r.billing_currency)
            .bind(a(r.amounts.approved))
            .bind(a(r.amounts.pending))
            .bind(a(r.amounts.captured))
            .bind(a(r.amounts.reversed))
            .bind(json(&r.merchant))
            .bind(r.channel.as_str())
            .bind(&r.network_reference)
            .bind(&r.windows.day)
            .bind(&r.windows.month)
            .bind(r.expires_at)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn authorization_in_tx(
        &mut self,
        tenant: TenantId,
        id: AuthorizationId,
    ) -> StoreResult<Option<AuthorizationRecord>> {
        bounded(self.deadline, async {
            self.flush().await?;
            let row = sqlx::query(&format!(
                "SELECT {} FROM authorizations WHERE tenant_id = $1 AND id = $2",
                money::AUTH_COLUMNS
            ))
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)?;
            row.as_ref().map(money::authorization).transpose()
        })
        .await
    }

    async fn update_authorization(&mut self, r: &AuthorizationRecord) -> StoreResult<()> {
        use money::sql_amount as a;
        bounded(self.deadline, async {
            self.flush().await?;
            sqlx::query(
                "UPDATE authorizations SET status = $1, approved_amount = $2, pending_amount = $3, \
                 captured_amount = $4, reversed_amount = $5, updated_at = $6 WHERE tenant_id = $7 AND id = $8",
            )
            .bind(r.status.as_str())
            .bind(a(r.amounts.approved))
            .bind(a(r.amounts.pending))
            .bind(a(r.amounts.captured))
            .bind(a(r.amounts.reversed))
            .bind(r.updated_at)
            .bind(r.tenant_id.0)
            .bind(r.id.0)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn insert_transaction(&mut self, r: &TransactionRecord) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            let res = sqlx::query(&format!(
                "INSERT INTO card_transactions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (tenant_id, network_reference) DO NOTHING",
                money::TXN_COLUMNS
            ))
            .bind(r.id.0)
            .bind(r.tenant_id.0)
            .bind(r.card_id.0)
            .bind(r.authorization_id.map(|x| x.0))
            .bind(r.kind.as_str())
            .bind(money::sql_amount(r.amount))
            .bind(&r.currency)
            .bind(r.merchant.as_ref().map(json))
            .bind(&r.network_reference)
            .bind(r.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(map_err)?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    async fn insert_webhook_endpoint(&mut self, endpoint: &WebhookEndpointRecord) -> StoreResult<()> {
        bounded(self.deadline, async {
            self.flush().await?;
            webhooks::insert_endpoint(&mut self.tx, endpoint).await
        })
        .await
    }

    async fn delete_webhook_endpoint(
        &mut self,
        tenant: TenantId,
        id: WebhookEndpointId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            webhooks::delete_endpoint(&mut self.tx, tenant, id, now).await
        })
        .await
    }

    async fn put_authorization_endpoint(
        &mut self,
        endpoint: &cardcore_store::AuthorizationEndpointRecord,
        replacing: Option<Timestamp>,
    ) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            authorization_endpoint::put(&mut self.tx, endpoint, replacing).await
        })
        .await
    }

    async fn delete_authorization_endpoint(&mut self, tenant: TenantId) -> StoreResult<bool> {
        bounded(self.deadline, async {
            self.flush().await?;
            authorization_endpoint::delete(&mut self.tx, tenant).await
        })
        .await
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        // Past the deadline the commit may or may not have happened; the
        // caller gets Unavailable, which says exactly that. A queued write
        // that fails fails the commit, and the transaction rolls back.
        let deadline = self.deadline;
        bounded(deadline, async move {
            self.flush().await?;
            self.tx.commit().await.map_err(map_err)
        })
        .await
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        // Queued writes are dropped unsent: nothing of them may land.
        let deadline = self.deadline;
        bounded(deadline, async move { self.tx.rollback().await.map_err(map_err) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_that_mean_unavailable() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "57014", "53300", "53100", "25006",
        ] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "42P01", "22P02", "28P01"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_retryable_and_nothing_else() {
        assert!(retryable_sqlstate("40001"));
        assert!(retryable_sqlstate("40P01"));
        for code in ["40002", "40003", "23505", "57014", "08006"] {
            assert!(!retryable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("cc_test_0190abcd"));
        assert!(valid_schema("_x"));
        assert!(!valid_schema(""));
        assert!(!valid_schema("1abc"));
        assert!(!valid_schema("Abc"));
        assert!(!valid_schema("a\"; DROP TABLE x; --"));
        assert!(!valid_schema(&"a".repeat(64)));
    }
}
