//! cardcore's domain: plain types and rules, no I/O, no async, no SQL, no
//! HTTP (Architecture Invariant: this crate depends on neither tokio, axum
//! nor sqlx). Time comes in as an argument, never from a clock.

pub mod activation;
pub mod authorization;
pub mod card;
pub mod cardholder;
pub mod cvv_window;
pub mod error;
pub mod event;
pub mod ids;
pub mod lifecycle;
pub mod limits;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod otp;
pub mod pin_policy;
pub mod pin_tries;
pub mod reason;
pub mod tenant;
pub mod validation;

pub use card::{Brand, Card, CardStatus, CardType, Expiry, KitNumber, PinStatus};
pub use cardholder::{Cardholder, ExternalId, Phone};
pub use error::RuleViolation;
pub use event::{Actor, ActorKind, AuditEntry, Channel, Event, EventType};
pub use ids::{
    AccountId, ApiKeyId, AuditId, AuthorizationId, CardId, CardholderId, EventId, ProgramId, TenantId, TransactionId,
    WebhookEndpointId, ZoneKeyId,
};
pub use lifecycle::{BlockFrom, LifecycleAction, ReplaceReason, Transition};
pub use limits::{ChannelLimit, ChannelLimits, Limits};
pub use pin_tries::{PinDecision, PinTries};
pub use reason::{ReasonCode, StatusReason};
pub use tenant::{AuthorizationSettings, ProgramSettings, Tenant, TenantSettings};
pub use validation::{FieldError, ValidationErrors};

/// Timestamps are UTC everywhere.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
