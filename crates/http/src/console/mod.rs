//! The operator console (`/console`): server-rendered HTML, no script, its
//! stylesheet compiled in. Sign-in with a tenant API key gives a session
//! cookie; every page acts as that key through the same service functions
//! as the API (so a refused move shows the API's stable code), audited with
//! actor `console`. Contract: `shared/docs/console.md`; decisions:
//! `docs/CONSOLE.md`.

pub mod html;
mod pages;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cardcore_domain::lifecycle::{LifecycleAction, ReplaceReason};
use cardcore_domain::{AuditId, CardId, Channel, EventId, WebhookEndpointId};
use cardcore_service::cards::ReasonInput;
use cardcore_service::console::ConsoleUser;
use cardcore_service::webhooks::CreateWebhookEndpoint;
use cardcore_service::{Ctx, Service, ServiceError};
use cardcore_store::EndpointFormat;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::request_id_of;
use crate::error::problem_of;
use crate::problem::Problem;
use crate::AppState;
use pages::Notice;

/// The session cookie's name.
pub const COOKIE: &str = "cardcore_console";

/// No script at all, styles and images from cardcore only, forms posting to
/// cardcore only, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       base-uri 'none'; frame-ancestors 'none'";

const CSS: &str = include_str!("assets/console.css");

/// The console's routes, each documented (tag `Console`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(login_page, login))
        .routes(routes!(logout))
        .routes(routes!(search))
        .routes(routes!(card_page))
        .routes(routes!(card_action))
        .routes(routes!(webhooks_page, add_webhook))
        .routes(routes!(remove_webhook))
        .routes(routes!(redeliver))
        .routes(routes!(asset))
        .route_layer(axum::middleware::map_response(secure))
}

/// The headers every console answer carries.
pub async fn secure(mut res: Response) -> Response {
    set_secure_headers(&mut res);
    res
}

