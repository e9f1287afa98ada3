//! QI Tech card API under `/qitech`. Auth is the `API-CLIENT-KEY` header
//! holding a cardcore API key. `WALLET_KEY` is the card's account id,
//! `CARD_KEY` the card id; a card outside the wallet is not found.

mod error;
pub(crate) use error::render as render_error;
mod prepaid;
mod types;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use cardcore_crypto::Pin;
use cardcore_domain::{AccountId, CardId, CardType, LifecycleAction, ReasonCode};
use cardcore_service::cards::{CardRef, ReasonInput};
use cardcore_service::pins::{NamedPin, PinInput, PinSetTerms};
use cardcore_service::{Ctx, ServiceError};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::{qi_error, QiError, Scope};
use types::{status, ActivateRequest, CardObject, PasswordRequest, StatusRequest, StatusWanted};

use super::{header_value, parse_body, parse_id};
use crate::auth::request_id_of;
use crate::openapi as oa;
use crate::AppState;

/// QI Tech's descriptor (registered in `dialects::all`).
pub const DIALECT: super::Dialect = super::Dialect {
    name: "qitech",
    prefix: "/qitech",
    routes,
    render_error,
    tag: (
        TAG,
        "QI Tech card API (`/qitech`): a cardcore API key in `API-CLIENT-KEY`. Errors \
         `{title, description, translation, code}`.",
    ),
    security_schemes,
    credential_headers: &["api-client-key"],
};

/// Its tag in the document.
const TAG: &str = "QI Tech";
/// Its security scheme: `API-CLIENT-KEY`.
const SCHEME: &str = "qitechApiClientKey";

fn security_schemes() -> Vec<(&'static str, utoipa::openapi::security::SecurityScheme)> {
    vec![(
        SCHEME,
        oa::api_key_header("API-CLIENT-KEY", "QI Tech: a cardcore API key in `API-CLIENT-KEY`."),
    )]
}

/// Routes under `/qitech`, with their documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(update_status))
        .routes(routes!(password))
        .routes(routes!(activate))
        .routes(routes!(prepaid::update_status))
        .routes(routes!(prepaid::activate));
    document(router.get_openapi_mut());
    router
}

/// QI Tech's part of the document: its tag, its key, and its one error shape
/// (`error.rs`), with the codes every call can answer.
fn document(api: &mut OpenApi) {
    oa::register::<QiError>(api);
    oa::for_each_operation(api, |_, _, op| {
        oa::secure(op, &[&[SCHEME]]);
        oa::append(op, "400", "`GDF000003`: no `API-CLIENT-KEY`.");
        oa::append(
            op,
            "404",
            "`GDF000018`: an `API-CLIENT-KEY` cardcore does not know (not repeated back).",
        );
        oa::response(
            op,
            "500",
            "`QIT000500`: a bug or corrupt data (logged, never shown).",
            |_| {},
        );
        oa::response(op, "503", "`QIT000503`: the database is unavailable.", oa::retry_after);
        if let Some((_, r)) = oa::responses_mut(op).find(|(status, _)| *status == 429) {
            // The handler's own 429: QIT000429, the per-card limit.
            oa::body(r, "application/json", oa::schema_ref::<QiError>());
            oa::retry_after(r);
        }
        if let Some((_, r)) = oa::responses_mut(op).find(|(status, _)| *status == 409) {
            // QIT000409: activation locked for a while.
            oa::retry_after(r);
        }
        oa::key_rate_limited_as(op, "application/json", oa::schema_ref::<QiError>());
        oa::rate_limited_everywhere(op);
        for (status, r) in oa::responses_mut(op) {
            if status >= 400 {
                oa::body(r, "application/json", oa::schema_ref::<QiError>());
            }
        }
    });
}

/// A request authenticated by `API-CLIENT-KEY`.
pub struct QiAuth(pub Ctx);

