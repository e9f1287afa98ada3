//! M2P prepaid API under `/m2p`. `POST /auth/token` trades client
//! credentials (tenant id or name, and one of its API keys) for a signed JWT;
//! every other call needs `Authorization: Bearer <JWT>` and `X-TENANT-ID`.
//! `entityId` is the cardholder's `external_id`, `kit`/`kitNo` the card's
//! kit number, `mobile` the cardholder's phone, `expiryDate` the card's MM/YY.

mod error;
pub(crate) use error::render as render_error;
mod otp;
pub mod settings;
mod token;
mod types;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::{Extension, Json};
use cardcore_crypto::Pin;
use cardcore_domain::otp::OtpPurpose;
use cardcore_domain::{BlockFrom, Cardholder, LifecycleAction, ReasonCode, ValidationErrors};
use cardcore_service::cards::{CardRef, ExpiryClaim, HolderProof, PhoneClaim, ReasonInput};
use cardcore_service::pins::{NamedPin, OtpProof, PinInput};
use cardcore_service::{Ctx, Service, ServiceError, ServiceResult};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::{m2p_error, M2pError, Op};
use settings::M2pRequired;
use token::TTL_SECONDS;
use types::{
    CardSummary, Envelope, FetchCardsRequest, MessageResult, Mobile, OtpRequest, OtpResponse, PinRequest,
    PreferencesRequest, PreferencesView, StatusRequest, StatusWanted, TokenRequest, TokenResponse, Validity,
};

use super::{all_cards, card_by_kit_of_holder, header_value, holder, only_card_of_holder, parse_body};
use crate::auth::request_id_of;
use crate::openapi as oa;
use crate::ratelimit::Gate;
use crate::AppState;

/// M2P's descriptor (registered in `dialects::all`).
pub const DIALECT: super::Dialect = super::Dialect {
    name: "m2p",
    prefix: "/m2p",
    routes,
    render_error,
    tag: (
        TAG,
        "M2P prepaid API (`/m2p`): a JWT from `POST /m2p/auth/token` as `Authorization: Bearer` plus \
         `X-TENANT-ID`. Errors are problem+json with `businessCode` or `fieldErrors`.",
    ),
    security_schemes,
    credential_headers: &["authorization"],
};

/// Its tag in the document.
const TAG: &str = "M2P";
/// `Authorization: Bearer <JWT from /m2p/auth/token>`.
const SCHEME_TOKEN: &str = "m2pBearerJwt";
/// `X-TENANT-ID`, with the token.
const SCHEME_TENANT: &str = "m2pTenantId";

fn security_schemes() -> Vec<(&'static str, utoipa::openapi::security::SecurityScheme)> {
    vec![
        (
            SCHEME_TOKEN,
            oa::bearer(
                "JWT",
                "M2P: the `access_token` of `POST /m2p/auth/token` (HS256, valid one hour).",
            ),
        ),
        (
            SCHEME_TENANT,
            oa::api_key_header(
                "X-TENANT-ID",
                "M2P: the tenant's id (or name); must be the token's tenant. Sent with the token.",
            ),
        ),
    ]
}

/// Routes under `/m2p`, with their documentation.
pub fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(generate_otp))
        .routes(routes!(otp::validate_otp))
        .routes(routes!(update_pin))
        .routes(routes!(set_pin))
        .routes(routes!(validate_pin))
        .routes(routes!(update_status))
        .routes(routes!(fetch_all_cards))
        .routes(routes!(update_preferences));
    let mut router = OpenApiRouter::new()
        .routes(routes!(issue_token))
        .nest("/prepaid/customer/v1", v1);
    document(router.get_openapi_mut());
    router
}

/// The token call's operation id (the one call without a token).
const TOKEN_OPERATION: &str = "m2pToken";

