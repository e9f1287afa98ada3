//! Authorizations: the issuer's decision on a payment (every check of the
//! contract, in its order, with its ISO 8583 response code), the spending
//! controls, and the running totals per card, payment channel and calendar
//! window that keep limits from being overspent.
//!
//! Everything here is pure: the service reads the card and its totals in
//! card order, calls [`decide`], and writes what it returns. Time and the
//! program's time zone are arguments.

use std::collections::BTreeMap;
use std::fmt;

use chrono::Datelike;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::card::{Card, CardStatus, Expiry};
use crate::limits::{ChannelLimit, Limits, MAX_AMOUNT};
use crate::pin_tries::{PinDecision, PinTries};
use crate::reason::ReasonCode;
use crate::validation::ValidationErrors;
use crate::Timestamp;

/// How the card was used (the payment's channel). Named so it is not
/// confused with the API an audit entry came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PaymentChannel {
    /// Card present, chip or magnetic stripe.
    Pos,
    /// Card present, tapped.
    Contactless,
    /// Card not present, online.
    Ecommerce,
    /// Cash withdrawal.
    Atm,
    /// Mail or telephone order (card not present): counts as `ecommerce`
    /// for limits and totals.
    Moto,
}

impl PaymentChannel {
    /// Every channel.
    pub const ALL: [Self; 5] = [Self::Pos, Self::Contactless, Self::Ecommerce, Self::Atm, Self::Moto];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pos => "pos",
            Self::Contactless => "contactless",
            Self::Ecommerce => "ecommerce",
            Self::Atm => "atm",
            Self::Moto => "moto",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The limits channel this payment counts on (`moto` is card-not-present
    /// like `ecommerce`, and shares its limits and totals).
    pub fn limit_channel(self) -> &'static str {
        match self {
            Self::Moto => "ecommerce",
            other => other.as_str(),
        }
    }

    /// The card's limits for this channel.
    pub fn limit(self, limits: &Limits) -> &ChannelLimit {
        let c = &limits.channels;
        match self {
            Self::Pos => &c.pos,
            Self::Contactless => &c.contactless,
            Self::Ecommerce | Self::Moto => &c.ecommerce,
            Self::Atm => &c.atm,
        }
    }
}

impl fmt::Display for PaymentChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the card was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Merchant {
    /// ISO 18245 merchant category code: four digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]{4}$", example = "5411"))]
    pub mcc: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `PT`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{2}$", example = "PT"))]
    pub country: String,
    /// The acquirer's id for the merchant.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub id: Option<String>,
}

impl Merchant {
    /// Checks the fields' shapes; `prefix` names the object in errors.
    pub fn validate(&self, prefix: &str, errors: &mut ValidationErrors) {
        if !is_mcc(&self.mcc) {
            errors.add(format!("{prefix}.mcc"), "must be four digits (ISO 18245)");
        }
        if !is_country(&self.country) {
            errors.add(
                format!("{prefix}.country"),
                "must be an ISO 3166-1 alpha-2 code of two capital letters, e.g. PT",
            );
        }
        for (field, value) in [("name", &self.name), ("city", &self.city), ("id", &self.id)] {
            if value.as_ref().is_some_and(|v| v.chars().count() > 100) {
                errors.add(format!("{prefix}.{field}"), "must be at most 100 characters");
            }
        }
    }
}

fn is_mcc(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// Checks an amount in minor units: 1 to 10^12.
pub fn validate_amount(field: &str, amount: i64, errors: &mut ValidationErrors) {
    if amount < 1 || amount as u64 > MAX_AMOUNT {
        errors.add(
            field,
            format!("must be an integer from 1 to {MAX_AMOUNT} (minor units)"),
        );
    }
}

/// Checks an ISO 4217 alphabetic code.
pub fn validate_currency(field: &str, currency: &str, errors: &mut ValidationErrors) {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.add(field, "must be an ISO 4217 code of three capital letters, e.g. EUR");
    }
}

/// Why an authorization was declined, with its ISO 8583 field 39 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeclineReason {
    CardNotFound,
    CardExpired,
    CardInactive,
    CardLocked,
    CardLost,
    CardStolen,
    CardFraud,
    CardBlocked,
    CardClosed,
    Cvv2Mismatch,
    PinTriesExceeded,
    PinIncorrect,
    PinNotSet,
    ChannelDisabled,
    MccNotAllowed,
    CountryNotAllowed,
    LimitPerTransaction,
    LimitDaily,
    LimitMonthly,
    LimitDailyCount,
    DeclinedByTenant,
    TenantUnavailable,
}

