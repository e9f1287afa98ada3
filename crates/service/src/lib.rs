//! The use cases. Every entry point (native API, each vendor dialect, the
//! CLI) calls these functions; none re-implements a rule. Each state change
//! loads and locks the card, asks the domain, and writes the new state, an
//! audit entry and an outbox event in one transaction.

pub mod auth;
pub mod authorization_endpoint;
pub mod authorizations;
mod card_order;
pub mod cardholders;
pub mod cards;
pub mod clock;
pub mod console;
pub mod egress;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod import;
pub mod keyring;
pub mod pins;
pub mod retention;
mod retry;
pub mod seed;
pub mod settings;
pub mod sms;
mod throttle;
pub mod webhooks;

use std::sync::Arc;

use cardcore_domain::activation::ActivationPolicy;
use cardcore_domain::otp::OtpPolicy;
use cardcore_domain::pin_policy::PinPolicy;
use cardcore_domain::{
    Actor, ApiKeyId, AuditEntry, AuditId, CardId, Channel, Event, EventType, StatusReason, Tenant, TenantId, Timestamp,
};
use cardcore_store::{SealedData, Store, StoredEvent};
use rand::rngs::OsRng;

pub use auth::Principal;
pub use error::{chain, Failure, ServiceError, ServiceResult};
pub use keyring::Keyring;

/// Settings of the service (one program's worth for now: see ARCHITECTURE.md).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Issuer BIN for new PANs (6 to 11 digits). Default: a Visa test BIN.
    pub bin: String,
    /// Length of generated PANs.
    pub pan_length: usize,
    /// Years a new card is valid.
    pub card_validity_years: u16,
    /// Currency of new cards' limits.
    pub currency: String,
    /// PIN length and weak-PIN rules.
    pub pin_policy: PinPolicy,
    /// Consecutive wrong PINs that block the PIN.
    pub pin_max_failures: u32,
    /// OTP validity, lockout and rate limit.
    pub otp_policy: OtpPolicy,
    /// Wrong activation codes allowed and the lock that follows.
    pub activation_policy: ActivationPolicy,
    /// Reason codes beside the built-in catalog.
    pub extra_reason_codes: Vec<String>,
    /// How long an `Idempotency-Key` is kept (from its first use).
    pub idempotency_ttl: std::time::Duration,
    /// PIN and OTP calls allowed per card per minute, per node (0: no limit).
    pub card_pin_calls_per_minute: u32,
    /// Where webhooks may go besides public addresses.
    pub webhook_networks: egress::WebhookNetworks,
    /// Redeliveries a tenant may ask for per minute, per node (0: no limit).
    pub webhook_redeliveries_per_minute: u32,
    /// The default dynamic-CVV2 interval of virtual cards, in hours (QI's
    /// `cvv_rotation_interval_hours`), for programs whose tenant settings
    /// name none; None: the CVV2 does not rotate.
    pub cvv_rotation_interval_hours: Option<u32>,
    /// How often a transaction the database aborted (40001, 40P01) runs again.
    pub retry: cardcore_store::retry::RetryPolicy,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            bin: "424242".into(),
            pan_length: 16,
            card_validity_years: 3,
            currency: "EUR".into(),
            pin_policy: PinPolicy::default(),
            pin_max_failures: 3,
            otp_policy: OtpPolicy::default(),
            activation_policy: ActivationPolicy::default(),
            extra_reason_codes: Vec::new(),
            idempotency_ttl: std::time::Duration::from_secs(24 * 60 * 60),
            card_pin_calls_per_minute: 20,
            webhook_networks: egress::WebhookNetworks::default(),
            webhook_redeliveries_per_minute: 60,
            cvv_rotation_interval_hours: Some(72),
            retry: cardcore_store::retry::RetryPolicy::default(),
        }
    }
}

/// Who is asking, through which API, for which request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    pub channel: Channel,
    pub request_id: Option<String>,
}

impl Ctx {
    /// A request by an API key through `channel`.
    pub fn new(principal: Principal, channel: Channel, request_id: Option<String>) -> Self {
        Self {
            principal,
            channel,
            request_id,
        }
    }

    /// The tenant every read and write is scoped to.
    pub fn tenant_id(&self) -> TenantId {
        self.principal.tenant.id
    }

    /// The tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.principal.tenant
    }

    /// The audit actor.
    pub fn actor(&self) -> Actor {
        match self.principal.api_key_id {
            Some(id) if self.channel == Channel::CONSOLE => Actor::console(id),
            Some(id) => Actor::api_key(id, self.channel.clone()),
            None if self.channel == Channel::CLI => Actor::cli(),
            None => Actor::system(),
        }
    }
}

/// The service: storage, keys and settings.
pub struct Service {
    store: Arc<dyn Store>,
    keys: Keyring,
    config: ServiceConfig,
    auth_cache: auth::AuthCache,
    settings_cache: settings::SettingsCache,
    card_throttle: throttle::CardThrottle,
    /// One card's PIN decisions one after another, in this process.
    card_order: card_order::CardOrder,
    redeliver_throttle: webhooks::RedeliverThrottle,
    clock: clock::Clock,
    /// Where tenant decision requests go out (the webhooks crate's client).
    decision_transport: std::sync::OnceLock<Arc<dyn authorization_endpoint::DecisionTransport>>,
    endpoint_cache: authorization_endpoint::EndpointCache,
    /// Set when the node was told to stop: `/readyz` answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
}

