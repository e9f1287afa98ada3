//! What the store keeps for webhooks and idempotency keys: endpoints (with
//! their secret sealed), deliveries with their attempts, and the answers
//! of idempotent requests.

use std::fmt;

use cardcore_domain::{CardId, EventId, EventType, TenantId, Timestamp, WebhookEndpointId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SealedData;

/// A webhook endpoint as stored: the secret is sealed under a data key.
#[derive(Clone, PartialEq)]
pub struct WebhookEndpointRecord {
    pub id: WebhookEndpointId,
    pub tenant_id: TenantId,
    pub url: String,
    /// The event types it receives; `None`: every type.
    pub event_types: Option<Vec<EventType>>,
    /// The signing key, sealed under the data key (AAD: tenant and endpoint).
    pub secret: SealedData,
    /// What is sent, and how.
    pub format: EndpointFormat,
    pub created_at: Timestamp,
}

/// How an endpoint's deliveries are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndpointFormat {
    /// cardcore's payload, signed per the Standard Webhooks spec.
    #[default]
    Standard,
    /// P100's `{"event_type", "data"}`, the secret token in `Authorization`.
    P100,
    /// The tenant's OTPs, as text messages through the node's SMS provider.
    Sms,
}

impl EndpointFormat {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::P100 => "p100",
            Self::Sms => "sms",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Standard, Self::P100, Self::Sms]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// A tenant's SMS settings as stored (no row: the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSmsRecord {
    pub tenant_id: TenantId,
    /// The message template; `None`: the default.
    pub text: Option<String>,
    /// Whether `otp.created` events carry the code.
    pub otp_in_events: bool,
    pub updated_at: Timestamp,
}

impl fmt::Debug for WebhookEndpointRecord {
    // The URL may carry credentials of the receiver; the secret is sealed
    // but is nobody's business in a log either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpointRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("event_types", &self.event_types)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl WebhookEndpointRecord {
    /// Whether fan-out gives this endpoint a delivery of an event: the type
    /// is one it asked for, and the event is not older than the endpoint
    /// (an endpoint receives the events made from its creation on).
    pub fn wants(&self, event_type: EventType, event_created_at: Timestamp) -> bool {
        self.receives(event_type) && event_created_at >= self.created_at
    }

    /// Whether a redelivery of an event of this type goes to this endpoint:
    /// every endpoint that asked for the type, whatever its age, except the
    /// SMS sender (a cardholder gets an OTP's text at most once).
    pub fn redelivers(&self, event_type: EventType) -> bool {
        self.format != EndpointFormat::Sms && self.receives(event_type)
    }

    /// Whether the endpoint asked for this event type.
    pub fn receives(&self, event_type: EventType) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.contains(&event_type))
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Tried and failed; tried again at `next_attempt_at`.
    Retrying,
    /// A 2xx answer came back.
    Succeeded,
    /// Every attempt of the schedule failed (or the endpoint was deleted).
    Dead,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Retrying, Self::Succeeded, Self::Dead]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// Pending or retrying: the delivery still holds back later deliveries
    /// of its card to its endpoint.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying)
    }
}

/// One attempt to deliver: when, the HTTP status or the error, how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the attempt took, connecting included.
    pub duration_ms: u64,
}

/// A delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub endpoint_id: WebhookEndpointId,
    /// The event's card: deliveries of one card to one endpoint go out one
    /// at a time, in the order they were queued. `None`: unordered.
    pub card_id: Option<CardId>,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (`None` once succeeded or dead).
    pub next_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub attempts_log: Vec<DeliveryAttempt>,
    pub created_at: Timestamp,
}

/// A claimed delivery: the lease token proves the claim when the attempt is
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub delivery: WebhookDelivery,
    pub lease: Uuid,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Succeeded,
    /// Failed; try again at this time.
    Retry(Timestamp),
    /// Failed for the last time.
    Dead,
}

// --- idempotency keys --------------------------------------------------------

/// An idempotent request starting: what `begin_idempotent` needs.
#[derive(Debug, Clone)]
pub struct IdempotencyStart<'a> {
    pub tenant_id: TenantId,
    pub key: &'a str,
    /// SHA-256 of the request (method, path, body).
    pub fingerprint: &'a [u8],
    pub now: Timestamp,
    /// An in-flight row started before this is taken over (its request died).
    pub takeover_before: Timestamp,
    /// A row made before this has expired and counts as absent.
    pub expired_before: Timestamp,
}

/// The stored answer of a completed idempotent request; the body is sealed
/// under a data key (it can hold personal data or a secret shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: SealedData,
}

/// What `begin_idempotent` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The caller runs the request, then finishes or abandons with `token`.
    Started { token: Uuid },
    /// The request ran already: replay this answer.
    Completed(IdempotentResponse),
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for another request (another fingerprint).
    Mismatch,
}

/// An idempotency key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub tenant_id: TenantId,
    pub key: String,
    pub fingerprint: Vec<u8>,
    pub token: Uuid,
    /// `None` while in flight.
    pub response: Option<IdempotentResponse>,
    pub created_at: Timestamp,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// What to do with an idempotency key that exists, given a new start. The
/// same for every backend; each makes the step atomic its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStep {
    /// The row has expired: overwrite it with the new request.
    Replace,
    /// Another request used the key.
    Mismatch,
    /// Replay the stored answer.
    Replay(IdempotentResponse),
    /// The first request died mid-way: take the key over.
    TakeOver,
    /// The first request is still running.
    Wait,
}

impl IdempotencyRecord {
    /// The step for a new start on this existing row.
    pub fn step(&self, start: &IdempotencyStart<'_>) -> IdempotencyStep {
        if self.created_at < start.expired_before {
            return IdempotencyStep::Replace;
        }
        if self.fingerprint != start.fingerprint {
            return IdempotencyStep::Mismatch;
        }
        match &self.response {
            Some(response) => IdempotencyStep::Replay(response.clone()),
            None if self.started_at < start.takeover_before => IdempotencyStep::TakeOver,
            None => IdempotencyStep::Wait,
        }
    }
}
