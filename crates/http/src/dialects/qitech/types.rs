//! QI Tech's request and response bodies (snake_case JSON).

use cardcore_domain::{Card, CardStatus, CardType, ReasonCode};
use serde::{Deserialize, Serialize};

/// `PATCH .../password`: the new password, 4 characters (no `Debug`: a PIN).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    pub pin: String,
}

/// `PATCH .../card/{CARD_KEY}`: the status wanted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: StatusWanted,
}

/// The statuses a caller may ask for. `created` and QI's other temporary
/// blocks (`embossing`, `warning`, `pending`) are the issuer's own states,
/// not requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusWanted {
    Active,
    Blocked,
    Lost,
    Robbed,
    Theft,
    Fraud,
    Canceled,
}

impl StatusWanted {
    /// QI's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Blocked => "blocked",
            Self::Lost => "lost",
            Self::Robbed => "robbed",
            Self::Theft => "theft",
            Self::Fraud => "fraud",
            Self::Canceled => "canceled",
        }
    }
}

/// `PATCH .../activate` (no `Debug`: it holds the code).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub activation_code: String,
}

/// QI's status word for a card. A permanent block reads by its reason:
/// lost, robbed or theft (QI's two kinds of stolen: the reason message keeps
/// which one was asked), fraud; any other permanent block reads `canceled`.
pub fn status(card: &Card) -> &'static str {
    match card.status {
        CardStatus::Inactive => "created",
        CardStatus::Active => "active",
        CardStatus::Locked => "blocked",
        CardStatus::Closed => "canceled",
        CardStatus::Blocked => match card.status_reason.as_ref() {
            Some(r) => match r.code.as_str() {
                ReasonCode::LOST_CARD => "lost",
                ReasonCode::STOLEN_CARD if r.message.as_deref() == Some("theft") => "theft",
                ReasonCode::STOLEN_CARD => "robbed",
                ReasonCode::FRAUD_SUSPECTED | ReasonCode::FRAUD_CONFIRMED => "fraud",
                _ => "canceled",
            },
            None => "canceled",
        },
    }
}

/// QI's timestamp format, `2023-02-20T19:28:16Z`.
fn qi_time(t: cardcore_domain::Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The card object QI answers.
#[derive(Debug, Serialize)]
pub struct CardObject {
    pub card_key: String,
    pub status: &'static str,
    pub account_key: String,
    pub program_key: String,
    #[serde(rename = "type")]
    pub card_type: &'static str,
    pub card_name: Option<String>,
    pub printed_name: Option<String>,
    pub brand: &'static str,
    pub last_four_digits: String,
    pub created_at: String,
    pub updated_at: String,
    /// cardcore's CVV is static: it never rotates.
    pub cvv_rotation_interval_hours: Option<u32>,
}

impl From<&Card> for CardObject {
    fn from(card: &Card) -> Self {
        Self {
            card_key: card.id.to_string(),
            status: status(card),
            account_key: card.account_id.to_string(),
            program_key: card.program_id.to_string(),
            card_type: match card.card_type {
                CardType::Virtual => "virtual",
                CardType::Physical => "plastic",
            },
            card_name: card.card_name.clone(),
            printed_name: card.printed_name.clone(),
            brand: card.brand.as_str(),
            last_four_digits: card.last_four.clone(),
            created_at: qi_time(card.created_at),
            updated_at: qi_time(card.updated_at),
            cvv_rotation_interval_hours: None,
        }
    }
}
