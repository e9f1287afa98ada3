//! Tenants: each card program operator, isolated from every other.

use std::collections::BTreeMap;
use std::fmt;

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
    /// Which of M2P's PIN-change fields a request must carry.
    pub m2p_required: M2pRequired,
    /// The program's authorization settings (a tenant is one program).
    #[serde(skip_serializing_if = "AuthorizationSettings::is_default")]
    pub authorizations: AuthorizationSettings,
    /// Settings of the tenant's programs (a card's `program_id`), each
    /// falling back to the node's flags where it says nothing.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub programs: BTreeMap<ProgramId, ProgramSettings>,
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

/// The fields of M2P's `ChangeCardPinDto` a tenant's product requires on
/// update PIN and set PIN. M2P: "the required fields depend on the product
/// configuration". Default: the three the seed's example sends. A field
/// that is sent is checked whether required or not; `otpDetails` is the OTP
/// proof, so without it the request must carry `otp` and `rule.traceNumber`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct M2pRequired {
    pub mobile: bool,
    pub expiry_date: bool,
    pub otp_details: bool,
}

impl M2pRequired {
    /// The field names, in M2P's spelling.
    pub const FIELDS: [&'static str; 3] = ["mobile", "expiryDate", "otpDetails"];
    /// Every field required (the seed's example).
    pub const ALL: Self = Self {
        mobile: true,
        expiry_date: true,
        otp_details: true,
    };
    /// None required.
    pub const NONE: Self = Self {
        mobile: false,
        expiry_date: false,
        otp_details: false,
    };

    /// True when the named field is required.
    pub fn requires(self, field: &str) -> bool {
        match field {
            "mobile" => self.mobile,
            "expiryDate" => self.expiry_date,
            "otpDetails" => self.otp_details,
            _ => false,
        }
    }

    /// The required fields, in [`Self::FIELDS`] order.
    pub fn names(self) -> Vec<&'static str> {
        Self::FIELDS.into_iter().filter(|f| self.requires(f)).collect()
    }

    /// Parses `none`, `all` or a comma-separated list of `mobile`,
    /// `expiryDate`, `otpDetails`.
    pub fn parse(list: &str) -> Result<Self, String> {
        match list.trim() {
            "none" => return Ok(Self::NONE),
            "all" => return Ok(Self::ALL),
            "" => return Err("give a comma-separated list of fields, `all` or `none`".into()),
            _ => {}
        }
        list.split(',').map(str::trim).try_fold(Self::NONE, |mut r, name| {
            match name {
                "mobile" => r.mobile = true,
                "expiryDate" => r.expiry_date = true,
                "otpDetails" => r.otp_details = true,
                _ => {
                    return Err(format!(
                        "unknown field {name:?}; the fields are {} (or `all`, or `none`)",
                        Self::FIELDS.join(", ")
                    ))
                }
            }
            Ok(r)
        })
    }
}

impl Default for M2pRequired {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for M2pRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        f.write_str(&if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        })
    }
}

impl fmt::Debug for M2pRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "M2pRequired({self})")
    }
}

impl Serialize for M2pRequired {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for M2pRequired {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        if names.is_empty() {
            return Ok(Self::NONE);
        }
        Self::parse(&names.join(",")).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_every_rule_and_the_seeds_fields() {
        let empty: TenantSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, TenantSettings::default());
        assert_eq!(empty.pin_rules, PinRules::ALL);
        assert_eq!(empty.m2p_required, M2pRequired::ALL);
        let s = TenantSettings {
            pin_rules: PinRules::NONE,
            m2p_required: M2pRequired::parse("mobile,otpDetails").unwrap(),
            ..TenantSettings::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"pin_rules": [], "m2p_required": ["mobile", "otpDetails"]})
        );
        assert_eq!(serde_json::from_value::<TenantSettings>(json).unwrap(), s);
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

    #[test]
    fn m2p_fields_parse_by_m2p_name() {
        assert_eq!(M2pRequired::parse("none"), Ok(M2pRequired::NONE));
        assert_eq!(
            M2pRequired::parse("mobile, expiryDate, otpDetails"),
            Ok(M2pRequired::ALL)
        );
        assert_eq!(M2pRequired::parse("expiryDate").unwrap().to_string(), "expiryDate");
        let err = M2pRequired::parse("mobile,expiry_date").unwrap_err();
        assert!(err.contains("\"expiry_date\"") && err.contains("expiryDate"), "{err}");
    }
}
