//! Vendor dialects: the API shapes of P100 (`/p100`), QI Tech (`/qitech`)
//! and M2P (`/m2p`) on the same core, so an app written for one of them runs
//! on cardcore by changing its base URL and credentials.
//!
//! Each vendor is a folder with its request/response types (`types.rs`) and
//! ONE function mapping service errors to its codes (`error.rs`). A handler
//! resolves the vendor's identifiers to cardcore's, calls one service
//! operation and renders the vendor's answer. No status, PIN, OTP or counter
//! rule lives here (Architecture Invariant): what is shared below is
//! identifier lookups and body parsing, nothing that decides.

pub mod m2p;
pub(crate) mod p100;
pub(crate) mod qitech;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use cardcore_domain::{Card, CardStatus, Cardholder, Channel, Limits};
use cardcore_service::cards::ListCards;
use cardcore_service::{Ctx, Service, ServiceError, ServiceResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::security::SecurityScheme;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// A vendor API on cardcore's core: everything the rest of the HTTP crate
/// knows about it. The router nests [`Dialect::routes`] under
/// [`Dialect::prefix`]; the per-key and per-address rate limits and the
/// fallback for unknown routes answer paths under the prefix with
/// [`Dialect::render_error`]; the OpenAPI document declares its tag and its
/// security schemes. A new vendor is a folder with one `pub const DIALECT`
/// and one line in [`all`] (ARCHITECTURE.md, "Adding a vendor dialect").
#[derive(Clone, Copy)]
pub struct Dialect {
    /// The API's name, lowercase: the audit entries' `channel` of its
    /// requests (`"p100"`), so it must never change once data exists.
    pub name: &'static str,
    /// Where its routes live, e.g. `"/p100"` (no trailing slash): every
    /// path under it belongs to this dialect.
    pub prefix: &'static str,
    /// Its routes, each through `routes!` with its `#[utoipa::path]`, their
    /// document decorated with the dialect's tag, security and error shapes.
    pub routes: fn() -> OpenApiRouter<AppState>,
    /// A service error in the vendor's shape. Rate-limit refusals (before
    /// any handler runs) and unknown routes under the prefix
    /// (`ServiceError::NotFound(ROUTE)`) are answered through it.
    pub render_error: fn(ServiceError) -> Response,
    /// Its tag in the OpenAPI document, and the tag's description.
    pub tag: (&'static str, &'static str),
    /// Its security schemes, by name (the names its routes' `security` use).
    pub security_schemes: fn() -> Vec<(&'static str, SecurityScheme)>,
    /// The request headers that carry its credentials (lowercase); the
    /// per-address limit on failed authentications looks at them.
    pub credential_headers: &'static [&'static str],
}

impl Dialect {
    /// The audit channel of its requests.
    pub fn channel(&self) -> Channel {
        Channel::api(self.name)
    }

    /// True when `path` is one of its routes' (or would be).
    pub fn owns(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix).is_some_and(|rest| rest.starts_with('/'))
    }
}

impl std::fmt::Debug for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialect")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What `ServiceError::NotFound` names for a path under a dialect's prefix
/// that no route serves; each renderer answers it as the vendor's 404.
pub const ROUTE: &str = "route";

/// Every vendor dialect cardcore serves: the ONE list.
pub fn all() -> Vec<Dialect> {
    vec![p100::DIALECT, qitech::DIALECT, m2p::DIALECT]
}

/// The dialects, each under its base path, every operation under its tag
/// (each documents its own security and error shapes).
pub fn routes(dialects: &[Dialect]) -> OpenApiRouter<AppState> {
    dialects.iter().fold(OpenApiRouter::new(), |router, d| {
        let mut routes = (d.routes)();
        crate::openapi::for_each_operation(routes.get_openapi_mut(), |_, _, op| {
            crate::openapi::set_tag(op, d.tag.0);
        });
        router.nest(d.prefix, routes)
    })
}

/// The dialect `path` belongs to, if any.
pub fn of_path<'a>(dialects: &'a [Dialect], path: &str) -> Option<&'a Dialect> {
    dialects.iter().find(|d| d.owns(path))
}

