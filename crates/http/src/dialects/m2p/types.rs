//! M2P's request and response bodies (camelCase JSON). The three PIN calls
//! share one body, M2P's `ChangeCardPinDto`.

use cardcore_domain::{Card, CardStatus, CardType, ChannelLimit, Limits};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::{double_option, ChannelChange, LimitsChange};

/// `POST /auth/token` (no `Debug` on secrets-bearing bodies: here the API key).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pTokenRequest)]
pub struct TokenRequest {
    /// The tenant's id (its name is accepted too).
    pub client_id: String,
    /// One of the tenant's cardcore API keys.
    #[schema(format = Password)]
    pub client_secret: String,
    /// `client_credentials`.
    #[schema(schema_with = grant_type)]
    pub grant_type: String,
}

fn grant_type() -> utoipa::openapi::Object {
    crate::openapi::string_enum(["client_credentials"])
}

fn bearer() -> utoipa::openapi::Object {
    crate::openapi::string_enum(["Bearer"])
}

fn null() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Null)
        .description(Some("Always `null`: no paging."))
        .build()
}

/// `{"access_token", "token_type", "expires_in"}` (OAuth 2 spelling).
#[derive(Serialize, ToSchema)]
#[schema(as = M2pTokenResponse)]
pub struct TokenResponse {
    /// An HS256 JWT for `Authorization: Bearer`, with `X-TENANT-ID`.
    pub access_token: String,
    #[schema(schema_with = bearer)]
    pub token_type: &'static str,
    /// Seconds the token is valid (3600).
    pub expires_in: i64,
}

/// A country calling code, as a number (`91`) or a string (`"91"`, `"+91"`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = M2pCountryCode)]
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

/// `mobile`: the cardholder's phone; must be the cardholder's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pMobile)]
pub struct Mobile {
    pub value: String,
    pub country_code: CountryCode,
}

/// `otpDetails`: the OTP the cardholder received and its trace number.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pOtpDetails)]
pub struct OtpDetails {
    /// The `traceNumber` of `otp/generate`.
    pub trace_number: String,
    /// When given, must be the cardholder's phone number.
    pub mobile_number: Option<String>,
    /// The 6-digit code.
    #[schema(min_length = 6, max_length = 6)]
    pub otp: String,
}

/// `rule`: values the product asks to be repeated for validation ("the
/// required fields depend on the product configuration"). The fields
/// cardcore knows must, when given, agree with the card or the OTP; any
/// other field is accepted and ignored.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = M2pRule)]
pub struct Rule {
    /// The card's `MM/YY`.
    #[schema(pattern = "^(0[1-9]|1[0-2])/[0-9]{2}$")]
    pub expiry_date: Option<String>,
    pub otp: Option<String>,
    pub trace_number: Option<String>,
}

/// `ChangeCardPinDto`: update PIN, set PIN and validate PIN (no `Debug`: PINs, OTP).
/// Update PIN needs `oldPin`, `newPin`, the OTP (`otpDetails`, or `otp`
/// with `rule.traceNumber`) and the tenant's required fields (by default
/// `mobile`, `expiryDate` and `otpDetails`, as the seed sends them); set PIN
/// the same without `oldPin`; validate PIN only
/// `oldPin` (with `entityId` and `kit`). A PIN is 4 plain digits or the
/// base64 RSA-OAEP-SHA256 ciphertext of the digits under the key of
/// `GET /v1/pin-encryption-key`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pPinRequest)]
pub struct PinRequest {
    pub mobile: Option<Mobile>,
    /// The cardholder's `external_id`.
    pub entity_id: String,
    /// The card's kit number (also accepted as `kitNo`).
    #[serde(alias = "kitNo")]
    #[schema(pattern = "^[0-9]{6,16}$")]
    pub kit: String,
    /// The card's `MM/YY`.
    #[schema(pattern = "^(0[1-9]|1[0-2])/[0-9]{2}$")]
    pub expiry_date: Option<String>,
    /// When given, must equal `otpDetails.otp`.
    pub otp: Option<String>,
    /// The current PIN (update, validate).
    pub old_pin: Option<String>,
    /// The new PIN (update, set).
    pub new_pin: Option<String>,
    pub otp_details: Option<OtpDetails>,
    pub rule: Option<Rule>,
}