fn set_secure_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// An HTML answer.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// `303 See Other` to `to` (a path of this crate's making).
fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The console's 429, for the per-address limit on failed sign-ins.
pub fn too_many(retry_after_seconds: u64) -> Response {
    let mut res = html(
        StatusCode::TOO_MANY_REQUESTS,
        pages::message_page(
            "Too many attempts",
            &format!(
                "Too many failed sign-ins from this address. Try again in {retry_after_seconds} seconds. \
                 (code: rate_limited)"
            ),
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    set_secure_headers(&mut res);
    res
}

fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Served over TLS (by a proxy in front that says so): the cookie gets `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let value = format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("cardcore_console=; Max-Age=0"))
}

/// A signed-in operator: the session's key, checked on every request.
pub struct Operator {
    pub ctx: Ctx,
    pub user: ConsoleUser,
    token: String,
}

impl Operator {
    fn can_reveal(&self) -> bool {
        self.user.principal.can_reveal
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie_of(&parts.headers, COOKIE).map(str::to_owned) else {
            return Err(see_other("/console/login"));
        };
        match state.service.console_user(&token).await {
            Ok(user) => Ok(Operator {
                ctx: Ctx::new(user.principal.clone(), Channel::CONSOLE, request_id_of(parts)),
                user,
                token,
            }),
            Err(ServiceError::Unauthorized) => {
                let mut res = see_other("/console/login");
                res.headers_mut()
                    .insert(header::SET_COOKIE, session_cookie("", 0, over_tls(&parts.headers)));
                Err(res)
            }
            Err(e) => Err(error_page(&problem_of(e))),
        }
    }
}

fn error_page(p: &Problem) -> Response {
    html(
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        pages::message_page("Something went wrong", &format!("{} (code: {})", p.detail, p.code)),
    )
}

/// A form body's fields (the last of a repeated name wins).
fn form(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    f.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Refuses a form without the session's CSRF token (`403`).
fn check_csrf(op: &Operator, f: &HashMap<String, String>) -> Result<(), Response> {
    let given = f.get("csrf_token").map(String::as_str).unwrap_or("");
    if Service::console_csrf_ok(&op.token, given) {
        Ok(())
    } else {
        Err(html(
            StatusCode::FORBIDDEN,
            pages::message_page(
                "Form expired",
                "This form did not carry this session's security token; reload the page and try again. \
                 (code: csrf_token_invalid)",
            ),
        ))
    }
}

// ---- Routes -------------------------------------------------------------

/// `GET /console`.
#[utoipa::path(
    get,
    path = "/console",
    tag = "Console",
    operation_id = "consoleHome",
    summary = "Console: search page",
    responses(
        (status = 200, description = "The search page.", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to `/console/login`."),
    )
)]
pub async fn home(op: Operator) -> Response {
    html(StatusCode::OK, pages::home(&op.user, ""))
}

/// `GET /console/login`.
#[utoipa::path(
    get,
    path = "/console/login",
    tag = "Console",
    operation_id = "consoleLoginPage",
    summary = "Console: sign-in form",
    responses((status = 200, description = "The form: one field, the tenant API key.", content_type = "text/html", body = String))
)]
pub async fn login_page(headers: HeaderMap) -> Response {
    login_form(StatusCode::OK, None, &headers)
}

/// The sign-in form's CSRF cookie.
const LOGIN_COOKIE: &str = "cardcore_console_login";

/// The sign-in form with a fresh pre-session CSRF token: the same random
/// value in a cookie (`cardcore_console_login`, HttpOnly, SameSite=Strict,
/// Path=/console/login) and in the form, so another site cannot sign a
/// browser in to an account of its choosing.
fn login_form(status: StatusCode, error: Option<&str>, headers: &HeaderMap) -> Response {
    let token = Service::new_login_csrf();
    let mut res = html(status, pages::login(error, &token));
    let value = format!(
        "{LOGIN_COOKIE}={token}; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if over_tls(headers) { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /console/login`.
#[utoipa::path(
    post,
    path = "/console/login",
    tag = "Console",
    operation_id = "consoleLogin",
    summary = "Console: sign in",
    description = "Form fields `api_key` and `csrf_token` (the sign-in form's, matching its cookie). A valid key: `303` to `/console` with the session cookie \
                   `cardcore_console` (HttpOnly, SameSite=Strict, Path=/console, Secure behind TLS, 8 hours). \
                   A wrong key: the form again, `401`, no cookie; failures count against the client address \
                   like any failed authentication.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`api_key=...`"),
    responses(
        (status = 303, description = "Signed in: to `/console`, with the cookie."),
        (status = 401, description = "Wrong or missing key: the form with an error.", content_type = "text/html", body = String),
        (status = 403, description = "`csrf_token_invalid`: the form's token does not match its cookie.", content_type = "text/html", body = String),
        (status = 413, description = "The form is over 64 KiB.", content_type = "text/html", body = String),
        (status = 429, description = "Too many failed sign-ins from this address.", content_type = "text/html", body = String),
    )
)]
pub async fn login(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, crate::extract::MAX_BODY).await else {
        return login_form(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("The form is too large."),
            &parts.headers,
        );
    };
    let f = form(&body);
    let sent = cookie_of(&parts.headers, LOGIN_COOKIE).unwrap_or("");
    if !Service::login_csrf_ok(sent, f.get("csrf_token").map(String::as_str).unwrap_or("")) {
        return login_form(
            StatusCode::FORBIDDEN,
            Some("The form expired; sign in again. (code: csrf_token_invalid)"),
            &parts.headers,
        );
    }
    let Some(key) = field(&f, "api_key") else {
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("Enter a tenant API key."),
            &parts.headers,
        );
    };
    match s.service.console_sign_in(key).await {
        Ok((principal, session)) => {
            if let Err(e) = crate::ratelimit::admit(&parts, key, &principal) {
                return error_page(&problem_of(e));
            }
            let mut res = see_other("/console");
            let max_age = cardcore_service::console::CONSOLE_SESSION_TTL.as_secs();
            res.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&session.token, max_age, over_tls(&parts.headers)),
            );
            res
        }
        Err(e @ ServiceError::Unauthorized) => {
            crate::ratelimit::note_failure(&parts, &e);
            login_form(
                StatusCode::UNAUTHORIZED,
                Some("This API key is not valid (code: unauthorized)."),
                &parts.headers,
            )
        }
        Err(e) => error_page(&problem_of(e)),
    }
}