impl DeclineReason {
    /// Every reason, in the order of the checks.
    pub const ALL: [Self; 22] = [
        Self::CardNotFound,
        Self::CardExpired,
        Self::CardInactive,
        Self::CardLocked,
        Self::CardLost,
        Self::CardStolen,
        Self::CardFraud,
        Self::CardBlocked,
        Self::CardClosed,
        Self::Cvv2Mismatch,
        Self::PinTriesExceeded,
        Self::PinIncorrect,
        Self::PinNotSet,
        Self::ChannelDisabled,
        Self::MccNotAllowed,
        Self::CountryNotAllowed,
        Self::LimitPerTransaction,
        Self::LimitDaily,
        Self::LimitMonthly,
        Self::LimitDailyCount,
        Self::DeclinedByTenant,
        Self::TenantUnavailable,
    ];

    /// The API spelling, e.g. `CARD_LOCKED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardNotFound => "CARD_NOT_FOUND",
            Self::CardExpired => "CARD_EXPIRED",
            Self::CardInactive => "CARD_INACTIVE",
            Self::CardLocked => "CARD_LOCKED",
            Self::CardLost => "CARD_LOST",
            Self::CardStolen => "CARD_STOLEN",
            Self::CardFraud => "CARD_FRAUD",
            Self::CardBlocked => "CARD_BLOCKED",
            Self::CardClosed => "CARD_CLOSED",
            Self::Cvv2Mismatch => "CVV2_MISMATCH",
            Self::PinTriesExceeded => "PIN_TRIES_EXCEEDED",
            Self::PinIncorrect => "PIN_INCORRECT",
            Self::PinNotSet => "PIN_NOT_SET",
            Self::ChannelDisabled => "CHANNEL_DISABLED",
            Self::MccNotAllowed => "MCC_NOT_ALLOWED",
            Self::CountryNotAllowed => "COUNTRY_NOT_ALLOWED",
            Self::LimitPerTransaction => "LIMIT_PER_TRANSACTION",
            Self::LimitDaily => "LIMIT_DAILY",
            Self::LimitMonthly => "LIMIT_MONTHLY",
            Self::LimitDailyCount => "LIMIT_DAILY_COUNT",
            Self::DeclinedByTenant => "DECLINED_BY_TENANT",
            Self::TenantUnavailable => "TENANT_UNAVAILABLE",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// ISO 8583 field 39, as the contract's table gives it.
    pub fn response_code(self) -> &'static str {
        match self {
            Self::CardNotFound => "14",
            Self::CardExpired => "54",
            Self::CardInactive => "78",
            Self::CardLocked | Self::CardBlocked | Self::CardClosed => "62",
            Self::CardLost => "41",
            Self::CardStolen => "43",
            Self::CardFraud => "59",
            Self::Cvv2Mismatch => "N7",
            Self::PinTriesExceeded => "75",
            Self::PinIncorrect | Self::PinNotSet => "55",
            Self::ChannelDisabled | Self::MccNotAllowed | Self::CountryNotAllowed => "57",
            Self::LimitPerTransaction | Self::LimitDaily | Self::LimitMonthly => "61",
            Self::LimitDailyCount => "65",
            Self::DeclinedByTenant => "05",
            Self::TenantUnavailable => "91",
        }
    }
}

/// The response code of an approval.
pub const APPROVED_CODE: &str = "00";

/// An authorization's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthorizationStatus {
    /// Approved; some of it may still be held (`pending_amount`).
    Approved,
    /// Declined; nothing held.
    Declined,
    /// Approved and nothing held any more, some of it captured.
    Closed,
    /// Approved and released in full by reversals, nothing captured.
    Reversed,
    /// Approved and its hold released when it expired, nothing captured.
    Expired,
}

impl AuthorizationStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Approved,
        Self::Declined,
        Self::Closed,
        Self::Reversed,
        Self::Expired,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
            Self::Closed => "CLOSED",
            Self::Reversed => "REVERSED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Who took the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// cardcore's own checks.
    Cardcore,
    /// The tenant's decision service.
    Tenant,
    /// `on_timeout` of the tenant's decision service, which did not answer.
    StandIn,
}

impl DecidedBy {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cardcore => "cardcore",
            Self::Tenant => "tenant",
            Self::StandIn => "stand_in",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Cardcore, Self::Tenant, Self::StandIn]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Merchant category and country allow and block lists. An allow list of
