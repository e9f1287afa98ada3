//! The card: what the API shows of it. PAN and CVV are not here; they live
//! encrypted in the store and leave it only through the audited reveal.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, CardId, CardholderId, ProgramId, TenantId};
use crate::limits::Limits;
use crate::reason::StatusReason;
use crate::Timestamp;

/// Virtual or physical (QI calls physical "plastic").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CardType {
    Virtual,
    Physical,
}

impl CardType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Virtual => "virtual",
            Self::Physical => "physical",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "virtual" => Some(Self::Virtual),
            "physical" => Some(Self::Physical),
            _ => None,
        }
    }
}

/// The card's lifecycle status (see [`crate::lifecycle`] for the moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        description = "The card's lifecycle status: INACTIVE (issued, not yet activated: physical cards), \
                       ACTIVE (usable), LOCKED (temporarily frozen, reversible), BLOCKED (permanently blocked), \
                       CLOSED (terminal)."
    )
)]
#[serde(rename_all = "UPPERCASE")]
pub enum CardStatus {
    /// Issued, not yet activated (physical cards).
    Inactive,
    /// Usable.
    Active,
    /// Temporarily frozen; reversible.
    Locked,
    /// Permanently blocked.
    Blocked,
    /// Closed; terminal.
    Closed,
}

impl CardStatus {
    /// Every status.
    pub const ALL: [CardStatus; 5] = [Self::Inactive, Self::Active, Self::Locked, Self::Blocked, Self::Closed];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "INACTIVE",
            Self::Active => "ACTIVE",
            Self::Locked => "LOCKED",
            Self::Blocked => "BLOCKED",
            Self::Closed => "CLOSED",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// PIN set and change are allowed on INACTIVE, ACTIVE and LOCKED cards.
    pub fn allows_pin_set(self) -> bool {
        matches!(self, Self::Inactive | Self::Active | Self::Locked)
    }

    /// PIN verification is allowed on ACTIVE and LOCKED cards.
    pub fn allows_pin_verify(self) -> bool {
        matches!(self, Self::Active | Self::Locked)
    }
}

impl fmt::Display for CardStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the card has a PIN and whether it is blocked by wrong tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PinStatus {
    NotSet,
    Set,
    Blocked,
}

impl PinStatus {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotSet => "NOT_SET",
            Self::Set => "SET",
            Self::Blocked => "BLOCKED",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::NotSet, Self::Set, Self::Blocked]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Card network, derived from the BIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Brand {
    Visa,
    Mastercard,
}

impl Brand {
    /// The network of a BIN: 4 is Visa; 51–55 and 2221–2720 are Mastercard.
    pub fn of_bin(bin: &str) -> Option<Self> {
        let n2: u32 = bin.get(..2)?.parse().ok()?;
        let n4: u32 = bin.get(..4)?.parse().ok()?;
        if bin.starts_with('4') {
            Some(Self::Visa)
        } else if (51..=55).contains(&n2) || (2221..=2720).contains(&n4) {
            Some(Self::Mastercard)
        } else {
            None
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::Mastercard => "mastercard",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "visa" => Some(Self::Visa),
            "mastercard" => Some(Self::Mastercard),
            _ => None,
        }
    }
}

/// Card expiry, shown as `MM/YY`; the card is valid through the end of that month.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expiry {
    month: u8,
    year: u16,
}

impl Expiry {
    /// A month (1..=12) of a four-digit year.
    pub fn new(month: u8, year: u16) -> Option<Self> {
        ((1..=12).contains(&month) && (2000..=2099).contains(&year)).then_some(Self { month, year })
    }

    /// The expiry `years` after `now`'s month.
    pub fn years_after(now: Timestamp, years: u16) -> Self {
        use chrono::Datelike;
        Self {
            month: now.month() as u8,
            year: (now.year() as u16).saturating_add(years).min(2099),
        }
    }

    /// Parses `MM/YY`.
    pub fn parse_mm_yy(s: &str) -> Option<Self> {
        let (mm, yy) = s.split_once('/')?;
        if mm.len() != 2 || yy.len() != 2 {
            return None;
        }
        Self::new(mm.parse().ok()?, 2000 + yy.parse::<u16>().ok()?)
    }

