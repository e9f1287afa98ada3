//! The OpenAPI 3.1 document (`GET /openapi.json`) and the page that renders
//! it (`GET /docs`: Swagger UI, its assets compiled into the binary).
//!
//! The document is built from the same code as the routes: every route is
//! registered through `utoipa_axum::routes!`, which takes the method and the
//! path from the handler's `#[utoipa::path]`, and each front door (native,
//! P100, QI Tech, M2P) decorates its own part of the document where it
//! applies its own middleware and error mapping: security, the error shapes,
//! `Idempotency-Key`, `Retry-After` and `RateLimit-*`. What a handler alone
//! knows (its body, its success, the error codes its service calls can
//! produce) is in its `#[utoipa::path]`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use cardcore_domain::{CardStatus, FieldError, LifecycleAction};
use serde::Deserialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response as OaResponse, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{OpenApi, Ref, RefOr, Required};
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

use crate::extract::ApiPath;
use crate::problem::Problem;

/// The native API's security scheme names (each dialect names its own in
/// its descriptor, `dialects::Dialect::security_schemes`).
pub mod scheme {
    /// Native: `Authorization: Bearer <API key>`.
    pub const NATIVE_BEARER: &str = "apiKeyBearer";
    /// Native: `x-api-key: <API key>`.
    pub const NATIVE_HEADER: &str = "apiKeyHeader";
}

/// The tag of health, readiness, metrics and documentation.
const SYSTEM_TAG: &str = "System";

/// The media type of native problems.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "cardcore",
        description = "cardcore's card-management and PIN API: the native API (`/v1`) and, on the same core \
                       and the same data, the API shapes of three card issuers (P100 under `/p100`, QI Tech \
                       under `/qitech`, M2P under `/m2p`). Generated from the code that serves the routes.\n\n\
                       Every response carries `x-request-id`; native errors are `application/problem+json` \
                       (RFC 9457) with a stable `code`. Secrets (PINs, PANs, CVVs, OTPs, keys) never appear \
                       as examples here."
    ),
    tags(
        (name = "Cardholders", description = "Native API: the people cards are issued to."),
        (name = "Cards", description = "Native API: issue, read, reveal, lifecycle, replacement, limits."),
        (name = "PINs and OTPs", description = "Native API: PIN set, verify, change (with an OTP), unblock; \
                                                 the RSA PIN encryption key."),
        (name = "Events", description = "Native API: the tenant's event log and each card's audit trail."),
        (name = "Webhooks", description = "Native API: webhook endpoints and redelivery."),
        (name = "Authorizations", description = "Native API: the decision on a payment (checks, PIN, limits, \
                                                  spending controls), its hold, captures, reversals, expiry, \
                                                  refunds and the card's spend."),
        (name = "Authorization endpoint", description = "Native API: the tenant's own decision service, asked \
                                                          after cardcore's checks passed, signed as webhooks are."),
        (name = "System", description = "Health, readiness, metrics and this documentation."),
        (name = "Console", description = "The operator console (`/console`): HTML pages for a browser, signed in \
                                           with a tenant API key (session cookie `cardcore_console`, CSRF token on \
                                           every form)."),
        (name = "PIN widget", description = "The PIN widget (`/widget`): an iframe page on the cardholder's \
                                              browser that encrypts the PIN with the tenant's transport key."),
    ),
    components(schemas(Problem)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        for (name, s) in [
            (
                scheme::NATIVE_BEARER,
                bearer(
                    "cardcore API key",
                    "Native API: `Authorization: Bearer <API key>` (keys look like `cc_` and 43 characters).",
                ),
            ),
            (
                scheme::NATIVE_HEADER,
                api_key_header(
                    "x-api-key",
                    "Native API: the API key in `x-api-key` instead of `Authorization`.",
                ),
            ),
        ] {
            components.add_security_scheme(name, s);
        }
    }
}

/// A bearer security scheme with its token's format.
pub fn bearer(format: &str, description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format(format)
            .description(Some(description))
            .build(),
    )
}

/// A security scheme of a credential in the header `name`.
pub fn api_key_header(name: &str, description: &str) -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, description)))
}

