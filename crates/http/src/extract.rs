//! Extractors that refuse bad input with a problem naming the field and the
//! reason: malformed JSON, wrong types, unknown fields, unknown enum values,
//! oversized bodies, bad UUIDs in paths, bad query parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Largest accepted body.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body, parsed strictly.
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent (an empty body reads as `{}`).
pub struct OptionalJson<T>(pub T);

fn json_problem(err: serde_path_to_error::Error<serde_json::Error>, bytes: &[u8]) -> Problem {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if (inner.is_syntax() || inner.is_eof()) && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        // serde_json reports a number where an enum string belongs as a
        // syntax error; the body is valid JSON, so it is the field's type.
        return Problem::invalid_field(
            &path,
            "has the wrong type: expected one of the documented string values",
        );
    }
    if inner.is_syntax() || inner.is_eof() {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", strip_position(&inner.to_string())),
        );
    }
    let message = strip_position(&inner.to_string());
    // serde names unknown and missing fields in the message, not the path.
    let field = if path == "." || path.is_empty() {
        field_in_message(&message).unwrap_or_else(|| "body".to_owned())
    } else if let Some(f) =
        field_in_message(&message).filter(|f| message.starts_with("missing field") && !path.ends_with(f.as_str()))
    {
        format!("{path}.{f}")
    } else {
        path
    };
    Problem::invalid_field(&field, humanize(&message))
}

/// serde says `unknown field \`x\`, expected one of ...`: pull out `x`.
fn field_in_message(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("missing field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// serde quotes the value it could not use ("invalid type: integer `4821`,
/// expected a string"); that value may be a PIN or an OTP sent with the
/// wrong type, so only what was expected is kept.
pub(crate) fn without_values(message: &str) -> String {
    for kind in ["invalid type", "invalid value", "invalid length"] {
        if let Some(rest) = message.strip_prefix(kind) {
            return match rest.find(", expected ") {
                Some(i) => format!("{kind}: expected {}", &rest[i + ", expected ".len()..]),
                None => kind.to_owned(),
            };
        }
    }
    message.to_owned()
}

fn humanize(message: &str) -> String {
    if message.starts_with("unknown field") {
        match message.find(", expected") {
            Some(i) => format!("is not a known field{}", &message[i..]),
            None => "is not a known field".to_owned(),
        }
    } else if message.starts_with("missing field") {
        "is required".to_owned()
    } else if let Some(rest) = message.strip_prefix("unknown variant ") {
        format!("has an unknown value {rest}")
    } else {
        without_values(message)
    }
}

/// Parses JSON with the path of the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_problem(e, bytes))?;
    de.end().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", strip_position(&e.to_string())),
        )
    })?;
    Ok(value)
}

/// Whether reading the body failed because the server's body timeout ran out.
fn body_timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(rejection);
    while let Some(e) = next {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = e.source();
    }
    false
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Problem> {
    let has_body_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
        });
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            )
        } else if body_timed_out(&rejection) {
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive in time (--body-read-timeout-ms)",
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "bad_request", "the body could not be read")
        }
    })?;
    if !bytes.is_empty() && has_body_type == Some(false) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    Ok(bytes)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "a JSON body is required",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse_json(b"{}").map(OptionalJson);
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Path parameters; a malformed one (e.g. not a UUID) names itself.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Take the raw strings, then parse them ourselves so the error names
        // the parameter and says what it must be.
        let Path(raw) = Path::<std::collections::BTreeMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|r| Problem::invalid_field("path", r.body_text()))?;
        let object: serde_json::Map<String, serde_json::Value> = raw
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let value = serde_json::Value::Object(object);
        serde_path_to_error::deserialize(value).map(ApiPath).map_err(|err| {
            let field = err.path().to_string();
            let message = err.into_inner().to_string();
            let message = if message.contains("UUID") {
                "must be a UUID".to_owned()
            } else {
                message
            };
            Problem::invalid_field(&field, message)
        })
    }
}

/// Query parameters, parsed strictly (unknown ones are refused, so a typo
/// is not silently ignored).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(url_parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = field_in_message(&message).unwrap_or(if path == "." { "query".into() } else { path });
            Problem::invalid_field(&field, humanize(&message))
        })
    }
}

fn url_parse(input: &[u8]) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        kind: Kind,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Virtual,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn field(json: &str) -> (u16, String, String) {
        let p = parse_json::<Body>(json.as_bytes()).unwrap_err();
        let f = p.errors.first().map(|e| e.field.clone()).unwrap_or_default();
        (p.status, p.code, f)
    }

    #[test]
    fn each_bad_input_class_names_its_field() {
        assert_eq!(field("{"), (400, "malformed_json".into(), "".into()));
        let p = parse_json::<Body>(br#"{"name": 4821, "kind": "virtual"}"#).unwrap_err();
        assert!(
            !serde_json::to_string(&p).unwrap().contains("4821"),
            "a wrong-typed value is never echoed"
        );
        assert_eq!(
            field(r#"{"name": 1, "kind": "virtual"}"#),
            (422, "validation_error".into(), "name".into())
        );
        assert_eq!(
            field(r#"{"name": "a", "kind": "plastic"}"#),
            (422, "validation_error".into(), "kind".into())
        );
        assert_eq!(
            field(r#"{"name": "a", "kind": "virtual", "x": 1}"#),
            (422, "validation_error".into(), "x".into())
        );
        assert_eq!(
            field(r#"{"kind": "virtual"}"#),
            (422, "validation_error".into(), "name".into())
        );
        assert_eq!(
            field(r#"{"name": "a", "kind": "virtual", "inner": {"n": -1}}"#),
            (422, "validation_error".into(), "inner.n".into())
        );
        assert_eq!(
            field(r#"{"name": "a", "kind": "virtual", "inner": {"m": 1}}"#),
            (422, "validation_error".into(), "inner.m".into())
        );
        assert_eq!(
            field(r#"{"name": "a", "kind": "virtual"} x"#),
            (400, "malformed_json".into(), "".into())
        );
    }
}
