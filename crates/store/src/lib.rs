//! The storage contract. Services talk to a [`Store`]; each backend (SQLite,
//! PostgreSQL) is a crate implementing it. Writes happen in a [`Tx`]: a
//! service locks the card row, asks the domain, and writes the new state, an
//! audit entry and an outbox event before one commit, so either all of it is
//! durable or none of it is.
//!
//! Architecture Invariant: no business rule lives here. A backend stores and
//! loads; it never decides whether a move is allowed.

mod authorization_endpoint;
#[cfg(feature = "contract")]
pub mod contract;
mod records;
mod retention;
pub mod retry;
mod webhooks;

pub use authorization_endpoint::*;
pub use records::*;
pub use retention::*;
pub use webhooks::*;

use async_trait::async_trait;
use cardcore_domain::activation::ActivationState;
use cardcore_domain::otp::{OtpPurpose, OtpState};
use cardcore_domain::{ApiKeyId, AuthorizationId, EventId, Timestamp, WebhookEndpointId};
use cardcore_domain::{AuditEntry, Card, CardId, Cardholder, CardholderId, ExternalId, KitNumber, Tenant, TenantId};

/// A storage failure. Never carries secrets; the detail is for logs only
/// and never reaches an API response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time; the outcome
    /// of a write in flight is unknown. Maps to 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A reference in the request does not exist (e.g. an unknown cursor).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The database aborted the transaction to keep transactions serializable
    /// (SQLSTATE 40001, serialization failure) or to break a deadlock (40P01).
    /// Nothing of it was written: the whole unit of work (its reads, its
    /// decision, its writes) may run again as a fresh transaction. The
    /// service does so a bounded number of times, then answers 503.
    #[error("transaction aborted by the database, retryable: {0}")]
    Retryable(String),
    /// Anything else: a bug or a corrupt row. Maps to 500. The failure
    /// keeps the driver's error as its source.
    #[error("database error: {0}")]
    Internal(#[source] Failure),
}

impl StoreError {
    /// A bug or corrupt data, said in `what`.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal(Failure::new(what))
    }

    /// `what` went wrong because of `cause` (kept as the source).
    pub fn caused(what: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(Failure::caused(what, cause))
    }
}

/// What went wrong inside (a bug, corrupt data, a driver's error): a
/// message for the log and, when another error caused it, that error as its
/// [`source`](std::error::Error::source), so a log line can show the whole
/// chain ([`chain`]). Never carries secrets; never reaches an API response.
#[derive(Debug, Clone)]
pub struct Failure {
    what: String,
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Failure {
    /// A failure with no underlying error.
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            cause: None,
        }
    }

    /// `what` failed because of `cause`.
    pub fn caused(what: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            what: what.into(),
            cause: Some(std::sync::Arc::from(cause.into())),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.what == other.what
            && self.cause.as_ref().map(|c| c.to_string()) == other.cause.as_ref().map(|c| c.to_string())
    }
}

impl Eq for Failure {}

/// An error and every error under it (`source()`), as one line: `a: b: c`.
/// A source whose text the line already ends with is not repeated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// How many database connections are in use and idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// Rows in the tables a backup check counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub tenants: u64,
    pub cards: u64,
    pub events: u64,
}

/// The database's migrations against this binary's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Versions this binary carries, in order.
    pub known: Vec<i64>,
    /// Versions applied to the database (successfully), in order.
    pub applied: Vec<i64>,
    /// Applied versions whose recorded checksum differs from this binary's.
    pub changed: Vec<i64>,
    /// Versions the database recorded as started but not finished.
    pub failed: Vec<i64>,
}

impl MigrationStatus {
    /// Compares a binary's migrations `(version, checksum)` with the rows of
    /// the database's migration table `(version, success, checksum)`.
    pub fn compare(known: &[(i64, &[u8])], applied: &[(i64, bool, Vec<u8>)]) -> Self {
        let mut status = Self {
            known: known.iter().map(|(v, _)| *v).collect(),
            ..Self::default()
        };
        for (version, success, checksum) in applied {
            if !success {
                status.failed.push(*version);
                continue;
            }
            status.applied.push(*version);
            if let Some((_, mine)) = known.iter().find(|(v, _)| v == version) {
                if *mine != checksum.as_slice() {
                    status.changed.push(*version);
                }
            }
        }
        status
    }

