//! P100 Partner API, "Virtual Cards" section, under `/p100`. Auth is the
//! `x-api-key` header holding a cardcore API key. `externalUserId` is the
//! cardholder's `external_id`; `cardId` is the card id.

mod error;
use error::render as render_error;
mod types;
mod users;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Json;
use cardcore_crypto::Pin;
use cardcore_domain::{CardId, CardType, LifecycleAction};
use cardcore_service::cards::{CardRef, CreateCard, ReasonInput};
use cardcore_service::pins::{NamedPin, PinInput};
use cardcore_service::{Ctx, ServiceError};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::P100Error;
use types::{
    CardDetails, CardList, CardRequest, CardView, CreateRequest, LimitsRequest, LimitsView, Message, PinRequest,
};

use super::{all_cards, header_value, holder, parse_body, parse_id, secret_json};
use crate::auth::request_id_of;
use crate::openapi as oa;
use crate::AppState;

/// P100's descriptor (registered in `dialects::all`).
pub const DIALECT: super::Dialect = super::Dialect {
    name: "p100",
    prefix: "/p100",
    routes,
    render_error,
    tag: (
        TAG,
        "P100 Partner API, Virtual Cards (`/p100`): a cardcore API key in `x-api-key`. Errors \
         `{errorCode, errorName?, errorMessage}`.",
    ),
    security_schemes,
    credential_headers: &["x-api-key"],
};

/// Its tag in the document.
const TAG: &str = "P100";
/// Its security scheme: `x-api-key`.
const SCHEME: &str = "p100ApiKey";

fn security_schemes() -> Vec<(&'static str, utoipa::openapi::security::SecurityScheme)> {
    vec![(
        SCHEME,
        oa::api_key_header("x-api-key", "P100: a cardcore API key in `x-api-key`."),
    )]
}

/// Routes under `/p100`, with their documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(list))
        .routes(routes!(details))
        .routes(routes!(update_pin))
        .routes(routes!(block))
        .routes(routes!(unblock))
        .routes(routes!(get_limits))
        .routes(routes!(update_limits))
        .routes(routes!(delete_card))
        .routes(routes!(users::create_user))
        .routes(routes!(users::update_user))
        .routes(routes!(users::get_user))
        .routes(routes!(users::suspend_user))
        .routes(routes!(users::unsuspend_user))
        .routes(routes!(users::delete_user));
    document(router.get_openapi_mut());
    router
}

/// P100's part of the document: its tag, its key, and its error shapes
/// (those of `error.rs`: `{message}` for a refused key, the coded body for
/// everything else, with HTTP 400 even for P500 and P501).
fn document(api: &mut OpenApi) {
    let mut shapes = oa::variants::<error::Body>().into_iter();
    let (Some(denied), Some(coded)) = (shapes.next(), shapes.next()) else {
        return;
    };
    oa::add_schema(
        api,
        "P100AccessDenied",
        denied,
        "P100's refusal of a key: `{\"message\": \"Access Denied. xo1\"}` (no key) or `xo2` (an unknown key).",
    );
    oa::add_schema(api, "P100Error", coded, "P100's coded error: `errorCode` (`P403`, `P434`, `P459`, `P429`, `P500`, `P501`), `errorName` (absent for `P403`), `errorMessage`.");
    oa::for_each_operation(api, |_, _, op| {
        oa::secure(op, &[&[SCHEME]]);
        oa::append(
            op,
            "400",
            "`P500` (`UNKNOWN_EXCEPTION`): a bug or corrupt data, logged, never shown; `P501` \
             (`SERVICE_TEMPORARILY_UNAVAILABLE`): the database is unavailable. P100 answers its coded errors \
             with HTTP 400.",
        );
        oa::response(
            op,
            "401",
            "`Access Denied. xo1`: no (or an empty) `x-api-key`; `Access Denied. xo2`: a key cardcore does not know.",
            |r| oa::body(r, "application/json", oa::named("P100AccessDenied")),
        );
        if let Some((_, r)) = oa::responses_mut(op).find(|(status, _)| *status == 429) {
            // The handler's own 429: P429, the per-card limit, in P100's shape.
            oa::body(r, "application/json", oa::named("P100Error"));
            oa::retry_after(r);
        }
        oa::key_rate_limited_as(op, "application/json", oa::named("P100Error"));
        oa::rate_limited_everywhere(op);
        for (status, r) in oa::responses_mut(op) {
            if status == 400 {
                oa::body(r, "application/json", oa::named("P100Error"));
            }
        }
    });
}

