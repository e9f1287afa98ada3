//! `/v1/cards`: issue, read, reveal, lifecycle, replacement, limits.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cardcore_domain::{
    AccountId, Card, CardId, CardStatus, CardType, CardholderId, LifecycleAction, Limits, ProgramId, ReplaceReason,
};
use cardcore_service::cards::{CreateCard, ListCards, ReasonInput, StatusChange};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct IdPath {
    id: CardId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    cardholder_id: CardholderId,
    #[serde(rename = "type")]
    card_type: CardType,
    account_id: Option<AccountId>,
    program_id: Option<ProgramId>,
    card_name: Option<String>,
    printed_name: Option<String>,
}

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
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(card)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cardholder_id: Option<CardholderId>,
    status: Option<CardStatus>,
    limit: Option<u32>,
    cursor: Option<CardId>,
}

#[derive(Debug, Serialize)]
pub struct CardList {
    data: Vec<Card>,
    next_cursor: Option<CardId>,
}

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

pub async fn get(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Card>, ApiError> {
    Ok(Json(s.service.card(&ctx, p.id).await?))
}

#[derive(Serialize)]
struct Sensitive<'a> {
    pan: &'a str,
    cvv: &'a str,
    expiry: String,
}

/// PAN, CVV and expiry. Never cached by anything between us and the caller.
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
#[derive(Serialize)]
pub struct ChangedCard {
    #[serde(flatten)]
    card: Card,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason_code: Option<String>,
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

pub async fn lock(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Lock, b).await
}

pub async fn unlock(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Unlock, b).await
}

pub async fn block(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Block, b).await
}

pub async fn close(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Close, b).await
}

/// `DELETE /v1/cards/{id}`: the same as close.
pub async fn delete(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<ReasonBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    change(s, ctx, p.id, LifecycleAction::Close, b).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    activation_code: String,
}

pub async fn activate(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<ActivateBody>,
) -> Result<Json<ChangedCard>, ApiError> {
    Ok(Json(s.service.activate(&ctx, p.id, &b.activation_code).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceBody {
    reason: ReplaceReason,
}

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

pub async fn get_limits(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Limits>, ApiError> {
    Ok(Json(s.service.limits(&ctx, p.id).await?))
}

pub async fn put_limits(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<Limits>,
) -> Result<Json<Limits>, ApiError> {
    Ok(Json(s.service.set_limits(&ctx, p.id, b).await?))
}
