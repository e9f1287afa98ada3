//! Tenants: each card program operator, isolated from every other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::authorization::SpendingControls;
use crate::ids::{ProgramId, TenantId};
use crate::pin_policy::PinRules;
use crate::Timestamp;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// The program cards get when none is given.
    pub default_program_id: ProgramId,
    pub created_at: Timestamp,
}

/// Tenant names: 1 to 64 characters of letters, digits, space and `-_.`
/// (M2P sends the name as `X-TENANT-ID`, so it must travel in a header).
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    if name != name.trim() || !name.chars().all(|c| c.is_ascii_alphanumeric() || " -_.".contains(c)) {
        return Err("may contain only letters, digits, spaces and - _ . (no leading or trailing space)");
    }
    Ok(())
}

/// A tenant's settings (`cardcore tenant update`). Missing members read as
/// their defaults, so settings written by an older version stay valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// The weak-PIN rules applied to new PINs (default: all).
    pub pin_rules: PinRules,
    /// The program's authorization settings (a tenant is one program).
    #[serde(skip_serializing_if = "AuthorizationSettings::is_default")]
    pub authorizations: AuthorizationSettings,
    /// Settings of the tenant's programs (a card's `program_id`), each
    /// falling back to the node's flags where it says nothing.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub programs: BTreeMap<ProgramId, ProgramSettings>,
    /// Each API dialect's own settings, as JSON members of the settings
    /// object, each named with the dialect's name as prefix (e.g. a
    /// dialect `x`'s `x_required`). The domain keeps them as they are and
    /// never reads them; the dialect parses its own (its default when
    /// absent).
    #[serde(flatten)]
    pub dialects: BTreeMap<String, serde_json::Value>,
}

/// A program's authorization settings. cardcore has one program per tenant
/// for now, so they live in the tenant's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthorizationSettings {
    /// IANA time zone of the calendar days and months of daily and monthly
    /// limits, e.g. `Europe/Lisbon`.
    pub time_zone: String,
    /// Days after which what an approval still holds expires.
    pub expiry_days: u32,
    /// The spending controls of cards that have none of their own.
    pub default_controls: SpendingControls,
}

impl Default for AuthorizationSettings {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            expiry_days: 7,
            default_controls: SpendingControls::default(),
        }
    }
}

impl AuthorizationSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Longest hold accepted, in days (Visa's longest, for lodging and car rental, is 30).
    pub const MAX_EXPIRY_DAYS: u32 = 31;

    /// The time zone; UTC if the stored name is unknown (it is checked when written).
    pub fn tz(&self) -> chrono_tz::Tz {
        crate::authorization::parse_time_zone(&self.time_zone).unwrap_or(chrono_tz::Tz::UTC)
    }

    /// Checks the time zone, the expiry and the default controls.
    pub fn validate(&self) -> Result<(), crate::ValidationErrors> {
        let mut errors = crate::ValidationErrors::new();
        if crate::authorization::parse_time_zone(&self.time_zone).is_none() {
            errors.add("time_zone", "must be an IANA time zone name, e.g. UTC or Europe/Lisbon");
        }
        if !(1..=Self::MAX_EXPIRY_DAYS).contains(&self.expiry_days) {
            errors.add("expiry_days", format!("must be from 1 to {}", Self::MAX_EXPIRY_DAYS));
        }
        if let Err(e) = self.default_controls.validate() {
            for f in e.0 {
                errors.add(format!("default_controls.{}", f.field), f.message);
            }
        }
        errors.into_result()
    }
}

impl TenantSettings {
    /// The settings of a program (empty: the node's defaults).
    pub fn program(&self, program: ProgramId) -> ProgramSettings {
        self.programs.get(&program).cloned().unwrap_or_default()
    }
}

/// A program's own settings. A program is what a card's `program_id`
/// names; a tenant's cards get its `default_program_id` unless created with
/// another. `None` everywhere means: the node's flag decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgramSettings {
    /// Hours between CVV2 changes of the program's virtual cards; 0: the
    /// CVV2 does not rotate; None: `serve --cvv-rotation-interval-hours`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvv_rotation_interval_hours: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_every_rule_and_keep_dialect_members_as_written() {
        let empty: TenantSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, TenantSettings::default());
        assert_eq!(empty.pin_rules, PinRules::ALL);
        let stored = serde_json::json!({"pin_rules": [], "x_required": ["mobile", "otpDetails"]});
        let s: TenantSettings = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(s.pin_rules, PinRules::NONE);
        assert_eq!(s.dialects["x_required"], serde_json::json!(["mobile", "otpDetails"]));
        assert_eq!(serde_json::to_value(&s).unwrap(), stored);
    }

    #[test]
    fn program_settings_are_keyed_by_program_id() {
        let program = ProgramId::new();
        let mut s = TenantSettings::default();
        assert_eq!(s.program(program).cvv_rotation_interval_hours, None);
        s.programs.insert(
            program,
            ProgramSettings {
                cvv_rotation_interval_hours: Some(24),
            },
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["programs"][program.to_string()],
            serde_json::json!({"cvv_rotation_interval_hours": 24})
        );
        let back: TenantSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back.program(program).cvv_rotation_interval_hours, Some(24));
        assert_eq!(back.program(ProgramId::new()), ProgramSettings::default());
    }
}