/// A service error in the shape of the vendor API `path` belongs to, or
/// `None` for the native API (the rate limiter answers before any handler
/// runs and the fallback after none matched, so they ask here).
pub(crate) fn render_for_path(dialects: &[Dialect], path: &str, e: ServiceError) -> Option<Response> {
    of_path(dialects, path).map(|d| (d.render_error)(e))
}

/// The service error code of a body that is not JSON at all (each dialect
/// renders it in its own way, e.g. M2P's "Unable to convert http message").
pub(crate) const MALFORMED_JSON: &str = "malformed_json";

/// Parses a vendor request body strictly (unknown, missing and mistyped
/// fields are refused, naming the field), as a service error the dialect's
/// mapping function renders in the vendor's shape.
pub(crate) fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ServiceResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServiceError::invalid("body", format!("is larger than {} bytes", crate::extract::MAX_BODY))
        } else {
            ServiceError::invalid_with(MALFORMED_JSON, "body", "could not be read")
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ServiceError::invalid_with(
            MALFORMED_JSON,
            "body",
            "a JSON body is required",
        ));
    }
    crate::extract::parse_json(&bytes).map_err(|problem| {
        if problem.code == MALFORMED_JSON {
            ServiceError::invalid_with(MALFORMED_JSON, "body", problem.detail)
        } else if problem.errors.is_empty() {
            ServiceError::invalid("body", problem.detail)
        } else {
            let errors = problem
                .errors
                .into_iter()
                .map(|f| cardcore_domain::FieldError::new(f.field, scrub(&f.message)))
                .collect();
            ServiceError::from(cardcore_domain::ValidationErrors(errors))
        }
    })
}

/// serde quotes the offending value in "invalid type/value" messages; in a
/// PIN or OTP field sent as a number that value is a secret, so it is dropped.
fn scrub(message: &str) -> String {
    crate::extract::without_values(message)
}

/// A path or body identifier that must be a UUID.
pub(crate) fn parse_id<T: std::str::FromStr>(field: &str, value: &str) -> ServiceResult<T> {
    value
        .trim()
        .parse()
        .map_err(|_| ServiceError::invalid(field, "must be a UUID"))
}

/// For PATCH-style fields: absent (`None`), `null` (`Some(None)`) or a value.
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The cardholder with the tenant's own id `external_id` (P100
/// `externalUserId`, M2P `entityId`).
pub(crate) async fn holder(service: &Service, ctx: &Ctx, external_id: &str) -> ServiceResult<Cardholder> {
    service.cardholder_by_external_id(ctx, external_id).await
}

/// The card with kit number `kit` if it belongs to the cardholder `external_id`.
pub(crate) async fn card_by_kit_of_holder(
    service: &Service,
    ctx: &Ctx,
    external_id: &str,
    kit: &str,
) -> ServiceResult<(Cardholder, Card)> {
    let holder = holder(service, ctx, external_id).await.map_err(card_not_found)?;
    let card = service.card_by_kit(ctx, kit).await?;
    if card.cardholder_id != holder.id {
        return Err(ServiceError::NotFound("card"));
    }
    Ok((holder, card))
}

/// The cardholder `external_id`'s card that a caller names without a kit
/// number: its only open card, or the only one whose last four digits are
/// `last_four`. None or several: `None`, and the caller asks for the kit.
/// An unknown cardholder answers `NotFound("card")`, as a wrong kit does.
pub(crate) async fn only_card_of_holder(
    service: &Service,
    ctx: &Ctx,
    external_id: &str,
    last_four: Option<&str>,
) -> ServiceResult<(Cardholder, Option<Card>)> {
    let holder = holder(service, ctx, external_id).await.map_err(card_not_found)?;
    let mut cards = all_cards(service, ctx, &holder)
        .await?
        .into_iter()
        .filter(|c| c.status != CardStatus::Closed)
        .filter(|c| last_four.is_none_or(|l| c.last_four == l));
    let only = match (cards.next(), cards.next()) {
        (Some(card), None) => Some(card),
        _ => None,
    };
    Ok((holder, only))
}

fn card_not_found(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::NotFound(_) => ServiceError::NotFound("card"),
        other => other,
    }
}

