//! P100 Partner API, "Virtual Cards" section, under `/p100`. Auth is the
//! `x-api-key` header holding a cardcore API key. `externalUserId` is the
//! cardholder's `external_id`; `cardId` is the card id.

mod error;
mod types;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use cardcore_crypto::Pin;
use cardcore_domain::{CardId, CardType, Channel, LifecycleAction};
use cardcore_service::cards::{CreateCard, ReasonInput};
use cardcore_service::pins::{NamedPin, PinInput};
use cardcore_service::{Ctx, ServiceError};

use error::P100Error;
use types::{
    CardDetails, CardList, CardRequest, CardView, CreateRequest, LimitsRequest, LimitsView, Message, PinRequest,
};

use super::{all_cards, card_of_holder, header_value, holder, parse_body, parse_id, patch_limits, secret_json};
use crate::auth::request_id_of;
use crate::AppState;

/// Routes under `/p100`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/card/create", post(create))
        .route("/v1/card/all/{external_user_id}", get(list))
        .route("/v1/card/details/{external_user_id}/{card_id}", get(details))
        .route("/v1/card/pin", patch(update_pin))
        .route("/v1/card/block", patch(block))
        .route("/v1/card/unblock", patch(unblock))
        .route("/v1/card/limits/{external_user_id}/{card_id}", get(get_limits))
        .route("/v1/card/limits", patch(update_limits))
        .route("/v1/card/{external_user_id}/{card_id}", delete(delete_card))
}

/// A request authenticated by `x-api-key`.
pub struct P100Auth(pub Ctx);

impl FromRequestParts<AppState> for P100Auth {
    type Rejection = P100Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = header_value(parts, "x-api-key").ok_or_else(P100Error::missing_key)?;
        let principal = state.service.authenticate(key).await?;
        Ok(Self(Ctx::new(principal, Channel::P100, request_id_of(parts))))
    }
}

type Body = Result<Bytes, BytesRejection>;
type UserCardPath = Result<Path<(String, String)>, PathRejection>;

fn user_card(path: UserCardPath) -> Result<(String, CardId), ServiceError> {
    let Path((user, card)) = path.map_err(|r| ServiceError::invalid("path", r.body_text()))?;
    Ok((user, parse_id("cardId", &card)?))
}

/// `POST /v1/card/create` (assumed path): a virtual card for the user.
async fn create(State(s): State<AppState>, P100Auth(ctx): P100Auth, body: Body) -> Result<Json<CardView>, P100Error> {
    let b: CreateRequest = parse_body(body)?;
    let holder = holder(&s.service, &ctx, &b.external_user_id).await?;
    let card = s
        .service
        .create_card(
            &ctx,
            CreateCard {
                cardholder_id: holder.id,
                card_type: CardType::Virtual,
                account_id: None,
                program_id: None,
                card_name: b.card_name,
                printed_name: None,
            },
        )
        .await?;
    Ok(Json(CardView::new(&card, holder.external_id.as_str())))
}

/// `GET /v1/card/all/{externalUserId}` (assumed path): every card of the user.
async fn list(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CardList>, P100Error> {
    let Path(user) = path.map_err(|r| ServiceError::invalid("path", r.body_text()))?;
    let holder = holder(&s.service, &ctx, &user).await?;
    let cards = all_cards(&s.service, &ctx, &holder).await?;
    let ext = holder.external_id.as_str();
    Ok(Json(CardList {
        cards: cards.iter().map(|c| CardView::new(c, ext)).collect(),
    }))
}

/// `GET /v1/card/details/{externalUserId}/{cardId}`: the card with PAN and
/// CVV (an audited reveal; the key must be allowed to read card data).
async fn details(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: UserCardPath,
) -> Result<Response, P100Error> {
    let (user, card_id) = user_card(path)?;
    let (holder, card) = card_of_holder(&s.service, &ctx, &user, card_id).await?;
    let data = s.service.reveal(&ctx, card.id).await?;
    Ok(secret_json(&CardDetails {
        card: CardView::new(&card, holder.external_id.as_str()),
        card_number: data.pan.expose(),
        cvv: data.cvv.expose(),
    }))
}

/// `PATCH /v1/card/pin`: sets the PIN of the user's card (seed 000).
async fn update_pin(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<Message>, P100Error> {
    let b: PinRequest = parse_body(body)?;
    let card_id = parse_id("cardId", &b.card_id)?;
    let pin =
        Pin::parse(&b.pin).map_err(|_| ServiceError::invalid("pin", "must be a string of digits, e.g. \"1234\""))?;
    let (_, card) = card_of_holder(&s.service, &ctx, &b.external_user_id, card_id).await?;
    let pin = NamedPin {
        prefix: None,
        input: PinInput::Plain(pin),
    };
    s.service.set_pin(&ctx, card.id, pin, None).await?;
    Ok(Json(Message {
        message: "Card pin updated successfully",
    }))
}

async fn change(s: &AppState, ctx: &Ctx, b: CardRequest, action: LifecycleAction) -> Result<(), P100Error> {
    let card_id = parse_id("cardId", &b.card_id)?;
    let (_, card) = card_of_holder(&s.service, ctx, &b.external_user_id, card_id).await?;
    s.service
        .change_status(ctx, card.id, action, ReasonInput::default())
        .await?;
    Ok(())
}

/// `PATCH /v1/card/block` (assumed path): a reversible block (a lock).
async fn block(State(s): State<AppState>, P100Auth(ctx): P100Auth, body: Body) -> Result<Json<Message>, P100Error> {
    change(&s, &ctx, parse_body(body)?, LifecycleAction::Lock).await?;
    Ok(Json(Message {
        message: "Card blocked successfully",
    }))
}

/// `PATCH /v1/card/unblock` (assumed path).
async fn unblock(State(s): State<AppState>, P100Auth(ctx): P100Auth, body: Body) -> Result<Json<Message>, P100Error> {
    change(&s, &ctx, parse_body(body)?, LifecycleAction::Unlock).await?;
    Ok(Json(Message {
        message: "Card unblocked successfully",
    }))
}

/// `GET /v1/card/limits/{externalUserId}/{cardId}` (assumed path).
async fn get_limits(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: UserCardPath,
) -> Result<Json<LimitsView>, P100Error> {
    let (user, card_id) = user_card(path)?;
    let (_, card) = card_of_holder(&s.service, &ctx, &user, card_id).await?;
    Ok(Json(LimitsView::new(card.id.to_string(), &card.limits)))
}

/// `PATCH /v1/card/limits` (assumed path): changes the channels given.
async fn update_limits(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<LimitsView>, P100Error> {
    let b: LimitsRequest = parse_body(body)?;
    let card_id = parse_id("cardId", &b.card_id)?;
    let (_, card) = card_of_holder(&s.service, &ctx, &b.external_user_id, card_id).await?;
    let limits = patch_limits(&s.service, &ctx, card.id, b.change()).await?;
    Ok(Json(LimitsView::new(card.id.to_string(), &limits)))
}

/// `DELETE /v1/card/{externalUserId}/{cardId}` (assumed path): closes the card.
async fn delete_card(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: UserCardPath,
) -> Result<Json<Message>, P100Error> {
    let (user, card_id) = user_card(path)?;
    let (_, card) = card_of_holder(&s.service, &ctx, &user, card_id).await?;
    s.service
        .change_status(&ctx, card.id, LifecycleAction::Close, ReasonInput::default())
        .await?;
    Ok(Json(Message {
        message: "Card deleted successfully",
    }))
}