/// M2P's part of the document: its tag, the token and `X-TENANT-ID` (every
/// call but the token's), and its error shapes (`error.rs`: problem+json,
/// `fieldErrors` for validation, `businessCode` for the rest).
fn document(api: &mut OpenApi) {
    let mut shapes = oa::variants::<error::Body>().into_iter();
    let (Some(validation), Some(problem)) = (shapes.next(), shapes.next()) else {
        return;
    };
    oa::add_schema(api, "M2pValidationError", validation, "M2P's validation problem: `message` `error.validation`, one `fieldErrors` entry per field (`objectName` names the call).");
    oa::add_schema(
        api,
        "M2pError",
        problem,
        "M2P's problem: `message` `error.business` with a `businessCode`, or `error.http.<status>` without one.",
    );
    oa::register::<error::FieldError>(api);
    let either = || -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(oa::named("M2pValidationError"))
            .item(oa::named("M2pError"))
            .into()
    };
    oa::for_each_operation(api, |_, _, op| {
        let token = op.operation_id.as_deref() == Some(TOKEN_OPERATION);
        if !token {
            oa::secure(op, &[&[SCHEME_TOKEN, SCHEME_TENANT]]);
        }
        oa::append(
            op,
            "400",
            "`error.http.400` \"Unable to convert http message\": the body is not JSON.",
        );
        oa::response(
            op,
            "401",
            "`error.http.401`: no, a malformed, forged or expired token, or `X-TENANT-ID` missing or not the \
             token's tenant.",
            |r| oa::header(r, "WWW-Authenticate", oa::string(), "`Bearer`."),
        );
        oa::response(
            op,
            "500",
            "`error.http.500`: a bug or corrupt data (logged, never shown).",
            |_| {},
        );
        oa::response(
            op,
            "503",
            "`error.http.503`: the database is unavailable.",
            oa::retry_after,
        );
        for (status, r) in oa::responses_mut(op) {
            match status {
                400 => oa::body(r, oa::PROBLEM_JSON, either()),
                409 if r.description.contains("PPCUST_042") || r.description.contains("PP_MIDD_034") => {
                    oa::body(r, oa::PROBLEM_JSON, oa::named("M2pError"));
                    oa::retry_after(r);
                }
                429 => {
                    // The handler's own 429s and the per-key limit's, all in
                    // M2P's shape.
                    oa::body(r, oa::PROBLEM_JSON, oa::named("M2pError"));
                    oa::retry_after(r);
                }
                s if s >= 400 => oa::body(r, oa::PROBLEM_JSON, oa::named("M2pError")),
                _ => {}
            }
        }
        if !token {
            oa::key_rate_limited_as(op, oa::PROBLEM_JSON, oa::named("M2pError"));
            oa::rate_limited_everywhere(op);
        }
    });
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A request carrying a valid token and the token's tenant in `X-TENANT-ID`.
pub struct M2pAuth(pub Ctx);

impl FromRequestParts<AppState> for M2pAuth {
    type Rejection = M2pError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(parts, &state.service).await.map(Self).map_err(|e| {
            crate::ratelimit::note_failure(parts, &e);
            m2p_error(e, Op::Auth)
        })
    }
}

