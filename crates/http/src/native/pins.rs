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

use super::cards::ChangedCard;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, OptionalJson};
use crate::problem::Problem;
use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct IdPath {
    id: CardId,
}

/// Parses a block format: `ISO-0`, `ISO-3`, `ISO-4` (also `0`, `3`, `4`).
fn block_format(field: &str, v: Option<&Value>) -> Result<BlockFormat, Problem> {
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
                key_id: key.clone(),
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
pub async fn set(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
    ApiJson(b): ApiJson<Value>,
) -> Result<Json<Card>, ApiError> {
    let pin = top_level_pin(&b).map_err(ApiError::from)?;
    Ok(Json(s.service.set_pin(&ctx, p.id, pin, None).await?))
}

#[derive(Serialize)]
pub struct Verified {
    valid: bool,
    remaining_attempts: u32,
}

/// `POST /v1/cards/{id}/pin/verify`.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    old_pin: Value,
    new_pin: Value,
    otp: String,
    trace_number: String,
}

/// `POST /v1/cards/{id}/pin/change`: current PIN, new PIN and an OTP.
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
pub async fn unblock(
    State(s): State<AppState>,
    Auth(ctx): Auth,
    ApiPath(p): ApiPath<IdPath>,
) -> Result<Json<ChangedCard>, ApiError> {
    Ok(Json(s.service.unblock_pin(&ctx, p.id).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpBody {
    #[serde(default = "pin_change")]
    purpose: OtpPurpose,
}

fn pin_change() -> OtpPurpose {
    OtpPurpose::PinChange
}

#[derive(Serialize)]
pub struct OtpCreated {
    trace_number: String,
    expires_at: cardcore_domain::Timestamp,
}

/// `POST /v1/cards/{id}/otp`: the code goes out as an `otp.created` event.
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

#[derive(Serialize)]
pub struct EncryptionKey {
    key_id: String,
    algorithm: &'static str,
    public_key_pem: String,
}

/// `GET /v1/pin-encryption-key`.
pub async fn encryption_key(State(s): State<AppState>, Auth(_ctx): Auth) -> Result<Json<EncryptionKey>, ApiError> {
    let k = s.service.pin_encryption_key().await?;
    Ok(Json(EncryptionKey {
        key_id: k.key_id,
        algorithm: k.algorithm,
        public_key_pem: k.public_key_pem,
    }))
}