/// The dialects' part of the base document: each one's tag (before
/// `System`) and security schemes, from its descriptor.
pub fn dialects(api: &mut OpenApi, dialects: &[crate::dialects::Dialect]) {
    let tags = api.tags.get_or_insert_with(Vec::new);
    let at = tags.iter().position(|t| t.name == SYSTEM_TAG).unwrap_or(tags.len());
    for (i, d) in dialects.iter().enumerate() {
        let (name, description) = d.tag;
        tags.insert(
            at + i,
            utoipa::openapi::tag::TagBuilder::new()
                .name(name)
                .description(Some(description))
                .build(),
        );
    }
    let components = api.components.get_or_insert_with(Default::default);
    for d in dialects {
        for (name, scheme) in (d.security_schemes)() {
            components.add_security_scheme(name, scheme);
        }
    }
}

// ---- The native problem ---------------------------------------------------

/// The weak-PIN rules' names (`rule` of `pin_too_weak`).
fn weak_pin_rules() -> Vec<&'static str> {
    use cardcore_domain::pin_policy::WeakPin::{self, *};
    // A new rule does not compile here until it is listed below as well.
    const fn listed(w: WeakPin) {
        match w {
            Repeated | Sequential | BirthDate | SameAsCurrent | Common => {}
        }
    }
    let all = [Repeated, Sequential, BirthDate, SameAsCurrent, Common];
    all.iter().for_each(|w| listed(*w));
    all.map(WeakPin::as_str).to_vec()
}

/// A string schema limited to `values`.
pub fn string_enum<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().map(Into::into)))
        .build()
}

fn integer(description: &str, minimum: i64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(minimum as f64))
        .description(Some(description))
        .build()
}

fn text(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .build()
}

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let mut action = string_enum(LifecycleAction::ALL.map(LifecycleAction::as_str));
        action.description = Some("The refused action (`invalid_status_transition`).".into());
        let mut rule = string_enum(weak_pin_rules());
        rule.description = Some("The weak-PIN rule broken (`pin_too_weak`).".into());
        let mut type_uri = text("`urn:cardcore:problem:<code>`.");
        type_uri.examples = vec!["urn:cardcore:problem:card_not_found".into()];
        type_uri.format = Some(utoipa::openapi::SchemaFormat::Custom("uri".into()));
        ObjectBuilder::new()
            .description(Some(
                "An RFC 9457 problem detail. `code` is stable (snake_case) and says what happened; \
                 `detail` says what to fix (it never repeats a secret). Some problems carry extra members, \
                 listed below.",
            ))
            .property("type", type_uri)
            .required("type")
            .property("title", text("The HTTP reason phrase."))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(400.0))
                    .maximum(Some(599.0))
                    .description(Some("The HTTP status."))
                    .build(),
            )
            .required("status")
            .property("detail", text("What happened and what to fix."))
            .required("detail")
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "The stable error code, e.g. `card_not_found`, `validation_error`.",
                    ))
                    .examples(["card_not_found"]),
            )
            .required("code")
            .property(
                "request_id",
                text("The request's id (as in `x-request-id` and the logs)."),
            )
            .required("request_id")
            .property(
                "errors",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(FieldError::name()))
                    .description(Some(
                        "Field problems (`validation_error` and friends): each names the field.",
                    )),
            )
            .property("current_status", Ref::from_schema_name(CardStatus::name()))
            .property("action", action)
            .property(
                "remaining_attempts",
                integer("Attempts left (`pin_incorrect`, `otp_invalid`).", 0),
            )
            .property(
                "retry_after_seconds",
                integer(
                    "Seconds to wait, as in `Retry-After` (`otp_locked`, `rate_limited`, ...).",
                    0,
                ),
            )
            .property("rule", rule)
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        "Problem".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((FieldError::name().into_owned(), FieldError::schema()));
        schemas.push((CardStatus::name().into_owned(), CardStatus::schema()));
    }
}

// ---- Decorating operations --------------------------------------------------

/// Calls `f` on every operation of `api`.
pub fn for_each_operation(api: &mut OpenApi, mut f: impl FnMut(&str, HttpMethod, &mut Operation)) {
    for (path, item) in api.paths.paths.iter_mut() {
        let ops = [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Delete, &mut item.delete),
            (HttpMethod::Options, &mut item.options),
            (HttpMethod::Head, &mut item.head),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Trace, &mut item.trace),
        ];
        for (method, op) in ops {
            if let Some(op) = op.as_mut() {
                f(path, method, op);
            }
        }
    }
}

