//! QI Tech's request and response bodies (snake_case JSON).

use cardcore_domain::{Brand, Card, CardStatus, CardType, ReasonCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PATCH .../password`: the new password, 4 characters (no `Debug`: a PIN).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QiPasswordRequest)]
pub struct PasswordRequest {
    /// The new password: exactly 4 digits.
    #[schema(min_length = 4, max_length = 4)]
    pub pin: String,
}

/// `PATCH .../card/{CARD_KEY}`: the status wanted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QiStatusRequest)]
pub struct StatusRequest {
    pub status: StatusWanted,
}

/// The statuses a caller may ask for: `active` (unlock), `blocked` (lock),
/// `lost`, `robbed`, `theft`, `fraud` (permanent blocks) and `canceled`
/// (close). `created` and QI's other temporary blocks (`embossing`,
/// `warning`, `pending`) are the issuer's own states, not requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = QiStatusWanted)]
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QiActivateRequest)]
pub struct ActivateRequest {
    /// The 6-digit code of the `card.activation_code` event, as `code`
    /// (QI's page: https://docs.qitech.com.br/en/documentation/cards/status/ativar_cartao);
    /// `activation_code`, cardcore's earlier name, is accepted too.
    #[serde(alias = "activation_code")]
    #[schema(min_length = 6, max_length = 6)]
    pub code: String,
}

/// Every word [`status`] answers.
pub const STATUS_WORDS: [&str; 8] = [
    "created", "active", "blocked", "canceled", "lost", "theft", "robbed", "fraud",
];

fn status_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum(STATUS_WORDS)
}

/// QI's card types.
pub fn card_type(t: CardType) -> &'static str {
    match t {
        CardType::Virtual => "virtual",
        CardType::Physical => "plastic",
    }
}

fn card_type_schema() -> utoipa::openapi::Object {
    crate::openapi::string_enum([CardType::Virtual, CardType::Physical].map(card_type))
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = QiCard)]
pub struct CardObject {
    /// The card's id (`CARD_KEY`).
    #[schema(format = Uuid)]
    pub card_key: String,
    /// A permanent block reads by its reason: `lost`, `robbed`/`theft`, `fraud`, else `canceled`.
    #[schema(schema_with = status_schema)]
    pub status: &'static str,
    /// The card's account (`WALLET_KEY`).
    #[schema(format = Uuid)]
    pub account_key: String,
    #[schema(format = Uuid)]
    pub program_key: String,
    #[serde(rename = "type")]
    #[schema(schema_with = card_type_schema)]
    pub card_type: &'static str,
    #[schema(required = true)]
    pub card_name: Option<String>,
    #[schema(required = true)]
    pub printed_name: Option<String>,
    #[schema(value_type = Brand)]
    pub brand: &'static str,
    #[schema(pattern = "^[0-9]{4}$")]
    pub last_four_digits: String,
    /// UTC, whole seconds: `2023-02-20T19:28:16Z`.
    #[schema(format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")]
    pub created_at: String,
    /// UTC, whole seconds.
    #[schema(format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")]
    pub updated_at: String,
    /// The program's dynamic-CVV interval in hours for virtual cards
    /// (`serve --cvv-rotation-interval-hours`, default 72); `null` for plastic.
    #[schema(required = true)]
    pub cvv_rotation_interval_hours: Option<u32>,
}

impl CardObject {
    /// The card as QI shows it, with its CVV rotation interval.
    pub fn new(card: &Card, cvv_rotation_interval_hours: Option<u32>) -> Self {
        Self {
            card_key: card.id.to_string(),
            status: status(card),
            account_key: card.account_id.to_string(),
            program_key: card.program_id.to_string(),
            card_type: card_type(card.card_type),
            card_name: card.card_name.clone(),
            printed_name: card.printed_name.clone(),
            brand: card.brand.as_str(),
            last_four_digits: card.last_four.clone(),
            created_at: qi_time(card.created_at),
            updated_at: qi_time(card.updated_at),
            cvv_rotation_interval_hours,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use cardcore_domain::{
        Brand, CardId, CardholderId, Expiry, KitNumber, Limits, PinStatus, ProgramId, StatusReason, TenantId,
    };

    use super::*;

    fn card(status: CardStatus, reason: Option<(&'static str, Option<&str>)>) -> Card {
        let now = chrono::Utc::now();
        Card {
            id: CardId::new(),
            tenant_id: TenantId::new(),
            cardholder_id: CardholderId::new(),
            account_id: cardcore_domain::AccountId::new(),
            program_id: ProgramId::new(),
            card_type: CardType::Physical,
            status,
            status_reason: reason.map(|(code, message)| StatusReason {
                code: ReasonCode::builtin(code),
                message: message.map(str::to_owned),
            }),
            pin_status: PinStatus::NotSet,
            brand: Brand::Visa,
            last_four: "0000".into(),
            expiry: Expiry::years_after(now, 3),
            card_name: None,
            printed_name: None,
            kit_number: KitNumber::from_digits([0; 10]),
            replacement_for: None,
            limits: Limits::unlimited("EUR"),
            created_at: now,
            updated_at: now,
        }
    }

    /// The documented status words are exactly the words `status` answers.
    #[test]
    fn the_documented_status_words_are_the_answered_ones() {
        let mut reasons: Vec<Option<(&'static str, Option<&str>)>> = vec![None];
        for code in ReasonCode::CATALOG {
            reasons.extend([
                Some((*code, None)),
                Some((*code, Some("theft"))),
                Some((*code, Some("robbed"))),
            ]);
        }
        let mut seen = BTreeSet::new();
        for s in CardStatus::ALL {
            for reason in &reasons {
                seen.insert(status(&card(s, *reason)));
            }
        }
        assert_eq!(seen, STATUS_WORDS.into_iter().collect::<BTreeSet<_>>());
    }
}
