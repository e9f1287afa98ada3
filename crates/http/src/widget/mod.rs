//! The PIN widget (`/widget`): a page for an iframe in the tenant's own web
//! page, where the cardholder types a PIN. Its script (`pin.js`, compiled
//! in) encrypts the PIN in the browser with WebCrypto RSA-OAEP-SHA256 under
//! the tenant's transport key and posts it here; the embedding page hears
//! only `{type: "cardcore.pin", ok, pin_status, code?}` by `postMessage`,
//! sent to the session's origin alone. The PIN goes through the same service
//! functions as the API (rules, try counter, OTP for change).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cardcore_domain::RuleViolation;
use cardcore_service::console::{PinPurpose, PinSession};
use cardcore_service::pins::{NamedPin, OtpProof, PinInput};
use cardcore_service::ServiceError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::console::html::esc;
use crate::error::problem_of;
use crate::problem::Problem;
use crate::AppState;

const JS: &str = include_str!("assets/pin.js");
const CSS: &str = include_str!("assets/pin.css");

/// The widget's routes, each documented (tag `PIN widget`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page, submit, preflight))
        .routes(routes!(asset))
}

fn no_store(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// The widget page's policy: its own script and style only, calls to
/// cardcore only, framed only by `origin`.
fn csp(origin: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
         form-action 'none'; base-uri 'none'; frame-ancestors {origin}"
    )
}

fn html_page(status: StatusCode, body: String, frame_ancestors: &str) -> Response {
    let mut res = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    no_store(&mut res);
    if let Ok(v) = HeaderValue::from_str(&csp(frame_ancestors)) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

fn shell(title: &str, main: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{}</title>
<link rel="stylesheet" href="/widget/pin.css">
</head>
<body>
<main>{}</main>
<script src="/widget/pin.js"></script>
</body>
</html>
"#,
        esc(title),
        main
    )
}

fn gone_page() -> Response {
    html_page(
        StatusCode::GONE,
        shell(
            "PIN",
            r#"<p class="msg err" role="alert">This PIN session has expired or was already used. Please start again.</p>"#,
        ),
        "'none'",
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The token of `POST /v1/cards/{id}/pin-sessions`.
    session: Option<String>,
    /// For `change`: the trace number of the OTP the cardholder received.
    trace_number: Option<String>,
}

fn pin_field(id: &str, label: &str, autocomplete: &str) -> String {
    format!(
        r#"<div class="field"><label for="{id}">{label}</label><input id="{id}" name="{id}" type="password" inputmode="numeric" pattern="[0-9]*" minlength="4" maxlength="12" autocomplete="{autocomplete}" required></div>"#
    )
}

/// `GET /widget/pin?session=...`.
#[utoipa::path(
    get,
    path = "/widget/pin",
    tag = "PIN widget",
    operation_id = "widgetPage",
    summary = "PIN widget: the page for the iframe",
    description = "`Content-Security-Policy: frame-ancestors <allowed_origin>`: only a page of the session's \
                   origin can frame it. Viewing the page does not spend the session; sending the PIN does.",
    params(PageQuery),
    responses(
        (status = 200, description = "The widget.", content_type = "text/html", body = String),
        (status = 410, description = "The session is unknown, expired or used.", content_type = "text/html", body = String),
    )
)]
pub async fn page(State(s): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let Some(token) = q.session.as_deref() else {
        return gone_page();
    };
    let session = match s.service.live_pin_session(token).await {
        Ok(session) => session,
        Err(ServiceError::NotFound(_)) => return gone_page(),
        Err(e) => return problem_of(e).into_response(),
    };
    let key = match s.service.pin_encryption_key(&session.ctx).await {
        Ok(k) => k,
        Err(e) => return problem_of(e).into_response(),
    };
    let spki: String = key.public_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let (title, fields, button) = match session.purpose {
        PinPurpose::Set => (
            "Choose your PIN",
            format!(
                "{}{}",
                pin_field("pin", "New PIN", "new-password"),
                pin_field("pin_repeat", "Repeat the new PIN", "new-password")
            ),
            "Set PIN",
        ),
        PinPurpose::Change => (
            "Change your PIN",
            format!(
                r#"{}{}{}<div class="field"><label for="otp">Code sent to your phone</label><input id="otp" name="otp" type="text" inputmode="numeric" pattern="[0-9]*" minlength="6" maxlength="6" autocomplete="one-time-code" required></div>"#,
                pin_field("old_pin", "Current PIN", "current-password"),
                pin_field("pin", "New PIN", "new-password"),
                pin_field("pin_repeat", "Repeat the new PIN", "new-password"),
            ),
            "Change PIN",
        ),
        PinPurpose::Verify => (
            "Enter your PIN",
            pin_field("pin", "PIN", "current-password"),
            "Check PIN",
        ),
    };
    let main = format!(
        r#"<form id="pin-form" novalidate data-session="{session}" data-purpose="{purpose}" data-origin="{origin}" data-key="{key}" data-key-id="{key_id}" data-trace="{trace}">
<h1>{title}</h1>{fields}
<button type="submit">{button}</button>
<p id="pin-status" class="msg" role="status" aria-live="polite"></p>
<p class="fine">Your PIN is encrypted on this device and sent to your card issuer only.</p>
</form>"#,
        session = esc(token),
        purpose = session.purpose.as_str(),
        origin = esc(&session.allowed_origin),
        key = esc(&spki),
        key_id = esc(&key.key_id),
        trace = esc(q.trace_number.as_deref().unwrap_or("")),
    );
    html_page(StatusCode::OK, shell(title, &main), &session.allowed_origin)
}