impl Service {
    /// A service over an opened store and keyring.
    pub fn new(store: Arc<dyn Store>, keys: Keyring, config: ServiceConfig) -> Result<Self, ServiceError> {
        cardcore_crypto::luhn::generate_pan(&config.bin, config.pan_length, &mut OsRng).map_err(|e| {
            ServiceError::Startup(format!(
                "card BIN {:?} / PAN length {}: {e}",
                config.bin, config.pan_length
            ))
        })?;
        if cardcore_domain::Brand::of_bin(&config.bin).is_none() {
            return Err(ServiceError::Startup(format!(
                "card BIN {:?} is neither Visa (4…) nor Mastercard (51–55, 2221–2720)",
                config.bin
            )));
        }
        Ok(Self {
            store,
            keys,
            card_throttle: throttle::CardThrottle::new(config.card_pin_calls_per_minute),
            card_order: card_order::CardOrder::new(),
            redeliver_throttle: webhooks::RedeliverThrottle::new(config.webhook_redeliveries_per_minute),
            config,
            auth_cache: auth::AuthCache::default(),
            settings_cache: settings::SettingsCache::default(),
            clock: clock::Clock::default(),
            decision_transport: std::sync::OnceLock::new(),
            endpoint_cache: authorization_endpoint::EndpointCache::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The store (for health checks and background tasks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Marks the node as stopping: readiness fails from now on, so a
    /// balancer stops sending it requests while it finishes the ones it has.
    pub fn start_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Service::start_draining`] was called.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The keyring.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Now, to the microsecond: the precision both databases keep, so an
    /// object reads back exactly as it was answered. Read from the
    /// service's [`clock::Clock`] (the system clock unless a test moved it).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The service's clock (tests set it to cross CVV2 windows, expiries).
    pub fn clock(&self) -> &clock::Clock {
        &self.clock
    }

    /// An audit entry for this request.
    fn audit(
        &self,
        ctx: &Ctx,
        card_id: Option<CardId>,
        entry_type: &str,
        reason: Option<StatusReason>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            id: AuditId::new(),
            tenant_id: ctx.tenant_id(),
            card_id,
            entry_type: entry_type.to_owned(),
            actor: ctx.actor(),
            request_id: ctx.request_id.clone(),
            reason,
            before,
            after,
            created_at: self.now(),
        }
    }

    /// An outbox event; data carrying a code is sealed under the data key.
    async fn event(
        &self,
        tenant: TenantId,
        card_id: Option<CardId>,
        event_type: EventType,
        data: serde_json::Value,
    ) -> ServiceResult<StoredEvent> {
        let mut event = Event::new(tenant, card_id, event_type, self.now(), data);
        if !event_type.carries_code() {
            return Ok(StoredEvent {
                event,
                sealed_data: None,
            });
        }
        let (version, key) = self.keys.data_key(None).await?;
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&event.data).map_err(|e| ServiceError::caused("encoding event data", e))?,
        );
        let ciphertext = key.seal(event_aad(&event).as_bytes(), &plain, &mut OsRng);
        event.data = serde_json::Value::Null;
        Ok(StoredEvent {
            event,
            sealed_data: Some(SealedData {
                ciphertext,
                key_version: version,
            }),
        })
    }

    /// Opens a stored event for its tenant (codes included, except one
    /// the tenant keeps out of its events for the SMS alone).
    async fn open_event(&self, stored: StoredEvent) -> ServiceResult<Event> {
        let mut event = self.open_event_raw(stored).await?;
        if let Some(data) = event.data.as_object_mut() {
            data.remove(sms::HIDDEN_CODE);
        }
        Ok(event)
    }

    /// Opens a stored event as written.
    async fn open_event_raw(&self, stored: StoredEvent) -> ServiceResult<Event> {
        let mut event = stored.event;
        if let Some(sealed) = stored.sealed_data {
            let (_, key) = self.keys.data_key(Some(sealed.key_version)).await?;
            let plain = key
                .open(event_aad(&event).as_bytes(), &sealed.ciphertext)
                .map_err(|_| ServiceError::internal(format!("event {} does not open with its data key", event.id)))?;
            event.data =
                serde_json::from_slice(plain.expose()).map_err(|e| ServiceError::caused("decoding event data", e))?;
        }
        Ok(event)
    }
}

/// Now, truncated to microseconds.
pub fn now() -> Timestamp {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

fn event_aad(event: &Event) -> String {
    format!("cardcore/event/{}/{}", event.tenant_id, event.id)
}

/// The API key id of a principal acting through the CLI (none).
pub fn cli_principal(tenant: Tenant) -> Principal {
    Principal {
        tenant,
        api_key_id: None::<ApiKeyId>,
        can_reveal: false,
    }
}
