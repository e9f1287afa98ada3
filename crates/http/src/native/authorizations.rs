//! Authorizations, captures, reversals, refunds, spending controls and spend
//! (docs/authorizations.md). Malformed requests here are `400` problems,
//! as the authorizations contract has them, naming the field and never
//! repeating a PAN, CVV2 or PIN block.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardcore_crypto::{Cvv, Pan};
use cardcore_domain::authorization::{
    validate_amount, validate_currency, Authorization, AuthorizationStatus, Merchant, PaymentChannel, SpendingControls,
    Transaction,
};
use cardcore_domain::{AuthorizationId, CardId, Expiry, TransactionId, ValidationErrors, ZoneKeyId};
use cardcore_service::authorizations::{validate_reference, AuthorizationRequest, CardRef, RefundRequest, TerminalPin};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::{problem_of, ApiError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::problem::Problem;
use crate::AppState;

/// A refused request as the contract wants it: `400`, same code and fields.
fn bad_request(p: Problem) -> ApiError {
    if p.status == 422 {
        let mut q = Problem::new(StatusCode::BAD_REQUEST, &p.code, p.detail.clone()).with_errors(p.errors.clone());
        q.request_id = p.request_id;
        return q.into();
    }
    p.into()
}

fn invalid(errors: ValidationErrors) -> ApiError {
    bad_request(problem_of(errors.into()))
}

/// Service errors, with field errors as `400`.
fn service(e: cardcore_service::ServiceError) -> ApiError {
    match e {
        e @ cardcore_service::ServiceError::Invalid { .. } => bad_request(problem_of(e)),
        e => e.into(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The authorization's id.
    id: AuthorizationId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CardPath {
    /// The card's id.
    id: CardId,
}

/// `POST /v1/authorizations`: exactly one of `card_id` and `pan`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationBody {
    card_id: Option<CardId>,
    /// The card number, 12 to 19 digits (found by its keyed hash); never echoed.
    #[schema(min_length = 12, max_length = 19)]
    pan: Option<String>,
    /// `MM/YY`; checked when present.
    #[schema(pattern = "^[0-9]{2}/[0-9]{2}$")]
    expiry: Option<String>,
    /// Three digits; checked when present; never echoed.
    #[schema(min_length = 3, max_length = 3)]
    cvv2: Option<String>,
    /// Minor units of `currency`, 1 to 10^12.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: i64,
    /// ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    /// In the card's currency; required when `currency` is not the card's.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    billing_amount: Option<i64>,
    merchant: Merchant,
    channel: PaymentChannel,
    /// The terminal's PIN: an ISO 9564 block under a zone PIN key, hexadecimal.
    #[schema(min_length = 16, max_length = 32)]
    pin_block: Option<String>,
    /// The PIN block's format: `ISO-0`, `ISO-3`, `ISO-4` (or 0, 3, 4); required with `pin_block`.
    #[schema(value_type = Option<Object>)]
    format: Option<serde_json::Value>,
    /// The zone PIN key; by default the tenant's newest of the format's algorithm.
    key_id: Option<ZoneKeyId>,
    /// Unique per tenant: a retry gets the first answer and holds nothing more.
    #[schema(min_length = 1, max_length = 100)]
    network_reference: String,
}

fn parse_authorization(b: AuthorizationBody) -> Result<AuthorizationRequest, ApiError> {
    let mut errors = ValidationErrors::new();
    let card = match (b.card_id, b.pan) {
        (Some(id), None) => Some(CardRef::Id(id)),
        (None, Some(pan)) => match Pan::parse_checked(&zeroize::Zeroizing::new(pan)) {
            Ok(p) => Some(CardRef::Pan(p)),
            Err(_) => {
                errors.add("pan", "must be 12 to 19 digits with a valid check digit");
                None
            }
        },
        (Some(_), Some(_)) => {
            errors.add("card_id", "give exactly one of card_id and pan, not both");
            None
        }
        (None, None) => {
            errors.add("card_id", "is required (or pan): give exactly one of card_id and pan");
            None
        }
    };
    let expiry = match b.expiry.as_deref() {
        None => None,
        Some(e) => match Expiry::parse_mm_yy(e) {
            Some(x) => Some(x),
            None => {
                errors.add("expiry", "must be MM/YY");
                None
            }
        },
    };
    let cvv2 = match b.cvv2 {
        None => None,
        Some(c) => match Cvv::parse(&zeroize::Zeroizing::new(c)) {
            Ok(c) => Some(c),
            Err(_) => {
                errors.add("cvv2", "must be 3 digits");
                None
            }
        },
    };
    validate_amount("amount", b.amount, &mut errors);
    if let Some(ba) = b.billing_amount {
        validate_amount("billing_amount", ba, &mut errors);
    }
    validate_currency("currency", &b.currency, &mut errors);
    b.merchant.validate("merchant", &mut errors);
    validate_reference("network_reference", &b.network_reference, &mut errors);
    let pin = match b.pin_block {
        None => {
            if b.format.is_some() || b.key_id.is_some() {
                errors.add("pin_block", "is required with format and key_id");
            }
            None
        }
        Some(block) => {
            let block = zeroize::Zeroizing::new(block);
            let decoded = hex::decode(block.trim());
            let format = super::pins::block_format("format", b.format.as_ref());
            match (decoded, format) {
                (Ok(block), Ok(format)) => Some(TerminalPin {
                    block,
                    format,
                    key_id: b.key_id,
                }),
                (Err(_), _) => {
                    errors.add("pin_block", "must be hexadecimal");
                    None
                }
                (_, Err(p)) => {
                    for f in p.errors {
                        errors.add(f.field, f.message);
                    }
                    None
                }
            }
        }
    };
    errors.into_result().map_err(invalid)?;
    let (Some(card), true) = (card, b.amount > 0) else {
        return Err(invalid(ValidationErrors::single("card_id", "is required")));
    };
    Ok(AuthorizationRequest {
        card,
        expiry,
        cvv2,
        amount: b.amount as u64,
        currency: b.currency,
        billing_amount: b.billing_amount.map(|a| a as u64),
        merchant: b.merchant,
        channel: b.channel,
        pin,
        network_reference: b.network_reference,
    })
}

#[utoipa::path(
    post,
    path = "/v1/authorizations",
    tag = "Authorizations",
    operation_id = "createAuthorization",
    summary = "Decide on a payment",
    description = "Runs every check of the contract in its order (card found, expiry, status, CVV2, PIN on the \
                   card's try counter, channel, merchant category and country, per-transaction, daily, monthly \
                   and daily-count limits) and answers APPROVED with a hold of `billing_amount`, or DECLINED with \
                   `decline_reason` and the ISO 8583 `response_code`. An unknown card (also another tenant's) is \
                   declined `14`. A repeated `network_reference` answers `200` with the first decision and holds \
                   nothing more.",
    request_body = AuthorizationBody,
    responses(
        (status = 201, description = "The decision.", body = Authorization),
        (status = 200, description = "The first decision for this `network_reference`.", body = Authorization),
        (status = 400, description = "`validation_error` (or `malformed_json`) naming the field; never echoes a PAN, CVV2 or PIN block."),
    )
)]
pub async fn create(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    body: Result<ApiJson<AuthorizationBody>, Problem>,
) -> Result<(StatusCode, Json<Authorization>), ApiError> {
    let ApiJson(b) = body.map_err(bad_request)?;
    let req = parse_authorization(b)?;
    let d = s.service.authorize(&ctx, req).await.map_err(service)?;
    let status = if d.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(d.authorization)))
}

