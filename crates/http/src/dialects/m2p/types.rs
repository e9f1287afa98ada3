//! M2P's request and response bodies (camelCase JSON). The three PIN calls
//! share one body, M2P's `ChangeCardPinDto`.

use cardcore_domain::{Card, CardStatus, CardType, ChannelLimit, Limits};
use serde::{Deserialize, Serialize};

use super::super::{double_option, ChannelChange, LimitsChange};

/// `POST /auth/token` (no `Debug` on secrets-bearing bodies: here the API key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
    pub grant_type: String,
}

/// `{"access_token", "token_type", "expires_in"}` (OAuth 2 spelling).
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// A country calling code, as a number (`91`) or a string (`"91"`, `"+91"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CountryCode {
    Number(u32),
    Text(String),
}

impl CountryCode {
    /// Digits only.
    pub fn digits(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(s) => s.trim().trim_start_matches('+').to_owned(),
        }
    }
}

/// `mobile`: the cardholder's phone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mobile {
    pub value: String,
    pub country_code: CountryCode,
}

/// `otpDetails`: the OTP the cardholder received and its trace number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtpDetails {
    pub trace_number: String,
    pub mobile_number: Option<String>,
    pub otp: String,
}

/// `rule`: values the product asks to be repeated for validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub expiry_date: Option<String>,
    pub otp: Option<String>,
    pub trace_number: Option<String>,
}

/// `ChangeCardPinDto`: update PIN, set PIN and validate PIN (no `Debug`: PINs, OTP).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PinRequest {
    pub mobile: Option<Mobile>,
    pub entity_id: String,
    #[serde(alias = "kitNo")]
    pub kit: String,
    pub expiry_date: Option<String>,
    pub otp: Option<String>,
    pub old_pin: Option<String>,
    pub new_pin: Option<String>,
    pub otp_details: Option<OtpDetails>,
    pub rule: Option<Rule>,
}

/// `POST .../otp/generate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtpRequest {
    pub mobile_number: String,
    pub entity_id: String,
    #[serde(alias = "kit")]
    pub kit_no: String,
    /// `S` (mobile) or `D` (mobile and email): delivery is the tenant's.
    pub otp_type: Option<String>,
    /// The SMS template: delivery is the tenant's, so not used.
    #[serde(rename = "template")]
    pub _template: Option<String>,
    /// One program per deployment: not used.
    #[serde(rename = "productId")]
    pub _product_id: Option<String>,
    /// Last four digits of the card.
    pub card: Option<String>,
    pub country_code: Option<CountryCode>,
}

/// The OTP's handle; the code goes to the tenant's webhook (`otp.created`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtpResponse {
    pub status: &'static str,
    pub trace_number: String,
    pub ref_number: String,
}

/// The status a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusWanted {
    Locked,
    Unlocked,
    Blocked,
}

impl StatusWanted {
    /// M2P's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Locked => "LOCKED",
            Self::Unlocked => "UNLOCKED",
            Self::Blocked => "BLOCKED",
        }
    }
}

/// `POST .../cards/status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusRequest {
    pub entity_id: String,
    #[serde(alias = "kit")]
    pub kit_no: String,
    pub status: StatusWanted,
    pub reason_code: Option<String>,
    pub reason_msg: Option<String>,
}

/// `POST .../customers/fetch-all-cards`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchCardsRequest {
    pub entity_id: String,
}

/// One channel's preference change: absent fields are kept, `null` removes
/// a limit. Amounts are minor units of the card's currency.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Preference {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub per_transaction_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub max_transaction_amount_per_day: Option<Option<u64>>,
}

impl From<Preference> for ChannelChange {
    fn from(p: Preference) -> Self {
        Self {
            enabled: p.enabled,
            per_transaction: p.per_transaction_limit,
            daily: p.max_transaction_amount_per_day,
            monthly: None,
        }
    }
}