/// `POST /console/logout`.
#[utoipa::path(
    post,
    path = "/console/logout",
    tag = "Console",
    operation_id = "consoleLogout",
    summary = "Console: sign out",
    description = "Ends the session on every node and clears the cookie. Form field `csrf_token`.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out (or not signed in): to `/console/login`."),
        (status = 403, description = "`csrf_token_invalid`.", content_type = "text/html", body = String),
    )
)]
pub async fn logout(State(s): State<AppState>, headers: HeaderMap, op: Operator, body: Bytes) -> Response {
    let f = form(&body);
    if let Err(r) = check_csrf(&op, &f) {
        return r;
    }
    if let Err(e) = s.service.console_sign_out(&op.token).await {
        return error_page(&problem_of(e));
    }
    let mut res = see_other("/console/login");
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0, over_tls(&headers)));
    res
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A card id, kit number, last four digits and expiry (`4242 12/29`),
    /// cardholder external id, or phone.
    #[serde(default)]
    q: String,
}

/// `GET /console/cards?q=`.
#[utoipa::path(
    get,
    path = "/console/cards",
    tag = "Console",
    operation_id = "consoleSearch",
    summary = "Console: find cards",
    params(SearchQuery),
    responses(
        (status = 200, description = "The cards found.", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to `/console/login`."),
        (status = 422, description = "A query the search cannot read (the code on the page).", content_type = "text/html", body = String),
    )
)]
pub async fn search(State(s): State<AppState>, op: Operator, Query(q): Query<SearchQuery>) -> Response {
    if q.q.trim().is_empty() {
        return html(StatusCode::OK, pages::home(&op.user, ""));
    }
    match s.service.search_cards(&op.ctx, &q.q).await {
        Ok(cards) => html(StatusCode::OK, pages::results(&op.user, &q.q, &cards, None)),
        Err(e) => {
            let p = problem_of(e);
            html(
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST),
                pages::results(&op.user, &q.q, &[], Some(&p)),
            )
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CardPath {
    /// The card's id.
    id: String,
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct CardQuery {
    /// The audit trail after this entry (the "older" link).
    before: Option<String>,
    /// The action just done, for its message.
    done: Option<String>,
}

/// `GET /console/cards/{id}`.
#[utoipa::path(
    get,
    path = "/console/cards/{id}",
    tag = "Console",
    operation_id = "consoleCard",
    summary = "Console: a card",
    description = "Status and reason, PIN status and tries left, limits, the audit trail (20 entries a page, \
                   newest first), the newest events with their webhook deliveries, and the actions.",
    params(CardPath, CardQuery),
    responses(
        (status = 200, description = "The card page.", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to `/console/login`."),
        (status = 404, description = "No such card in this tenant.", content_type = "text/html", body = String),
    )
)]
pub async fn card_page(
    State(s): State<AppState>,
    op: Operator,
    Path(p): Path<CardPath>,
    Query(q): Query<CardQuery>,
) -> Response {
    let Ok(id) = p.id.parse::<CardId>() else {
        return not_found(&op);
    };
    let before = q.before.as_deref().and_then(|b| b.parse::<AuditId>().ok());
    let notice = q.done.as_deref().and_then(pages::done_message).map(Notice::Ok);
    render_card(&s, &op, id, before, notice, StatusCode::OK).await
}

fn not_found(op: &Operator) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::shell(
            Some(&op.user),
            "Not found",
            "<h1>Not found</h1><p>No such card in this tenant. (code: card_not_found)</p>",
        ),
    )
}

