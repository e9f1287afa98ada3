//! QI Tech's prepaid-card paths, `/prepaid/card/{CARD_KEY}` and
//! `/prepaid/card/{CARD_KEY}/activate`, as QI's prepaid pages show them
//! (https://docs.qitech.com.br/en/documentation/cards/status/update_status_cartao,
//! https://docs.qitech.com.br/en/documentation/cards/status/ativar_cartao).
//! They name the card without its wallet: the card is looked up in the
//! tenant, then the call is the wallet form's, with the same body, answer
//! and errors.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use cardcore_domain::CardId;
use cardcore_service::cards::CardRef;
use cardcore_service::ServiceError;

use super::error::{qi_error, QiError, Scope};
use super::types::{ActivateRequest, CardObject, StatusRequest};
use super::{Body, QiAuth};
use crate::dialects::parse_id;
use crate::AppState;

type CardPath = Result<Path<String>, PathRejection>;

/// The card `CARD_KEY` of the caller's tenant (no wallet to check).
fn card_key(path: CardPath) -> Result<(Scope, CardRef<'static>), QiError> {
    let Path(card_key) = path.map_err(|r| qi_error(ServiceError::invalid("path", r.body_text()), &Scope::default()))?;
    let scope = Scope {
        card_key: card_key.clone(),
        ..Scope::default()
    };
    let id: CardId = parse_id("CARD_KEY", &card_key).map_err(|e| qi_error(e, &scope))?;
    Ok((scope, CardRef::Id(id)))
}

/// `PATCH /prepaid/card/{CARD_KEY}`: `PATCH /wallet/{WALLET_KEY}/card/{CARD_KEY}` without the wallet.
#[utoipa::path(
    patch,
    path = "/prepaid/card/{card_key}",
    operation_id = "qitechPrepaidUpdateStatus",
    summary = "Change a card's status (prepaid path)",
    description = "QI's prepaid path for the status change: the same body, answer and errors as \
                   `PATCH /wallet/{wallet_key}/card/{card_key}`, the card named without its wallet.",
    params(("card_key" = uuid::Uuid, Path, description = "QI `CARD_KEY`: the card's id.")),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The card.", body = CardObject),
        (status = 400, description = "`QIT000001`: invalid JSON schema (an unknown status word included)."),
        (status = 404, description = "`CARD000011`: no such card for that `card_key` (or tenant)."),
        (status = 406, description = "`CARD000013`: the status machine refuses the move (\"Unable to transition from {old} to {new}.\"); `CARD000014`: no move out of a terminated status (lost, robbed, theft, fraud, canceled)."),
    )
)]
pub(super) async fn update_status(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: CardPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (scope, card) = card_key(path)?;
    super::update_status_of(&s, &ctx, card, scope, body).await
}

/// `PATCH /prepaid/card/{CARD_KEY}/activate`: the wallet form's activation without the wallet.
#[utoipa::path(
    patch,
    path = "/prepaid/card/{card_key}/activate",
    operation_id = "qitechPrepaidActivate",
    summary = "Activate a card (prepaid path)",
    description = "QI's prepaid path for the activation, `{\"code\": \"253615\"}`: the same body, answer and \
                   errors as `PATCH /wallet/{wallet_key}/card/{card_key}/activate`.",
    params(("card_key" = uuid::Uuid, Path, description = "QI `CARD_KEY`: the card's id.")),
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "The card.", body = CardObject),
        (status = 400, description = "`QIT000001`: invalid JSON schema (an activation code not 6 digits included)."),
        (status = 404, description = "`CARD000011`: no such card for that `card_key` (or tenant)."),
        (status = 406, description = "`CARD000017`: activation is not valid for the card's status; \
                                      `CARD000020`: a wrong activation code (counted)."),
        (status = 409, description = "`QIT000409` (cardcore's code), with `Retry-After`: 3 consecutive wrong codes locked \
                                      activation of the card for 10 minutes, the right code included."),
        (status = 429, description = "`QIT000429`: over the per-card limit on PIN, OTP and activation calls (all APIs \
                                      together), with `Retry-After`."),
    )
)]
pub(super) async fn activate(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: CardPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (scope, card) = card_key(path)?;
    super::activate_of(&s, &ctx, card, scope, body).await
}