/// A request authenticated by `x-api-key`.
pub struct P100Auth(pub Ctx);

impl FromRequestParts<AppState> for P100Auth {
    type Rejection = P100Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = header_value(parts, "x-api-key").ok_or_else(P100Error::missing_key)?;
        let principal = crate::auth::authenticate(parts, &state.service, key).await?;
        Ok(Self(Ctx::new(principal, DIALECT.channel(), request_id_of(parts))))
    }
}

type Body = Result<Bytes, BytesRejection>;
type UserCardPath = Result<Path<(String, String)>, PathRejection>;

fn user_card(path: UserCardPath) -> Result<(String, CardId), ServiceError> {
    let Path((user, card)) = path.map_err(|r| ServiceError::invalid("path", r.body_text()))?;
    Ok((user, parse_id("cardId", &card)?))
}

/// `POST /v1/card/create` (assumed path): a virtual card for the user.
#[utoipa::path(
    post,
    path = "/v1/card/create",
    operation_id = "p100CreateCard",
    summary = "Create a virtual card (assumed path)",
    description = "A virtual card for the user (the cardholder with that `external_id`, made through the native API).",
    request_body = CreateRequest,
    responses(
        (status = 200, description = "The card.", body = CardView),
        (status = 400, description = "`P403`: a field missing, mistyped or unknown (`field: reason`); `P459` \
                                      (`USER_NOT_VERIFIED`): an `externalUserId` cardcore does not know."),
    )
)]
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
                kit_number: None,
            },
        )
        .await?;
    Ok(Json(CardView::new(&card, holder.external_id.as_str())))
}

/// `GET /v1/card/all/{externalUserId}` (assumed path): every card of the user.
#[utoipa::path(
    get,
    path = "/v1/card/all/{external_user_id}",
    operation_id = "p100ListCards",
    summary = "Every card of a user (assumed path)",
    description = "Oldest first, without paging.",
    params(("external_user_id" = String, Path, description = "P100 `externalUserId`: the cardholder's `external_id`.")),
    responses(
        (status = 200, description = "The user's cards.", body = CardList),
        (status = 400, description = "`P459` (`USER_NOT_VERIFIED`): an `externalUserId` cardcore does not know."),
    )
)]
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
#[utoipa::path(
    get,
    path = "/v1/card/details/{external_user_id}/{card_id}",
    operation_id = "p100CardDetails",
    summary = "Card details with PAN and CVV",
    description = "An audited reveal (`card.sensitive_revealed`); the key must be allowed to read card data. \
                   Answered with `Cache-Control: no-store`.",
    params(("external_user_id" = String, Path, description = "P100 `externalUserId`: the cardholder's `external_id`."), ("card_id" = uuid::Uuid, Path, description = "P100 `cardId`: the card's id.")),
    responses(
        (status = 200, description = "The card with `cardNumber` and `cvv`.", body = CardDetails,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`P434` (`CARD_NOT_EXIST`): unknown card, or a card of another user or \
                                      tenant; `P403`: `cardId` is not a UUID, or the key may not read card data."),
    )
)]
async fn details(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: UserCardPath,
) -> Result<Response, P100Error> {
    let (user, card_id) = user_card(path)?;
    let data = s.service.reveal(&ctx, of_holder(&user, card_id)).await?;
    Ok(secret_json(&CardDetails {
        card: CardView::new(&data.card, &user),
        card_number: data.pan.expose(),
        cvv: data.cvv.expose(),
    }))
}