/// `null` allows everything; a block list wins over an allow list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SpendingControls {
    /// Only these merchant categories; `null`: any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub allowed_mccs: Option<Vec<String>>,
    /// Never these merchant categories.
    #[serde(default)]
    pub blocked_mccs: Vec<String>,
    /// Only these countries (ISO 3166-1 alpha-2); `null`: any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub allowed_countries: Option<Vec<String>>,
    /// Never these countries.
    #[serde(default)]
    pub blocked_countries: Vec<String>,
}

/// A list of the controls, for checking: its name, its codes, the shape
/// test and the shape's wording.
type ControlList<'a> = (&'a str, Option<&'a Vec<String>>, fn(&str) -> bool, &'a str);

/// Longest list accepted in the controls.
pub const MAX_CONTROL_ENTRIES: usize = 500;

impl SpendingControls {
    /// Checks every code's shape and the lists' lengths.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let lists: [ControlList<'_>; 4] = [
            ("allowed_mccs", self.allowed_mccs.as_ref(), is_mcc, "four digits"),
            ("blocked_mccs", Some(&self.blocked_mccs), is_mcc, "four digits"),
            (
                "allowed_countries",
                self.allowed_countries.as_ref(),
                is_country,
                "two capital letters",
            ),
            (
                "blocked_countries",
                Some(&self.blocked_countries),
                is_country,
                "two capital letters",
            ),
        ];
        for (name, list, ok, shape) in lists {
            let Some(list) = list else { continue };
            if list.len() > MAX_CONTROL_ENTRIES {
                errors.add(name, format!("must have at most {MAX_CONTROL_ENTRIES} entries"));
            }
            for (i, code) in list.iter().enumerate() {
                if !ok(code) {
                    errors.add(format!("{name}[{i}]"), format!("must be {shape}"));
                }
            }
        }
        errors.into_result()
    }

    /// The declined reason for this merchant, if any.
    pub fn refuses(&self, merchant: &Merchant) -> Option<DeclineReason> {
        let mcc_ok = self.allowed_mccs.as_ref().is_none_or(|a| a.contains(&merchant.mcc))
            && !self.blocked_mccs.contains(&merchant.mcc);
        if !mcc_ok {
            return Some(DeclineReason::MccNotAllowed);
        }
        let country_ok = self
            .allowed_countries
            .as_ref()
            .is_none_or(|a| a.contains(&merchant.country))
            && !self.blocked_countries.contains(&merchant.country);
        (!country_ok).then_some(DeclineReason::CountryNotAllowed)
    }
}

/// An authorization as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Authorization {
    pub id: crate::AuthorizationId,
    /// `null` when no card of the tenant matched.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub card_id: Option<crate::CardId>,
    pub status: AuthorizationStatus,
    /// ISO 8583 field 39: `00` approved, otherwise the decline's code.
    pub response_code: String,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub decline_reason: Option<DeclineReason>,
    pub decided_by: DecidedBy,
    /// In `currency`'s minor units.
    pub amount: u64,
    pub currency: String,
    /// In the card's currency (`billing_currency`).
    pub billing_amount: u64,
    pub billing_currency: String,
    /// The amount held when approved (0 when declined); always
    /// `approved = pending + captured + reversed`.
    pub approved_amount: u64,
    /// Still held.
    pub pending_amount: u64,
    pub captured_amount: u64,
    /// Released by reversals, or by the expiry (status `EXPIRED`).
    pub reversed_amount: u64,
    pub merchant: Merchant,
    pub channel: PaymentChannel,
    pub network_reference: String,
    /// When what is still held expires (approved only).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime, required = true))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// A capture (clearing) or a refund, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transaction {
    pub id: crate::TransactionId,
    pub card_id: crate::CardId,
    /// The captured authorization; `null` for a refund.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub authorization_id: Option<crate::AuthorizationId>,
    /// `capture` or `refund`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// In the card's currency.
    pub amount: u64,
    pub currency: String,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub merchant: Option<Merchant>,
    pub network_reference: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

// --- windows and running totals -------------------------------------------

/// Parses an IANA time zone name (`UTC`, `Europe/Lisbon`, ...).
pub fn parse_time_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// The calendar day and month an instant falls in, in a time zone: the
/// windows of the daily and monthly limits. Keys are `YYYY-MM-DD` and
/// `YYYY-MM`, so their string order is their time order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Windows {
    pub day: String,
    pub month: String,
}