/// Every card of a cardholder, oldest first (the vendors' "all cards" calls
/// have no paging; a cardholder has a handful of cards).
pub(crate) async fn all_cards(service: &Service, ctx: &Ctx, holder: &Cardholder) -> ServiceResult<Vec<Card>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = service
            .cards(
                ctx,
                ListCards {
                    cardholder_id: Some(holder.id),
                    cursor,
                    limit: Some(cardcore_service::cards::MAX_LIMIT),
                    ..ListCards::default()
                },
            )
            .await?;
        out.extend(page.data);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// One channel's limit change: each field absent (keep), `null` (no limit)
/// or a value. The merge is PATCH semantics, not a rule: the core validates
/// the whole result.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ChannelChange {
    pub enabled: Option<bool>,
    pub per_transaction: Option<Option<u64>>,
    pub daily: Option<Option<u64>>,
    pub monthly: Option<Option<u64>>,
}

impl ChannelChange {
    /// The channel after the change.
    pub fn apply(self, mut current: cardcore_domain::ChannelLimit) -> cardcore_domain::ChannelLimit {
        if let Some(e) = self.enabled {
            current.enabled = e;
        }
        if let Some(v) = self.per_transaction {
            current.per_transaction = v;
        }
        if let Some(v) = self.daily {
            current.daily = v;
        }
        if let Some(v) = self.monthly {
            current.monthly = v;
        }
        current
    }
}

/// Limit changes for the four channels (and the currency).
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitsChange {
    pub currency: Option<String>,
    pub pos: Option<ChannelChange>,
    pub ecommerce: Option<ChannelChange>,
    pub atm: Option<ChannelChange>,
    pub contactless: Option<ChannelChange>,
}

impl LimitsChange {
    /// The limits after the change.
    pub fn apply(self, mut limits: Limits) -> Limits {
        if let Some(c) = self.currency {
            limits.currency = c;
        }
        let ch = &mut limits.channels;
        for (change, channel) in [
            (self.pos, &mut ch.pos),
            (self.ecommerce, &mut ch.ecommerce),
            (self.atm, &mut ch.atm),
            (self.contactless, &mut ch.contactless),
        ] {
            if let Some(change) = change {
                *channel = change.apply(*channel);
            }
        }
        limits
    }
}

/// An API key from a vendor header: trimmed; empty counts as absent.
pub(crate) fn header_value<'a>(parts: &'a axum::http::request::Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The body of a response that carries card data: built in a zeroizing
/// buffer and never cached on the way.
pub(crate) fn secret_json(body: &impl serde::Serialize) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(body).unwrap_or_default());
    let mut res = (StatusCode::OK, bytes.to_vec()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Converts a snake_case service field path (`channels.atm.per_transaction`)
/// to camelCase (`channels.atm.perTransaction`).
pub(crate) fn camel_path(field: &str) -> String {
    field
        .split('.')
        .map(|seg| {
            let mut out = String::with_capacity(seg.len());
            let mut upper = false;
            for c in seg.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_paths() {
        assert_eq!(
            camel_path("channels.atm.per_transaction"),
            "channels.atm.perTransaction"
        );
        assert_eq!(camel_path("card_name"), "cardName");
        assert_eq!(camel_path("pin"), "pin");
    }

    #[test]
    fn values_are_not_quoted_back() {
        assert_eq!(
            scrub("invalid type: integer `4821`, expected a string"),
            "invalid type: expected a string"
        );
        assert_eq!(scrub("invalid value: string \"x\""), "invalid value");
        assert_eq!(scrub("is required"), "is required");
    }

    #[test]
    fn bodies_refuse_with_the_field() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            pin: String,
        }
        let e = parse_body::<B>(Ok(Bytes::from_static(b"{"))).unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Invalid {
                    code: MALFORMED_JSON,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = parse_body::<B>(Ok(Bytes::from_static(b""))).unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Invalid {
                    code: MALFORMED_JSON,
                    ..
                }
            ),
            "{e:?}"
        );
        let ServiceError::Invalid { code, errors } =
            parse_body::<B>(Ok(Bytes::from_static(b"{\"pin\": 1}"))).unwrap_err()
        else {
            panic!("invalid expected")
        };
        assert_eq!(code, "validation_error");
        assert_eq!(errors.0[0].field, "pin");
        let ServiceError::Invalid { errors, .. } =
            parse_body::<B>(Ok(Bytes::from_static(b"{\"pin\": \"1\", \"x\": 1}"))).unwrap_err()
        else {
            panic!("invalid expected")
        };
        assert_eq!(errors.0[0].field, "x");
    }
}