#[utoipa::path(
    get,
    path = "/v1/authorizations/{id}",
    tag = "Authorizations",
    operation_id = "getAuthorization",
    summary = "Get an authorization",
    params(IdPath),
    responses(
        (status = 200, description = "The authorization.", body = Authorization),
        (status = 404, description = "`authorization_not_found`."),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<Authorization>, ApiError> {
    Ok(Json(s.service.authorization(&ctx, p.id).await?))
}

/// `POST /v1/authorizations/{id}/capture`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    /// In the card's currency, 1 up to what is still held.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: i64,
    /// Unique per tenant among captures and refunds: a retry answers without capturing again.
    #[schema(min_length = 1, max_length = 100)]
    network_reference: String,
}

#[utoipa::path(
    post,
    path = "/v1/authorizations/{id}/capture",
    tag = "Authorizations",
    operation_id = "captureAuthorization",
    summary = "Capture (clear) part or all of what is held",
    description = "Moves `amount` from `pending_amount` to `captured_amount`; partial and multiple captures up to \
                   the approved amount. The rest stays held until reversed or expired.",
    params(IdPath),
    request_body = CaptureBody,
    responses(
        (status = 200, description = "The authorization after the capture.", body = Authorization),
        (status = 400, description = "`validation_error` naming the field."),
        (status = 404, description = "`authorization_not_found`."),
        (status = 409, description = "`amount_exceeds_pending`, `authorization_declined`, `authorization_expired`, \
                                      `authorization_reversed`, `authorization_closed` or `network_reference_reused`; nothing changed."),
    )
)]
pub async fn capture(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    body: Result<ApiJson<CaptureBody>, Problem>,
) -> Result<Json<Authorization>, ApiError> {
    let ApiJson(b) = body.map_err(bad_request)?;
    let mut errors = ValidationErrors::new();
    validate_amount("amount", b.amount, &mut errors);
    validate_reference("network_reference", &b.network_reference, &mut errors);
    errors.into_result().map_err(invalid)?;
    Ok(Json(
        s.service
            .capture(&ctx, p.id, b.amount as u64, &b.network_reference)
            .await
            .map_err(service)?,
    ))
}