/// Renders the card page (also after a refused action, with its code).
pub async fn render_card(
    s: &AppState,
    op: &Operator,
    id: CardId,
    before: Option<AuditId>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let svc = &s.service;
    let (card, tries_left) = match svc.card_with_pin_tries(&op.ctx, id).await {
        Ok(c) => c,
        Err(ServiceError::NotFound(_)) => return not_found(op),
        Err(e) => return error_page(&problem_of(e)),
    };
    let holder = svc.cardholder(&op.ctx, card.cardholder_id).await.ok();
    let audit = match svc.card_audit(&op.ctx, id, before, Some(pages::AUDIT_PAGE)).await {
        Ok(a) => a,
        Err(e) => return error_page(&problem_of(e)),
    };
    let events = match svc.recent_events_with_deliveries(&op.ctx, Some(id), 10).await {
        Ok(e) => e,
        Err(e) => return error_page(&problem_of(e)),
    };
    // Spend this day and month, and the spending controls (authorizations).
    let spend = svc.spend(&op.ctx, id).await.ok();
    let controls = svc.controls(&op.ctx, id).await.ok();
    let view = pages::CardView {
        card: &card,
        spend: spend.as_ref(),
        controls: controls.as_ref(),
        holder: holder.as_ref(),
        tries_left,
        max_tries: svc.config().pin_max_failures,
        audit: &audit,
        before,
        events: &events,
        can_reveal: op.can_reveal(),
        notice,
    };
    html(status, pages::card(&op.user, &view))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActionPath {
    /// The card's id.
    id: String,
    /// `lock`, `unlock`, `block`, `close`, `replace`, `pin-unblock`, `resend-activation` or `reveal`.
    action: String,
}

/// The actions the card page offers.
pub const ACTIONS: [&str; 8] = [
    "lock",
    "unlock",
    "block",
    "close",
    "replace",
    "pin-unblock",
    "resend-activation",
    "reveal",
];

/// `POST /console/cards/{id}/{action}`.
#[utoipa::path(
    post,
    path = "/console/cards/{id}/{action}",
    tag = "Console",
    operation_id = "consoleCardAction",
    summary = "Console: act on a card",
    description = "Form fields as the API's body (`reason_code`, `reason_message`; `reason` for replace) plus \
                   `csrf_token`. Without `confirm=yes`: the confirmation page. With it: the same service call as \
                   the API, then `303` to the card page with a message, or the card page with the stable error \
                   code. `reveal` needs a key with `can_reveal`; the PAN and CVV are shown once, never cached.",
    params(ActionPath),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The confirmation page, or the revealed card data.", content_type = "text/html", body = String),
        (status = 303, description = "Done: to the card page (or the new card, after replace); not signed in: to `/console/login`."),
        (status = 403, description = "`csrf_token_invalid`, or `forbidden` (reveal without `can_reveal`).", content_type = "text/html", body = String),
        (status = 404, description = "No such card or action.", content_type = "text/html", body = String),
        (status = 409, description = "Refused by a rule: the card page with the code.", content_type = "text/html", body = String),
        (status = 422, description = "Invalid input: the card page with the code.", content_type = "text/html", body = String),
        (status = 429, description = "Over the per-card limit: the card page with the code.", content_type = "text/html", body = String),
    )
)]
pub async fn card_action(State(s): State<AppState>, op: Operator, Path(p): Path<ActionPath>, body: Bytes) -> Response {
    let f = form(&body);
    if let Err(r) = check_csrf(&op, &f) {
        return r;
    }
    let Ok(id) = p.id.parse::<CardId>() else {
        return not_found(&op);
    };
    let action = p.action.as_str();
    if !ACTIONS.contains(&action) {
        return not_found(&op);
    }
    if action == "reveal" && !op.can_reveal() {
        let problem = problem_of(ServiceError::Forbidden("this API key may not reveal card data"));
        return render_card(&s, &op, id, None, Some(Notice::Err(problem)), StatusCode::FORBIDDEN).await;
    }
    if field(&f, "confirm") != Some("yes") {
        let card = match s.service.card(&op.ctx, id).await {
            Ok(c) => c,
            Err(ServiceError::NotFound(_)) => return not_found(&op),
            Err(e) => return error_page(&problem_of(e)),
        };
        return html(StatusCode::OK, pages::confirm(&op.user, &card, action, &f));
    }
    let svc = &s.service;
    let ctx = &op.ctx;
    let reason = || ReasonInput {
        code: field(&f, "reason_code").map(str::to_owned),
        message: field(&f, "reason_message").map(str::to_owned),
    };
    let status = |a| async move { svc.change_status(ctx, id, a, reason()).await.map(|_| id) };
    let outcome: Result<CardId, ServiceError> = match action {
        "lock" => status(LifecycleAction::Lock).await,
        "unlock" => status(LifecycleAction::Unlock).await,
        "block" => status(LifecycleAction::Block).await,
        "close" => status(LifecycleAction::Close).await,
        "replace" => match field(&f, "reason").and_then(replace_reason) {
            Some(why) => svc.replace(ctx, id, why).await.map(|c| c.id),
            None => Err(ServiceError::invalid(
                "reason",
                "must be lost, stolen, damaged or expired",
            )),
        },
        "pin-unblock" => svc.unblock_pin(ctx, id).await.map(|_| id),
        "resend-activation" => svc.resend_activation_code(ctx, id).await.map(|_| id),
        _ => match svc.reveal(ctx, id).await {
            Ok(data) => {
                let card = match svc.card(ctx, id).await {
                    Ok(c) => c,
                    Err(e) => return error_page(&problem_of(e)),
                };
                return html(StatusCode::OK, pages::revealed(&op.user, &card, &data));
            }
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(target) => see_other(&format!("/console/cards/{target}?done={action}")),
        Err(ServiceError::NotFound(_)) => not_found(&op),
        Err(e) => {
            let problem = problem_of(e);
            let code = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::CONFLICT);
            render_card(&s, &op, id, None, Some(Notice::Err(problem)), code).await
        }
    }
}

