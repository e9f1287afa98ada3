//! PIN and OTP endpoints. A PIN arrives in one of three forms: plain digits,
//! `encrypted_pin` (RSA-OAEP under the transport key) or `pin_block` (ISO
//! 9564 under a zone key); this module only parses them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardcore_crypto::Pin;
use cardcore_domain::otp::OtpPurpose;
use cardcore_domain::{Card, CardId, ZoneKeyId};
use cardcore_service::pins::{BlockFormat, NamedPin, OtpProof, PinInput};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::cards::ChangedCard;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, OptionalJson};
use crate::problem::Problem;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The card's id.
    id: CardId,
}

// The PIN bodies are parsed by hand (above and below) so that each refusal
// names the right field and never repeats a digit; these types are what the
// OpenAPI document shows of them, and the tests below hold the two together.

/// A PIN in clear: 4 to 12 digits (the program's length applies). Over TLS only.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PlainPin)]
#[allow(dead_code)]
struct PlainPinDoc {
    /// Digits only.
    #[schema(min_length = 4, max_length = 12)]
    pin: String,
}

/// The PIN digits encrypted with RSA-OAEP (SHA-256, MGF1-SHA-256) under the
/// key of `GET /v1/pin-encryption-key`, base64-encoded.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EncryptedPin)]
#[allow(dead_code)]
struct EncryptedPinDoc {
    #[schema(content_encoding = "base64")]
    encrypted_pin: String,
    /// The `key_id` of `GET /v1/pin-encryption-key` (`rsa-oaep-v<version>`).
    #[schema(pattern = "^rsa-oaep-v[0-9]+$")]
    key_id: String,
}

/// An ISO 9564 PIN block encrypted under one of the tenant's zone PIN keys,
/// bound to the card's PAN.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PinBlock)]
#[allow(dead_code)]
struct PinBlockDoc {
    /// The encrypted block, hexadecimal: 16 characters for ISO-0/ISO-3, 32 for ISO-4.
    #[schema(min_length = 16, max_length = 32)]
    pin_block: String,
    format: BlockFormatDoc,
    /// The zone PIN key; by default the tenant's newest key of the format's algorithm.
    key_id: Option<ZoneKeyId>,
}

/// `ISO-0`, `ISO-3` (double-length TDES zone key) or `ISO-4` (AES zone key);
/// `0`, `3` and `4` (strings or numbers) are accepted too, in any case.
/// ISO-1 is refused: it has no PAN binding.
#[derive(Deserialize, ToSchema)]
#[schema(as = PinBlockFormat)]
#[allow(dead_code)]
enum BlockFormatDoc {
    #[serde(rename = "ISO-0", alias = "0")]
    Iso0,
    #[serde(rename = "ISO-3", alias = "3")]
    Iso3,
    #[serde(rename = "ISO-4", alias = "4")]
    Iso4,
}

/// A PIN as an object: exactly one of the three forms.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = PinObject)]
#[allow(dead_code)]
enum PinObjectDoc {
    Plain(PlainPinDoc),
    Encrypted(EncryptedPinDoc),
    Block(PinBlockDoc),
}

/// The body of `PUT .../pin` and `pin/verify`: one of the three forms, or
/// `{"pin": {...}}` with the object form inside.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = PinRequest)]
#[allow(dead_code)]
enum PinBodyDoc {
    Plain(PlainPinDoc),
    Encrypted(EncryptedPinDoc),
    Block(PinBlockDoc),
    Nested(NestedPinDoc),
}

/// `{"pin": {...}}`: the object form inside `pin`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NestedPin)]
#[allow(dead_code)]
struct NestedPinDoc {
    pin: PinObjectDoc,
}

/// `old_pin` and `new_pin` of `pin/change`: digits, or one of the object forms.
#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum PinValueDoc {
    Digits(String),
    Object(PinObjectDoc),
}

impl utoipa::PartialSchema for PinValueDoc {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some("The PIN: digits in clear, or one of the object forms."))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Digits only."))
                    .min_length(Some(4))
                    .max_length(Some(12)),
            )
            .item(utoipa::openapi::Ref::from_schema_name(
                <PinObjectDoc as ToSchema>::name(),
            ))
            .into()
    }
}

