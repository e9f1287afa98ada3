//! P100's request and response bodies (camelCase JSON).

use cardcore_domain::{Brand, Card, CardStatus, CardType, ChannelLimit, Limits};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::{double_option, ChannelChange, LimitsChange};

/// `PATCH /v1/card/pin` (no `Debug`: it holds the PIN).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100PinRequest)]
pub struct PinRequest {
    /// The cardholder's `external_id`.
    pub external_user_id: String,
    #[schema(format = Uuid)]
    pub card_id: String,
    /// The new PIN, digits only (the program's length applies).
    #[schema(min_length = 4, max_length = 12)]
    pub pin: String,
}

/// `PATCH /v1/card/block` and `/unblock`: which card of which user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100CardRequest)]
pub struct CardRequest {
    /// The cardholder's `external_id`.
    pub external_user_id: String,
    #[schema(format = Uuid)]
    pub card_id: String,
}

/// `POST /v1/card/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100CreateCardRequest)]
pub struct CreateRequest {
    /// The cardholder's `external_id` (made through the native API).
    pub external_user_id: String,
    #[schema(max_length = 50)]
    pub card_name: Option<String>,
}

/// One channel in `PATCH /v1/card/limits`: absent fields are kept, `null`
/// removes a limit. Amounts in minor units.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100ChannelPatch)]
pub struct ChannelPatch {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_u64)]
    pub per_transaction: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_u64)]
    pub daily: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, maximum = 1_000_000_000_000_u64)]
    pub monthly: Option<Option<u64>>,
}

impl From<ChannelPatch> for ChannelChange {
    fn from(p: ChannelPatch) -> Self {
        Self {
            enabled: p.enabled,
            per_transaction: p.per_transaction,
            daily: p.daily,
            monthly: p.monthly,
        }
    }
}

/// `PATCH /v1/card/limits`: the card and the channels to change (a channel
/// left out is kept).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = P100LimitsRequest)]
pub struct LimitsRequest {
    /// The cardholder's `external_id`.
    pub external_user_id: String,
    #[schema(format = Uuid)]
    pub card_id: String,
    /// ISO 4217 code of three capital letters.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    pub pos: Option<ChannelPatch>,
    pub ecommerce: Option<ChannelPatch>,
    pub atm: Option<ChannelPatch>,
    pub contactless: Option<ChannelPatch>,
}

impl LimitsRequest {
    /// The change, without the card reference.
    pub fn change(self) -> LimitsChange {
        LimitsChange {
            currency: self.currency,
            pos: self.pos.map(Into::into),
            ecommerce: self.ecommerce.map(Into::into),
            atm: self.atm.map(Into::into),
            contactless: self.contactless.map(Into::into),
        }
    }
}

/// `{"message": "..."}`, P100's success answer to a change.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = P100Message)]
pub struct Message {
    pub message: &'static str,
}

/// P100's status words: a lock is P100's reversible "block", a close its
/// "delete"; a permanent block made through another API is `TERMINATED`.
pub fn status(s: CardStatus) -> &'static str {
    match s {
        CardStatus::Inactive => "INACTIVE",
        CardStatus::Active => "ACTIVE",
        CardStatus::Locked => "BLOCKED",
        CardStatus::Blocked => "TERMINATED",
        CardStatus::Closed => "DELETED",
    }
}

/// P100's card types.
pub fn card_type(t: CardType) -> &'static str {
    match t {
        CardType::Virtual => "VIRTUAL",
        CardType::Physical => "PHYSICAL",
    }
}

fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum(CardStatus::ALL.map(status))
}

fn card_type_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum([CardType::Virtual, CardType::Physical].map(card_type))
}

/// A card as P100 shows it (no PAN, no CVV).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = P100Card)]
pub struct CardView {
    #[schema(format = Uuid)]
    pub card_id: String,
    pub external_user_id: String,
    #[schema(required = true)]
    pub card_name: Option<String>,
    #[schema(schema_with = card_type_schema)]
    pub card_type: &'static str,
    /// BLOCKED is a lock (reversible), TERMINATED a permanent block, DELETED a closed card.
    #[schema(schema_with = status_schema)]
    pub status: &'static str,
    #[schema(value_type = Brand)]
    pub brand: &'static str,
    #[schema(pattern = "^[0-9]{4}$")]
    pub last4: String,
    /// `MM/YY`.
    #[schema(pattern = "^(0[1-9]|1[0-2])/[0-9]{2}$")]
    pub expiry_date: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: cardcore_domain::Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: cardcore_domain::Timestamp,
}

impl CardView {
    /// The view of `card`, owned by the user `external_user_id`.
    pub fn new(card: &Card, external_user_id: &str) -> Self {
        Self {
            card_id: card.id.to_string(),
            external_user_id: external_user_id.to_owned(),
            card_name: card.card_name.clone(),
            card_type: card_type(card.card_type),
            status: status(card.status),
            brand: card.brand.as_str(),
            last4: card.last_four.clone(),
            expiry_date: card.expiry.to_string(),
            created_at: card.created_at,
            updated_at: card.updated_at,
        }
    }
}

/// `GET /v1/card/all/{externalUserId}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = P100CardList)]
pub struct CardList {
    pub cards: Vec<CardView>,
}

/// `GET /v1/card/details/...`: the card with its PAN and CVV.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = P100CardDetails)]
pub struct CardDetails<'a> {
    #[serde(flatten)]
    pub card: CardView,
    /// The full card number: 12 to 19 digits.
    #[schema(min_length = 12, max_length = 19)]
    pub card_number: &'a str,
    /// The CVV2: 3 or 4 digits.
    #[schema(min_length = 3, max_length = 4)]
    pub cvv: &'a str,
}

/// One channel's limits, in minor units; `null`: no limit.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = P100Channel)]
pub struct ChannelView {
    pub enabled: bool,
    #[schema(required = true)]
    pub per_transaction: Option<u64>,
    #[schema(required = true)]
    pub daily: Option<u64>,
    #[schema(required = true)]
    pub monthly: Option<u64>,
}

impl From<&ChannelLimit> for ChannelView {
    fn from(c: &ChannelLimit) -> Self {
        Self {
            enabled: c.enabled,
            per_transaction: c.per_transaction,
            daily: c.daily,
            monthly: c.monthly,
        }
    }
}

/// A card's limits, in minor units of `currency`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = P100Limits)]
pub struct LimitsView {
    #[schema(format = Uuid)]
    pub card_id: String,
    pub currency: String,
    pub pos: ChannelView,
    pub ecommerce: ChannelView,
    pub atm: ChannelView,
    pub contactless: ChannelView,
}

impl LimitsView {
    /// The view of `limits` of the card `card_id`.
    pub fn new(card_id: String, l: &Limits) -> Self {
        Self {
            card_id,
            currency: l.currency.clone(),
            pos: (&l.channels.pos).into(),
            ecommerce: (&l.channels.ecommerce).into(),
            atm: (&l.channels.atm).into(),
            contactless: (&l.channels.contactless).into(),
        }
    }
}