/// What the widget posts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WidgetPinBody {
    session_token: String,
    /// Base64 RSA-OAEP-SHA256 ciphertext of the PIN digits (the current PIN for `change`).
    #[schema(content_encoding = "base64")]
    encrypted_pin: String,
    /// `change`: the new PIN, encrypted the same way.
    #[schema(content_encoding = "base64")]
    encrypted_new_pin: Option<String>,
    /// The transport key's id (`rsa-oaep-v<n>`); without it, any live version.
    key_id: Option<String>,
    /// `change` (optional for `set`): the OTP the cardholder received.
    otp: Option<String>,
    /// With `otp`: its trace number.
    trace_number: Option<String>,
}

/// The outcome, as the widget passes it on to the embedding page.
#[derive(Debug, Serialize, ToSchema)]
pub struct WidgetOutcome {
    ok: bool,
    /// The card's PIN status afterwards (`NOT_SET`, `SET`, `BLOCKED`).
    #[schema(value_type = Option<String>)]
    pin_status: Option<&'static str>,
    /// The stable code when not `ok` (e.g. `pin_incorrect`, `weak_pin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    /// `verify` and `change` with a wrong PIN: tries left.
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_attempts: Option<u64>,
    /// `true` when the input alone was refused and the session was given
    /// back: the cardholder may correct it and send again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    session_open: bool,
}

fn outcome(status: StatusCode, body: WidgetOutcome, allow_origin: Option<&str>) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    no_store(&mut res);
    res.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allow_origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    res
}

fn refused(status: StatusCode, code: &str) -> Response {
    outcome(
        status,
        WidgetOutcome {
            ok: false,
            pin_status: None,
            code: Some(code.to_owned()),
            remaining_attempts: None,
            session_open: false,
        },
        None,
    )
}