impl FromRequestParts<AppState> for QiAuth {
    type Rejection = QiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = header_value(parts, "api-client-key").ok_or_else(QiError::missing_key)?;
        let principal = crate::auth::authenticate(parts, &state.service, key)
            .await
            .map_err(|e| qi_error(e, &Scope::default()))?;
        Ok(Self(Ctx::new(principal, DIALECT.channel(), request_id_of(parts))))
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
#[utoipa::path(
    patch,
    path = "/wallet/{wallet_key}/card/{card_key}/password",
    operation_id = "qitechSetPassword",
    summary = "Change a physical card's password",
    description = "Sets the PIN (partner-authorised), on plastic cards that are active or temporarily blocked.",
    params(
        ("wallet_key" = uuid::Uuid, Path, description = "QI `WALLET_KEY`: the card's account id."),
        ("card_key" = uuid::Uuid, Path, description = "QI `CARD_KEY`: the card's id."),
    ),
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "The card.", body = CardObject),
        (status = 400, description = "`QIT000001`: invalid JSON schema (a field missing, extra or mistyped, \
                                      the PIN not 4 digits, a key not a UUID); `CARD000024`: the password \
                                      could not be updated (a weak PIN: the reason is in `description`)."),
        (status = 404, description = "`CARD000011`: no such card for that `card_key` in that wallet (or tenant)."),
        (status = 406, description = "`CARD000023`: the card is not plastic; `CARD000025`: the card's status \
                                      does not allow a password."),
        (status = 429, description = "`QIT000429`: over the per-card limit on PIN and OTP calls (all APIs \
                                      together), with `Retry-After`."),
    )
)]
async fn password(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: KeysPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (mut scope, wallet, card_id) = keys(path)?;
    let b: PasswordRequest = parse_body(body).map_err(fail(&scope))?;
    let pin = password_pin(&b.pin).map_err(fail(&scope))?;
    let card = CardRef::InAccount {
        account_id: wallet,
        card_id,
    };
    let pin = NamedPin {
        prefix: None,
        input: PinInput::Plain(pin),
    };
    // QI's terms: plastic cards, Active or temporarily blocked (checked by
    // the core, under the card's lock).
    let terms = PinSetTerms {
        operation: Some("changing the card password"),
        card_type: Some(CardType::Physical),
        verifiable_status: true,
    };
    let card = match s.service.set_pin_with(&ctx, card, pin, None, terms).await {
        Ok(card) => card,
        Err(e) => return Err(refusal(&s, &ctx, card, &mut scope, e).await),
    };
    let interval = s
        .service
        .cvv_rotation_interval_hours(&card)
        .await
        .map_err(fail(&scope))?;
    Ok(Json(CardObject::new(&card, interval)))
}

/// `PATCH /wallet/{WALLET_KEY}/card/{CARD_KEY}`: a status change in QI's words.
#[utoipa::path(
    patch,
    path = "/wallet/{wallet_key}/card/{card_key}",
    operation_id = "qitechUpdateStatus",
    summary = "Change a card's status",
    description = "`active` → unlock, `blocked` → lock, `lost` → block (`LOST_CARD`), `robbed`/`theft` → \
                   block (`STOLEN_CARD`), `fraud` → block (`FRAUD_CONFIRMED`), `canceled` → close. Asking for the \
                   status the card has is a success that writes nothing.",
    params(
        ("wallet_key" = uuid::Uuid, Path, description = "QI `WALLET_KEY`: the card's account id."),
        ("card_key" = uuid::Uuid, Path, description = "QI `CARD_KEY`: the card's id."),
    ),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The card.", body = CardObject),
        (status = 400, description = "`QIT000001`: invalid JSON schema (an unknown status word included)."),
        (status = 404, description = "`CARD000011`: no such card for that `card_key` in that wallet (or tenant)."),
        (status = 406, description = "`CARD000013`: the status machine refuses the move (\"Unable to transition from {old} to {new}.\"); `CARD000014`: no move out of a terminated status (lost, robbed, theft, fraud, canceled)."),
    )
)]
async fn update_status(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: KeysPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (scope, wallet, card_id) = keys(path)?;
    let card = CardRef::InAccount {
        account_id: wallet,
        card_id,
    };
    update_status_of(&s, &ctx, card, scope, body).await
}

