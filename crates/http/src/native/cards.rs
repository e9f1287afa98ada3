//! `/v1/cards`: issue, read, reveal, lifecycle, replacement, limits.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cardcore_domain::{
    AccountId, Card, CardId, CardStatus, CardType, CardholderId, LifecycleAction, Limits, ProgramId, ReasonCode,
    ReplaceReason,
};
use cardcore_service::cards::{CreateCard, ListCards, ReasonInput, StatusChange};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The card's id.
    id: CardId,
}

/// A new card.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateCardRequest)]
pub struct CreateBody {
    cardholder_id: CardholderId,
    /// Virtual cards start ACTIVE; physical cards start INACTIVE and are
    /// activated with the code of the `card.activation_code` event.
    #[serde(rename = "type")]
    card_type: CardType,
    /// Defaults to the cardholder's default account.
    account_id: Option<AccountId>,
    /// Defaults to the tenant's default program; any UUID is accepted as a label.
    program_id: Option<ProgramId>,
    /// Defaults to the card type's name (`virtual` or `physical`).
    #[schema(max_length = 50)]
    card_name: Option<String>,
    /// Defaults to the cardholder's name in capitals, cut to 26 characters.
    #[schema(max_length = 26)]
    printed_name: Option<String>,
    /// The vendor's kit number (M2P `kit`): 6 to 16 digits, unique per
    /// tenant. Defaults to 10 random digits.
    #[schema(pattern = "^[0-9]{6,16}$")]
    kit_number: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/cards",
    tag = "Cards",
    operation_id = "createCard",
    summary = "Issue a card",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The new card.", body = Card),
        (status = 404, description = "`cardholder_not_found`: no such cardholder in this tenant."),
        (status = 409, description = "`kit_number_taken`: another card of the tenant has this `kit_number`."),
        (status = 422, description = "`validation_error` naming each bad field."),
    )
)]
pub async fn create(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Card>), ApiError> {
    let card = s
        .service
        .create_card(
            &ctx,
            CreateCard {
                cardholder_id: b.cardholder_id,
                card_type: b.card_type,
                account_id: b.account_id,
                program_id: b.program_id,
                card_name: b.card_name,
                printed_name: b.printed_name,
                kit_number: b.kit_number,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(card)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this cardholder's cards.
    cardholder_id: Option<CardholderId>,
    /// Only cards with this status.
    status: Option<CardStatus>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<CardId>,
}

/// A page of cards, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardList {
    data: Vec<Card>,
    /// The cursor of the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<CardId>,
}

#[utoipa::path(
    get,
    path = "/v1/cards",
    tag = "Cards",
    operation_id = "listCards",
    summary = "List cards",
    description = "Oldest first; pass `cursor=<next_cursor>` for the next page. Unknown query parameters are refused.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of cards.", body = CardList),
        (status = 422, description = "`validation_error`: a bad or unknown query parameter."),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<CardList>, ApiError> {
    let page = s
        .service
        .cards(
            &ctx,
            ListCards {
                cardholder_id: q.cardholder_id,
                status: q.status,
                cursor: q.cursor,
                limit: q.limit,
            },
        )
        .await?;
    Ok(Json(CardList {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/cards/{id}",
    tag = "Cards",
    operation_id = "getCard",
    summary = "Get a card",
    params(IdPath),
    responses(
        (status = 200, description = "The card.", body = Card),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Card>, ApiError> {
    Ok(Json(s.service.card(&ctx, p.id).await?))
}

/// The card's data, in clear.
#[derive(Serialize, ToSchema)]
#[schema(as = SensitiveCardData)]
struct Sensitive<'a> {
    /// The full card number: 12 to 19 digits.
    #[schema(min_length = 12, max_length = 19)]
    pan: &'a str,
    /// The CVV2 valid now: 3 or 4 digits. A virtual card of a program that
    /// rotates its CVV2 (`cvv_rotation_interval_hours`) shows the current
    /// window's.
    #[schema(min_length = 3, max_length = 4)]
    cvv: &'a str,
    /// When `cvv` changes (the end of its window); `null` for a CVV2 that
    /// does not rotate (physical cards, programs without rotation).
    #[schema(value_type = Option<String>, format = DateTime)]
    cvv_expires_at: Option<cardcore_domain::Timestamp>,
    /// `MM/YY`.
    #[schema(pattern = "^(0[1-9]|1[0-2])/[0-9]{2}$")]
    expiry: String,
}

/// PAN, CVV and expiry. Never cached by anything between us and the caller.
#[utoipa::path(
    get,
    path = "/v1/cards/{id}/sensitive",
    tag = "Cards",
    operation_id = "revealCard",
    summary = "Reveal the card's PAN, CVV and expiry",
    description = "Needs an API key allowed to reveal (a tenant's first key is). Writes a \
                   `card.sensitive_revealed` audit entry. Answered with `Cache-Control: no-store`.",
    params(IdPath),
    responses(
        (status = 200, description = "The card data.", body = Sensitive,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 403, description = "`forbidden`: this API key may not reveal card data."),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
pub async fn sensitive(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Response, ApiError> {
    let data = s.service.reveal(&ctx, p.id).await?;
    let body = zeroize::Zeroizing::new(
        serde_json::to_vec(&Sensitive {
            pan: data.pan.expose(),
            cvv: data.cvv.expose(),
            cvv_expires_at: data.cvv_expires_at,
            expiry: data.expiry.to_string(),
        })
        .unwrap_or_default(),
    );
    let mut res = (StatusCode::OK, body.to_vec()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// A card with the `changed` flag of a lifecycle action.
#[derive(Serialize, ToSchema)]
pub struct ChangedCard {
    #[serde(flatten)]
    card: Card,
    /// `false` when the card already had the status: nothing was written.
    changed: bool,
}

impl From<StatusChange> for ChangedCard {
    fn from(c: StatusChange) -> Self {
        Self {
            card: c.card,
            changed: c.changed,
        }
    }
}

/// Why the card moves (optional for lock, unlock and close; `reason_code`
/// is required to block). An empty body is `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StatusChangeRequest)]
pub struct ReasonBody {
    /// A code from the catalog (see `StatusReason`); anything else is a 422 listing the catalog.
    #[schema(value_type = Option<ReasonCode>)]
    reason_code: Option<String>,
    #[schema(max_length = 500)]
    reason_message: Option<String>,
}

async fn change(
    s: AppState,
    ctx: cardcore_service::Ctx,
    id: CardId,
    action: LifecycleAction,
    b: ReasonBody,
) -> Result<Json<ChangedCard>, ApiError> {
    let reason = ReasonInput {
        code: b.reason_code,
        message: b.reason_message,
    };
    Ok(Json(s.service.change_status(&ctx, id, action, reason).await?.into()))
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/lock",
    tag = "Cards",
    operation_id = "lockCard",
    summary = "Lock a card",
    description = "ACTIVE → LOCKED: a temporary, reversible freeze.",
    params(IdPath),
    request_body = Option<ReasonBody>,
    responses(
        (status = 200, description = "The card, with `changed: false` if it already had the status.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_status_transition` (with `current_status` and `action`): the card cannot be locked from its status."),
        (status = 422, description = "`validation_error`: `id` is not a UUID, or an unknown `reason_code`."),
    )
)]
pub async fn lock(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Lock, b).await
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/unlock",
    tag = "Cards",
    operation_id = "unlockCard",
    summary = "Unlock a card",
    description = "LOCKED → ACTIVE.",
    params(IdPath),
    request_body = Option<ReasonBody>,
    responses(
        (status = 200, description = "The card, with `changed: false` if it already had the status.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_status_transition` (with `current_status` and `action`): the card cannot be unlocked from its status."),
        (status = 422, description = "`validation_error`: `id` is not a UUID, or an unknown `reason_code`."),
    )
)]
pub async fn unlock(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Unlock, b).await
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/block",
    tag = "Cards",
    operation_id = "blockCard",
    summary = "Block a card",
    description = "ACTIVE or LOCKED → BLOCKED, permanently; needs a `reason_code`. A `CARD_CLOSURE` block is terminal (the card cannot be replaced).",
    params(IdPath),
    request_body = Option<ReasonBody>,
    responses(
        (status = 200, description = "The card, with `changed: false` if it already had the status.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_status_transition` (with `current_status` and `action`): the card cannot be blocked from its status."),
        (status = 422, description = "`validation_error`: `id` is not a UUID, or an unknown `reason_code`, or no `reason_code`."),
    )
)]
pub async fn block(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Block, b).await
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/close",
    tag = "Cards",
    operation_id = "closeCard",
    summary = "Close a card",
    description = "Any status → CLOSED, terminal (a CLOSED card answers `changed: false`).",
    params(IdPath),
    request_body = Option<ReasonBody>,
    responses(
        (status = 200, description = "The card, with `changed: false` if it already had the status.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID, or an unknown `reason_code`."),
    )
)]
pub async fn close(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Close, b).await
}

