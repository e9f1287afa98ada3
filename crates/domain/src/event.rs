//! Events (the outbox: what webhooks deliver) and audit entries (who did
//! what, why, before and after).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, AuditId, CardId, EventId, TenantId};
use crate::reason::StatusReason;
use crate::Timestamp;

/// Every event type cardcore emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CardCreated,
    CardActivationCode,
    CardActivated,
    CardStatusChanged,
    CardReplaced,
    CardLimitsUpdated,
    CardControlsUpdated,
    CardPinSet,
    CardPinChanged,
    CardPinBlocked,
    CardPinUnblocked,
    OtpCreated,
    AuthorizationApproved,
    AuthorizationDeclined,
    AuthorizationReversed,
    AuthorizationExpired,
    TransactionCaptured,
    TransactionRefunded,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 18] = [
        Self::CardCreated,
        Self::CardActivationCode,
        Self::CardActivated,
        Self::CardStatusChanged,
        Self::CardReplaced,
        Self::CardLimitsUpdated,
        Self::CardControlsUpdated,
        Self::CardPinSet,
        Self::CardPinChanged,
        Self::CardPinBlocked,
        Self::CardPinUnblocked,
        Self::OtpCreated,
        Self::AuthorizationApproved,
        Self::AuthorizationDeclined,
        Self::AuthorizationReversed,
        Self::AuthorizationExpired,
        Self::TransactionCaptured,
        Self::TransactionRefunded,
    ];

    /// The wire name, e.g. `card.status_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardCreated => "card.created",
            Self::CardActivationCode => "card.activation_code",
            Self::CardActivated => "card.activated",
            Self::CardStatusChanged => "card.status_changed",
            Self::CardReplaced => "card.replaced",
            Self::CardLimitsUpdated => "card.limits_updated",
            Self::CardControlsUpdated => "card.controls_updated",
            Self::CardPinSet => "card.pin_set",
            Self::CardPinChanged => "card.pin_changed",
            Self::CardPinBlocked => "card.pin_blocked",
            Self::CardPinUnblocked => "card.pin_unblocked",
            Self::OtpCreated => "otp.created",
            Self::AuthorizationApproved => "authorization.approved",
            Self::AuthorizationDeclined => "authorization.declined",
            Self::AuthorizationReversed => "authorization.reversed",
            Self::AuthorizationExpired => "authorization.expired",
            Self::TransactionCaptured => "transaction.captured",
            Self::TransactionRefunded => "transaction.refunded",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Events whose data holds a code for the cardholder (activation code,
    /// OTP). Their data is encrypted at rest and never logged.
    pub fn carries_code(self) -> bool {
        matches!(self, Self::CardActivationCode | Self::OtpCreated)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An event: `{id, type, card_id?, created_at, data}`.
#[derive(Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: EventId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub card_id: Option<CardId>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// The event's data, by `type`:
    ///
    /// - `card.created`, `card.activated`: `{card}`
    /// - `card.activation_code`: `{card_id, activation_code}` (6 digits, for the cardholder)
    /// - `card.status_changed`: `{card, previous_status}`
    /// - `card.replaced`: `{card, replacement, reason}`
    /// - `card.limits_updated`: `{card_id, limits}`; `card.controls_updated`: `{card_id, controls}`
    /// - `card.pin_set`, `card.pin_changed`: `{card_id, pin_status}`
    /// - `card.pin_blocked`: `{card_id, reason}`; `card.pin_unblocked`: `{card_id}`
    /// - `otp.created`: `{card_id, purpose, trace_number, otp, expires_at, phone}` (`otp`: 6 digits, for the cardholder)
    ///
    /// - `authorization.approved`, `authorization.declined`: the Authorization object
    /// - `authorization.reversed`, `authorization.expired`: `{authorization, amount}` (`amount`: what was released)
    /// - `transaction.captured`: `{transaction, authorization}`; `transaction.refunded`: `{transaction}`
    ///
    /// `card` and `replacement` are Card objects.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

impl fmt::Debug for Event {
    // `data` may hold a code for the cardholder: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("type", &self.event_type)
            .field("card_id", &self.card_id)
            .finish_non_exhaustive()
    }
}

impl Event {
    /// A new event now.
    pub fn new(
        tenant_id: TenantId,
        card_id: Option<CardId>,
        event_type: EventType,
        now: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        Self {
            id: EventId::new(),
            tenant_id,
            event_type,
            card_id,
            created_at: now,
            data,
        }
    }

    /// The body webhooks deliver: `{"type", "timestamp", "data"}`.
    pub fn webhook_payload(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.event_type,
            "timestamp": self.created_at,
            "data": self.data,
        })
    }
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A caller authenticated by an API key.
    ApiKey,
    /// An operator at the command line.
    Cli,
    /// cardcore itself (e.g. a scheduled task).
    System,
    /// An operator in the web console, signed in with an API key.
    Console,
}