/// Calls `f` on the response `status` of `op`, made with `description` if
/// the operation has none. (Responses here are never references: nothing
/// registers response components.)
pub fn response(op: &mut Operation, status: &str, description: &str, f: impl FnOnce(&mut OaResponse)) {
    let entry = op
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
    if let RefOr::T(r) = entry {
        f(r);
    }
}

/// Appends `text` to the description of response `status` (made if absent).
pub fn append(op: &mut Operation, status: &str, text: &str) {
    response(op, status, "", |r| {
        if r.description.is_empty() {
            r.description = text.to_owned();
        } else if !r.description.contains(text) {
            r.description = format!("{} {text}", r.description);
        }
    });
}

/// Every response of `op` with its status.
pub fn responses_mut(op: &mut Operation) -> impl Iterator<Item = (u16, &mut OaResponse)> {
    op.responses.responses.iter_mut().filter_map(|(status, r)| match r {
        RefOr::T(r) => Some((status.parse().unwrap_or(0), r)),
        RefOr::Ref(_) => None,
    })
}

/// Adds a header to a response.
pub fn header(r: &mut OaResponse, name: &str, schema: Object, description: &str) {
    r.headers.entry(name.to_owned()).or_insert_with(|| {
        HeaderBuilder::new()
            .schema(schema)
            .description(Some(description))
            .build()
    });
}

/// A string schema.
pub fn string() -> Object {
    ObjectBuilder::new().schema_type(Type::String).build()
}

/// An integer schema (≥ 0).
pub fn seconds() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0.0))
        .build()
}

/// The alternatives of an untagged enum's schema (`oneOf`), in variant order.
pub fn variants<T: PartialSchema>() -> Vec<RefOr<Schema>> {
    match T::schema() {
        RefOr::T(Schema::OneOf(one_of)) => one_of.items,
        other => vec![other],
    }
}

/// Adds `schema` to the document's components as `name`, described.
pub fn add_schema(api: &mut OpenApi, name: &str, mut schema: RefOr<Schema>, description: &str) {
    if let RefOr::T(Schema::Object(o)) = &mut schema {
        o.description = Some(description.to_owned());
    }
    api.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(name.to_owned(), schema);
}