/// A token is as good as the API key it was issued for: a revoked key's
/// tokens are refused (within the same bound as the key itself), and every
/// request counts against that key's rate limit.
async fn authenticate(parts: &Parts, service: &Service) -> ServiceResult<Ctx> {
    let bearer = header_value(parts, "authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(ServiceError::Unauthorized)?;
    let claims = token::verify(service, bearer, now())?;
    let asked = header_value(parts, "x-tenant-id").ok_or(ServiceError::Unauthorized)?;
    let principal = service.authenticate_key_id(claims.tid, claims.sub).await?;
    let tenant = &principal.tenant;
    if asked != tenant.id.to_string() && asked != tenant.name {
        return Err(ServiceError::Unauthorized);
    }
    crate::ratelimit::admit(parts, bearer, &principal)?;
    Ok(Ctx::new(principal, DIALECT.channel(), request_id_of(parts)))
}

type Body = Result<Bytes, BytesRejection>;

/// Renders an outcome: the value as JSON, or the error in M2P's shape for `op`.
fn answer<T>(op: Op, outcome: ServiceResult<T>) -> Result<Json<T>, M2pError> {
    outcome.map(Json).map_err(|e| m2p_error(e, op))
}

/// `POST /auth/token`: client credentials → a JWT valid for an hour.
#[utoipa::path(
    post,
    path = "/auth/token",
    operation_id = "m2pToken",
    summary = "Get an access token",
    description = "Client credentials (`clientId`: the tenant's id or name; `clientSecret`: one of its API keys) \
                   for an HS256 JWT valid 3600 seconds, for `Authorization: Bearer` with `X-TENANT-ID`.",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The token.", body = TokenResponse),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing or mistyped, or a \
                                      `grantType` other than `client_credentials`."),
        (status = 401, description = "`error.http.401`: bad client credentials."),
    )
)]
async fn issue_token(
    State(s): State<AppState>,
    gate: Option<Extension<Gate>>,
    body: Body,
) -> Result<Json<TokenResponse>, M2pError> {
    let outcome = async {
        let b: TokenRequest = parse_body(body)?;
        if b.grant_type != "client_credentials" {
            return Err(ServiceError::invalid("grantType", "must be client_credentials"));
        }
        let principal = s
            .service
            .authenticate(&b.client_secret)
            .await
            .inspect_err(|e| crate::ratelimit::note_failure_at(gate.as_deref(), e))?;
        crate::ratelimit::admit_at(gate.as_deref(), &b.client_secret, &principal)?;
        let tenant = &principal.tenant;
        if b.client_id != tenant.id.to_string() && b.client_id != tenant.name {
            return Err(ServiceError::Unauthorized);
        }
        Ok(TokenResponse {
            access_token: token::issue(&s.service, &principal, now()).await?,
            token_type: "Bearer",
            expires_in: TTL_SECONDS,
        })
    };
    answer(Op::Token, outcome.await)
}

/// True when `mobile` is the cardholder's phone.
fn same_phone(holder: &Cardholder, number: &str, country_code: Option<&str>) -> bool {
    number.trim() == holder.phone.number && country_code.is_none_or(|cc| cc == holder.phone.country_code)
}

fn check_mobile(errors: &mut ValidationErrors, holder: &Cardholder, mobile: Option<&Mobile>) {
    if let Some(m) = mobile {
        if !same_phone(holder, &m.value, Some(&m.country_code.digits())) {
            errors.add("mobile", "Invalid contact");
        }
    }
}

/// `POST .../otp/generate`: an OTP for a PIN change; the code goes to the
/// tenant's webhook as `otp.created`, never in the answer.
#[utoipa::path(
    post,
    path = "/otp/generate",
    operation_id = "m2pGenerateOtp",
    summary = "Generate an OTP for a PIN change",
    description = "The code goes to the tenant's event log and webhooks as `otp.created` (for the tenant to send, or by SMS when the tenant has it on), never in the answer. `template` and `productId` are accepted and not used; `card` (last four digits) and `countryCode`, when given, must match. Without `kitNo` (as in M2P's own example) the card is the cardholder's only open card, or the only one ending in `card`; otherwise `kitNo` is a field error.",
    request_body = OtpRequest,
    responses(
        (status = 200, description = "`{\"result\": {\"status\": true, \"traceNumber\", \"refNumber\"}, \"pagination\": null}`: the OTP's trace number.", body = Envelope<OtpResponse>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing or mistyped, `mobileNumber` not the cardholder's (\"Invalid contact\"), `card` or `countryCode` not matching, `otpType` not S or D."),
        (status = 409, description = "`card.not.found` \"No account found\": no card with that kit for that `entityId` (or tenant); `PPCUST_042`: PIN change is locked after 3 wrong OTPs (10 minutes, with `Retry-After`); `invalid.card.status`: the card's status allows no PIN change; `otp.rate.limited`: more than 5 OTPs for the card in 15 minutes, with `Retry-After` (M2P: \"Exceeding limits returns a 409 error\")."),
        (status = 429, description = "`rate.limited`: over the per-card limit on PIN and OTP calls (all APIs together), with `Retry-After`."),
    )
)]
async fn generate_otp(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<OtpResponse>>, M2pError> {
    let outcome = async {
        let b: OtpRequest = parse_body(body)?;
        if b.otp_type.as_deref().is_some_and(|t| t != "S" && t != "D") {
            return Err(ServiceError::invalid("otpType", "must be S or D"));
        }
        let (holder, card) = match &b.kit_no {
            Some(kit) => card_by_kit_of_holder(&s.service, &ctx, &b.entity_id, kit).await?,
            None => match only_card_of_holder(&s.service, &ctx, &b.entity_id, b.card.as_deref()).await? {
                (holder, Some(card)) => (holder, card),
                (_, None) => return Err(ServiceError::invalid(
                    "kitNo",
                    "required: no single open card of this entityId (ending in card, when given) is named without it",
                )),
            },
        };
        let mut errors = ValidationErrors::new();
        let cc = b.country_code.as_ref().map(|c| c.digits());
        if !same_phone(&holder, &b.mobile_number, cc.as_deref()) {
            errors.add("mobileNumber", "Invalid contact");
        }
        if b.card.as_deref().is_some_and(|last4| last4 != card.last_four) {
            errors.add("card", "does not match the card's last four digits");
        }
        errors.into_result()?;
        let issued = s.service.create_otp(&ctx, card.id, OtpPurpose::PinChange).await?;
        Ok(Envelope::new(OtpResponse {
            status: true,
            trace_number: issued.trace_number,
            ref_number: otp::ref_number(&card),
        }))
    };
    answer(Op::GenerateOtp, outcome.await)
}

/// The parts of a `ChangeCardPinDto` an operation needs, once present and
/// in agreement with each other.
struct PinParts<'a> {
    old_pin: Option<&'a str>,
    new_pin: Option<&'a str>,
    otp: Option<OtpProof>,
}

