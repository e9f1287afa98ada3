//! Spend limits per channel. Amounts are integer minor units; `None` (JSON
//! `null`) means no limit.

use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// Largest amount accepted (10^12 minor units), so sums never overflow.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;

/// Largest `daily_count` accepted.
pub const MAX_DAILY_COUNT: u32 = 1_000_000;

/// One channel's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelLimit {
    /// Whether the channel may be used at all.
    pub enabled: bool,
    /// Largest single transaction, in minor units; `null`: no limit.
    #[cfg_attr(feature = "openapi", schema(required = true, maximum = 1_000_000_000_000_u64))]
    pub per_transaction: Option<u64>,
    /// Largest total per day, in minor units; `null`: no limit.
    #[cfg_attr(feature = "openapi", schema(required = true, maximum = 1_000_000_000_000_u64))]
    pub daily: Option<u64>,
    /// Largest total per month, in minor units; `null`: no limit.
    #[cfg_attr(feature = "openapi", schema(required = true, maximum = 1_000_000_000_000_u64))]
    pub monthly: Option<u64>,
    /// Most approved authorizations per day; absent or `null`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 1_000_000_u32))]
    pub daily_count: Option<u32>,
}

impl Default for ChannelLimit {
    fn default() -> Self {
        Self {
            enabled: true,
            per_transaction: None,
            daily: None,
            monthly: None,
            daily_count: None,
        }
    }
}

/// The four channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelLimits {
    pub pos: ChannelLimit,
    pub ecommerce: ChannelLimit,
    pub atm: ChannelLimit,
    pub contactless: ChannelLimit,
}

impl ChannelLimits {
    /// Each channel with its name.
    pub fn named(&self) -> [(&'static str, &ChannelLimit); 4] {
        [
            ("pos", &self.pos),
            ("ecommerce", &self.ecommerce),
            ("atm", &self.atm),
            ("contactless", &self.contactless),
        ]
    }
}

/// A card's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// ISO 4217 alphabetic code, e.g. `EUR`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    pub channels: ChannelLimits,
}

impl Limits {
    /// Every channel enabled, no amounts, in `currency`.
    pub fn unlimited(currency: &str) -> Self {
        Self {
            currency: currency.to_owned(),
            channels: ChannelLimits::default(),
        }
    }

    /// Checks the currency and that per-transaction ≤ daily ≤ monthly.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.add(
                "currency",
                "must be an ISO 4217 code of three capital letters, e.g. EUR",
            );
        }
        for (name, ch) in self.channels.named() {
            for (field, value) in [
                ("per_transaction", ch.per_transaction),
                ("daily", ch.daily),
                ("monthly", ch.monthly),
            ] {
                if value.is_some_and(|v| v > MAX_AMOUNT) {
                    errors.add(
                        format!("channels.{name}.{field}"),
                        format!("must be at most {MAX_AMOUNT}"),
                    );
                }
            }
            if ch.daily_count.is_some_and(|c| c > MAX_DAILY_COUNT) {
                errors.add(
                    format!("channels.{name}.daily_count"),
                    format!("must be at most {MAX_DAILY_COUNT}"),
                );
            }
            if let (Some(p), Some(d)) = (ch.per_transaction, ch.daily) {
                if p > d {
                    errors.add(format!("channels.{name}.per_transaction"), "must not exceed daily");
                }
            }
            if let (Some(d), Some(m)) = (ch.daily, ch.monthly) {
                if d > m {
                    errors.add(format!("channels.{name}.daily"), "must not exceed monthly");
                }
            }
            if let (Some(p), Some(m)) = (ch.per_transaction, ch.monthly) {
                if p > m {
                    errors.add(format!("channels.{name}.per_transaction"), "must not exceed monthly");
                }
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_currency_and_ordering() {
        assert!(Limits::unlimited("EUR").validate().is_ok());
        let mut l = Limits::unlimited("eur");
        l.channels.atm = ChannelLimit {
            enabled: true,
            per_transaction: Some(500),
            daily: Some(100),
            monthly: Some(50),
            daily_count: None,
        };
        let err = l.validate().unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "currency",
                "channels.atm.per_transaction",
                "channels.atm.daily",
                "channels.atm.per_transaction"
            ]
        );
    }

    #[test]
    fn json_shape_is_the_contract() {
        let json = serde_json::to_value(Limits::unlimited("EUR")).unwrap();
        assert_eq!(json["channels"]["contactless"]["daily"], serde_json::Value::Null);
        assert_eq!(json["channels"]["pos"]["enabled"], true);
        let parsed: Result<Limits, _> =
            serde_json::from_value(serde_json::json!({"currency": "EUR", "channels": {}, "x": 1}));
        assert!(parsed.is_err());
    }
}