impl Windows {
    /// The windows of `at` in `tz`.
    pub fn at(at: Timestamp, tz: Tz) -> Self {
        let local = at.with_timezone(&tz).date_naive();
        Self {
            day: format!("{:04}-{:02}-{:02}", local.year(), local.month(), local.day()),
            month: format!("{:04}-{:02}", local.year(), local.month()),
        }
    }
}

/// One window's running total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTotal {
    /// The window's key (`YYYY-MM-DD` or `YYYY-MM`); empty: never used.
    pub key: String,
    /// Approved billing amounts in the window, less what was released.
    pub amount: u64,
    /// Approved authorizations in the window, less those released in full
    /// with nothing captured.
    pub count: u32,
}

impl WindowTotal {
    /// What counts in window `key`: this total when it is that window's (or
    /// a later one's: a node whose clock is behind counts against what a
    /// node ahead of it wrote, never against nothing), else nothing.
    fn in_window(&self, key: &str) -> (u64, u32) {
        if self.key.as_str() >= key && !self.key.is_empty() {
            (self.amount, self.count)
        } else {
            (0, 0)
        }
    }

    fn add(&mut self, key: &str, amount: u64) {
        if self.key.is_empty() || self.key.as_str() < key {
            *self = Self {
                key: key.to_owned(),
                amount: 0,
                count: 0,
            };
        }
        self.amount = self.amount.saturating_add(amount);
        self.count = self.count.saturating_add(1);
    }

    /// Gives back what an authorization counted in window `key`; a window
    /// that has passed is no longer counted, so nothing to give back.
    fn release(&mut self, key: &str, amount: u64, uncount: bool) {
        if self.key != key {
            return;
        }
        self.amount = self.amount.saturating_sub(amount);
        if uncount {
            self.count = self.count.saturating_sub(1);
        }
    }
}

/// A limits channel's totals: the current day and month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTotals {
    pub day: WindowTotal,
    pub month: WindowTotal,
}

/// What counts against a channel's limits now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub day_amount: u64,
    pub day_count: u32,
    pub month_amount: u64,
    pub month_count: u32,
}

/// A card's running totals, by limits channel (`pos`, `contactless`,
/// `ecommerce`, `atm`). Only the current windows are kept: a window that
/// has passed never counts again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpendTotals(pub BTreeMap<String, ChannelTotals>);

impl SpendTotals {
    /// What counts in `windows` on `channel`'s limits.
    pub fn usage(&self, channel: PaymentChannel, windows: &Windows) -> Usage {
        let Some(t) = self.0.get(channel.limit_channel()) else {
            return Usage::default();
        };
        let (day_amount, day_count) = t.day.in_window(&windows.day);
        let (month_amount, month_count) = t.month.in_window(&windows.month);
        Usage {
            day_amount,
            day_count,
            month_amount,
            month_count,
        }
    }

    /// Counts an approval of `amount` in `windows`.
    pub fn add(&mut self, channel: PaymentChannel, windows: &Windows, amount: u64) {
        let t = self.0.entry(channel.limit_channel().to_owned()).or_default();
        t.day.add(&windows.day, amount);
        t.month.add(&windows.month, amount);
    }

    /// Gives back `amount` of an approval counted in `windows` (a reversal or
    /// an expiry); `uncount` also takes it off the counts (released in full
    /// with nothing captured: the payment did not happen).
    pub fn release(&mut self, channel: PaymentChannel, windows: &Windows, amount: u64, uncount: bool) {
        if let Some(t) = self.0.get_mut(channel.limit_channel()) {
            t.day.release(&windows.day, amount, uncount);
            t.month.release(&windows.month, amount, uncount);
        }
    }
}

// --- the decision ------------------------------------------------------------

/// What a payment asks, as the checks need it.
#[derive(Debug, Clone)]
pub struct Payment<'a> {
    /// In the card's currency.
    pub billing_amount: u64,
    pub channel: PaymentChannel,
    pub merchant: &'a Merchant,
    /// The `expiry` the terminal sent, parsed (None: not sent). A value sent
    /// that does not parse is refused as bad input before this.
    pub expiry: Option<Expiry>,
    /// Whether the CVV2 sent is the card's (None: not sent).
    pub cvv2_matches: Option<bool>,
    /// Whether the PIN sent is the card's (None: no PIN sent). A PIN block
    /// that does not decode for this card counts as a wrong PIN.
    pub pin_right: Option<bool>,
}