    /// Month 1..=12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// Four-digit year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// `YYMM`, as the CVV algorithm takes it.
    pub fn yymm(&self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}/{:02}", self.month, self.year % 100)
    }
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expiry({self})")
    }
}

impl Serialize for Expiry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_mm_yy(&s).ok_or_else(|| serde::de::Error::custom("expected MM/YY"))
    }
}

/// A card's kit number (M2P `kit`/`kitNo`): 6 to 16 digits as vendors issue
/// them, unique per tenant; cardcore draws 10 when none is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KitNumber(String);

impl KitNumber {
    /// Length of a generated kit number, in digits.
    pub const LEN: usize = 10;
    /// Shortest kit number accepted.
    pub const MIN_LEN: usize = 6;
    /// Longest kit number accepted.
    pub const MAX_LEN: usize = 16;
    /// The pattern of a kit number, for documents.
    pub const PATTERN: &'static str = "^[0-9]{6,16}$";
    /// Why a given kit number is refused.
    pub const RULE: &'static str = "must be 6 to 16 digits";

    /// Accepts 6 to 16 digits.
    pub fn parse(s: &str) -> Option<Self> {
        ((Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(s.to_owned()))
    }

    /// Builds one from ten digit values (as drawn from a CSPRNG).
    pub fn from_digits(digits: [u8; Self::LEN]) -> Self {
        Self(digits.iter().map(|d| char::from(b'0' + d % 10)).collect())
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A card as the API shows it (never its PAN or CVV: see `GET /v1/cards/{id}/sensitive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Card {
    pub id: CardId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    pub cardholder_id: CardholderId,
    pub account_id: AccountId,
    pub program_id: ProgramId,
    #[serde(rename = "type")]
    pub card_type: CardType,
    pub status: CardStatus,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status_reason: Option<StatusReason>,
    pub pin_status: PinStatus,
    pub brand: Brand,
    /// The last four digits of the PAN.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]{4}$"))]
    pub last_four: String,
    pub expiry: Expiry,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub card_name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub printed_name: Option<String>,
    pub kit_number: KitNumber,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub replacement_for: Option<CardId>,
    #[serde(skip)]
    pub limits: Limits,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

impl Card {
    /// What the audit trail records before and after a change: the mutable
    /// state, never card data.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status,
            "status_reason": self.status_reason,
            "pin_status": self.pin_status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_from_bin() {
        assert_eq!(Brand::of_bin("400000"), Some(Brand::Visa));
        assert_eq!(Brand::of_bin("510510"), Some(Brand::Mastercard));
        assert_eq!(Brand::of_bin("222100"), Some(Brand::Mastercard));
        assert_eq!(Brand::of_bin("272099"), Some(Brand::Mastercard));
        assert_eq!(Brand::of_bin("272100"), None);
        assert_eq!(Brand::of_bin("601100"), None);
    }

    #[test]
    fn expiry_formats_and_parses() {
        let e = Expiry::new(3, 2029).unwrap();
        assert_eq!(e.to_string(), "03/29");
        assert_eq!(e.yymm(), "2903");
        assert_eq!(Expiry::parse_mm_yy("03/29"), Some(e));
        assert_eq!(Expiry::parse_mm_yy("13/29"), None);
        assert_eq!(Expiry::parse_mm_yy("3/29"), None);
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"03/29\"");
    }

    #[test]
    fn statuses_spell_as_the_api() {
        for s in CardStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(CardStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(serde_json::to_value(PinStatus::NotSet).unwrap(), "NOT_SET");
    }

    #[test]
    fn kit_numbers_are_six_to_sixteen_digits() {
        assert!(KitNumber::parse("0123456789").is_some());
        assert!(KitNumber::parse("20004195").is_some());
        assert!(KitNumber::parse("123456").is_some());
        assert!(KitNumber::parse("1234567890123456").is_some());
        assert!(KitNumber::parse("12345").is_none());
        assert!(KitNumber::parse("12345678901234567").is_none());
        assert!(KitNumber::parse("2000419a").is_none());
        assert!(KitNumber::parse("").is_none());
        assert_eq!(KitNumber::from_digits([1; 10]).as_str(), "1111111111");
    }
}