/// Checks presence and agreement inside the body (no lookups yet).
/// `required` is the tenant's choice of M2P fields for update and set PIN.
fn pin_parts(b: &PinRequest, op: Op, required: M2pRequired) -> ServiceResult<PinParts<'_>> {
    let mut errors = ValidationErrors::new();
    let mut need = |field: &str, present: bool| {
        if !present {
            errors.add(field, "must not be null");
        }
    };
    let needs_otp = op != Op::ValidateCardPin;
    if needs_otp {
        need("mobile", b.mobile.is_some() || !required.mobile);
        need("expiryDate", b.expiry_date.is_some() || !required.expiry_date);
        need("otpDetails", b.otp_details.is_some() || !required.otp_details);
        need("newPin", b.new_pin.is_some());
    }
    if op != Op::SetCardPin {
        need("oldPin", b.old_pin.is_some());
    }
    let rule_otp = b.rule.as_ref().and_then(|r| r.otp.as_deref());
    let rule_trace = b.rule.as_ref().and_then(|r| r.trace_number.as_deref());
    // The OTP proof: `otpDetails`, or else `otp` (or `rule.otp`) with
    // `rule.traceNumber` when the product does not require `otpDetails`.
    let proof = match &b.otp_details {
        Some(d) => Some((d.trace_number.as_str(), d.otp.as_str())),
        None => b
            .otp
            .as_deref()
            .or(rule_otp)
            .zip(rule_trace)
            .map(|(otp, trace)| (trace, otp)),
    };
    if needs_otp {
        if let Some((trace, code)) = proof {
            if b.otp.as_deref().is_some_and(|o| o != code) {
                errors.add("otp", "does not match otpDetails.otp");
            }
            if rule_otp.is_some_and(|o| o != code) {
                errors.add("rule.otp", "does not match otpDetails.otp");
            }
            if rule_trace.is_some_and(|t| t != trace) {
                errors.add("rule.traceNumber", "does not match otpDetails.traceNumber");
            }
        } else if b.otp_details.is_none() && !required.otp_details {
            errors.add(
                "otpDetails",
                "must not be null: give otpDetails, or otp with rule.traceNumber",
            );
        }
    }
    errors.into_result()?;
    Ok(PinParts {
        old_pin: b.old_pin.as_deref(),
        new_pin: if op == Op::ValidateCardPin {
            None
        } else {
            b.new_pin.as_deref()
        },
        otp: needs_otp
            .then(|| {
                proof.map(|(trace, code)| OtpProof {
                    trace_number: trace.to_owned(),
                    code: code.to_owned(),
                })
            })
            .flatten(),
    })
}