/// `DELETE /v1/cards/{id}`: the same as close.
#[utoipa::path(
    delete,
    path = "/v1/cards/{id}",
    tag = "Cards",
    operation_id = "deleteCard",
    summary = "Close a card (DELETE)",
    description = "The same as `POST /v1/cards/{id}/close`.",
    params(IdPath),
    request_body = Option<ReasonBody>,
    responses(
        (status = 200, description = "The card, with `changed: false` if it already had the status.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID, or an unknown `reason_code`."),
    )
)]
pub async fn delete(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Close, b).await
}

/// The activation code of the `card.activation_code` event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ActivateCardRequest)]
pub struct ActivateBody {
    /// 6 digits, single use.
    #[schema(min_length = 6, max_length = 6)]
    activation_code: String,
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/activate",
    tag = "Cards",
    operation_id = "activateCard",
    summary = "Activate a physical card",
    description = "INACTIVE → ACTIVE with the 6-digit code delivered only in the `card.activation_code` event.",
    params(IdPath),
    request_body = ActivateBody,
    responses(
        (status = 200, description = "The card, with `changed: false` if it was already active.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_status_transition` (with `current_status` and `action`): the card cannot be activated from its status; \
                                      `activation_locked` (with `retry_after_seconds` and `Retry-After`): 3 consecutive wrong codes locked \
                                      activation of the card for 10 minutes, the right code included."),
        (status = 422, description = "`activation_code_invalid` (with `remaining_attempts`): a wrong code, counted; `validation_error`: `id` is not a UUID or the body is wrong."),
        (status = 429, description = "`rate_limited`: over the per-card limit on PIN, OTP and activation calls (or the \
                                      per-API-key limit); nothing was done."),
    )
)]
pub async fn activate(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<ActivateBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    Ok(Json(s.service.activate(&ctx, p.id, &b.activation_code).await?.into()))
}