/// Where the request comes from: `None` when the browser said nothing (a
/// same-origin request may omit `Origin`), else the origin.
fn origin_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// Is `origin` cardcore itself (the widget page posting to its own server)?
fn is_self(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// `POST /widget/pin`.
#[utoipa::path(
    post,
    path = "/widget/pin",
    tag = "PIN widget",
    operation_id = "widgetSubmit",
    summary = "PIN widget: send the encrypted PIN",
    description = "From the widget page (or a page of the session's origin: CORS answers only that origin; \
                   any other `Origin` is refused before the session is spent). Spends the session, then calls \
                   the same service function as the API for its purpose. A refusal of the input alone (a weak \
                   PIN, a ciphertext that does not decrypt) gives the session back for another try.",
    request_body = WidgetPinBody,
    responses(
        (status = 200, description = "Done: `ok` (for `verify`, whether the PIN was right).", body = WidgetOutcome),
        (status = 400, description = "`malformed_json`: the body is not the JSON described.", body = WidgetOutcome),
        (status = 403, description = "`origin_not_allowed`: a page of another origin sent it.", body = WidgetOutcome),
        (status = 409, description = "Refused by a rule (e.g. `pin_blocked`, `invalid_card_status`, `otp_invalid`).", body = WidgetOutcome),
        (status = 410, description = "`pin_session_gone`: unknown, expired or used.", body = WidgetOutcome),
        (status = 422, description = "Refused input (e.g. `weak_pin`, `encrypted_pin_invalid`, `validation_error`).", body = WidgetOutcome),
        (status = 429, description = "`rate_limited`: over the per-card limit on PIN calls.", body = WidgetOutcome),
        (status = 503, description = "`service_unavailable`.", body = WidgetOutcome),
    )
)]
pub async fn submit(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(b) = serde_json::from_slice::<WidgetPinBody>(&body) else {
        return refused(StatusCode::BAD_REQUEST, "malformed_json");
    };
    if b.session_token.is_empty() {
        return refused(StatusCode::GONE, "pin_session_gone");
    }
    let svc = &s.service;
    // Look before spending: a wrong origin spends nothing.
    let session = match svc.live_pin_session(&b.session_token).await {
        Ok(session) => session,
        Err(ServiceError::NotFound(_)) => return refused(StatusCode::GONE, "pin_session_gone"),
        Err(e) => return refused_by(&e, None),
    };
    let origin = origin_of(&headers);
    let allow = match origin.as_deref() {
        None => None,
        Some(o) if o == session.allowed_origin => Some(session.allowed_origin.clone()),
        Some(o) if is_self(o, &headers) => None,
        Some(_) => return refused(StatusCode::FORBIDDEN, "origin_not_allowed"),
    };
    let allow = allow.as_deref();
    if session.purpose == PinPurpose::Change
        && (b.encrypted_new_pin.is_none() || b.otp.is_none() || b.trace_number.is_none())
    {
        return outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            WidgetOutcome {
                ok: false,
                pin_status: None,
                code: Some("validation_error".into()),
                remaining_attempts: None,
                // Refused before the session was spent.
                session_open: true,
            },
            allow,
        );
    }
    let session = match svc.claim_pin_session(&b.session_token).await {
        Ok(session) => session,
        Err(ServiceError::NotFound(_)) => return refused(StatusCode::GONE, "pin_session_gone"),
        Err(e) => return refused_by(&e, allow),
    };
    let result = run(&s, &session, b).await;
    match result {
        Ok((ok, pin_status, remaining)) => outcome(
            StatusCode::OK,
            WidgetOutcome {
                ok,
                pin_status: Some(pin_status),
                code: (!ok).then(|| "pin_incorrect".to_owned()),
                remaining_attempts: remaining,
                session_open: false,
            },
            allow,
        ),
        Err(e) => {
            let input_only = matches!(
                e,
                ServiceError::Invalid { .. }
                    | ServiceError::RateLimited { .. }
                    | ServiceError::Rule(RuleViolation::PinTooWeak(_) | RuleViolation::PinLength { .. })
            );
            let mut session_open = false;
            if input_only {
                match svc.release_pin_session(&session).await {
                    Ok(()) => session_open = true,
                    Err(release) => tracing::warn!(cause = %release, "could not give a PIN session back"),
                }
            }
            let pin_status = svc
                .card(&session.ctx, session.card_id)
                .await
                .ok()
                .map(|c| c.pin_status.as_str());
            let p = problem_of(e);
            let mut res = outcome(
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
                WidgetOutcome {
                    ok: false,
                    pin_status,
                    code: Some(p.code.clone()),
                    remaining_attempts: p.extra.get("remaining_attempts").and_then(|v| v.as_u64()),
                    session_open,
                },
                allow,
            );
            if let Some(secs) = p.retry_after {
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            res
        }
    }
}