impl ToSchema for PinValueDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "PinValue".into()
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((
            <PinObjectDoc as ToSchema>::name().into_owned(),
            <PinObjectDoc as utoipa::PartialSchema>::schema(),
        ));
        <PinObjectDoc as ToSchema>::schemas(schemas);
    }
}

/// Parses a block format: `ISO-0`, `ISO-3`, `ISO-4` (also `0`, `3`, `4`).
pub(crate) fn block_format(field: &str, v: Option<&Value>) -> Result<BlockFormat, Problem> {
    let text = match v {
        Some(Value::String(s)) => s.to_ascii_uppercase(),
        Some(Value::Number(n)) => n.to_string(),
        None => {
            return Err(Problem::invalid_field(
                field,
                "is required with pin_block: ISO-0, ISO-3 or ISO-4",
            ))
        }
        Some(_) => return Err(Problem::invalid_field(field, "must be ISO-0, ISO-3 or ISO-4")),
    };
    match text.trim_start_matches("ISO").trim_start_matches(['-', '_', ' ']) {
        "0" => Ok(BlockFormat::Iso0),
        "3" => Ok(BlockFormat::Iso3),
        "4" => Ok(BlockFormat::Iso4),
        "1" => Err(Problem::invalid_field(
            field,
            "ISO-1 carries no PAN binding and is not accepted; use ISO-4 (AES) or ISO-0/ISO-3 (TDES)",
        )),
        _ => Err(Problem::invalid_field(field, "must be ISO-0, ISO-3 or ISO-4")),
    }
}

fn plain(field: &str, s: &str) -> Result<PinInput, Problem> {
    Pin::parse(s)
        .map(PinInput::Plain)
        .map_err(|_| Problem::invalid_field(field, "must be a string of 4 to 12 digits"))
}

fn key_id(field: &str, v: Option<&Value>) -> Result<Option<ZoneKeyId>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| Problem::invalid_field(field, "must be a zone key id (a UUID)")),
        Some(_) => Err(Problem::invalid_field(field, "must be a string")),
    }
}

