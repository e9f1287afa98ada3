//! What the store keeps beside the domain types: protected card data, keys,
//! API keys, stored events, query shapes.

use std::fmt;

use cardcore_domain::authorization::{
    Amounts, AuthorizationStatus, DecidedBy, DeclineReason, Merchant, PaymentChannel, SpendTotals, SpendingControls,
    Windows,
};
use cardcore_domain::{ApiKeyId, Card, CardStatus, CardholderId, Event, EventId, EventType, TenantId, ZoneKeyId};
use cardcore_domain::{AuditId, AuthorizationId, CardId, Timestamp, TransactionId};

/// A card with its protected data, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CardRecord {
    pub card: Card,
    pub secrets: CardSecrets,
    /// Spending controls and running totals (authorizations).
    pub usage: CardUsage,
}

/// What authorizations keep on the card row, read and written with it so a
/// decision costs no extra round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardUsage {
    /// The card's own spending controls; None: the program's defaults.
    pub controls: Option<SpendingControls>,
    /// Running totals of the current day and month, per limits channel.
    pub totals: SpendTotals,
}

/// An authorization as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRecord {
    pub id: AuthorizationId,
    pub tenant_id: TenantId,
    /// None when the card was not found for the tenant.
    pub card_id: Option<CardId>,
    pub status: AuthorizationStatus,
    pub decline_reason: Option<DeclineReason>,
    pub response_code: String,
    pub decided_by: DecidedBy,
    pub amount: u64,
    pub currency: String,
    pub billing_amount: u64,
    pub billing_currency: String,
    pub amounts: Amounts,
    pub merchant: Merchant,
    pub channel: PaymentChannel,
    pub network_reference: String,
    /// The windows the approval counted in (released there later).
    pub windows: Windows,
    /// When what is still held expires (approved only).
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A capture or a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Capture,
    Refund,
}

impl TransactionKind {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::Refund => "refund",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "capture" => Some(Self::Capture),
            "refund" => Some(Self::Refund),
            _ => None,
        }
    }
}

/// A money movement on a card, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    pub id: TransactionId,
    pub tenant_id: TenantId,
    pub card_id: CardId,
    pub authorization_id: Option<AuthorizationId>,
    pub kind: TransactionKind,
    /// In the card's currency.
    pub amount: u64,
    pub currency: String,
    pub merchant: Option<Merchant>,
    /// Unique per tenant among transactions: a retry finds the first.
    pub network_reference: String,
    pub created_at: Timestamp,
}

/// A page of a card's authorizations or transactions, newest first.
#[derive(Debug, Clone, Default)]
pub struct MoneyPage {
    /// Only authorizations of this status.
    pub status: Option<AuthorizationStatus>,
    /// Only those older than this id (ids are time-ordered).
    pub before: Option<uuid::Uuid>,
    pub limit: u32,
}

/// An authorization the expiry task may release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueAuthorization {
    pub tenant_id: TenantId,
    pub card_id: CardId,
    pub id: AuthorizationId,
}

/// A keyed verification value and the version of the key that made it.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub value: Vec<u8>,
    pub key_version: i32,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier(v{}, [redacted])", self.key_version)
    }
}

/// A card's protected data: ciphertexts and keyed hashes only.
#[derive(Clone, PartialEq)]
pub struct CardSecrets {
    /// Keyed hash of the PAN alone (no tenant in it): unique across the
    /// whole table, so a PAN names one card in the world.
    pub pan_hash: Vec<u8>,
    /// PAN sealed under the data key (AES-256-GCM, bound to the card).
    /// (The CVV2 is not stored: it is computed from the CVK when revealed.)
    pub pan_sealed: Vec<u8>,
    /// Version of the data key that sealed the PAN.
    pub data_key_version: i32,
    /// Verifier of the activation code (physical cards until activated).
    pub activation_code: Option<Verifier>,
    /// PIN verification value: HMAC(card id, PIN) under the PIN key.
    pub pin: Option<Verifier>,
    /// Consecutive wrong PINs.
    pub pin_failures: u32,
}

impl fmt::Debug for CardSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardSecrets")
            .field("data_key_version", &self.data_key_version)
            .field("pin", &self.pin)
            .field("pin_failures", &self.pin_failures)
            .finish_non_exhaustive()
    }
}

/// A wrapped service key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// What it is for, e.g. `data`, `pin`, `otp`, `cvk`, `pan_lookup`, `transport`, `jwt`.
    pub purpose: String,
    pub version: i32,
    /// The key, wrapped by the master key (AES-256-GCM).
    pub wrapped: Vec<u8>,
    pub created_at: Timestamp,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredKey({} v{})", self.purpose, self.version)
    }
}