/// `PATCH /v1/card/pin`: sets the PIN of the user's card (seed 000).
#[utoipa::path(
    patch,
    path = "/v1/card/pin",
    operation_id = "p100UpdatePin",
    summary = "Set the card's PIN",
    description = "Partner-authorised, plain digits.",
    request_body = PinRequest,
    responses(
        (status = 200, description = "Set.", body = Message, example = json!({"message": "Card pin updated successfully"})),
        (status = 400, description = "`P403`: a field missing or mistyped, a weak or wrong-length PIN (the \
                                      reason), or a card status that allows no PIN; `P434` (`CARD_NOT_EXIST`): \
                                      unknown card, or a card of another user or tenant."),
        (status = 429, description = "`P429` (`TOO_MANY_REQUESTS`, HTTP 429, assumed): over the per-card limit \
                                      on PIN and OTP calls (all APIs together), with `Retry-After`."),
    )
)]
async fn update_pin(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<Message>, P100Error> {
    let b: PinRequest = parse_body(body)?;
    let card_id = parse_id("cardId", &b.card_id)?;
    let pin =
        Pin::parse(&b.pin).map_err(|_| ServiceError::invalid("pin", "must be a string of digits, e.g. \"1234\""))?;
    let pin = NamedPin {
        prefix: None,
        input: PinInput::Plain(pin),
    };
    let card = of_holder(&b.external_user_id, card_id);
    s.service.set_pin(&ctx, card, pin, None).await?;
    Ok(Json(Message {
        message: "Card pin updated successfully",
    }))
}

/// The card `card_id` of the user `externalUserId`: the core resolves it in
/// the operation's one call (another user's card answers as an unknown one).
fn of_holder(external_id: &str, card_id: CardId) -> CardRef<'_> {
    CardRef::OfHolder { external_id, card_id }
}

async fn change(s: &AppState, ctx: &Ctx, b: CardRequest, action: LifecycleAction) -> Result<(), P100Error> {
    let card_id = parse_id("cardId", &b.card_id)?;
    let card = of_holder(&b.external_user_id, card_id);
    s.service
        .change_status(ctx, card, action, ReasonInput::default())
        .await?;
    Ok(())
}

/// `PATCH /v1/card/block` (assumed path): a reversible block (a lock).
#[utoipa::path(
    patch,
    path = "/v1/card/block",
    operation_id = "p100BlockCard",
    summary = "Block a card (assumed path)",
    description = "P100's reversible block: the core's lock (ACTIVE → LOCKED, shown as BLOCKED).",
    request_body = CardRequest,
    responses(
        (status = 200, description = "Done (also when the card already had the status).", body = Message,
            example = json!({"message": "Card blocked successfully"})),
        (status = 400, description = "`P403`: a field missing or mistyped, or a refused status move (in P100's \
                                      words); `P434` (`CARD_NOT_EXIST`): unknown card, or a card of another user \
                                      or tenant."),
    )
)]
async fn block(State(s): State<AppState>, P100Auth(ctx): P100Auth, body: Body) -> Result<Json<Message>, P100Error> {
    change(&s, &ctx, parse_body(body)?, LifecycleAction::Lock).await?;
    Ok(Json(Message {
        message: "Card blocked successfully",
    }))
}

/// `PATCH /v1/card/unblock` (assumed path).
#[utoipa::path(
    patch,
    path = "/v1/card/unblock",
    operation_id = "p100UnblockCard",
    summary = "Unblock a card (assumed path)",
    description = "The core's unlock (LOCKED → ACTIVE). A permanent block (TERMINATED) cannot be unblocked.",
    request_body = CardRequest,
    responses(
        (status = 200, description = "Done (also when the card already had the status).", body = Message,
            example = json!({"message": "Card unblocked successfully"})),
        (status = 400, description = "`P403`: a field missing or mistyped, or a refused status move (in P100's \
                                      words); `P434` (`CARD_NOT_EXIST`): unknown card, or a card of another user \
                                      or tenant."),
    )
)]
async fn unblock(State(s): State<AppState>, P100Auth(ctx): P100Auth, body: Body) -> Result<Json<Message>, P100Error> {
    change(&s, &ctx, parse_body(body)?, LifecycleAction::Unlock).await?;
    Ok(Json(Message {
        message: "Card unblocked successfully",
    }))
}

