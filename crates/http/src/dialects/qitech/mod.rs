//! QI Tech card API under `/qitech`. Auth is the `API-CLIENT-KEY` header
//! holding a cardcore API key. `WALLET_KEY` is the card's account id,
//! `CARD_KEY` the card id; a card outside the wallet is not found.

mod error;
mod types;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::routing::patch;
use axum::{Json, Router};
use cardcore_crypto::Pin;
use cardcore_domain::{AccountId, CardId, CardType, Channel, LifecycleAction, ReasonCode, RuleViolation};
use cardcore_service::cards::ReasonInput;
use cardcore_service::pins::{NamedPin, PinInput};
use cardcore_service::{Ctx, ServiceError};

use error::{qi_error, QiError, Scope};
use types::{status, ActivateRequest, CardObject, PasswordRequest, StatusRequest, StatusWanted};

use super::{card_in_account, header_value, parse_body, parse_id};
use crate::auth::request_id_of;
use crate::AppState;

/// Routes under `/qitech`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wallet/{wallet_key}/card/{card_key}", patch(update_status))
        .route("/wallet/{wallet_key}/card/{card_key}/password", patch(password))
        .route("/wallet/{wallet_key}/card/{card_key}/activate", patch(activate))
}

/// A request authenticated by `API-CLIENT-KEY`.
pub struct QiAuth(pub Ctx);

impl FromRequestParts<AppState> for QiAuth {
    type Rejection = QiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = header_value(parts, "api-client-key").ok_or_else(QiError::missing_key)?;
        let principal = state
            .service
            .authenticate(key)
            .await
            .map_err(|e| qi_error(e, &Scope::default()))?;
        Ok(Self(Ctx::new(principal, Channel::Qitech, request_id_of(parts))))
    }
}

type Body = Result<Bytes, BytesRejection>;
type KeysPath = Result<Path<(String, String)>, PathRejection>;

/// The wallet and card keys of the path, and the error scope naming the card.
fn keys(path: KeysPath) -> Result<(Scope, AccountId, CardId), QiError> {
    let Path((wallet, card)) =
        path.map_err(|r| qi_error(ServiceError::invalid("path", r.body_text()), &Scope::default()))?;
    let scope = Scope {
        card_key: card.clone(),
        ..Scope::default()
    };
    let parsed =
        parse_id::<AccountId>("WALLET_KEY", &wallet).and_then(|w| Ok((w, parse_id::<CardId>("CARD_KEY", &card)?)));
    match parsed {
        Ok((w, c)) => Ok((scope, w, c)),
        Err(e) => Err(qi_error(e, &scope)),
    }
}

/// Renders a service error about the card in `scope`.
fn fail(scope: &Scope) -> impl FnOnce(ServiceError) -> QiError + '_ {
    move |e| qi_error(e, scope)
}

/// QI's password is exactly 4 digits.
fn password_pin(pin: &str) -> Result<Pin, ServiceError> {
    let bad = || ServiceError::invalid("pin", "must be a string of 4 digits");
    if pin.len() != 4 {
        return Err(bad());
    }
    Pin::parse(pin).map_err(|_| bad())
}

/// `PATCH /wallet/{WALLET_KEY}/card/{CARD_KEY}/password` (seed 001).
async fn password(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: KeysPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (mut scope, wallet, card_id) = keys(path)?;
    let b: PasswordRequest = parse_body(body).map_err(fail(&scope))?;
    let pin = password_pin(&b.pin).map_err(fail(&scope))?;
    let card = card_in_account(&s.service, &ctx, wallet, card_id)
        .await
        .map_err(fail(&scope))?;
    scope.status = Some(status(&card));
    if card.card_type != CardType::Physical {
        return Err(QiError::not_plastic());
    }
    // QI allows a password only on Active or temporarily blocked cards: the
    // core's "ACTIVE or LOCKED" predicate, stricter than PIN set (which also
    // allows INACTIVE). The core checks its own rule again under the lock.
    if !card.status.allows_pin_verify() {
        let refused = RuleViolation::InvalidCardStatus {
            status: card.status,
            operation: "changing the card password",
        };
        return Err(qi_error(refused.into(), &scope));
    }
    let pin = NamedPin {
        prefix: None,
        input: PinInput::Plain(pin),
    };
    let card = s
        .service
        .set_pin(&ctx, card.id, pin, None)
        .await
        .map_err(fail(&scope))?;
    Ok(Json(CardObject::from(&card)))
}

/// `PATCH /wallet/{WALLET_KEY}/card/{CARD_KEY}`: a status change in QI's words.
async fn update_status(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: KeysPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (mut scope, wallet, card_id) = keys(path)?;
    let b: StatusRequest = parse_body(body).map_err(fail(&scope))?;
    scope.requested = Some(b.status.as_str());
    let card = card_in_account(&s.service, &ctx, wallet, card_id)
        .await
        .map_err(fail(&scope))?;
    scope.status = Some(status(&card));
    let reason = |code: &str, message: Option<&str>| ReasonInput {
        code: Some(code.to_owned()),
        message: message.map(str::to_owned),
    };
    let (action, reason) = match b.status {
        StatusWanted::Active => (LifecycleAction::Unlock, ReasonInput::default()),
        StatusWanted::Blocked => (LifecycleAction::Lock, ReasonInput::default()),
        StatusWanted::Lost => (LifecycleAction::Block, reason(ReasonCode::LOST_CARD, None)),
        // QI has two kinds of stolen; the reason message keeps which one.
        StatusWanted::Robbed => (LifecycleAction::Block, reason(ReasonCode::STOLEN_CARD, Some("robbed"))),
        StatusWanted::Theft => (LifecycleAction::Block, reason(ReasonCode::STOLEN_CARD, Some("theft"))),
        StatusWanted::Fraud => (LifecycleAction::Block, reason(ReasonCode::FRAUD_CONFIRMED, None)),
        StatusWanted::Canceled => (LifecycleAction::Close, ReasonInput::default()),
    };
    let change = s
        .service
        .change_status(&ctx, card.id, action, reason)
        .await
        .map_err(fail(&scope))?;
    Ok(Json(CardObject::from(&change.card)))
}

/// `PATCH /wallet/{WALLET_KEY}/card/{CARD_KEY}/activate`: with the code issued at creation.
async fn activate(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: KeysPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (mut scope, wallet, card_id) = keys(path)?;
    let b: ActivateRequest = parse_body(body).map_err(fail(&scope))?;
    let card = card_in_account(&s.service, &ctx, wallet, card_id)
        .await
        .map_err(fail(&scope))?;
    scope.status = Some(status(&card));
    let change = s
        .service
        .activate(&ctx, card.id, &b.activation_code)
        .await
        .map_err(fail(&scope))?;
    Ok(Json(CardObject::from(&change.card)))
}