/// `POST /v1/authorizations/{id}/reverse`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReverseBody {
    /// What to release; all that is held when absent.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/v1/authorizations/{id}/reverse",
    tag = "Authorizations",
    operation_id = "reverseAuthorization",
    summary = "Release part or all of what is held",
    description = "Releases `amount` (or all of `pending_amount`): it is spendable again on the card's limits.",
    params(IdPath),
    request_body(content = Option<ReverseBody>, description = "Optional; no body releases everything."),
    responses(
        (status = 200, description = "The authorization after the reversal.", body = Authorization),
        (status = 400, description = "`validation_error` naming the field."),
        (status = 404, description = "`authorization_not_found`."),
        (status = 409, description = "`amount_exceeds_pending`, `authorization_declined`, `authorization_expired`, \
                                      `authorization_reversed` or `authorization_closed`; nothing changed."),
    )
)]
pub async fn reverse(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    body: Result<OptionalJson<Option<ReverseBody>>, Problem>,
) -> Result<Json<Authorization>, ApiError> {
    let OptionalJson(b) = body.map_err(bad_request)?;
    let amount = b.unwrap_or_default().amount;
    if let Some(a) = amount {
        let mut errors = ValidationErrors::new();
        validate_amount("amount", a, &mut errors);
        errors.into_result().map_err(invalid)?;
    }
    Ok(Json(
        s.service
            .reverse(&ctx, p.id, amount.map(|a| a as u64))
            .await
            .map_err(service)?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuthListQuery {
    /// Only authorizations with this status.
    status: Option<AuthorizationStatus>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<AuthorizationId>,
}

/// A page of authorizations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationList {
    data: Vec<Authorization>,
    /// The cursor of the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<AuthorizationId>,
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(l @ 1..=100) => Ok(l),
        Some(_) => Err(Problem::invalid_field("limit", "must be from 1 to 100").into()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/cards/{id}/authorizations",
    tag = "Authorizations",
    operation_id = "listCardAuthorizations",
    summary = "List a card's authorizations",
    description = "Newest first; pass `cursor=<next_cursor>` for the next page.",
    params(CardPath, AuthListQuery),
    responses(
        (status = 200, description = "A page of authorizations.", body = AuthorizationList),
        (status = 404, description = "`card_not_found`."),
        (status = 422, description = "`validation_error`: a bad or unknown query parameter."),
    )
)]
pub async fn list(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<CardPath>,
    ApiQuery(q): ApiQuery<AuthListQuery>,
) -> Result<Json<AuthorizationList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let page = s
        .service
        .card_authorizations(&ctx, p.id, q.status, q.cursor, limit)
        .await?;
    Ok(Json(AuthorizationList {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TxnListQuery {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<TransactionId>,
}

/// A page of transactions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionList {
    data: Vec<Transaction>,
    /// The cursor of the next page; `null` on the last one.
    #[schema(required = true)]
    next_cursor: Option<TransactionId>,
}

#[utoipa::path(
    get,
    path = "/v1/cards/{id}/transactions",
    tag = "Authorizations",
    operation_id = "listCardTransactions",
    summary = "List a card's captures and refunds",
    description = "Newest first; pass `cursor=<next_cursor>` for the next page.",
    params(CardPath, TxnListQuery),
    responses(
        (status = 200, description = "A page of transactions.", body = TransactionList),
        (status = 404, description = "`card_not_found`."),
        (status = 422, description = "`validation_error`: a bad or unknown query parameter."),
    )
)]
pub async fn transactions(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<CardPath>,
    ApiQuery(q): ApiQuery<TxnListQuery>,
) -> Result<Json<TransactionList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let page = s.service.card_transactions(&ctx, p.id, q.cursor, limit).await?;
    Ok(Json(TransactionList {
        data: page.data,
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/cards/{id}/refunds`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// In the card's currency.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: i64,
    /// The card's currency.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    merchant: Option<Merchant>,
    /// Unique per tenant among captures and refunds: a retry answers `200` with the first refund.
    #[schema(min_length = 1, max_length = 100)]
    network_reference: String,
}

#[utoipa::path(
    post,
    path = "/v1/cards/{id}/refunds",
    tag = "Authorizations",
    operation_id = "createRefund",
    summary = "Credit a refund to a card",
    description = "Refunds give no room back on the limits.",
    params(CardPath),
    request_body = RefundBody,
    responses(
        (status = 201, description = "The refund.", body = Transaction),
        (status = 200, description = "The first refund with this `network_reference`.", body = Transaction),
        (status = 400, description = "`validation_error` naming the field."),
        (status = 404, description = "`card_not_found`."),
        (status = 409, description = "`network_reference_reused`: another transaction has it."),
    )
)]
pub async fn refund(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<CardPath>,
    body: Result<ApiJson<RefundBody>, Problem>,
) -> Result<(StatusCode, Json<Transaction>), ApiError> {
    let ApiJson(b) = body.map_err(bad_request)?;
    let mut errors = ValidationErrors::new();
    validate_amount("amount", b.amount, &mut errors);
    validate_currency("currency", &b.currency, &mut errors);
    if let Some(m) = &b.merchant {
        m.validate("merchant", &mut errors);
    }
    validate_reference("network_reference", &b.network_reference, &mut errors);
    errors.into_result().map_err(invalid)?;
    let (t, replayed) = s
        .service
        .refund(
            &ctx,
            p.id,
            RefundRequest {
                amount: b.amount as u64,
                currency: b.currency,
                merchant: b.merchant,
                network_reference: b.network_reference,
            },
        )
        .await
        .map_err(service)?;
    Ok((if replayed { StatusCode::OK } else { StatusCode::CREATED }, Json(t)))
}

/// A card's effective spending controls.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlsView {
    #[serde(flatten)]
    controls: SpendingControls,
    /// `card` (its own) or `program` (the tenant's defaults, `cardcore tenant update`).
    source: &'static str,
}

#[utoipa::path(
    get,
    path = "/v1/cards/{id}/controls",
    tag = "Authorizations",
    operation_id = "getCardControls",
    summary = "Get a card's spending controls",
    description = "The card's own controls, or the program's defaults when it has none (`source`).",
    params(CardPath),
    responses(
        (status = 200, description = "The controls in force.", body = ControlsView),
        (status = 404, description = "`card_not_found`."),
    )
)]
pub async fn get_controls(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<CardPath>,
) -> Result<Json<ControlsView>, ApiError> {
    let c = s.service.controls(&ctx, p.id).await?;
    Ok(Json(ControlsView {
        controls: c.controls,
        source: c.source,
    }))
}

#[utoipa::path(
    put,
    path = "/v1/cards/{id}/controls",
    tag = "Authorizations",
    operation_id = "setCardControls",
    summary = "Replace a card's spending controls",
    description = "The card's own controls replace the program's defaults whole. An allow list of `null` allows \
                   everything; a block list wins over an allow list.",
    params(CardPath),
    request_body = SpendingControls,
    responses(
        (status = 200, description = "The controls in force.", body = ControlsView),
        (status = 400, description = "`validation_error` naming the entry (`allowed_mccs[0]`, ...)."),
        (status = 404, description = "`card_not_found`."),
    )
)]
pub async fn put_controls(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<CardPath>,
    body: Result<ApiJson<SpendingControls>, Problem>,
) -> Result<Json<ControlsView>, ApiError> {
    let ApiJson(b) = body.map_err(bad_request)?;
    let c = s.service.set_controls(&ctx, p.id, b).await.map_err(service)?;
    Ok(Json(ControlsView {
        controls: c.controls,
        source: c.source,
    }))
}

/// One channel's window.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowSpendView {
    /// `YYYY-MM-DD` or `YYYY-MM`, in the program's time zone.
    window: String,
    /// Approved billing amounts less what was released.
    used: u64,
    /// Approved authorizations, less those released in full with nothing captured.
    count: u32,
    #[schema(required = true)]
    limit: Option<u64>,
    #[schema(required = true)]
    remaining: Option<u64>,
}

/// One channel's day and month.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelSpendView {
    daily: WindowSpendView,
    monthly: WindowSpendView,
    #[schema(required = true)]
    daily_count_limit: Option<u32>,
}

/// `GET /v1/cards/{id}/spend`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendView {
    card_id: CardId,
    currency: String,
    /// The program's time zone (IANA).
    time_zone: String,
    /// `pos`, `contactless`, `ecommerce` (with `moto`), `atm`.
    channels: std::collections::BTreeMap<&'static str, ChannelSpendView>,
}

#[utoipa::path(
    get,
    path = "/v1/cards/{id}/spend",
    tag = "Authorizations",
    operation_id = "getCardSpend",
    summary = "A card's spend against its limits",
    description = "For each channel, today's and this month's `used`, `count`, `limit` and `remaining`, in the \
                   program's time zone.",
    params(CardPath),
    responses(
        (status = 200, description = "The spend.", body = SpendView),
        (status = 404, description = "`card_not_found`."),
    )
)]
pub async fn spend(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<CardPath>,
) -> Result<Json<SpendView>, ApiError> {
    let sp = s.service.spend(&ctx, p.id).await?;
    let w = |w: cardcore_service::authorizations::WindowSpend| WindowSpendView {
        window: w.window,
        used: w.used,
        count: w.count,
        limit: w.limit,
        remaining: w.remaining,
    };
    Ok(Json(SpendView {
        card_id: sp.card_id,
        currency: sp.currency,
        time_zone: sp.time_zone,
        channels: sp
            .channels
            .into_iter()
            .map(|(k, c)| {
                (
                    k,
                    ChannelSpendView {
                        daily: w(c.daily),
                        monthly: w(c.monthly),
                        daily_count_limit: c.daily_count_limit,
                    },
                )
            })
            .collect(),
    }))
}