/// Why the card is replaced.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplaceCardRequest)]
pub struct ReplaceBody {
    /// LOST and STOLEN leave the old card BLOCKED; DAMAGED and EXPIRED leave it CLOSED.
    reason: ReplaceReason,
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/replace",
    tag = "Cards",
    operation_id = "replaceCard",
    summary = "Replace a card",
    description = "A new card for the same cardholder, account, program, type, names and limits, with a new PAN, \
                   CVV, kit number and expiry and `replacement_for` set; its PIN is not carried over.",
    params(IdPath),
    request_body = ReplaceBody,
    responses(
        (status = 201, description = "The new card.", body = Card),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`card_already_replaced`; `card_not_replaceable` (a `CARD_CLOSURE` block); \
                                      `invalid_status_transition` (INACTIVE and CLOSED cards, with `current_status`)."),
        (status = 422, description = "`validation_error`: `id` is not a UUID or an unknown `reason`."),
    )
)]
pub async fn replace(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<ReplaceBody>,
) -> Result<(StatusCode, Json<Card>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.replace(&ctx, p.id, b.reason).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/cards/{id}/limits",
    tag = "Cards",
    operation_id = "getCardLimits",
    summary = "Get a card's spend limits",
    params(IdPath),
    responses(
        (status = 200, description = "The limits, amounts in minor units.", body = Limits),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
pub async fn get_limits(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Limits>, ApiError> {
    Ok(Json(s.service.limits(&ctx, p.id).await?))
}

#[utoipa::path(
    put,
    path = "/v1/cards/{id}/limits",
    tag = "Cards",
    operation_id = "setCardLimits",
    summary = "Replace a card's spend limits",
    description = "Replaces the whole object: all four channels are required. Amounts are non-negative integers \
                   in minor units up to 10^12, `per_transaction ≤ daily ≤ monthly` where set. The same limits \
                   again record nothing.",
    params(IdPath),
    request_body = Limits,
    responses(
        (status = 200, description = "The limits now.", body = Limits),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_card_status` (with `current_status`): the card is CLOSED."),
        (status = 422, description = "`validation_error` naming the field (`currency`, `channels.atm.daily`, ...)."),
    )
)]
pub async fn put_limits(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<Limits>,
) -> Result<Json<Limits>, ApiError> {
    Ok(Json(s.service.set_limits(&ctx, p.id, b).await?))
}