/// A reference to the component schema `name`.
pub fn named(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// Sets the body of a response that has none.
pub fn body(r: &mut OaResponse, content_type: &str, schema: impl Into<RefOr<Schema>>) {
    if r.content.is_empty() {
        r.content.insert(
            content_type.to_owned(),
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    }
}

/// A reference to the schema `T`.
pub fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// Registers `T` (and what it refers to) in the document's components.
pub fn register<T: ToSchema>(api: &mut OpenApi) {
    let components = api.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut schemas);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
}

/// Sets the operation's security: `requirements` are alternatives, each
/// lists the schemes that go together.
pub fn secure(op: &mut Operation, requirements: &[&[&str]]) {
    op.security = Some(
        requirements
            .iter()
            .map(|schemes| {
                schemes.iter().fold(SecurityRequirement::default(), |req, s| {
                    req.add::<&str, [&str; 0], &str>(*s, [])
                })
            })
            .collect(),
    );
}

/// Sets the operation's tag.
pub fn set_tag(op: &mut Operation, tag: &str) {
    op.tags = Some(vec![tag.to_owned()]);
}

/// `Retry-After`.
pub fn retry_after(r: &mut OaResponse) {
    header(r, "Retry-After", seconds(), "Seconds to wait before retrying.");
}

/// The `RateLimit-*` headers of the per-API-key limit (`ratelimit.rs`): on
/// every answer to a request carrying a credential, when limiting is on.
pub fn rate_limit_headers(r: &mut OaResponse) {
    header(
        r,
        "RateLimit-Limit",
        seconds(),
        "The burst allowed to this API key (on answers to requests with a credential, when rate limiting is on).",
    );
    header(r, "RateLimit-Remaining", seconds(), "Requests left in the burst.");
    header(
        r,
        "RateLimit-Reset",
        seconds(),
        "Seconds until the burst is full again.",
    );
}

/// `RateLimit-*` on every answer of an operation that takes a credential.
pub fn rate_limited_everywhere(op: &mut Operation) {
    for (_, r) in responses_mut(op) {
        rate_limit_headers(r);
    }
}

/// The per-API-key limit's `429` (`ratelimit.rs`) on the native API: the
/// `rate_limited` problem.
pub fn key_rate_limited(op: &mut Operation) {
    response(op, "429", "", key_rate_limited_response);
}

/// The per-API-key limit's `429` on a vendor API: the vendor's error body
/// (`dialects::render_for_path`), with the same headers.
pub fn key_rate_limited_as(op: &mut Operation, content_type: &str, schema: RefOr<Schema>) {
    response(op, "429", "", |r| {
        if r.description.is_empty() {
            r.description = "More requests than this API key's rate allows, or too many failed authentications from \
                             this client address; nothing was done."
                .into();
        } else if !r.description.contains("per-API-key") {
            r.description = format!("{} Also over the per-API-key limit, in the same shape.", r.description);
        }
        body(r, content_type, schema);
        retry_after(r);
        rate_limit_headers(r);
    });
}

fn key_rate_limited_response(r: &mut OaResponse) {
    if r.description.is_empty() {
        r.description = "`rate_limited`: more requests than this API key's rate allows, or too many failed \
                         authentications from this client address; nothing was done."
            .into();
    } else if !r.description.contains("per-API-key") {
        r.description = format!(
            "{} Over the per-API-key limit: the native `rate_limited` problem (`{PROBLEM_JSON}`).",
            r.description
        );
    }
    if !r.content.contains_key(PROBLEM_JSON) {
        r.content.insert(
            PROBLEM_JSON.to_owned(),
            ContentBuilder::new().schema(Some(schema_ref::<Problem>())).build(),
        );
    }
    retry_after(r);
    rate_limit_headers(r);
}

/// Native decoration: security, problem bodies, the responses every native
/// operation can give, `Idempotency-Key` on POST/PUT/PATCH/DELETE (where the
/// idempotency layer runs), and the rate-limit headers.
pub fn native(api: &mut OpenApi) {
    for_each_operation(api, |_, method, op| {
        secure(op, &[&[scheme::NATIVE_BEARER], &[scheme::NATIVE_HEADER]]);
        let has_body = op.request_body.is_some();
        let mutating = matches!(
            method,
            HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch | HttpMethod::Delete
        );
        // The idempotency layer keeps (and replays) every answer but 5xx and
        // 429; it never sees a request without valid credentials (401) or
        // an oversized body (413).
        let replayable = |status: u16| mutating && !matches!(status, 401 | 413 | 429) && status < 500;
        response(
            op,
            "401",
            "`unauthorized`: no API key, or one cardcore does not know.",
            |r| header(r, "WWW-Authenticate", string(), "`Bearer realm=\"cardcore\"`."),
        );
        key_rate_limited(op);
        response(
            op,
            "500",
            "`internal_error`: a bug or corrupt data; the cause is logged under the `request_id`.",
            |_| {},
        );
        response(
            op,
            "503",
            if mutating {
                "`service_unavailable`: the database is unavailable; the outcome is unknown (retry with the same \
                 `Idempotency-Key`)."
            } else {
                "`service_unavailable`: the database is unavailable."
            },
            retry_after,
        );
        if has_body {
            append(op, "400", "`malformed_json`: the body is not JSON.");
            response(op, "413", "`payload_too_large`: the body is over 64 KiB.", |_| {});
            response(
                op,
                "415",
                "`unsupported_media_type`: a body that is not `application/json`.",
                |_| {},
            );
        }
        if mutating {
            let params = op.parameters.get_or_insert_with(Vec::new);
            params.push(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes a retry safe: the same key with the same request answers the kept answer \
                         (`Idempotent-Replayed: true`) for 24 hours; 1 to 255 printable ASCII characters \
                         (a UUID is a good choice). Keys belong to the API key that sends them.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(crate::idempotency::MAX_KEY_LEN))
                            .pattern(Some("^[\\x20-\\x7E]+$")),
                    ))
                    .build(),
            );
            append(
                op,
                "409",
                "`idempotency_key_in_progress` (with `Retry-After: 1`): a request with this `Idempotency-Key` \
                 is still running.",
            );
            response(op, "409", "", retry_after);
            append(
                op,
                "422",
                "`idempotency_key_reused`: this `Idempotency-Key` was used for another request; \
                 `validation_error` naming `Idempotency-Key` when the key is not 1 to 255 printable ASCII \
                 characters.",
            );
        }
        rate_limited_everywhere(op);
        for (status, r) in responses_mut(op) {
            if status >= 400 {
                body(r, PROBLEM_JSON, schema_ref::<Problem>());
            }
            if replayable(status) {
                header(
                    r,
                    "Idempotent-Replayed",
                    string_enum(["true"]),
                    "`true` when this is the kept answer of an earlier request with the same `Idempotency-Key`.",
                );
            }
        }
    });
}