/// A tenant's zone PIN key, wrapped.
#[derive(Clone, PartialEq, Eq)]
pub struct ZoneKeyRecord {
    pub id: ZoneKeyId,
    pub tenant_id: TenantId,
    /// `aes` or `tdes`.
    pub algorithm: String,
    pub wrapped: Vec<u8>,
    /// Key check value (public by design: it identifies the key).
    pub kcv: String,
    pub created_at: Timestamp,
}

impl fmt::Debug for ZoneKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ZoneKeyRecord({} {} kcv {})", self.id, self.algorithm, self.kcv)
    }
}

/// An API key as stored: its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub key_hash: Vec<u8>,
    /// The key's first characters, for humans to tell keys apart.
    pub prefix: String,
    /// May reveal PAN and CVV.
    pub can_reveal: bool,
    pub created_at: Timestamp,
    /// A label for humans (`--name`), if given.
    pub name: Option<String>,
    /// When the key last authenticated a request (recorded at most about
    /// once a minute per key and node, so it is minute-accurate).
    pub last_used_at: Option<Timestamp>,
    /// When the key was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

/// One version of a tenant's RSA PIN transport key, wrapped by the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportKeyRecord {
    pub tenant_id: TenantId,
    pub version: i32,
    /// PKCS#8, wrapped by the master key (AES-256-GCM, label bound to tenant and version).
    pub wrapped: Vec<u8>,
    pub created_at: Timestamp,
    /// From this instant the version decrypts nothing (set when a newer
    /// version replaces it); `None` while it is the newest.
    pub retires_at: Option<Timestamp>,
}

impl fmt::Debug for TransportKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TransportKeyRecord({} v{} retires {:?})",
            self.tenant_id, self.version, self.retires_at
        )
    }
}

/// An event as stored: codes for the cardholder are sealed at rest.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The event; `data` is `null` when `sealed_data` holds it.
    pub event: Event,
    /// `data` sealed under a data key (for events that carry a code).
    pub sealed_data: Option<SealedData>,
}

/// Ciphertext and the data key version that made it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedData {
    pub ciphertext: Vec<u8>,
    pub key_version: i32,
}

impl fmt::Debug for SealedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedData(v{}, {} bytes)", self.key_version, self.ciphertext.len())
    }
}

/// What re-hashing a card's PAN needs (the one-time PAN lookup upgrade).
#[derive(Clone, PartialEq)]
pub struct PanRow {
    pub id: CardId,
    pub tenant_id: TenantId,
    pub pan_sealed: Vec<u8>,
    pub data_key_version: i32,
}

impl fmt::Debug for PanRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PanRow({}, [sealed])", self.id)
    }
}

/// Which cards to list.
#[derive(Debug, Clone, Default)]
pub struct CardFilter {
    pub cardholder_id: Option<CardholderId>,
    pub status: Option<CardStatus>,
    /// Only cards with an id greater than this.
    pub after: Option<cardcore_domain::CardId>,
    /// Only cards whose PAN ends in these four digits (the console's search).
    pub last_four: Option<String>,
    /// Only cards expiring in this month.
    pub expiry: Option<cardcore_domain::Expiry>,
    pub limit: u32,
}

/// A page of the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    /// Only entries older than this one.
    pub before: Option<AuditId>,
    pub limit: u32,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub event_type: Option<EventType>,
    pub card_id: Option<cardcore_domain::CardId>,
    /// Only events after this one.
    pub after: Option<EventId>,
    pub limit: u32,
}

/// A console sign-in. Only the SHA-256 of the session token is stored: the
/// token itself lives in the operator's cookie alone.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    pub token_hash: Vec<u8>,
    pub tenant_id: TenantId,
    /// The API key that signed in: the session acts as that key, and ends
    /// when the key is revoked.
    pub api_key_id: ApiKeyId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl fmt::Debug for ConsoleSessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsoleSession({}, {}, [hash])", self.tenant_id, self.api_key_id)
    }
}

/// A PIN widget session: one use, bound to a card, a purpose and the origin
/// of the page that embeds the widget. Only the token's SHA-256 is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct PinSessionRecord {
    pub token_hash: Vec<u8>,
    pub tenant_id: TenantId,
    pub card_id: CardId,
    /// The API key that made the session; the widget acts as that key.
    pub api_key_id: ApiKeyId,
    /// `set`, `change` or `verify`.
    pub purpose: String,
    /// `scheme://host[:port]`.
    pub allowed_origin: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When the widget spent it.
    pub used_at: Option<Timestamp>,
}

impl fmt::Debug for PinSessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PinSession({}, {}, {}, {}, [hash])",
            self.tenant_id, self.card_id, self.purpose, self.allowed_origin
        )
    }
}