/// The card as the checks need it, with its PIN try counter and totals.
#[derive(Debug, Clone)]
pub struct CardState<'a> {
    pub card: &'a Card,
    pub tries: PinTries,
    /// The effective controls (the card's own, or the program's).
    pub controls: &'a SpendingControls,
    pub totals: &'a SpendTotals,
}

/// The result of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `None`: approved.
    pub declined: Option<DeclineReason>,
    /// The PIN try counter after this decision (changed when a PIN was
    /// checked: a wrong one counted, a right one clearing earlier failures).
    pub tries: PinTries,
    /// The PIN check's outcome, when one ran.
    pub pin: Option<PinDecision>,
}

impl Decision {
    /// Whether every check passed.
    pub fn approved(&self) -> bool {
        self.declined.is_none()
    }

    /// The response code.
    pub fn response_code(&self) -> &'static str {
        self.declined.map_or(APPROVED_CODE, DeclineReason::response_code)
    }
}

/// Whether the card has expired at `now`: valid through the last day of its
/// expiry month (UTC).
pub fn card_expired(expiry: Expiry, now: Timestamp) -> bool {
    (now.year(), now.month()) > (i32::from(expiry.year()), u32::from(expiry.month()))
}

fn status_refusal(card: &Card) -> Option<DeclineReason> {
    let reason = card.status_reason.as_ref().map(|r| r.code.as_str());
    match card.status {
        CardStatus::Active => None,
        CardStatus::Inactive => Some(DeclineReason::CardInactive),
        CardStatus::Locked => Some(DeclineReason::CardLocked),
        CardStatus::Blocked => Some(match reason {
            Some(ReasonCode::LOST_CARD) => DeclineReason::CardLost,
            Some(ReasonCode::STOLEN_CARD) => DeclineReason::CardStolen,
            Some(ReasonCode::FRAUD_CONFIRMED) => DeclineReason::CardFraud,
            _ => DeclineReason::CardBlocked,
        }),
        CardStatus::Closed => Some(DeclineReason::CardClosed),
    }
}

/// Every check of the contract, in its order, on a card found for the
/// tenant (an unknown card is [`DeclineReason::CardNotFound`] before this).
/// The first check that fails declines; the PIN counts on the card's try
/// counter exactly as every other verification (`max_failures` wrong ones
/// block it, and the one that blocks answers `PIN_TRIES_EXCEEDED`).
pub fn decide(
    card: &CardState<'_>,
    payment: &Payment<'_>,
    windows: &Windows,
    now: Timestamp,
    max_failures: u32,
) -> Decision {
    let mut tries = card.tries;
    let mut pin = None;
    let declined = (|| {
        let c = card.card;
        if card_expired(c.expiry, now) || payment.expiry.is_some_and(|e| e != c.expiry) {
            return Some(DeclineReason::CardExpired);
        }
        if let Some(r) = status_refusal(c) {
            return Some(r);
        }
        if payment.cvv2_matches == Some(false) {
            return Some(DeclineReason::Cvv2Mismatch);
        }
        if let Some(right) = payment.pin_right {
            match tries.verify(max_failures, right) {
                Ok(d @ PinDecision::Right { .. }) => pin = Some(d),
                Ok(d @ PinDecision::Wrong { remaining_attempts }) => {
                    pin = Some(d);
                    return Some(if remaining_attempts == 0 {
                        DeclineReason::PinTriesExceeded
                    } else {
                        DeclineReason::PinIncorrect
                    });
                }
                Err(crate::RuleViolation::PinNotSet) => return Some(DeclineReason::PinNotSet),
                Err(_) => return Some(DeclineReason::PinTriesExceeded),
            }
        }
        let limit = payment.channel.limit(&c.limits);
        if !limit.enabled {
            return Some(DeclineReason::ChannelDisabled);
        }
        if let Some(r) = card.controls.refuses(payment.merchant) {
            return Some(r);
        }
        let amount = payment.billing_amount;
        if limit.per_transaction.is_some_and(|max| amount > max) {
            return Some(DeclineReason::LimitPerTransaction);
        }
        let used = card.totals.usage(payment.channel, windows);
        if limit
            .daily
            .is_some_and(|max| used.day_amount.saturating_add(amount) > max)
        {
            return Some(DeclineReason::LimitDaily);
        }
        if limit
            .monthly
            .is_some_and(|max| used.month_amount.saturating_add(amount) > max)
        {
            return Some(DeclineReason::LimitMonthly);
        }
        if limit
            .daily_count
            .is_some_and(|max| used.day_count.saturating_add(1) > max)
        {
            return Some(DeclineReason::LimitDailyCount);
        }
        None
    })();
    Decision { declined, tries, pin }
}