    /// Known versions not applied yet.
    pub fn pending(&self) -> Vec<i64> {
        self.known
            .iter()
            .copied()
            .filter(|v| !self.applied.contains(v))
            .collect()
    }

    /// Applied versions this binary does not know (a newer binary ran).
    pub fn unknown(&self) -> Vec<i64> {
        self.applied
            .iter()
            .copied()
            .filter(|v| !self.known.contains(v))
            .collect()
    }
}

/// Which key a master-key-wrapped value is (its wrapping label is made from this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WrappedKeyId {
    /// `service_keys`.
    Service { purpose: String, version: i32 },
    /// `tenant_transport_keys`.
    Transport { tenant: TenantId, version: i32 },
    /// `zone_keys` (zone PIN keys and PVKs).
    Zone {
        tenant: TenantId,
        id: cardcore_domain::ZoneKeyId,
        algorithm: String,
    },
}

/// A key wrapped by the master key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub id: WrappedKeyId,
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey({:?}, [wrapped])", self.id)
    }
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The whole storage contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    /// The database's migrations against this binary's (reads only).
    async fn migration_status(&self) -> StoreResult<MigrationStatus>;

    /// How many tenants, cards and events there are.
    async fn row_counts(&self) -> StoreResult<RowCounts>;

    /// Every key the master key wraps (service, transport and zone keys).
    async fn wrapped_keys(&self) -> StoreResult<Vec<WrappedKey>>;

    /// In one transaction: replaces the master key check value `old_check`
    /// with `new_check` and each key's wrapped value with the one given.
    /// Returns false, changing nothing, when the check value is no longer
    /// `old_check` (another rotation came first).
    async fn rewrap_keys(&self, old_check: &str, new_check: &str, keys: &[WrappedKey]) -> StoreResult<bool>;

    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;

    /// Connection pool use, for metrics (None when the backend has no pool).
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }

    /// Starts a write transaction.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;

    /// Reads a card to decide on it in card order, without a write lock.
    /// On a backend several nodes share (PostgreSQL) the call waits until
    /// every earlier [`Store::hold_card`] or [`Tx::lock_card`] of the card,
    /// on any node, has ended, reads what they committed, and holds the card
    /// until the hold ends: released (writing nothing and making nothing
    /// durable) or turned into a write transaction. On a backend one server
    /// process owns (SQLite), the hold is a plain read: that process orders
    /// its own decisions. `record` is None when the tenant has no such card.
    async fn hold_card(&self, tenant: TenantId, id: CardId) -> StoreResult<CardHold>;

    // --- keys and settings -------------------------------------------------

    /// A setting, e.g. the master key check value.
    async fn meta(&self, key: &str) -> StoreResult<Option<String>>;

    /// Sets a setting unless it exists; true when this call set it.
    async fn put_meta_if_absent(&self, key: &str, value: &str) -> StoreResult<bool>;

    /// Every wrapped service key, all purposes and versions.
    async fn service_keys(&self) -> StoreResult<Vec<StoredKey>>;

    /// Adds a key version; false when that (purpose, version) exists already
    /// (another node made it first).
    async fn insert_service_key(&self, key: &StoredKey) -> StoreResult<bool>;

    /// A tenant's zone PIN keys, oldest first.
    async fn zone_keys(&self, tenant: TenantId) -> StoreResult<Vec<ZoneKeyRecord>>;

    /// Adds a zone PIN key.
    async fn insert_zone_key(&self, key: &ZoneKeyRecord) -> StoreResult<()>;

    /// A tenant's RSA PIN transport key versions, oldest first.
    async fn transport_keys(&self, tenant: TenantId) -> StoreResult<Vec<TransportKeyRecord>>;

    /// Adds a version of a tenant's transport key; false when that
    /// (tenant, version) exists already (another node made it first).
    async fn insert_transport_key(&self, key: &TransportKeyRecord) -> StoreResult<bool>;

    /// Sets `retires_at` of the tenant's versions below `below_version` that
    /// retire later than `at` (or never).
    async fn retire_transport_keys(&self, tenant: TenantId, below_version: i32, at: Timestamp) -> StoreResult<()>;

    /// The tenants that have a transport key.
    async fn transport_key_tenants(&self) -> StoreResult<Vec<TenantId>>;

    // --- tenants and API keys ----------------------------------------------

    /// Creates a tenant with its first API key; false when the name is taken.
    async fn create_tenant(&self, tenant: &Tenant, key: &ApiKeyRecord) -> StoreResult<bool>;

    /// Adds an API key to an existing tenant.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;

    /// How many tenants exist.
    async fn tenant_count(&self) -> StoreResult<u64>;

    /// A tenant by id.
    async fn tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>>;

    /// A tenant by name.
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;

    /// A tenant's settings as stored (a JSON object), or None for no such tenant.
    async fn tenant_settings(&self, id: TenantId) -> StoreResult<Option<String>>;

    /// Replaces a tenant's settings; false when there is no such tenant.
    async fn set_tenant_settings(&self, id: TenantId, settings: &str) -> StoreResult<bool>;

    /// The API key with this hash, with its tenant, unless revoked.
    async fn api_key_by_hash(&self, hash: &[u8]) -> StoreResult<Option<(ApiKeyRecord, Tenant)>>;

    /// The API key with this id, with its tenant, unless revoked.
    async fn api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<(ApiKeyRecord, Tenant)>>;

    /// The tenant's API keys, revoked ones included, oldest first.
    async fn api_keys(&self, tenant: TenantId) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Revokes the tenant's key at `at` (a key revoked before keeps its
    /// time); the key as it is now, or `None` when the tenant has no such key.
    async fn revoke_api_key(&self, tenant: TenantId, id: ApiKeyId, at: Timestamp) -> StoreResult<Option<ApiKeyRecord>>;

    /// Records that the key was used at `at`, unless a later use is recorded.
    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()>;

    // --- reads -------------------------------------------------------------

    /// A cardholder of the tenant.
    async fn cardholder(&self, tenant: TenantId, id: CardholderId) -> StoreResult<Option<Cardholder>>;

    /// A cardholder by the tenant's own id for them.
    async fn cardholder_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &ExternalId,
    ) -> StoreResult<Option<Cardholder>>;

    /// A card of the tenant, with its protected data.
    async fn card(&self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardRecord>>;

    /// A card by kit number.
    async fn card_by_kit(&self, tenant: TenantId, kit: &KitNumber) -> StoreResult<Option<CardRecord>>;

    /// The id of the card with kit number `kit` if it belongs to the
    /// cardholder `external_id` (M2P's `entityId` + `kit`). A backend may
    /// answer it in one indexed read; this default takes two.
    async fn card_id_by_kit_of_holder(
        &self,
        tenant: TenantId,
        external_id: &ExternalId,
        kit: &KitNumber,
    ) -> StoreResult<Option<CardId>> {
        let Some(holder) = self.cardholder_by_external_id(tenant, external_id).await? else {
            return Ok(None);
        };
        Ok(self
            .card_by_kit(tenant, kit)
            .await?
            .filter(|rec| rec.card.cardholder_id == holder.id)
            .map(|rec| rec.card.id))
    }

    /// A card by its keyed PAN hash ([`CardSecrets::pan_hash`]).
    async fn card_by_pan_hash(&self, tenant: TenantId, pan_hash: &[u8]) -> StoreResult<Option<CardRecord>>;

    /// Cards matching the filter, ordered by id (creation order).
    async fn cards(&self, tenant: TenantId, filter: &CardFilter) -> StoreResult<Vec<Card>>;

    /// Cards of every tenant after `after`, by id, with what re-hashing
    /// their PANs needs (the one-time PAN lookup upgrade).
    async fn pan_rows(&self, after: Option<CardId>, limit: u32) -> StoreResult<Vec<PanRow>>;

    /// Sets cards' PAN lookup hashes, in one transaction. When a hash is
    /// already another card's, writes nothing and answers `(card, other)`.
    async fn set_pan_hashes(&self, hashes: &[(CardId, Vec<u8>)]) -> StoreResult<Option<(CardId, CardId)>>;

    /// A card's audit trail, newest first.
    async fn audit_entries(&self, tenant: TenantId, card: CardId, page: &AuditPage) -> StoreResult<Vec<AuditEntry>>;

    /// The tenant's events, oldest first. `NotFound("cursor")` when `after`
    /// names no event of the tenant.
    async fn events(&self, tenant: TenantId, query: &EventQuery) -> StoreResult<Vec<StoredEvent>>;

    /// One event of the tenant.
    async fn event(&self, tenant: TenantId, id: EventId) -> StoreResult<Option<StoredEvent>>;

    /// The tenant's newest events (of one card, when given), newest first.
    async fn recent_events(&self, tenant: TenantId, card: Option<CardId>, limit: u32) -> StoreResult<Vec<StoredEvent>>;

    /// The tenant's cardholders whose phone is `number` (the national
    /// number, or country code and number run together), at most `limit`.
    async fn cardholders_by_phone(&self, tenant: TenantId, number: &str, limit: u32) -> StoreResult<Vec<Cardholder>>;

    // --- console and widget sessions ---------------------------------------

    /// Stores a console session (and forgets sessions expired before its start).
    async fn insert_console_session(&self, session: &ConsoleSessionRecord) -> StoreResult<()>;

    /// The console session with this token hash, if it has not expired at `now`.
    async fn console_session(&self, token_hash: &[u8], now: Timestamp) -> StoreResult<Option<ConsoleSessionRecord>>;

    /// Ends a console session (sign-out).
    async fn delete_console_session(&self, token_hash: &[u8]) -> StoreResult<()>;

    /// Stores a PIN widget session (and forgets sessions expired a day before its start).
    async fn insert_pin_session(&self, session: &PinSessionRecord) -> StoreResult<()>;

    /// The PIN widget session with this token hash, used or not.
    async fn pin_session(&self, token_hash: &[u8]) -> StoreResult<Option<PinSessionRecord>>;

    /// Spends a PIN widget session: only one caller, once, before it expires,
    /// gets it back (one statement, so two nodes cannot both spend it).
    async fn claim_pin_session(&self, token_hash: &[u8], now: Timestamp) -> StoreResult<Option<PinSessionRecord>>;

    /// Gives back a session spent at `used_at`, when what it was spent on
    /// changed nothing (the input was refused before any secret was tried).
    async fn release_pin_session(&self, token_hash: &[u8], used_at: Timestamp) -> StoreResult<()>;

    // --- webhooks ----------------------------------------------------------

    /// The tenant's webhook endpoints (deleted ones left out), oldest first.
    async fn webhook_endpoints(&self, tenant: TenantId) -> StoreResult<Vec<WebhookEndpointRecord>>;

    /// One webhook endpoint of the tenant, unless deleted.
    async fn webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> StoreResult<Option<WebhookEndpointRecord>>;

    /// The tenant's authorization endpoint, if it set one.
    async fn authorization_endpoint(&self, tenant: TenantId) -> StoreResult<Option<AuthorizationEndpointRecord>>;

    /// Fans the next outbox events (at most `limit`, every tenant, in outbox
    /// order) out into pending deliveries, one per endpoint that
    /// [`WebhookEndpointRecord::wants`] the event, and advances the fan-out
    /// cursor in the same transaction. Reads the outbox as
    /// [`Store::events`] does, so no event is ever passed over. One node at
    /// a time does it: a call that finds another at it returns 0 at once.
    /// Returns how many events it consumed.
    async fn fan_out_events(&self, limit: u32, now: Timestamp) -> StoreResult<u32>;

    /// Queues a new delivery of the tenant's event to every endpoint that
    /// receives its type (whatever the endpoint's age), behind the card's
    /// earlier deliveries. `None` when the tenant has no such event.
    async fn redeliver_event(&self, tenant: TenantId, event: EventId, now: Timestamp) -> StoreResult<Option<u32>>;

    /// Claims up to `limit` deliveries that are due at `now` and not leased,
    /// each the oldest open delivery of its (endpoint, card) pair (cardless
    /// ones are unordered), leasing them until `lease_until`. A delivery
    /// whose lease ran out (its node died mid-attempt) can be claimed again.
    /// Concurrent claimers never get the same delivery.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.claim_deliveries_except(now, lease_until, limit, &[]).await
    }

    /// [`Store::claim_deliveries`], passing over the deliveries of the
    /// tenants in `skip` (those that have as many attempts in flight on the
    /// claiming node as they may).
    async fn claim_deliveries_except(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        skip: &[TenantId],
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// Gives a claimed delivery back untried (no attempt recorded): any
    /// node may claim it again at once. False when the lease is no longer
    /// this claim's.
    async fn release_delivery(&self, delivery: uuid::Uuid, lease: uuid::Uuid) -> StoreResult<bool>;

    /// Records an attempt of a claimed delivery and what follows it, and
    /// releases the lease. False (nothing written) when the lease is no
    /// longer this claim's or the delivery is no longer open.
    async fn record_delivery_attempt(
        &self,
        delivery: uuid::Uuid,
        lease: uuid::Uuid,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool>;

    /// The deliveries of one of the tenant's events, in the order queued.
    async fn event_deliveries(&self, tenant: TenantId, event: EventId) -> StoreResult<Vec<WebhookDelivery>>;

    // --- tenant SMS settings ------------------------------------------------

    /// A tenant's SMS settings; `None` when it never changed the defaults.
    async fn tenant_sms(&self, tenant: TenantId) -> StoreResult<Option<TenantSmsRecord>>;

    /// Writes a tenant's SMS settings (insert or replace).
    async fn put_tenant_sms(&self, settings: &TenantSmsRecord) -> StoreResult<()>;

    // --- idempotency keys --------------------------------------------------

    /// Starts an idempotent request, or says why not (see [`IdempotencyBegin`]).
    /// A row made before `expired_before` counts as absent; an in-flight row
    /// started before `takeover_before` is taken over. Atomic across nodes.
    async fn begin_idempotent(&self, start: &IdempotencyStart<'_>) -> StoreResult<IdempotencyBegin>;

    /// Stores the answer of a started request; false when the key is no
    /// longer this start's (taken over, or expired and reused).
    async fn finish_idempotent(
        &self,
        tenant: TenantId,
        key: &str,
        token: uuid::Uuid,
        response: &IdempotentResponse,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Forgets a started request (its outcome is unknown, so a retry with the
    /// same key runs again); false when the key is no longer this start's.
    async fn abandon_idempotent(&self, tenant: TenantId, key: &str, token: uuid::Uuid) -> StoreResult<bool>;

    /// An idempotency key as stored.
    async fn idempotency_record(&self, tenant: TenantId, key: &str) -> StoreResult<Option<IdempotencyRecord>>;

    /// Deletes the keys made before `created_before`; returns how many.
    async fn purge_idempotency_keys(&self, created_before: Timestamp) -> StoreResult<u64>;

    // --- retention and background jobs --------------------------------------

    /// Counts what retention would delete at `cut` (a `None` cut-off counts
    /// nothing). Reads only.
    async fn retention_counts(&self, cut: &RetentionCutoffs) -> StoreResult<RetentionCounts>;

    /// One batch of the event purge, in one short transaction: looks at up
    /// to `limit` of the oldest events made before `before`, after `after`,
    /// that were fanned out and have no pending or retrying delivery, and
    /// deletes those that fit in `limit` rows with every delivery of theirs
    /// ([`candidates_that_fit`]); when the first alone has more deliveries,
    /// deletes `limit` of them and looks at it again next time. An event
    /// whose redelivery is queued at the same moment is either deleted
    /// before the redelivery finds it (which then finds no event) or kept
    /// with its new delivery.
    async fn purge_events(&self, before: Timestamp, after: EventPosition, limit: u32) -> StoreResult<PurgedEvents>;

    /// The database's clock (retention's cut-offs and lease use it, so
    /// nodes whose clocks differ still agree). SQLite: this machine's.
    async fn database_time(&self) -> StoreResult<Timestamp> {
        Ok(chrono::Utc::now())
    }

    /// Deletes at most `limit` of the oldest dead deliveries made before
    /// `before`, in one short transaction; returns how many.
    async fn purge_dead_deliveries(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;

    /// The oldest audit entries (every tenant) made before `before`, at most
    /// `limit`, oldest first.
    async fn expired_audit(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<ExpiredAudit>>;

    /// Deletes the audit entries at these positions, in one transaction;
    /// returns how many there were.
    async fn delete_audit(&self, seqs: &[i64]) -> StoreResult<u64>;

    /// Takes the lease on background job `job` for `holder` until `until`,
    /// or renews it when `holder` has it. False when another holder's lease
    /// runs past `now`. One statement, so two nodes never both get it.
    async fn lease_job(&self, job: &str, holder: uuid::Uuid, now: Timestamp, until: Timestamp) -> StoreResult<bool>;

    /// Gives the lease back, if `holder` still has it.
    async fn release_job(&self, job: &str, holder: uuid::Uuid) -> StoreResult<()>;

    // --- authorizations ------------------------------------------------------

    /// One authorization of the tenant.
    async fn authorization(&self, tenant: TenantId, id: AuthorizationId) -> StoreResult<Option<AuthorizationRecord>>;

    /// The tenant's authorization with this network reference.
    async fn authorization_by_reference(
        &self,
        tenant: TenantId,
        network_reference: &str,
    ) -> StoreResult<Option<AuthorizationRecord>>;

    /// A card's authorizations, newest first.
    async fn authorizations(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<AuthorizationRecord>>;

    /// The tenant's transaction with this network reference.
    async fn transaction_by_reference(
        &self,
        tenant: TenantId,
        network_reference: &str,
    ) -> StoreResult<Option<TransactionRecord>>;

    /// A card's captures and refunds, newest first (`page.status` unused).
    async fn transactions(
        &self,
        tenant: TenantId,
        card: CardId,
        page: &MoneyPage,
    ) -> StoreResult<Vec<TransactionRecord>>;

    /// Approved authorizations of every tenant whose hold is due to expire
    /// at `now`, oldest first, at most `limit`. Only candidates: the caller
    /// decides again on the locked card.
    async fn due_authorizations(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<DueAuthorization>>;
}

/// A write transaction. Dropping it without [`Tx::commit`] rolls back.
///
/// The writes that return nothing (`update_card`, `save_otp_state`,
/// `save_activation_state`,
/// `insert_audit`, `insert_event`) may be held back and sent with the
/// transaction's next call that reads or with `commit`, so their error can
/// surface there. A transaction still reads its own writes and keeps the
/// order of its calls. After any error, drop the transaction.
#[async_trait]
pub trait Tx: Send {
    /// Loads a card and locks its row until commit, so concurrent requests on
    /// the same card are serialised.
    async fn lock_card(&mut self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardRecord>>;

    /// Inserts a card; false on a collision of PAN hash or kit number (the
    /// caller draws new ones), without aborting the transaction.
    async fn insert_card(&mut self, card: &CardRecord) -> StoreResult<bool>;

    /// Writes a card's mutable state and protected data.
    async fn update_card(&mut self, card: &CardRecord) -> StoreResult<()>;

    /// The card that replaced this one, if any.
    async fn replacement_of(&mut self, tenant: TenantId, id: CardId) -> StoreResult<Option<CardId>>;

    /// Inserts a cardholder; false when the external id is taken.
    async fn insert_cardholder(&mut self, cardholder: &Cardholder) -> StoreResult<bool>;

    /// Writes a cardholder's profile (name, phone, email, date of birth);
    /// false when the tenant has no such cardholder.
    async fn update_cardholder(&mut self, cardholder: &Cardholder) -> StoreResult<bool>;

    /// The OTP state of a card and purpose (empty when none).
    async fn otp_state(&mut self, card: CardId, purpose: OtpPurpose) -> StoreResult<OtpState>;

    /// Saves the OTP state of a card and purpose.
    async fn save_otp_state(&mut self, card: CardId, purpose: OtpPurpose, state: &OtpState) -> StoreResult<()>;

    /// A card's activation-code attempts (none counted when never saved).
    async fn activation_state(&mut self, card: CardId) -> StoreResult<ActivationState>;

    /// Saves a card's activation-code attempts.
    async fn save_activation_state(&mut self, card: CardId, state: &ActivationState) -> StoreResult<()>;

    /// Appends an audit entry.
    async fn insert_audit(&mut self, entry: &AuditEntry) -> StoreResult<()>;

    /// Appends an outbox event.
    async fn insert_event(&mut self, event: &StoredEvent) -> StoreResult<()>;

    /// Inserts an authorization; false (nothing written, the transaction
    /// still usable) when the tenant has one with its network reference.
    async fn insert_authorization(&mut self, rec: &AuthorizationRecord) -> StoreResult<bool>;

    /// An authorization of the tenant, read in this transaction (lock its
    /// card first: the card's lock orders every change of its money).
    async fn authorization_in_tx(
        &mut self,
        tenant: TenantId,
        id: AuthorizationId,
    ) -> StoreResult<Option<AuthorizationRecord>>;

    /// Writes an authorization's status, amounts and `updated_at`.
    async fn update_authorization(&mut self, rec: &AuthorizationRecord) -> StoreResult<()>;

    /// Inserts a capture or refund; false (nothing written) when the tenant
    /// has a transaction with its network reference.
    async fn insert_transaction(&mut self, rec: &TransactionRecord) -> StoreResult<bool>;

    /// Adds a webhook endpoint.
    async fn insert_webhook_endpoint(&mut self, endpoint: &WebhookEndpointRecord) -> StoreResult<()>;

    /// Marks the tenant's endpoint deleted at `now` and its open deliveries
    /// dead; false when the tenant has no such endpoint (or it is deleted).
    async fn delete_webhook_endpoint(
        &mut self,
        tenant: TenantId,
        id: WebhookEndpointId,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Sets the tenant's authorization endpoint if it is still as the
    /// caller read it: absent (`replacing` None), or the one last updated at
    /// `replacing`. False, writing nothing, when another write came first
    /// (so a secret handed out is always the one stored).
    async fn put_authorization_endpoint(
        &mut self,
        endpoint: &AuthorizationEndpointRecord,
        replacing: Option<Timestamp>,
    ) -> StoreResult<bool>;

    /// Removes the tenant's authorization endpoint; false when it had none.
    async fn delete_authorization_endpoint(&mut self, tenant: TenantId) -> StoreResult<bool>;

    /// Makes everything durable. A returned `Ok` means the change survives a
    /// crash or a power cut.
    async fn commit(self: Box<Self>) -> StoreResult<()>;

    /// Ends the transaction writing nothing, releasing its locks before the
    /// call returns (dropping it releases them too, maybe a little later).
    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        Ok(())
    }
}

/// A card held for a decision (see [`Store::hold_card`]).
pub struct CardHold {
    /// The card as the last committed change left it.
    pub record: Option<CardRecord>,
    /// The transaction that holds the card across nodes, if the backend needs one.
    held: Option<Box<dyn Tx>>,
}

impl CardHold {
    /// A hold: `held` is the transaction that keeps other nodes waiting, or
    /// None when the read alone is enough.
    pub fn new(record: Option<CardRecord>, held: Option<Box<dyn Tx>>) -> Self {
        Self { record, held }
    }

    /// A write transaction that keeps the card held (the hold's own, or a new
    /// one). Lock the card in it ([`Tx::lock_card`]) before writing, and
    /// decide again on what that reads.
    pub async fn into_tx(self, store: &dyn Store) -> StoreResult<Box<dyn Tx>> {
        match self.held {
            Some(tx) => Ok(tx),
            None => store.begin().await,
        }
    }

    /// Ends the hold writing nothing.
    pub async fn release(self) -> StoreResult<()> {
        match self.held {
            Some(tx) => tx.rollback().await,
            None => Ok(()),
        }
    }
}
