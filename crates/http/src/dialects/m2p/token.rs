//! M2P access tokens: HS256 JWTs signed with the keyring's JWT key. A token
//! names the tenant, the API key it was issued for and whether that key may
//! read card data; it expires one hour after issue.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use cardcore_domain::{ApiKeyId, TenantId};
use cardcore_service::keyring::Purpose;
use cardcore_service::{Principal, Service, ServiceError, ServiceResult};
use serde::{Deserialize, Serialize};

/// Lifetime of a token, in seconds (M2P's `expires_in`).
pub const TTL_SECONDS: i64 = 3600;

const ISSUER: &str = "cardcore";
const AUDIENCE: &str = "m2p";
/// Longer input is not a token we made; refuse it before decoding.
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// What a token says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The API key the token was issued for.
    pub sub: ApiKeyId,
    /// The tenant.
    pub tid: TenantId,
    /// Whether the key may read card data.
    pub rev: bool,
    pub iat: i64,
    pub exp: i64,
}

fn kid(version: i32) -> String {
    format!("jwt-v{version}")
}

fn encode_json(value: &impl Serialize) -> ServiceResult<String> {
    serde_json::to_vec(value)
        .map(|v| B64.encode(v))
        .map_err(|e| ServiceError::caused("encoding a token part", e))
}

/// A token for `principal`, issued at `now` (Unix seconds).
pub async fn issue(service: &Service, principal: &Principal, now: i64) -> ServiceResult<String> {
    let api_key = principal.api_key_id.ok_or(ServiceError::Unauthorized)?;
    let (version, key) = service.keys().mac_key(Purpose::Jwt, None).await?;
    let header = Header {
        alg: "HS256".into(),
        typ: "JWT".into(),
        kid: kid(version),
    };
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: api_key,
        tid: principal.tenant.id,
        rev: principal.can_reveal,
        iat: now,
        exp: now + TTL_SECONDS,
    };
    let signing_input = format!("{}.{}", encode_json(&header)?, encode_json(&claims)?);
    let signature = B64.encode(key.hmac(signing_input.as_bytes()));
    Ok(format!("{signing_input}.{signature}"))
}

/// The claims of a token cardcore signed and that has not expired at `now`;
/// anything else is `Unauthorized` (which part failed is not said).
pub fn verify(service: &Service, token: &str, now: i64) -> ServiceResult<Claims> {
    let no = || ServiceError::Unauthorized;
    if token.len() > MAX_TOKEN_LEN {
        return Err(no());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(no());
    };
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(no)?;
    // Only the algorithm we sign with: no "none", no key confusion.
    if header.alg != "HS256" {
        return Err(no());
    }
    let version: i32 = header
        .kid
        .strip_prefix("jwt-v")
        .and_then(|v| v.parse().ok())
        .ok_or_else(no)?;
    let key = service.keys().held_mac_key(Purpose::Jwt, version)?.ok_or_else(no)?;
    let signature = B64.decode(s).map_err(|_| no())?;
    if !key.verify_hmac(format!("{h}.{p}").as_bytes(), &signature) {
        return Err(no());
    }
    let claims: Claims = B64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(no)?;
    if claims.iss != ISSUER || claims.aud != AUDIENCE || claims.exp <= now {
        return Err(no());
    }
    Ok(claims)
}
