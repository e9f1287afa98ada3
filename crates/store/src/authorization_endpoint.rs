//! What the store keeps of a tenant's authorization endpoint (its own
//! decision service, asked after cardcore's checks passed): one per tenant,
//! the signing secret sealed under the data key.

use std::fmt;

use cardcore_domain::{TenantId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::SealedData;

/// A tenant's authorization endpoint as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationEndpointRecord {
    pub tenant_id: TenantId,
    pub url: String,
    /// How long cardcore waits for the answer, connecting included.
    pub timeout_ms: u32,
    /// What stands in for an answer that did not come in time (or a
    /// non-2xx, or a malformed one).
    pub on_timeout: OnTimeout,
    /// The signing key, sealed under the data key (AAD: the tenant).
    pub secret: SealedData,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl fmt::Debug for AuthorizationEndpointRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a token: left out, as everywhere.
        f.debug_struct("AuthorizationEndpointRecord")
            .field("tenant_id", &self.tenant_id)
            .field("timeout_ms", &self.timeout_ms)
            .field("on_timeout", &self.on_timeout)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// The stand-in decision when the tenant does not answer usefully in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    Approve,
    Decline,
}

impl OnTimeout {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Approve, Self::Decline].into_iter().find(|o| o.as_str() == s)
    }
}