// --- the money after the decision -------------------------------------------

/// An authorization's amounts, in the card's currency. Always
/// `approved = pending + captured + reversed` (an expiry's release counts as
/// reversed; the status tells which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    pub approved: u64,
    pub pending: u64,
    pub captured: u64,
    pub reversed: u64,
}

/// Why a movement on an authorization is refused (409, nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MovementRefused {
    #[error("the authorization was declined: nothing was held")]
    Declined,
    #[error("the authorization has expired: its hold was released")]
    Expired,
    #[error("the authorization was reversed in full: nothing is held")]
    Reversed,
    #[error("nothing is held any more on this authorization")]
    Closed,
    #[error("the amount ({amount}) is more than what is still held ({pending})")]
    AboveOpen { amount: u64, pending: u64 },
}

impl MovementRefused {
    /// The stable problem code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Declined => "authorization_declined",
            Self::Expired => "authorization_expired",
            Self::Reversed => "authorization_reversed",
            Self::Closed => "authorization_closed",
            Self::AboveOpen { .. } => "amount_exceeds_pending",
        }
    }
}

/// What a movement did: the new amounts and status, how much was released
/// back to the limits, and whether the payment's count is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movement {
    pub amounts: Amounts,
    pub status: AuthorizationStatus,
    pub released: u64,
    pub uncount: bool,
}

fn open(status: AuthorizationStatus, amounts: Amounts, amount: u64) -> Result<(), MovementRefused> {
    match status {
        AuthorizationStatus::Approved => {}
        AuthorizationStatus::Declined => return Err(MovementRefused::Declined),
        AuthorizationStatus::Expired => return Err(MovementRefused::Expired),
        AuthorizationStatus::Reversed => return Err(MovementRefused::Reversed),
        AuthorizationStatus::Closed => return Err(MovementRefused::Closed),
    }
    if amount > amounts.pending || amount == 0 {
        return Err(MovementRefused::AboveOpen {
            amount,
            pending: amounts.pending,
        });
    }
    Ok(())
}

fn settled(amounts: Amounts, released_by: AuthorizationStatus) -> AuthorizationStatus {
    if amounts.pending > 0 {
        AuthorizationStatus::Approved
    } else if amounts.captured > 0 {
        AuthorizationStatus::Closed
    } else {
        released_by
    }
}

/// A capture (clearing) of `amount` of what is held: partial and multiple
/// captures up to the approved amount. Captured money already counted when
/// it was approved, so nothing is released.
pub fn capture(status: AuthorizationStatus, amounts: Amounts, amount: u64) -> Result<Movement, MovementRefused> {
    open(status, amounts, amount)?;
    let mut a = amounts;
    a.pending -= amount;
    a.captured += amount;
    Ok(Movement {
        amounts: a,
        status: settled(a, AuthorizationStatus::Closed),
        released: 0,
        uncount: false,
    })
}

/// A reversal of `amount` (None: all) of what is held: released back to the
/// limits.
pub fn reverse(
    status: AuthorizationStatus,
    amounts: Amounts,
    amount: Option<u64>,
) -> Result<Movement, MovementRefused> {
    let amount = amount.unwrap_or(amounts.pending);
    open(status, amounts, amount)?;
    let mut a = amounts;
    a.pending -= amount;
    a.reversed += amount;
    let status = settled(a, AuthorizationStatus::Reversed);
    Ok(Movement {
        amounts: a,
        status,
        released: amount,
        uncount: status == AuthorizationStatus::Reversed,
    })
}

/// The expiry of what is still held at `now`, if `expires_at` has come.
/// `None` when there is nothing to expire (already settled, or not due),
/// so a second run of the expiry task changes nothing.
pub fn expire(
    status: AuthorizationStatus,
    amounts: Amounts,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Movement> {
    if status != AuthorizationStatus::Approved || amounts.pending == 0 || expires_at.is_none_or(|at| at > now) {
        return None;
    }
    let mut a = amounts;
    let released = a.pending;
    a.reversed += released;
    a.pending = 0;
    let status = settled(a, AuthorizationStatus::Expired);
    Some(Movement {
        amounts: a,
        status,
        released,
        uncount: status == AuthorizationStatus::Expired,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
