//! Typed identifiers: a `CardId` cannot be passed where a `TenantId` is due.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// A tenant: one card program operator, isolated from every other.
    TenantId
);
id_type!(
    /// A cardholder.
    CardholderId
);
id_type!(
    /// A card (P100 `cardId`, QI `CARD_KEY`).
    CardId
);
id_type!(
    /// An account the card draws on (QI `WALLET_KEY`).
    AccountId
);
id_type!(
    /// A card program (QI `program_key`).
    ProgramId
);
id_type!(
    /// An event in the outbox.
    EventId
);
id_type!(
    /// An audit entry.
    AuditId
);
id_type!(
    /// An API key (its id, never its secret).
    ApiKeyId
);
id_type!(
    /// A webhook endpoint.
    WebhookEndpointId
);
id_type!(
    /// A tenant's zone PIN key.
    ZoneKeyId
);
id_type!(
    /// An authorization: the issuer's decision on one payment, and its hold.
    AuthorizationId
);
id_type!(
    /// A money movement on a card: a capture (clearing) or a refund.
    TransactionId
);