/// A PIN given as an object: `{pin}`, `{encrypted_pin, key_id}` or
/// `{pin_block, format, key_id?}`; its fields are named under `prefix`.
fn pin_object(prefix: Option<&'static str>, o: &serde_json::Map<String, Value>) -> Result<NamedPin, Problem> {
    let name = |key: &str| NamedPin::field(prefix, key);
    for k in o.keys() {
        if !["pin", "encrypted_pin", "key_id", "pin_block", "format"].contains(&k.as_str()) {
            return Err(Problem::invalid_field(
                &name(k),
                "is not a known field; a PIN is {pin}, {encrypted_pin, key_id} or {pin_block, format, key_id}",
            ));
        }
    }
    let given: Vec<&str> = ["pin", "encrypted_pin", "pin_block"]
        .into_iter()
        .filter(|k| o.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() != 1 {
        return Err(Problem::invalid_field(
            prefix.unwrap_or("pin"),
            "give exactly one of pin (digits), encrypted_pin (with key_id) or pin_block (with format)",
        ));
    }
    let input = match given[0] {
        "pin" => match &o["pin"] {
            Value::String(s) => plain(&name("pin"), s)?,
            _ => {
                return Err(Problem::invalid_field(
                    &name("pin"),
                    "must be a string of 4 to 12 digits",
                ))
            }
        },
        "encrypted_pin" => {
            let Value::String(ciphertext) = &o["encrypted_pin"] else {
                return Err(Problem::invalid_field(
                    &name("encrypted_pin"),
                    "must be a base64 string",
                ));
            };
            let Some(Value::String(key)) = o.get("key_id") else {
                return Err(Problem::invalid_field(
                    &name("key_id"),
                    "is required with encrypted_pin: the key_id from GET /v1/pin-encryption-key",
                ));
            };
            PinInput::Encrypted {
                ciphertext: ciphertext.clone(),
                key_id: Some(key.clone()),
            }
        }
        _ => {
            let Value::String(hex_block) = &o["pin_block"] else {
                return Err(Problem::invalid_field(&name("pin_block"), "must be a hex string"));
            };
            let block = hex::decode(hex_block.trim())
                .map_err(|_| Problem::invalid_field(&name("pin_block"), "must be hexadecimal"))?;
            PinInput::Block {
                block,
                format: block_format(&name("format"), o.get("format"))?,
                key_id: key_id(&name("key_id"), o.get("key_id"))?,
            }
        }
    };
    Ok(NamedPin { prefix, input })
}

/// A PIN given as a string (digits) or an object, in the field `field`.
fn pin_value(field: &'static str, v: &Value) -> Result<NamedPin, Problem> {
    match v {
        Value::String(s) => Ok(NamedPin {
            prefix: Some(field),
            input: plain(field, s)?,
        }),
        Value::Object(o) => pin_object(Some(field), o),
        _ => Err(Problem::invalid_field(
            field,
            "must be a string of digits, {encrypted_pin, key_id} or {pin_block, format, key_id}",
        )),
    }
}

/// The top-level body of `PUT /pin` and `pin/verify`: `{pin}` (digits, or an
/// object as below), `{encrypted_pin, key_id}` or `{pin_block, format, key_id?}`.
fn top_level_pin(body: &Value) -> Result<NamedPin, Problem> {
    let Value::Object(o) = body else {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    };
    if let Some(Value::Object(inner)) = o.get("pin") {
        if o.len() != 1 {
            return Err(Problem::invalid_field("pin", "give the PIN object alone"));
        }
        return pin_object(Some("pin"), inner);
    }
    pin_object(None, o)
}

/// `PUT /v1/cards/{id}/pin`: set or reset, partner-authorised.
#[utoipa::path(
    put,
    path = "/v1/cards/{id}/pin",
    tag = "PINs and OTPs",
    operation_id = "setPin",
    summary = "Set or reset the PIN",
    description = "Partner-authorised (no OTP). Allowed on INACTIVE, ACTIVE and LOCKED cards. Resets the try \
                   counter. Every failure to decrypt or decode an `encrypted_pin` or a `pin_block` is one generic \
                   answer (which check failed would be an oracle for PIN digits).",
    params(IdPath),
    request_body = PinBodyDoc,
    responses(
        (status = 200, description = "The card (`pin_status` SET).", body = Card),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_card_status` (with `current_status`): not INACTIVE, ACTIVE or LOCKED."),
        (status = 422, description = "`pin_too_weak` (with `rule`: `repeated_digits`, `sequential_digits`, \
                                      `birth_date`, `common_pin`); `pin_invalid` (wrong length for the program); \
                                      `encrypted_pin_invalid`; `pin_block_invalid`; `validation_error` naming the field."),
        (status = 429, description = "`rate_limited`: over the per-card limit on PIN and OTP calls (or the \
                                      per-API-key limit); nothing was done."),
    )
)]
pub async fn set(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<Value>,
) -> Result<Json<Card>, ApiError> {
    let pin = top_level_pin(&b).map_err(ApiError::from)?;
    Ok(Json(s.service.set_pin(&ctx, p.id, pin, None).await?))
}

/// The outcome of a verification.
#[derive(Serialize, ToSchema)]
#[schema(as = PinVerification)]
pub struct Verified {
    valid: bool,
    /// Wrong PINs left before the PIN is blocked.
    remaining_attempts: u32,
}

/// `POST /v1/cards/{id}/pin/verify`.
#[utoipa::path(
    post,
    path = "/v1/cards/{id}/pin/verify",
    tag = "PINs and OTPs",
    operation_id = "verifyPin",
    summary = "Verify the PIN",
    description = "Allowed on ACTIVE and LOCKED cards. A wrong PIN is a `200` with `valid: false` and counts: the \
                   last allowed wrong one (3 by default) sets `pin_status` BLOCKED.",
    params(IdPath),
    request_body = PinBodyDoc,
    responses(
        (status = 200, description = "Right or wrong.", body = Verified),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_card_status` (with `current_status`); `pin_not_set`; `pin_blocked`."),
        (status = 422, description = "`pin_invalid`; `encrypted_pin_invalid`; `pin_block_invalid`; `validation_error` naming the field."),
        (status = 429, description = "`rate_limited`: over the per-card limit on PIN and OTP calls (or the \
                                      per-API-key limit); nothing was done."),
    )
)]
pub async fn verify(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<Value>,
) -> Result<Json<Verified>, ApiError> {
    let pin = top_level_pin(&b).map_err(ApiError::from)?;
    let out = s.service.verify_pin(&ctx, p.id, pin).await?;
    Ok(Json(Verified {
        valid: out.valid,
        remaining_attempts: out.remaining_attempts,
    }))
}

