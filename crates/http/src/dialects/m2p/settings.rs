//! M2P's tenant setting: which PIN-change fields a request must carry,
//! kept in the tenant's settings as `m2p_required` (a list of M2P field
//! names; absent: all three, as the seed's example sends them).

use std::fmt;

use cardcore_domain::TenantSettings;
use serde::{Deserialize, Serialize};

/// The settings member (the dialect's name as prefix).
pub const MEMBER: &str = "m2p_required";

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
    /// The tenant's setting (the default when absent or unreadable: a
    /// malformed value never loosens the check).
    pub fn of(settings: &TenantSettings) -> Self {
        settings
            .dialects
            .get(MEMBER)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Writes the setting into `settings`.
    pub fn store(self, settings: &mut TenantSettings) {
        settings
            .dialects
            .insert(MEMBER.to_owned(), serde_json::json!(self.names()));
    }

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
    fn the_setting_is_stored_as_before() {
        let mut s = TenantSettings::default();
        assert_eq!(M2pRequired::of(&s), M2pRequired::ALL);
        M2pRequired::parse("mobile,otpDetails").unwrap().store(&mut s);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"pin_rules": serde_json::to_value(s.pin_rules).unwrap(), "m2p_required": ["mobile", "otpDetails"]})
        );
        let back: TenantSettings = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(M2pRequired::of(&back), M2pRequired::parse("mobile,otpDetails").unwrap());
        M2pRequired::NONE.store(&mut s);
        assert_eq!(s.dialects[MEMBER], serde_json::json!([]));
        assert_eq!(M2pRequired::of(&s), M2pRequired::NONE);
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