/// `POST .../otp/generate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pOtpRequest)]
pub struct OtpRequest {
    /// The cardholder's phone number.
    pub mobile_number: String,
    /// The cardholder's `external_id`.
    pub entity_id: String,
    /// The card's kit number (also accepted as `kit`). M2P's own example
    /// leaves it out: then the card is the cardholder's only open card, or
    /// the only one ending in `card`.
    #[serde(alias = "kit")]
    #[schema(pattern = "^[0-9]{6,16}$")]
    pub kit_no: Option<String>,
    /// `S` (mobile) or `D` (mobile and email): delivery is the tenant's.
    #[schema(schema_with = otp_type)]
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

fn otp_type() -> utoipa::openapi::Object {
    let mut schema = crate::openapi::string_enum(["S", "D"]);
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    schema
}

/// The OTP's handle, inside M2P's `{"result": ..., "pagination": null}`
/// (https://dev.m2p.app/docs/prepaidv2/api-library/authentication/generateOtp);
/// the code goes to the tenant's webhook (`otp.created`) or SMS.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = M2pOtpResponse)]
pub struct OtpResponse {
    /// Always `true` on success.
    pub status: bool,
    /// The OTP's trace number, for `otpDetails.traceNumber`.
    pub trace_number: String,
    /// The OTP's reference (the card's id, 32 hex digits): names the card
    /// in `otp/validate-otp`.
    pub ref_number: String,
}

/// The status a caller asks for: LOCKED (lock), UNLOCKED (unlock), BLOCKED (block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
#[schema(as = M2pStatusWanted)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pStatusRequest)]
pub struct StatusRequest {
    /// The cardholder's `external_id`.
    pub entity_id: String,
    /// The card's kit number (also accepted as `kit`).
    #[serde(alias = "kit")]
    #[schema(pattern = "^[0-9]{6,16}$")]
    pub kit_no: String,
    pub status: StatusWanted,
    /// `01` customer request, `02` fraud suspected, `03` lost, `04` stolen, `Card Closure`
    /// (terminal), or a catalog code; a block without one is recorded as `CUST_REQ`.
    pub reason_code: Option<String>,
    pub reason_msg: Option<String>,
}

/// `POST .../customers/fetch-all-cards`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pFetchCardsRequest)]
pub struct FetchCardsRequest {
    /// The cardholder's `external_id`. M2P also takes `mobile` alone;
    /// cardcore needs `entityId` (a phone number may be shared).
    pub entity_id: String,
    /// When given, must be the cardholder's phone.
    pub mobile: Option<Mobile>,
    /// Accepted and not used (one issuer per deployment).
    #[serde(rename = "issuedBy")]
    pub _issued_by: Option<String>,
    /// Accepted and not used (`X-TENANT-ID` names the tenant).
    #[serde(rename = "tenant")]
    pub _tenant: Option<String>,
    /// Accepted and not used.
    #[serde(rename = "type")]
    pub _type: Option<String>,
}

/// One channel's preference change: absent fields are kept, `null` removes
/// a limit. Amounts are minor units of the card's currency.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pPreferenceChange)]
pub struct Preference {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_u64)]
    pub per_transaction_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_u64)]
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

/// `userOverridden`: the channels to change, in M2P's names (at least one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = M2pPreferencesChange, min_properties = 1)]
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = M2pPreferencesRequest)]
pub struct PreferencesRequest {
    pub mobile: Option<Mobile>,
    /// The cardholder's `external_id`.
    pub entity_id: String,
    /// The card's kit number (also accepted as `kitNo`).
    #[serde(alias = "kitNo")]
    #[schema(pattern = "^[0-9]{6,16}$")]
    pub kit: String,
    pub user_overridden: Overrides,
    /// Accepted for compatibility; cardcore's product needs no OTP here.
    #[serde(rename = "otpDetails")]
    pub _otp_details: Option<OtpDetails>,
    pub rule: Option<Rule>,
}

/// M2P's success envelope: `{"result": ..., "pagination": null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub result: T,
    #[schema(schema_with = null, required = true)]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = M2pMessage)]
pub struct MessageResult {
    pub message: String,
}

/// `cards/v2/validate-pin`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = M2pValidity)]
pub struct Validity {
    pub valid: bool,
}

/// M2P's status words (the native ones).
pub fn status(s: CardStatus) -> &'static str {
    s.as_str()
}

/// M2P's card types.
pub fn card_type(t: CardType) -> &'static str {
    match t {
        CardType::Virtual => "VIRTUAL",
        CardType::Physical => "PHYSICAL",
    }
}

fn card_type_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum([CardType::Virtual, CardType::Physical].map(card_type))
}

fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum(CardStatus::ALL.map(status))
}

/// One card in `fetch-all-cards`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = M2pCard)]
pub struct CardSummary {
    #[schema(pattern = "^[0-9]{6,16}$")]
    pub kit_no: String,
    /// Only the last four digits: `XXXXXXXXXXXX1234`.
    #[schema(pattern = "^X{12}[0-9]{4}$")]
    pub masked_card_number: String,
    /// The card's name (its type's name when it was given none).
    pub product_name: String,
    /// `VISA` or `MASTERCARD`.
    #[schema(schema_with = network_schema)]
    pub card_network: &'static str,
    #[schema(schema_with = status_schema)]
    pub card_status: &'static str,
    /// `MM/YYYY`, as M2P's page shows it (`11/2029`); the PIN calls take `MM/YY`.
    #[schema(pattern = "^(0[1-9]|1[0-2])/20[0-9]{2}$")]
    pub expiry_date: String,
    /// The day the card was made, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub issued_date: String,
    /// cardcore's addition: `VIRTUAL` or `PHYSICAL`.
    #[schema(schema_with = card_type_schema)]
    pub card_type: &'static str,
}

/// M2P's network words.
fn network(b: cardcore_domain::Brand) -> &'static str {
    match b {
        cardcore_domain::Brand::Visa => "VISA",
        cardcore_domain::Brand::Mastercard => "MASTERCARD",
    }
}

fn network_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum([
        network(cardcore_domain::Brand::Visa),
        network(cardcore_domain::Brand::Mastercard),
    ])
}

impl From<&Card> for CardSummary {
    fn from(c: &Card) -> Self {
        Self {
            kit_no: c.kit_number.as_str().to_owned(),
            // Only the last four digits leave the vault outside a reveal.
            masked_card_number: format!("XXXXXXXXXXXX{}", c.last_four),
            product_name: c.card_name.clone().unwrap_or_else(|| c.card_type.as_str().to_owned()),
            card_network: network(c.brand),
            card_status: status(c.status),
            expiry_date: format!("{:02}/{}", c.expiry.month(), c.expiry.year()),
            issued_date: c.created_at.format("%Y-%m-%d").to_string(),
            card_type: card_type(c.card_type),
        }
    }
}

/// One channel's preference as answered (minor units; `null`: no limit).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = M2pPreference)]
pub struct PreferenceView {
    pub enabled: bool,
    #[schema(required = true)]
    pub per_transaction_limit: Option<u64>,
    #[schema(required = true)]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = M2pPreferences)]
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