/// A PIN change with the cardholder's consent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PinChangeRequest)]
pub struct ChangeBody {
    #[schema(value_type = PinValueDoc)]
    old_pin: Value,
    #[schema(value_type = PinValueDoc)]
    new_pin: Value,
    /// The 6-digit code of the `otp.created` event.
    #[schema(min_length = 6, max_length = 6)]
    otp: String,
    /// The `trace_number` of `POST .../otp`.
    trace_number: String,
}

/// `POST /v1/cards/{id}/pin/change`: current PIN, new PIN and an OTP.
#[utoipa::path(
    post,
    path = "/v1/cards/{id}/pin/change",
    tag = "PINs and OTPs",
    operation_id = "changePin",
    summary = "Change the PIN with an OTP",
    description = "Checks, in order: input shape, card status, OTP lock, PIN status, the new PIN's policy except \
                   `same_as_current` (refused before the OTP is spent), the OTP (a wrong one counts toward the lock), \
                   the current PIN (a wrong one counts on the try counter), then `same_as_current`: nothing about the \
                   current PIN is answered before both proofs passed. An OTP authorises one attempt.",
    params(IdPath),
    request_body = ChangeBody,
    responses(
        (status = 200, description = "The card.", body = Card),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_card_status` (with `current_status`); `otp_locked` (with \
                                      `retry_after_seconds` and `Retry-After`); `pin_not_set`; `pin_blocked`."),
        (status = 422, description = "`pin_too_weak` (with `rule`, `same_as_current` included); `pin_invalid`; \
                                      `otp_invalid` (with `remaining_attempts`); `otp_expired`; `pin_incorrect` \
                                      (with `remaining_attempts`); `encrypted_pin_invalid`; `pin_block_invalid`; \
                                      `validation_error` naming the field."),
        (status = 429, description = "`rate_limited`: over the per-card limit on PIN and OTP calls (or the \
                                      per-API-key limit); nothing was done."),
    )
)]
pub async fn change(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<ChangeBody>,
) -> Result<Json<Card>, ApiError> {
    let old = pin_value("old_pin", &b.old_pin).map_err(ApiError::from)?;
    let new = pin_value("new_pin", &b.new_pin).map_err(ApiError::from)?;
    let otp = OtpProof {
        trace_number: b.trace_number,
        code: b.otp,
    };
    Ok(Json(s.service.change_pin(&ctx, p.id, old, new, otp).await?))
}

/// `POST /v1/cards/{id}/pin/unblock`: clears the try counter (back office).
#[utoipa::path(
    post,
    path = "/v1/cards/{id}/pin/unblock",
    tag = "PINs and OTPs",
    operation_id = "unblockPin",
    summary = "Unblock the PIN",
    description = "Clears the try counter (back office). A PIN that is not blocked and has no failures answers `changed: false`.",
    params(IdPath),
    responses(
        (status = 200, description = "The card.", body = ChangedCard),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_card_status` (with `current_status`); `pin_not_set`."),
        (status = 422, description = "`validation_error`: `id` is not a UUID."),
    )
)]
pub async fn unblock(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<ChangedCard>, ApiError> {
    Ok(Json(s.service.unblock_pin(&ctx, p.id).await?.into()))
}

/// What the OTP is for (optional body; an empty one is `{}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OtpRequest)]
pub struct OtpBody {
    /// `pin_change` (the default) or `three_ds` (a 3-D Secure challenge
    /// code, sent to P100-format endpoints as Card 3DS Code).
    #[serde(default = "pin_change")]
    purpose: OtpPurpose,
}

fn pin_change() -> OtpPurpose {
    OtpPurpose::PinChange
}

/// The OTP's handle; the code itself goes out only in the `otp.created` event.
#[derive(Serialize, ToSchema)]
pub struct OtpCreated {
    trace_number: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: cardcore_domain::Timestamp,
}

/// `POST /v1/cards/{id}/otp`: the code goes out as an `otp.created` event.
#[utoipa::path(
    post,
    path = "/v1/cards/{id}/otp",
    tag = "PINs and OTPs",
    operation_id = "createOtp",
    summary = "Request an OTP",
    description = "A 6-digit code, valid 5 minutes, single use, bound to the card, the purpose and the trace \
                   number. The code is never in an answer: it goes to the tenant's event log and webhooks as \
                   `otp.created` (with the cardholder's phone), for the tenant to send.",
    params(IdPath),
    request_body = Option<OtpBody>,
    responses(
        (status = 201, description = "The OTP's trace number and expiry.", body = OtpCreated),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 409, description = "`invalid_card_status` (with `current_status`); `otp_locked` (with \
                                      `retry_after_seconds` and `Retry-After`)."),
        (status = 422, description = "`validation_error`: an unknown `purpose`, or `id` is not a UUID."),
        (status = 429, description = "`rate_limited` with `Retry-After`: more than 5 codes per card and purpose \
                                      in 15 minutes, or over the per-card limit on PIN and OTP calls (or the \
                                      per-API-key limit)."),
    )
)]
pub async fn create_otp(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    OptionalJson(b): OptionalJson<OtpBody>,
) -> Result<(StatusCode, Json<OtpCreated>), ApiError> {
    let issued = s.service.create_otp(&ctx, p.id, b.purpose).await?;
    Ok((
        StatusCode::CREATED,
        Json(OtpCreated {
            trace_number: issued.trace_number,
            expires_at: issued.expires_at,
        }),
    ))
}