fn replace_reason(s: &str) -> Option<ReplaceReason> {
    match s {
        "lost" => Some(ReplaceReason::Lost),
        "stolen" => Some(ReplaceReason::Stolen),
        "damaged" => Some(ReplaceReason::Damaged),
        "expired" => Some(ReplaceReason::Expired),
        _ => None,
    }
}

/// `GET /console/webhooks`.
#[utoipa::path(
    get,
    path = "/console/webhooks",
    tag = "Console",
    operation_id = "consoleWebhooks",
    summary = "Console: webhook endpoints",
    description = "The endpoints, a form to add one, and the newest events with their deliveries.",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to `/console/login`."),
    )
)]
pub async fn webhooks_page(State(s): State<AppState>, op: Operator) -> Response {
    render_webhooks(&s, &op, None, StatusCode::OK).await
}

async fn render_webhooks(s: &AppState, op: &Operator, notice: Option<Notice>, status: StatusCode) -> Response {
    let endpoints = match s.service.webhook_endpoints(&op.ctx).await {
        Ok(e) => e,
        Err(e) => return error_page(&problem_of(e)),
    };
    let events = match s.service.recent_events_with_deliveries(&op.ctx, None, 20).await {
        Ok(e) => e,
        Err(e) => return error_page(&problem_of(e)),
    };
    html(status, pages::webhooks(&op.user, &endpoints, &events, notice))
}

