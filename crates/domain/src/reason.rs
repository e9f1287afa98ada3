//! Status reason codes: a catalog of stable machine-readable codes, with a
//! free-text message for humans.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A status reason code. The built-in catalog is below; a code outside it is
/// refused (tenants extend the catalog through configuration, never by
/// sending arbitrary text).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReasonCode(String);

impl ReasonCode {
    /// Customer request.
    pub const CUST_REQ: &'static str = "CUST_REQ";
    /// Fraud suspected.
    pub const FRAUD_SUSPECTED: &'static str = "FRAUD_SUSPECTED";
    /// Fraud confirmed.
    pub const FRAUD_CONFIRMED: &'static str = "FRAUD_CONFIRMED";
    /// Card lost.
    pub const LOST_CARD: &'static str = "LOST_CARD";
    /// Card stolen.
    pub const STOLEN_CARD: &'static str = "STOLEN_CARD";
    /// Card damaged.
    pub const DAMAGED_CARD: &'static str = "DAMAGED_CARD";
    /// Terminal closure intent: a block with this reason is not replaceable.
    pub const CARD_CLOSURE: &'static str = "CARD_CLOSURE";
    /// Too many wrong PINs.
    pub const PIN_TRIES_EXCEEDED: &'static str = "PIN_TRIES_EXCEEDED";
    /// Card expired (used by replacement).
    pub const EXPIRED: &'static str = "EXPIRED";
    /// Locked because its cardholder was suspended; unsuspending the
    /// cardholder unlocks exactly the cards locked with this reason.
    pub const USER_SUSPENDED: &'static str = "USER_SUSPENDED";

    /// The built-in catalog.
    pub const CATALOG: &'static [&'static str] = &[
        Self::CUST_REQ,
        Self::FRAUD_SUSPECTED,
        Self::FRAUD_CONFIRMED,
        Self::LOST_CARD,
        Self::STOLEN_CARD,
        Self::DAMAGED_CARD,
        Self::CARD_CLOSURE,
        Self::PIN_TRIES_EXCEEDED,
        Self::EXPIRED,
        Self::USER_SUSPENDED,
    ];

    /// Accepts a code from `catalog` (the built-ins plus a tenant's own).
    pub fn parse(code: &str, extra: &[String]) -> Result<Self, String> {
        if Self::CATALOG.contains(&code) || extra.iter().any(|e| e == code) {
            Ok(Self(code.to_owned()))
        } else {
            let mut known: Vec<&str> = Self::CATALOG.to_vec();
            known.extend(extra.iter().map(String::as_str));
            Err(format!("unknown reason code; expected one of {}", known.join(", ")))
        }
    }

    /// A code known to be in the catalog.
    pub fn builtin(code: &'static str) -> Self {
        Self(code.to_owned())
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the terminal closure intent.
    pub fn is_closure(&self) -> bool {
        self.0 == Self::CARD_CLOSURE
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode({})", self.0)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a card has its status: `{"code", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReason {
    /// Machine-readable code from the catalog.
    pub code: ReasonCode,
    /// Free text for humans (may be null).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_codes_parse_and_others_are_refused_with_the_list() {
        assert!(ReasonCode::parse("LOST_CARD", &[]).is_ok());
        let err = ReasonCode::parse("lost", &[]).unwrap_err();
        assert!(err.contains("CUST_REQ"), "{err}");
        assert!(ReasonCode::parse("MY_CODE", &["MY_CODE".into()]).is_ok());
        assert!(ReasonCode::builtin(ReasonCode::CARD_CLOSURE).is_closure());
    }
}