/// The last touch on the whole document: `x-request-id` on every answer,
/// and optional bodies (`Option<T>`, read by `OptionalJson`) said as such.
pub fn finish(mut api: OpenApi) -> OpenApi {
    for_each_operation(&mut api, |_, _, op| {
        optional_body(op);
        for (_, r) in responses_mut(op) {
            header(
                r,
                "x-request-id",
                string(),
                "This request's id (the caller's own if it is 1 to 128 of `A-Za-z0-9-_.:`); in logs and problems.",
            );
        }
    });
    api
}

/// utoipa renders `request_body = Option<T>` as "`T` or JSON `null`"; what
/// `OptionalJson` accepts is "`T`, or no body at all" (an empty body reads as
/// `{}`), so the body is `T` and not required.
fn optional_body(op: &mut Operation) {
    let Some(body) = op.request_body.as_mut() else {
        return;
    };
    let mut optional = false;
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let mut items = one_of.items.iter().filter(|item| !is_null(item));
        if let (Some(only), None, true) = (items.next(), items.next(), one_of.items.len() == 2) {
            content.schema = Some(only.clone());
            optional = true;
        }
    }
    if optional {
        body.required = Some(Required::False);
        if body.description.is_none() {
            body.description = Some("Optional: an empty body is `{}`.".into());
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == utoipa::openapi::schema::SchemaType::Type(Type::Null))
}

/// The base document: info, tags, security schemes, shared schemas.
pub fn base() -> OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

// ---- Serving the document and the page --------------------------------------

/// The document, serialized once at start-up (cheap to clone: shared bytes).
#[derive(Clone)]
pub struct Document(pub Bytes);

impl Document {
    /// Serializes `api`.
    pub fn new(api: &OpenApi) -> Self {
        Self(Bytes::from(serde_json::to_vec(api).unwrap_or_default()))
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "System",
    operation_id = "getOpenApi",
    summary = "This OpenAPI 3.1 document",
    responses(
        (status = 200, description = "The document, generated from the code that serves the routes.",
            content_type = "application/json", body = Object),
    )
)]
pub async fn document(Extension(doc): Extension<Document>) -> Response {
    let mut res = (StatusCode::OK, doc.0).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Where the page's assets are served.
const ASSETS: &str = "/docs";

/// The documentation page: Swagger UI's own files, from the binary. Every
/// reference is to cardcore itself, so it renders without network access.
fn page() -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cardcore API</title>
<link rel="stylesheet" type="text/css" href="{ASSETS}/swagger-ui.css">
<link rel="stylesheet" type="text/css" href="{ASSETS}/index.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js" charset="utf-8"></script>
<script src="{ASSETS}/swagger-ui-standalone-preset.js" charset="utf-8"></script>
<script src="{ASSETS}/swagger-initializer.js" charset="utf-8"></script>
</body>
</html>
"#
    )
}

/// Only cardcore itself: scripts and styles from `/docs`, the document from
/// `/openapi.json`, images inline or local (Swagger UI draws icons with
/// `data:` SVGs and sets inline styles).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn with_csp(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    res
}

/// `GET /docs`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "System",
    operation_id = "getDocs",
    summary = "This document, rendered (Swagger UI)",
    description = "Served by cardcore with every asset, so it renders without network access.",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String,
            headers(("Content-Security-Policy" = String, description = "Only cardcore itself."))),
    )
)]
pub async fn docs() -> Response {
    with_csp(Html(page()).into_response())
}

/// Swagger UI's settings: this document, the base layout (no top bar to load
/// another document), and no call to the public validator.
fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .validator_url("none")
            .use_base_layout()
            .filter(true)
            .try_it_out_enabled(false)
            .persist_authorization(false),
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssetPath {
    /// A file of the page, e.g. `swagger-ui.css`.
    file: String,
}