/// Through which API a request came: `native`, `cli`, `system`, or the
/// name of the HTTP dialect (API shape) that served it. The domain does
/// not know the dialects: their names come from the HTTP layer's list.
/// A name is 1 to 32 of `a-z`, `0-9` and `_`, starting with a letter, and
/// serializes as that string (audit rows keep it as written).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel(std::borrow::Cow<'static, str>);

impl Channel {
    /// The native API.
    pub const NATIVE: Self = Self::api("native");
    /// An operator at the command line.
    pub const CLI: Self = Self::api("cli");
    /// cardcore itself.
    pub const SYSTEM: Self = Self::api("system");
    /// The operator console (`/console`).
    pub const CONSOLE: Self = Self::api("console");
    /// The PIN widget (`/widget/pin`), in a cardholder's browser.
    pub const WIDGET: Self = Self::api("widget");
    /// The longest name.
    pub const MAX_LEN: usize = 32;
    /// The pattern of a name.
    pub const PATTERN: &'static str = "^[a-z][a-z0-9_]{0,31}$";

    /// The channel of the API `name`. Panics (at compile time in a `const`)
    /// when `name` is not a valid name: names are written in the code.
    pub const fn api(name: &'static str) -> Self {
        assert!(
            Self::valid(name),
            "an API name is 1 to 32 of a-z, 0-9, _ starting with a letter"
        );
        Self(std::borrow::Cow::Borrowed(name))
    }

    /// A name read back (e.g. from an audit row).
    pub fn parse(name: &str) -> Result<Self, String> {
        if Self::valid(name) {
            Ok(Self(std::borrow::Cow::Owned(name.to_owned())))
        } else {
            Err(format!(
                "an API name is 1 to {} of a-z, 0-9, _ starting with a letter",
                Self::MAX_LEN
            ))
        }
    }

    const fn valid(name: &str) -> bool {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > Self::MAX_LEN || !b[0].is_ascii_lowercase() {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'_') {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// The actor of an audit entry: kind, the API key id (never the key), and
/// the API the request came through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorKind,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub api_key_id: Option<ApiKeyId>,
    pub channel: Channel,
}

impl Actor {
    /// A caller with an API key.
    pub fn api_key(id: ApiKeyId, channel: Channel) -> Self {
        Self {
            kind: ActorKind::ApiKey,
            api_key_id: Some(id),
            channel,
        }
    }

    /// An operator in the console, signed in with the API key `id`.
    pub fn console(id: ApiKeyId) -> Self {
        Self {
            kind: ActorKind::Console,
            api_key_id: Some(id),
            channel: Channel::CONSOLE,
        }
    }

    /// An operator at the command line.
    pub fn cli() -> Self {
        Self {
            kind: ActorKind::Cli,
            api_key_id: None,
            channel: Channel::CLI,
        }
    }

    /// cardcore itself.
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            api_key_id: None,
            channel: Channel::SYSTEM,
        }
    }
}

/// One audit entry: `{id, type, actor, request_id, reason, before, after, created_at}`.
/// Never holds a PIN, OTP, PAN, CVV or code: `before`/`after` are
/// [`crate::Card::snapshot`]s or limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: AuditId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub card_id: Option<CardId>,
    /// What happened, e.g. `card.lock`, `card.pin_set`, `card.sensitive_revealed`.
    #[serde(rename = "type")]
    pub entry_type: String,
    pub actor: Actor,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub request_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<StatusReason>,
    /// The card's state before the change (`{status, status_reason, pin_status}`, or the limits), when it has one.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<Object>))]
    pub before: Option<serde_json::Value>,
    /// The state after the change.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<Object>))]
    pub after: Option<serde_json::Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}