/// The RSA transport key to encrypt PINs under.
#[derive(Serialize, ToSchema)]
#[schema(as = PinEncryptionKey)]
pub struct EncryptionKey {
    /// The `key_id` to send with an `encrypted_pin`.
    #[schema(pattern = "^rsa-oaep-v[0-9]+$")]
    key_id: String,
    #[schema(schema_with = transport_algorithm)]
    algorithm: &'static str,
    /// The 2048-bit RSA public key, PEM (SubjectPublicKeyInfo).
    public_key_pem: String,
}

fn transport_algorithm() -> utoipa::openapi::Object {
    crate::openapi::string_enum([cardcore_crypto::transport::ALGORITHM])
}

/// `GET /v1/pin-encryption-key`.
#[utoipa::path(
    get,
    path = "/v1/pin-encryption-key",
    tag = "PINs and OTPs",
    operation_id = "getPinEncryptionKey",
    summary = "Get the PIN encryption key",
    description = "The tenant's own public key for `encrypted_pin` (RSA-OAEP, SHA-256), made on the tenant's first \
                   ask; a ciphertext made for another tenant's key does not decrypt. After `cardcore keys rotate` \
                   this answers the new version; the previous one keeps decrypting for the grace period the rotation \
                   set (24 hours by default), after which its `key_id` is refused with a 422 pointing here.",
    responses(
        (status = 200, description = "The current key.", body = EncryptionKey),
    )
)]
pub async fn encryption_key(State(s): State<AppState>, Auth(ctx): Auth) -> Result<Json<EncryptionKey>, ApiError> {
    let k = s.service.pin_encryption_key(&ctx).await?;
    Ok(Json(EncryptionKey {
        key_id: k.key_id,
        algorithm: k.algorithm,
        public_key_pem: k.public_key_pem,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The documented PIN bodies (the `*Doc` types of the OpenAPI document)
    /// and the hand-written parser accept and refuse the same shapes.
    #[test]
    fn the_documented_pin_bodies_are_the_parsed_ones() {
        let zone = "0195f3a0-1c2d-7000-8000-00000000abcd";
        let cases = [
            (json!({"pin": "4821"}), true),
            (json!({"encrypted_pin": "AAAA", "key_id": "rsa-oaep-v1"}), true),
            (json!({"pin_block": "0123456789ABCDEF", "format": "ISO-0"}), true),
            (
                json!({"pin_block": "0123456789ABCDEF", "format": "ISO-3", "key_id": null}),
                true,
            ),
            (
                json!({"pin_block": "0123456789ABCDEF0123456789ABCDEF", "format": "ISO-4", "key_id": zone}),
                true,
            ),
            (json!({"pin": {"pin": "4821"}}), true),
            (json!({"pin": {"encrypted_pin": "AAAA", "key_id": "rsa-oaep-v1"}}), true),
            (
                json!({"pin": {"pin_block": "0123456789ABCDEF", "format": "ISO-0"}}),
                true,
            ),
            (json!({}), false),
            (
                json!({"pin": "4821", "encrypted_pin": "AAAA", "key_id": "rsa-oaep-v1"}),
                false,
            ),
            (json!({"pin_block": "0123456789ABCDEF", "format": "ISO-1"}), false),
            (json!({"pin_block": "0123456789ABCDEF"}), false),
            (
                json!({"pin_block": "0123456789ABCDEF", "format": "ISO-0", "key_id": "k1"}),
                false,
            ),
            (json!({"encrypted_pin": "AAAA"}), false),
            (json!({"pin": "4821", "x": 1}), false),
            (json!({"pin": {"pin": "4821"}, "x": 1}), false),
            (json!({"pin": 4821}), false),
            (json!("4821"), false),
        ];
        for (body, ok) in cases {
            let documented = serde_json::from_value::<PinBodyDoc>(body.clone()).is_ok();
            let parsed = top_level_pin(&body).is_ok();
            assert_eq!((documented, parsed), (ok, ok), "{body}");
        }
        for (value, ok) in [
            (json!("4821"), true),
            (json!({"encrypted_pin": "AAAA", "key_id": "rsa-oaep-v1"}), true),
            (json!({"pin": "4821"}), true),
            (json!(4821), false),
            (json!({"pin": {"pin": "4821"}}), false),
        ] {
            let documented = serde_json::from_value::<PinValueDoc>(value.clone()).is_ok();
            let parsed = pin_value("new_pin", &value).is_ok();
            assert_eq!((documented, parsed), (ok, ok), "{value}");
        }
    }
}

/// A PIN widget session to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinSessionBody {
    /// What the cardholder will do in the widget.
    #[schema(schema_with = pin_session_purpose)]
    purpose: String,
    /// The origin of the page that embeds the widget: `https://host[:port]`,
    /// or `http://localhost[:port]` / `http://127.0.0.1[:port]` for development.
    allowed_origin: String,
}

fn pin_session_purpose() -> utoipa::openapi::Object {
    crate::openapi::string_enum(["set", "change", "verify"])
}

/// A new PIN widget session: the token is shown once.
#[derive(Serialize, ToSchema)]
pub struct PinSessionCreated {
    /// For `/widget/pin?session=...`: one use, bound to the card, the purpose and the origin.
    session_token: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: cardcore_domain::Timestamp,
}

/// `POST /v1/cards/{id}/pin-sessions`.
#[utoipa::path(
    post,
    path = "/v1/cards/{id}/pin-sessions",
    tag = "PINs and OTPs",
    operation_id = "createPinSession",
    summary = "Start a PIN widget session",
    description = "A token for the PIN widget (`/widget/pin?session=...` in an iframe of a page of \
                   `allowed_origin`): one use, 5 minutes, bound to this card, the purpose and the origin. The \
                   cardholder types the PIN in the widget, which encrypts it under the tenant's transport key \
                   and sends it to cardcore; the tenant's page learns only `{ok, pin_status}`.",
    params(IdPath),
    request_body = PinSessionBody,
    responses(
        (status = 201, description = "The session token (shown once) and its expiry.", body = PinSessionCreated),
        (status = 404, description = "`card_not_found`: no such card in this tenant."),
        (status = 422, description = "`validation_error`: `purpose` is not set, change or verify; `allowed_origin` \
                                      is not an origin; or `id` is not a UUID."),
    )
)]
pub async fn create_pin_session(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<PinSessionBody>,
) -> Result<(StatusCode, Json<PinSessionCreated>), ApiError> {
    let purpose = cardcore_service::console::PinPurpose::parse(&b.purpose)
        .ok_or_else(|| cardcore_service::ServiceError::invalid("purpose", "must be set, change or verify"))?;
    let session = s
        .service
        .create_pin_session(&ctx, p.id, purpose, &b.allowed_origin)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PinSessionCreated {
            session_token: session.token.to_string(),
            expires_at: session.expires_at,
        }),
    ))
}