/// `GET /docs/{file}`: Swagger UI's files.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "System",
    operation_id = "getDocsAsset",
    summary = "A file of the documentation page",
    params(AssetPath),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/css"),
            (String = "text/javascript"),
            ("image/png"),
            (String = "text/html"),
        )),
        (status = 404, description = "`not_found`: no such file.", content_type = "application/problem+json", body = Problem),
    )
)]
pub async fn docs_asset(ApiPath(p): ApiPath<AssetPath>) -> Response {
    match utoipa_swagger_ui::serve(&p.file, swagger_config()) {
        Ok(Some(file)) if p.file != "index.html" => {
            let mut res = (StatusCode::OK, file.bytes.into_owned()).into_response();
            if let Ok(v) = HeaderValue::from_str(&file.content_type) {
                res.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            with_csp(res)
        }
        Ok(_) => Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file of the documentation page",
        )
        .into_response(),
        Err(e) => {
            tracing::error!(cause = %e, "could not serve a documentation file");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged with this request_id",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardcore_domain::pin_policy::WeakPin;
    use cardcore_domain::{CardStatus, LifecycleAction, RuleViolation};
    use cardcore_service::ServiceError;

    fn properties() -> Vec<String> {
        let schema = serde_json::to_value(Problem::schema()).unwrap();
        schema["properties"].as_object().unwrap().keys().cloned().collect()
    }

    /// Every member a native problem can carry is in the Problem schema:
    /// the extras of every rule violation, and those of the other errors.
    #[test]
    fn the_problem_schema_lists_every_member_problems_carry() {
        let rules = [
            RuleViolation::InvalidStatusTransition {
                from: CardStatus::Closed,
                action: LifecycleAction::Lock,
            },
            RuleViolation::ReplaceNotAllowed {
                from: CardStatus::Closed,
            },
            RuleViolation::NotReplaceable,
            RuleViolation::AlreadyReplaced,
            RuleViolation::InvalidCardStatus {
                status: CardStatus::Closed,
                operation: "x",
            },
            RuleViolation::CardTypeNotAllowed {
                card_type: cardcore_domain::CardType::Virtual,
                operation: "x",
            },
            RuleViolation::ActivationCodeInvalid { remaining_attempts: 1 },
            RuleViolation::ActivationLocked { retry_after_seconds: 1 },
            RuleViolation::PinTooWeak(WeakPin::Common),
            RuleViolation::PinLength { min: 4, max: 4 },
            RuleViolation::PinNotSet,
            RuleViolation::PinBlocked,
            RuleViolation::PinIncorrect { remaining_attempts: 1 },
            RuleViolation::OtpInvalid { remaining_attempts: 1 },
            RuleViolation::OtpExpired,
            RuleViolation::OtpLocked { retry_after_seconds: 1 },
            RuleViolation::OtpRateLimited { retry_after_seconds: 1 },
        ];
        let mut problems: Vec<Problem> = rules.iter().map(crate::error::rule_problem).collect();
        problems.push(crate::error::problem_of(ServiceError::invalid("x", "y")));
        problems.push(crate::error::problem_of(ServiceError::RateLimited {
            limit: 1,
            period: "minute",
            scope: "card",
            retry_after_seconds: 1,
        }));
        let known = properties();
        for mut p in problems {
            p.request_id = Some("r".into());
            let json = serde_json::to_value(&p).unwrap();
            for key in json.as_object().unwrap().keys() {
                assert!(
                    known.contains(key),
                    "`{key}` of `{}` is not in the Problem schema",
                    p.code
                );
            }
        }
        let rule = serde_json::to_value(weak_pin_rules_answered()).unwrap();
        assert_eq!(rule, serde_json::json!(weak_pin_rules()));
    }

    fn weak_pin_rules_answered() -> Vec<String> {
        [
            WeakPin::Repeated,
            WeakPin::Sequential,
            WeakPin::BirthDate,
            WeakPin::SameAsCurrent,
            WeakPin::Common,
        ]
        .into_iter()
        .map(|w| {
            crate::error::rule_problem(&RuleViolation::PinTooWeak(w)).extra["rule"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
    }

    #[test]
    fn the_page_refers_only_to_cardcore() {
        let page = page();
        assert!(!page.contains("http://") && !page.contains("https://"), "{page}");
        assert!(
            !page.contains("<script>"),
            "no inline script: the CSP allows only files"
        );
    }
}