/// What a PIN request claims about the cardholder's phone (`mobile`, with
/// `cc` its country code's digits, and `otpDetails.mobileNumber`); the core
/// checks them against the cardholder ([`HolderProof`]).
fn pin_phones<'a>(b: &'a PinRequest, cc: Option<&'a str>) -> Vec<PhoneClaim<'a>> {
    let mobile = b.mobile.as_ref().map(|m| PhoneClaim {
        field: "mobile",
        number: &m.value,
        country_code: cc,
    });
    let otp_mobile = b
        .otp_details
        .as_ref()
        .and_then(|d| d.mobile_number.as_deref())
        .map(|n| PhoneClaim {
            field: "otpDetails.mobileNumber",
            number: n,
            country_code: None,
        });
    mobile.into_iter().chain(otp_mobile).collect()
}

/// What a request claims about the card's expiry (`expiryDate` when the
/// operation reads it, and `rule.expiryDate`).
fn expiries<'a>(expiry_date: Option<&'a str>, rule: Option<&'a types::Rule>) -> Vec<ExpiryClaim<'a>> {
    let top = expiry_date.map(|e| ExpiryClaim {
        field: "expiryDate",
        mm_yy: e,
    });
    let rule = rule.and_then(|r| r.expiry_date.as_deref()).map(|e| ExpiryClaim {
        field: "rule.expiryDate",
        mm_yy: e,
    });
    top.into_iter().chain(rule).collect()
}

/// A PIN field: 4 plain digits, or a base64 RSA-OAEP ciphertext under the
/// tenant's PIN encryption key (M2P sends no key id: any version of the
/// tenant's key that still decrypts).
fn pin_input(field: &'static str, value: &str) -> ServiceResult<NamedPin> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let pin = Pin::parse(value)
            .map_err(|_| ServiceError::invalid(field, "must be 4 digits or an RSA-encrypted PIN (base64)"))?;
        return Ok(NamedPin {
            prefix: Some(field),
            input: PinInput::Plain(pin),
        });
    }
    Ok(NamedPin {
        prefix: Some(field),
        input: PinInput::Encrypted {
            ciphertext: value.to_owned(),
            key_id: None,
        },
    })
}

/// A PIN request's checked parts, under the tenant's required fields.
async fn pin_request<'a>(s: &AppState, ctx: &Ctx, b: &'a PinRequest, op: Op) -> ServiceResult<PinParts<'a>> {
    let required = M2pRequired::of(&s.service.tenant_settings(ctx.tenant_id()).await?);
    pin_parts(b, op, required)
}

/// The card with kit `kit` of the cardholder `entityId`, and what the
/// request claims about them: the core resolves and checks it all in the
/// operation's one call.
fn kit_of_holder<'a>(
    external_id: &'a str,
    kit: &'a str,
    phones: &'a [PhoneClaim<'a>],
    expiries: &'a [ExpiryClaim<'a>],
) -> CardRef<'a> {
    CardRef::KitOfHolder {
        external_id,
        kit,
        proof: HolderProof { phones, expiries },
    }
}

fn missing(field: &str) -> ServiceError {
    ServiceError::invalid(field, "must not be null")
}

