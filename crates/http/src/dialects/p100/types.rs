//! P100's request and response bodies (camelCase JSON).

use cardcore_domain::{Card, CardStatus, CardType, ChannelLimit, Limits};
use serde::{Deserialize, Serialize};

use super::super::{double_option, ChannelChange, LimitsChange};

/// `PATCH /v1/card/pin` (no `Debug`: it holds the PIN).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PinRequest {
    pub external_user_id: String,
    pub card_id: String,
    pub pin: String,
}

/// `PATCH /v1/card/block` and `/unblock`: which card of which user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CardRequest {
    pub external_user_id: String,
    pub card_id: String,
}

/// `POST /v1/card/create`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRequest {
    pub external_user_id: String,
    pub card_name: Option<String>,
}

/// One channel in `PATCH /v1/card/limits`: absent fields are kept, `null`
/// removes a limit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChannelPatch {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub per_transaction: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub daily: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
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

/// `PATCH /v1/card/limits`: the card and the channels to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsRequest {
    pub external_user_id: String,
    pub card_id: String,
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
#[derive(Debug, Serialize)]
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

/// A card as P100 shows it (no PAN, no CVV).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
    pub card_id: String,
    pub external_user_id: String,
    pub card_name: Option<String>,
    pub card_type: &'static str,
    pub status: &'static str,
    pub brand: &'static str,
    pub last4: String,
    pub expiry_date: String,
    pub created_at: cardcore_domain::Timestamp,
    pub updated_at: cardcore_domain::Timestamp,
}

impl CardView {
    /// The view of `card`, owned by the user `external_user_id`.
    pub fn new(card: &Card, external_user_id: &str) -> Self {
        Self {
            card_id: card.id.to_string(),
            external_user_id: external_user_id.to_owned(),
            card_name: card.card_name.clone(),
            card_type: match card.card_type {
                CardType::Virtual => "VIRTUAL",
                CardType::Physical => "PHYSICAL",
            },
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
#[derive(Debug, Serialize)]
pub struct CardList {
    pub cards: Vec<CardView>,
}

/// `GET /v1/card/details/...`: the card with its PAN and CVV.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardDetails<'a> {
    #[serde(flatten)]
    pub card: CardView,
    pub card_number: &'a str,
    pub cvv: &'a str,
}

/// One channel's limits.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub enabled: bool,
    pub per_transaction: Option<u64>,
    pub daily: Option<u64>,
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
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
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