/// `GET /v1/card/limits/{externalUserId}/{cardId}` (assumed path).
#[utoipa::path(
    get,
    path = "/v1/card/limits/{external_user_id}/{card_id}",
    operation_id = "p100GetLimits",
    summary = "A card's limits (assumed path)",
    params(("external_user_id" = String, Path, description = "P100 `externalUserId`: the cardholder's `external_id`."), ("card_id" = uuid::Uuid, Path, description = "P100 `cardId`: the card's id.")),
    responses(
        (status = 200, description = "The limits, in minor units.", body = LimitsView),
        (status = 400, description = "`P434` (`CARD_NOT_EXIST`): unknown card, or a card of another user or \
                                      tenant; `P403`: `cardId` is not a UUID."),
    )
)]
async fn get_limits(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: UserCardPath,
) -> Result<Json<LimitsView>, P100Error> {
    let (user, card_id) = user_card(path)?;
    let card = s.service.card(&ctx, of_holder(&user, card_id)).await?;
    Ok(Json(LimitsView::new(card.id.to_string(), &card.limits)))
}

/// `PATCH /v1/card/limits` (assumed path): changes the channels given.
#[utoipa::path(
    patch,
    path = "/v1/card/limits",
    operation_id = "p100UpdateLimits",
    summary = "Change a card's limits (assumed path)",
    description = "A channel left out is kept, a field left out is kept, `null` removes that limit; the result \
                   must keep `perTransaction ≤ daily ≤ monthly`.",
    request_body = LimitsRequest,
    responses(
        (status = 200, description = "The limits now.", body = LimitsView),
        (status = 400, description = "`P403`: a field missing, mistyped or unknown, limits out of order, or a \
                                      CLOSED card; `P434` (`CARD_NOT_EXIST`): unknown card, or a card of another \
                                      user or tenant."),
    )
)]
async fn update_limits(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    body: Body,
) -> Result<Json<LimitsView>, P100Error> {
    let b: LimitsRequest = parse_body(body)?;
    let card_id = parse_id("cardId", &b.card_id)?;
    let user = b.external_user_id.clone();
    let change = b.change();
    let card = of_holder(&user, card_id);
    let limits = s
        .service
        .update_limits(&ctx, card, |l| change.clone().apply(l.clone()))
        .await?;
    Ok(Json(LimitsView::new(card_id.to_string(), &limits)))
}

/// `DELETE /v1/card/{externalUserId}/{cardId}` (assumed path): closes the card.
#[utoipa::path(
    delete,
    path = "/v1/card/{external_user_id}/{card_id}",
    operation_id = "p100DeleteCard",
    summary = "Delete (close) a card (assumed path)",
    description = "The core's close: terminal.",
    params(("external_user_id" = String, Path, description = "P100 `externalUserId`: the cardholder's `external_id`."), ("card_id" = uuid::Uuid, Path, description = "P100 `cardId`: the card's id.")),
    responses(
        (status = 200, description = "Closed (also when it already was).", body = Message,
            example = json!({"message": "Card deleted successfully"})),
        (status = 400, description = "`P434` (`CARD_NOT_EXIST`): unknown card, or a card of another user or \
                                      tenant; `P403`: `cardId` is not a UUID."),
    )
)]
async fn delete_card(
    State(s): State<AppState>,
    P100Auth(ctx): P100Auth,
    path: UserCardPath,
) -> Result<Json<Message>, P100Error> {
    let (user, card_id) = user_card(path)?;
    s.service
        .change_status(
            &ctx,
            of_holder(&user, card_id),
            LifecycleAction::Close,
            ReasonInput::default(),
        )
        .await?;
    Ok(Json(Message {
        message: "Card deleted successfully",
    }))
}