/// `userOverridden`: the channels to change, in M2P's names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(rename = "ATM")]
    pub atm: Option<Preference>,
    #[serde(rename = "E-com")]
    pub ecom: Option<Preference>,
    #[serde(rename = "POS")]
    pub pos: Option<Preference>,
    #[serde(rename = "ContactLess")]
    pub contactless: Option<Preference>,
}

impl Overrides {
    /// True when no channel is given.
    pub fn is_empty(&self) -> bool {
        self.atm.is_none() && self.ecom.is_none() && self.pos.is_none() && self.contactless.is_none()
    }

    /// The change to the card's limits.
    pub fn change(self) -> LimitsChange {
        LimitsChange {
            currency: None,
            pos: self.pos.map(Into::into),
            ecommerce: self.ecom.map(Into::into),
            atm: self.atm.map(Into::into),
            contactless: self.contactless.map(Into::into),
        }
    }
}

/// `POST .../cards/support/update/preferences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreferencesRequest {
    pub mobile: Option<Mobile>,
    pub entity_id: String,
    #[serde(alias = "kitNo")]
    pub kit: String,
    pub user_overridden: Overrides,
    /// Accepted for compatibility; cardcore's product needs no OTP here.
    #[serde(rename = "otpDetails")]
    pub _otp_details: Option<OtpDetails>,
    pub rule: Option<Rule>,
}

/// M2P's success envelope: `{"result": ..., "pagination": null}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub result: T,
    pub pagination: Option<()>,
}

impl<T> Envelope<T> {
    /// A result without paging.
    pub fn new(result: T) -> Self {
        Self {
            result,
            pagination: None,
        }
    }
}

/// `{"message": "..."}`.
#[derive(Debug, Serialize)]
pub struct MessageResult {
    pub message: String,
}

/// `cards/v2/validate-pin`'s answer.
#[derive(Debug, Serialize)]
pub struct Validity {
    pub valid: bool,
}

/// M2P's status words (the native ones).
pub fn status(s: CardStatus) -> &'static str {
    s.as_str()
}

/// One card in `fetch-all-cards`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardSummary {
    pub kit_no: String,
    pub masked_card_number: String,
    pub card_status: &'static str,
    pub expiry_date: String,
    pub card_type: &'static str,
}

impl From<&Card> for CardSummary {
    fn from(c: &Card) -> Self {
        Self {
            kit_no: c.kit_number.as_str().to_owned(),
            // Only the last four digits leave the vault outside a reveal.
            masked_card_number: format!("XXXXXXXXXXXX{}", c.last_four),
            card_status: status(c.status),
            expiry_date: c.expiry.to_string(),
            card_type: match c.card_type {
                CardType::Virtual => "VIRTUAL",
                CardType::Physical => "PHYSICAL",
            },
        }
    }
}

/// One channel's preference as answered.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceView {
    pub enabled: bool,
    pub per_transaction_limit: Option<u64>,
    pub max_transaction_amount_per_day: Option<u64>,
}

impl From<&ChannelLimit> for PreferenceView {
    fn from(c: &ChannelLimit) -> Self {
        Self {
            enabled: c.enabled,
            per_transaction_limit: c.per_transaction,
            max_transaction_amount_per_day: c.daily,
        }
    }
}

/// The card's preferences after a change.
#[derive(Debug, Serialize)]
pub struct PreferencesView {
    #[serde(rename = "ATM")]
    pub atm: PreferenceView,
    #[serde(rename = "E-com")]
    pub ecom: PreferenceView,
    #[serde(rename = "POS")]
    pub pos: PreferenceView,
    #[serde(rename = "ContactLess")]
    pub contactless: PreferenceView,
}

impl From<&Limits> for PreferencesView {
    fn from(l: &Limits) -> Self {
        Self {
            atm: (&l.channels.atm).into(),
            ecom: (&l.channels.ecommerce).into(),
            pos: (&l.channels.pos).into(),
            contactless: (&l.channels.contactless).into(),
        }
    }
}