fn refused_by(e: &ServiceError, allow: Option<&str>) -> Response {
    let p: Problem = problem_of(e.clone());
    outcome(
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        WidgetOutcome {
            ok: false,
            pin_status: None,
            code: Some(p.code),
            remaining_attempts: None,
            session_open: false,
        },
        allow,
    )
}

/// The session's purpose, through the API's service functions.
async fn run(
    s: &AppState,
    session: &PinSession,
    b: WidgetPinBody,
) -> Result<(bool, &'static str, Option<u64>), ServiceError> {
    let svc = &s.service;
    let ctx = &session.ctx;
    let id = session.card_id;
    let encrypted = |prefix: Option<&'static str>, ciphertext: String| NamedPin {
        prefix,
        input: PinInput::Encrypted {
            ciphertext,
            key_id: b.key_id.clone(),
        },
    };
    let otp = match (b.otp, b.trace_number) {
        (Some(code), Some(trace_number)) => Some(OtpProof { trace_number, code }),
        _ => None,
    };
    match session.purpose {
        PinPurpose::Set => {
            let card = svc.set_pin(ctx, id, encrypted(None, b.encrypted_pin), otp).await?;
            Ok((true, card.pin_status.as_str(), None))
        }
        PinPurpose::Change => {
            let otp = otp.ok_or_else(|| ServiceError::invalid("otp", "is required to change a PIN"))?;
            let new = b
                .encrypted_new_pin
                .ok_or_else(|| ServiceError::invalid("encrypted_new_pin", "is required to change a PIN"))?;
            let card = svc
                .change_pin(
                    ctx,
                    id,
                    encrypted(Some("old_pin"), b.encrypted_pin),
                    encrypted(Some("new_pin"), new),
                    otp,
                )
                .await?;
            Ok((true, card.pin_status.as_str(), None))
        }
        PinPurpose::Verify => {
            let outcome = svc.verify_pin(ctx, id, encrypted(None, b.encrypted_pin)).await?;
            let status = svc.card(ctx, id).await?.pin_status.as_str();
            Ok((
                outcome.valid,
                status,
                (!outcome.valid).then_some(u64::from(outcome.remaining_attempts)),
            ))
        }
    }
}

/// `OPTIONS /widget/pin`: the CORS preflight.
#[utoipa::path(
    options,
    path = "/widget/pin",
    tag = "PIN widget",
    operation_id = "widgetPreflight",
    summary = "PIN widget: CORS preflight",
    description = "Lets a browser send the JSON POST from a well-formed origin; the POST itself answers (and \
                   is readable by) the session's origin only, and refuses any other before spending anything.",
    responses((status = 204, description = "The preflight answer."))
)]
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin_of(&headers) {
        if let Ok(normal) = cardcore_service::console::normalize_origin(&origin) {
            if let Ok(v) = HeaderValue::from_str(&normal) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type"),
                );
                h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("300"));
            }
        }
    }
    res
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssetPath {
    /// `pin.js` or `pin.css`.
    file: String,
}

/// `GET /widget/{file}`: `pin.js` and `pin.css`.
#[utoipa::path(
    get,
    path = "/widget/{file}",
    tag = "PIN widget",
    operation_id = "widgetAsset",
    summary = "PIN widget: its script and stylesheet",
    params(AssetPath),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "`not_found`: no such file.", content_type = "application/problem+json", body = Problem),
    )
)]
pub async fn asset(Path(p): Path<AssetPath>) -> Response {
    let (ty, body) = match p.file.as_str() {
        "pin.js" => ("text/javascript; charset=utf-8", JS),
        "pin.css" => ("text/css; charset=utf-8", CSS),
        _ => return Problem::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response(),
    };
    let mut res = ([(header::CONTENT_TYPE, HeaderValue::from_static(ty))], body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res.headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}