/// A status change of the card `card` (one service call; a refusal reads
/// the card once more for its wording, see [`refusal`]).
async fn update_status_of(
    s: &AppState,
    ctx: &Ctx,
    card: CardRef<'_>,
    mut scope: Scope,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let b: StatusRequest = parse_body(body).map_err(fail(&scope))?;
    scope.requested = Some(b.status.as_str());
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
    let change = match s.service.change_status(ctx, card, action, reason).await {
        Ok(change) => change,
        Err(e) => return Err(refusal(s, ctx, card, &mut scope, e).await),
    };
    let interval = s
        .service
        .cvv_rotation_interval_hours(&change.card)
        .await
        .map_err(fail(&scope))?;
    Ok(Json(CardObject::new(&change.card, interval)))
}

/// QI words a status refusal with the card's QI status (`robbed`, `lost`,
/// ..., which the core's error does not carry: it names the core status),
/// so only then is the card read a second time; every other error renders
/// as it is.
async fn refusal(s: &AppState, ctx: &Ctx, card: CardRef<'_>, scope: &mut Scope, e: ServiceError) -> QiError {
    use cardcore_domain::RuleViolation as R;
    if matches!(
        e,
        ServiceError::Rule(R::InvalidStatusTransition { .. } | R::InvalidCardStatus { .. })
    ) {
        if let Ok(card) = s.service.card(ctx, card).await {
            scope.status = Some(status(&card));
        }
    }
    qi_error(e, scope)
}

/// `PATCH /wallet/{WALLET_KEY}/card/{CARD_KEY}/activate`: with the code issued at creation.
#[utoipa::path(
    patch,
    path = "/wallet/{wallet_key}/card/{card_key}/activate",
    operation_id = "qitechActivate",
    summary = "Activate a card",
    description = "With the 6-digit code of the `card.activation_code` event, as `{\"code\": \"253615\"}` (QI's page; `activation_code` is accepted too). An active card answers as it is.",
    params(
        ("wallet_key" = uuid::Uuid, Path, description = "QI `WALLET_KEY`: the card's account id."),
        ("card_key" = uuid::Uuid, Path, description = "QI `CARD_KEY`: the card's id."),
    ),
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "The card.", body = CardObject),
        (status = 400, description = "`QIT000001`: invalid JSON schema (an activation code not 6 digits included)."),
        (status = 404, description = "`CARD000011`: no such card for that `card_key` in that wallet (or tenant)."),
        (status = 406, description = "`CARD000017`: activation is not valid for the card's status; \
                                      `CARD000020`: a wrong activation code (counted)."),
        (status = 409, description = "`QIT000409` (cardcore's code), with `Retry-After`: 3 consecutive wrong codes locked \
                                      activation of the card for 10 minutes, the right code included."),
        (status = 429, description = "`QIT000429`: over the per-card limit on PIN, OTP and activation calls (all APIs \
                                      together), with `Retry-After`."),
    )
)]
async fn activate(
    State(s): State<AppState>,
    QiAuth(ctx): QiAuth,
    path: KeysPath,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let (scope, wallet, card_id) = keys(path)?;
    let card = CardRef::InAccount {
        account_id: wallet,
        card_id,
    };
    activate_of(&s, &ctx, card, scope, body).await
}

/// Activation of the card `card` (one service call, as [`update_status_of`]).
async fn activate_of(
    s: &AppState,
    ctx: &Ctx,
    card: CardRef<'_>,
    mut scope: Scope,
    body: Body,
) -> Result<Json<CardObject>, QiError> {
    let b: ActivateRequest = parse_body(body).map_err(fail(&scope))?;
    let change = match s.service.activate(ctx, card, &b.code).await {
        Ok(change) => change,
        Err(e) => return Err(refusal(s, ctx, card, &mut scope, e).await),
    };
    let interval = s
        .service
        .cvv_rotation_interval_hours(&change.card)
        .await
        .map_err(fail(&scope))?;
    Ok(Json(CardObject::new(&change.card, interval)))
}