/// `POST /console/webhooks`.
#[utoipa::path(
    post,
    path = "/console/webhooks",
    tag = "Console",
    operation_id = "consoleAddWebhook",
    summary = "Console: add a webhook endpoint",
    description = "Form fields `url`, `events` (comma-separated; empty: every type), `format` (`standard` or \
                   `p100`), `csrf_token`. The API's rules apply (HTTPS, the network rules for the address). \
                   The signing secret is shown once.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Added: the page with the secret, shown once.", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to `/console/login`."),
        (status = 403, description = "`csrf_token_invalid`.", content_type = "text/html", body = String),
        (status = 422, description = "Refused: the page with the code.", content_type = "text/html", body = String),
    )
)]
pub async fn add_webhook(State(s): State<AppState>, op: Operator, body: Bytes) -> Response {
    let f = form(&body);
    if let Err(r) = check_csrf(&op, &f) {
        return r;
    }
    let events = field(&f, "events").map(|e| {
        e.split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
    });
    let format = match field(&f, "format").unwrap_or("standard") {
        "standard" => EndpointFormat::Standard,
        "p100" => EndpointFormat::P100,
        _ => {
            let p = problem_of(ServiceError::invalid("format", "must be standard or p100"));
            return render_webhooks(&s, &op, Some(Notice::Err(p)), StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let input = CreateWebhookEndpoint {
        url: field(&f, "url").unwrap_or("").to_owned(),
        events,
        format,
    };
    match s.service.create_webhook_endpoint(&op.ctx, input).await {
        Ok(created) => {
            let notice = Notice::Secret {
                url: created.endpoint.url.clone(),
                secret: created.secret.to_string(),
            };
            render_webhooks(&s, &op, Some(notice), StatusCode::CREATED).await
        }
        Err(e) => {
            let p = problem_of(e);
            let code = StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            render_webhooks(&s, &op, Some(Notice::Err(p)), code).await
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EndpointPath {
    /// The endpoint's id.
    id: String,
}

/// `POST /console/webhooks/{id}/remove`.
#[utoipa::path(
    post,
    path = "/console/webhooks/{id}/remove",
    tag = "Console",
    operation_id = "consoleRemoveWebhook",
    summary = "Console: remove a webhook endpoint",
    description = "Form field `csrf_token`; without `confirm=yes`, the confirmation page.",
    params(EndpointPath),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The confirmation page.", content_type = "text/html", body = String),
        (status = 303, description = "Removed: to `/console/webhooks`; not signed in: to `/console/login`."),
        (status = 403, description = "`csrf_token_invalid`.", content_type = "text/html", body = String),
        (status = 404, description = "No such endpoint.", content_type = "text/html", body = String),
    )
)]
pub async fn remove_webhook(
    State(s): State<AppState>,
    op: Operator,
    Path(p): Path<EndpointPath>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if let Err(r) = check_csrf(&op, &f) {
        return r;
    }
    let Ok(id) = p.id.parse::<WebhookEndpointId>() else {
        return render_webhooks(
            &s,
            &op,
            Some(Notice::Err(problem_of(ServiceError::NotFound("webhook endpoint")))),
            StatusCode::NOT_FOUND,
        )
        .await;
    };
    if field(&f, "confirm") != Some("yes") {
        return html(StatusCode::OK, pages::confirm_remove(&op.user, &id.to_string()));
    }
    match s.service.delete_webhook_endpoint(&op.ctx, id).await {
        Ok(()) => see_other("/console/webhooks"),
        Err(e) => {
            let p = problem_of(e);
            let code = StatusCode::from_u16(p.status).unwrap_or(StatusCode::NOT_FOUND);
            render_webhooks(&s, &op, Some(Notice::Err(p)), code).await
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventPath {
    /// The event's id.
    id: String,
}

/// `POST /console/events/{id}/redeliver`.
#[utoipa::path(
    post,
    path = "/console/events/{id}/redeliver",
    tag = "Console",
    operation_id = "consoleRedeliver",
    summary = "Console: redeliver an event",
    description = "Form field `csrf_token`. The same call as `POST /v1/events/{id}/redeliver`.",
    params(EventPath),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Queued: the webhooks page with a message.", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in: to `/console/login`."),
        (status = 403, description = "`csrf_token_invalid`.", content_type = "text/html", body = String),
        (status = 404, description = "No such event.", content_type = "text/html", body = String),
        (status = 429, description = "Over the redelivery limit: the page with the code.", content_type = "text/html", body = String),
    )
)]
pub async fn redeliver(State(s): State<AppState>, op: Operator, Path(p): Path<EventPath>, body: Bytes) -> Response {
    let f = form(&body);
    if let Err(r) = check_csrf(&op, &f) {
        return r;
    }
    let result = match p.id.parse::<EventId>() {
        Ok(id) => s.service.redeliver_event(&op.ctx, id).await.map(|_| ()),
        Err(_) => Err(ServiceError::NotFound("event")),
    };
    match result {
        Ok(()) => {
            render_webhooks(
                &s,
                &op,
                Some(Notice::Ok(
                    "Queued for redelivery to every endpoint that wants it.".into(),
                )),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let p = problem_of(e);
            let code = StatusCode::from_u16(p.status).unwrap_or(StatusCode::NOT_FOUND);
            render_webhooks(&s, &op, Some(Notice::Err(p)), code).await
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssetPath {
    /// `console.css`.
    file: String,
}

/// `GET /console/assets/{file}`.
#[utoipa::path(
    get,
    path = "/console/assets/{file}",
    tag = "Console",
    operation_id = "consoleAsset",
    summary = "Console: its stylesheet",
    params(AssetPath),
    responses(
        (status = 200, description = "The file.", content_type = "text/css", body = String),
        (status = 404, description = "`not_found`: no such file.", content_type = "application/problem+json", body = Problem),
    )
)]
pub async fn asset(Path(p): Path<AssetPath>) -> Response {
    match p.file.as_str() {
        "console.css" => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            )],
            CSS,
        )
            .into_response(),
        _ => Problem::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response(),
    }
}