/// `POST .../cards/update/pin` (seed 004): current PIN, new PIN and the OTP.
#[utoipa::path(
    post,
    path = "/cards/update/pin",
    operation_id = "m2pUpdatePin",
    summary = "Change the PIN with an OTP",
    description = "Needs `oldPin`, `newPin`, the OTP and the tenant's required fields (default `mobile`, `expiryDate` and `otpDetails`; `cardcore tenant update --m2p-required`); `rule` fields other than `expiryDate`, `otp` and `traceNumber` are ignored. All agreeing with each other, the card and the cardholder (a disagreement spends nothing). Then the core decides: OTP lock, PIN status, the new PIN's policy except \"same as current\", the OTP (a wrong one counts), the current PIN (a wrong one counts), then \"same as current\" (nothing about the current PIN is answered before both proofs).",
    request_body = PinRequest,
    responses(
        (status = 200, description = "`{\"result\": {\"message\": \"Card pin change Successfully\"}, \"pagination\": null}`.", body = Envelope<MessageResult>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing (\"must not be null\") or mistyped, fields disagreeing with each other, the card or the cardholder (`mobile`: \"Invalid contact\"), a weak or wrong-length `newPin`, an undecryptable PIN."),
        (status = 409, description = "`card.not.found` \"No account found\": no card with that kit for that `entityId` (or tenant); `PPCUST_042`: locked after 3 wrong OTPs (with `Retry-After`); `invalid.card.status`; `pin.not.set`; `pin.locked`; `invalid.otp`; `otp.expired`; `invalid.pin` (a wrong `oldPin`, counted)."),
        (status = 429, description = "`rate.limited`: over the per-card limit on PIN and OTP calls (all APIs together), with `Retry-After`."),
    )
)]
async fn update_pin(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<MessageResult>>, M2pError> {
    let op = Op::ChangeCardPin;
    let outcome = async {
        let b: PinRequest = parse_body(body)?;
        let parts = pin_request(&s, &ctx, &b, op).await?;
        let old = pin_input("oldPin", parts.old_pin.ok_or_else(|| missing("oldPin"))?)?;
        let new = pin_input("newPin", parts.new_pin.ok_or_else(|| missing("newPin"))?)?;
        let otp = parts.otp.ok_or_else(|| missing("otpDetails"))?;
        let cc = b.mobile.as_ref().map(|m| m.country_code.digits());
        let (phones, expiries) = (
            pin_phones(&b, cc.as_deref()),
            expiries(b.expiry_date.as_deref(), b.rule.as_ref()),
        );
        let card = kit_of_holder(&b.entity_id, &b.kit, &phones, &expiries);
        s.service.change_pin(&ctx, card, old, new, otp).await?;
        Ok(Envelope::new(MessageResult {
            message: "Card pin change Successfully".into(),
        }))
    };
    answer(op, outcome.await)
}

/// `POST .../cards/v2/set-pin`: first PIN or reset, with the OTP.
#[utoipa::path(
    post,
    path = "/cards/v2/set-pin",
    operation_id = "m2pSetPin",
    summary = "Set the PIN with an OTP",
    description = "The update-PIN body without `oldPin`.",
    request_body = PinRequest,
    responses(
        (status = 200, description = "`{\"result\": {\"message\": \"Card pin set Successfully\"}, \"pagination\": null}`.", body = Envelope<MessageResult>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing or mistyped, fields disagreeing with each other, the card or the cardholder, a weak or wrong-length `newPin`, an undecryptable PIN."),
        (status = 409, description = "`card.not.found` \"No account found\": no card with that kit for that `entityId` (or tenant); `PPCUST_042`: locked after 3 wrong OTPs (with `Retry-After`); `invalid.card.status`; `invalid.otp`; `otp.expired`."),
        (status = 429, description = "`rate.limited`: over the per-card limit on PIN and OTP calls (all APIs together), with `Retry-After`."),
    )
)]
async fn set_pin(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<MessageResult>>, M2pError> {
    let op = Op::SetCardPin;
    let outcome = async {
        let b: PinRequest = parse_body(body)?;
        let parts = pin_request(&s, &ctx, &b, op).await?;
        let new = pin_input("newPin", parts.new_pin.ok_or_else(|| missing("newPin"))?)?;
        let cc = b.mobile.as_ref().map(|m| m.country_code.digits());
        let (phones, expiries) = (
            pin_phones(&b, cc.as_deref()),
            expiries(b.expiry_date.as_deref(), b.rule.as_ref()),
        );
        let card = kit_of_holder(&b.entity_id, &b.kit, &phones, &expiries);
        s.service.set_pin(&ctx, card, new, parts.otp).await?;
        Ok(Envelope::new(MessageResult {
            message: "Card pin set Successfully".into(),
        }))
    };
    answer(op, outcome.await)
}

/// `POST .../cards/v2/validate-pin`: reads only `oldPin`; a wrong one counts
/// against the PIN try counter like every other verification.
#[utoipa::path(
    post,
    path = "/cards/v2/validate-pin",
    operation_id = "m2pValidatePin",
    summary = "Validate the PIN",
    description = "Reads `entityId`, `kit` and `oldPin`; no OTP. A wrong PIN answers `valid: false` and counts against the try counter; a blocked PIN answers `pin.locked`.",
    request_body = PinRequest,
    responses(
        (status = 200, description = "`{\"result\": {\"valid\": true|false}, \"pagination\": null}`, as M2P's page shows it.", body = Envelope<Validity>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing or mistyped, an undecryptable PIN."),
        (status = 409, description = "`card.not.found` \"No account found\": no card with that kit for that `entityId` (or tenant); `invalid.card.status`; `pin.not.set`; `pin.locked`."),
        (status = 429, description = "`rate.limited`: over the per-card limit on PIN and OTP calls (all APIs together), with `Retry-After`."),
    )
)]
async fn validate_pin(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<Validity>>, M2pError> {
    let op = Op::ValidateCardPin;
    let outcome = async {
        let b: PinRequest = parse_body(body)?;
        let parts = pin_parts(&b, op, M2pRequired::NONE)?;
        let pin = pin_input("oldPin", parts.old_pin.ok_or_else(|| missing("oldPin"))?)?;
        // One service call: the core finds the card by the vendor's
        // identifiers (one indexed read) and verifies.
        let card = kit_of_holder(&b.entity_id, &b.kit, &[], &[]);
        let verified = s.service.verify_pin(&ctx, card, pin).await?;
        Ok(Envelope::new(Validity { valid: verified.valid }))
    };
    answer(op, outcome.await)
}

/// M2P's reason codes onto the catalog: `01`..`04` and `Card Closure`;
/// catalog codes pass through (anything else the core refuses, listing it).
fn catalog_reason(code: &str) -> String {
    match code.trim() {
        "01" => ReasonCode::CUST_REQ.into(),
        "02" => ReasonCode::FRAUD_SUSPECTED.into(),
        "03" => ReasonCode::LOST_CARD.into(),
        "04" => ReasonCode::STOLEN_CARD.into(),
        c if c.eq_ignore_ascii_case("Card Closure") => ReasonCode::CARD_CLOSURE.into(),
        c => c.to_owned(),
    }
}

/// `POST .../cards/status` (assumed path): LOCKED, UNLOCKED or BLOCKED.
#[utoipa::path(
    post,
    path = "/cards/status",
    operation_id = "m2pUpdateCardStatus",
    summary = "Change a card's status (assumed path)",
    description = "`LOCKED` → lock and `BLOCKED` → block (both need an ACTIVE card), `UNLOCKED` → unlock (needs a LOCKED card); BLOCKED is permanent. The same status again answers `Card was already <STATUS>`.",
    request_body = StatusRequest,
    responses(
        (status = 200, description = "`{\"result\": {\"message\": \"Card LOCKED Successfully\"}, \"pagination\": null}` (or `Card was already LOCKED`).", body = Envelope<MessageResult>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing or mistyped, an unknown `status` or `reasonCode`."),
        (status = 409, description = "`card.not.found` \"No account found\": no card with that kit for that `entityId` (or tenant); `PPCUST_032`: the status machine refuses the move (a lock or block of a card that is not ACTIVE, an unlock of one that is not LOCKED)."),
    )
)]
async fn update_status(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<MessageResult>>, M2pError> {
    let outcome = async {
        let b: StatusRequest = parse_body(body)?;
        let action = match b.status {
            StatusWanted::Locked => LifecycleAction::Lock,
            StatusWanted::Unlocked => LifecycleAction::Unlock,
            StatusWanted::Blocked => LifecycleAction::Block,
        };
        // M2P makes the reason optional; the core records one for every
        // block, so a block without one is the customer's request.
        let code = match (b.reason_code.as_deref(), b.status) {
            (Some(c), _) => Some(catalog_reason(c)),
            (None, StatusWanted::Blocked) => Some(ReasonCode::CUST_REQ.to_owned()),
            (None, _) => None,
        };
        let reason = ReasonInput {
            code,
            message: b.reason_msg,
        };
        // M2P: "A card must be ACTIVE to be locked or blocked".
        let change = s
            .service
            .change_status_with(
                &ctx,
                kit_of_holder(&b.entity_id, &b.kit_no, &[], &[]),
                action,
                reason,
                BlockFrom::ActiveOnly,
            )
            .await?;
        let word = b.status.as_str();
        let message = if change.changed {
            format!("Card {word} Successfully")
        } else {
            format!("Card was already {word}")
        };
        Ok(Envelope::new(MessageResult { message }))
    };
    answer(Op::UpdateCardStatus, outcome.await)
}

/// `POST .../customers/fetch-all-cards`: every card of the cardholder.
#[utoipa::path(
    post,
    path = "/customers/fetch-all-cards",
    operation_id = "m2pFetchAllCards",
    summary = "Every card of a cardholder",
    description = "Oldest first, without paging (https://dev.m2p.app/docs/prepaidv2/api-library/card/fetchAllCards). `mobile`, when given, must be the cardholder's; `issuedBy`, `tenant` and `type` are accepted and not used. cardcore holds no balances: no `wallets`.",
    request_body = FetchCardsRequest,
    responses(
        (status = 200, description = "The cards.", body = Envelope<Vec<CardSummary>>),
        (status = 400, description = "`error.validation` with `fieldErrors`: `entityId` missing or mistyped."),
        (status = 409, description = "`entity.not.found` \"Customer does not exist\": no cardholder with that `entityId`."),
    )
)]
async fn fetch_all_cards(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<Vec<CardSummary>>>, M2pError> {
    let outcome = async {
        let b: FetchCardsRequest = parse_body(body)?;
        let holder = holder(&s.service, &ctx, &b.entity_id).await?;
        let mut errors = ValidationErrors::new();
        check_mobile(&mut errors, &holder, b.mobile.as_ref());
        errors.into_result()?;
        let cards = all_cards(&s.service, &ctx, &holder).await?;
        Ok(Envelope::new(cards.iter().map(CardSummary::from).collect()))
    };
    answer(Op::FetchAllCards, outcome.await)
}

/// `POST .../cards/support/update/preferences`: per-channel limits; the
/// channels not given stay as they are.
#[utoipa::path(
    post,
    path = "/cards/support/update/preferences",
    operation_id = "m2pUpdatePreferences",
    summary = "Change per-channel limits",
    description = "`enabled`, `perTransactionLimit` and `maxTransactionAmountPerDay` per channel (`ATM`, `E-com`, `POS`, `ContactLess`); channels and fields not given are kept, `null` removes a limit. `otpDetails` is accepted and not checked; `mobile` and `rule.expiryDate`, when given, must match.",
    request_body = PreferencesRequest,
    responses(
        (status = 200, description = "The card's preferences now.", body = Envelope<PreferencesView>),
        (status = 400, description = "`error.validation` with `fieldErrors`: a field missing, mistyped or unknown (M2P's other preference types included), no channel given, limits out of order, `mobile` or `rule.expiryDate` not matching."),
        (status = 409, description = "`card.not.found` \"No account found\": no card with that kit for that `entityId` (or tenant); `invalid.card.status`: the card is CLOSED."),
    )
)]
async fn update_preferences(
    State(s): State<AppState>,
    M2pAuth(ctx): M2pAuth,
    body: Body,
) -> Result<Json<Envelope<PreferencesView>>, M2pError> {
    let outcome = async {
        let b: PreferencesRequest = parse_body(body)?;
        if b.user_overridden.is_empty() {
            return Err(ServiceError::invalid(
                "userOverridden",
                "give at least one of ATM, E-com, POS, ContactLess",
            ));
        }
        let cc = b.mobile.as_ref().map(|m| m.country_code.digits());
        let phones: Vec<_> = b
            .mobile
            .as_ref()
            .map(|m| PhoneClaim {
                field: "mobile",
                number: &m.value,
                country_code: cc.as_deref(),
            })
            .into_iter()
            .collect();
        let expiries = expiries(None, b.rule.as_ref());
        let card = kit_of_holder(&b.entity_id, &b.kit, &phones, &expiries);
        let change = b.user_overridden.change();
        let limits = s
            .service
            .update_limits(&ctx, card, |l| change.clone().apply(l.clone()))
            .await?;
        Ok(Envelope::new(PreferencesView::from(&limits)))
    };
    answer(Op::UpdatePreferences, outcome.await)
}
