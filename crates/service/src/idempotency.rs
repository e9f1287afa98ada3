//! Idempotency keys: a request sent again with the same key within the
//! TTL gets the first answer back instead of running again. The state is in
//! the database, so it holds across nodes and restarts.
//!
//! Keys are scoped per API key: a second key of the same tenant with the
//! same `Idempotency-Key` is another request and never gets the first
//! key's answer. The request fingerprint is an HMAC under the keyring's
//! idempotency key, so the database holds nothing a dictionary of request
//! bodies (`{"pin":"NNNN"}` has 10^4) turns back into a PIN or an OTP.
//! Stored answers are sealed under the data key (bound to the tenant, the
//! API key and the `Idempotency-Key`): they can hold personal data, and one
//! (a new webhook endpoint) holds a secret that is otherwise never kept in
//! clear.

use std::time::Duration;

use cardcore_crypto::verifier::{label, MacKey};
use cardcore_domain::TenantId;
use cardcore_store::{IdempotencyBegin, IdempotencyStart, IdempotentResponse, SealedData};
use rand::rngs::OsRng;

use crate::keyring::Purpose;
use crate::{Principal, Service, ServiceError, ServiceResult};

/// An in-flight key older than this is presumed dead (its node crashed or
/// its client hung up) and may be taken over by a retry.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(60);

/// What to do with a request that carries an idempotency key.
#[derive(Debug)]
pub enum Idempotency {
    /// Run it, then [`Service::complete_idempotent`] or [`Service::abandon_idempotent`].
    Proceed(IdempotencyTicket),
    /// It ran already: answer this.
    Replay(ReplayedResponse),
    /// The first request with the key is still running.
    InFlight,
    /// The key was used for another request.
    Reused,
}

/// Proof that this request owns its key.
#[derive(Debug, Clone)]
pub struct IdempotencyTicket {
    pub tenant: TenantId,
    /// The key as stored: the API key's id, `/`, the `Idempotency-Key`.
    pub key: String,
    token: uuid::Uuid,
}

/// A request sent with an `Idempotency-Key`, as the fingerprint covers it.
#[derive(Debug, Clone, Copy)]
pub struct IdempotentRequest<'a> {
    pub method: &'a str,
    /// The path with its query string.
    pub target: &'a str,
    pub body: &'a [u8],
}

/// The key as stored: scoped to the API key (the CLI has none).
fn scoped_key(principal: &Principal, key: &str) -> String {
    match principal.api_key_id {
        Some(id) => format!("{id}/{key}"),
        None => format!("cli/{key}"),
    }
}

/// The stored fingerprint of a request: the idempotency key's version (4
/// bytes, big-endian), then HMAC-SHA256 under that key over the tenant, the
/// scoped key, method, path and body, each length-prefixed.
pub(crate) fn fingerprint(
    mac: &MacKey,
    version: i32,
    tenant: TenantId,
    scoped_key: &str,
    req: &IdempotentRequest<'_>,
) -> Vec<u8> {
    let mut out = version.to_be_bytes().to_vec();
    out.extend_from_slice(&mac.compute(
        label::IDEMPOTENCY,
        &[
            tenant.as_uuid().as_bytes(),
            scoped_key.as_bytes(),
            req.method.as_bytes(),
            req.target.as_bytes(),
            req.body,
        ],
    ));
    out
}

/// A stored answer, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

fn body_aad(tenant: TenantId, key: &str) -> String {
    format!("cardcore/idempotency/{tenant}/{key}")
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Service {
    /// Starts a request with an idempotency key, scoped to the caller's API
    /// key; the request (method, path, body) is fingerprinted under the
    /// idempotency key of the keyring.
    pub async fn begin_idempotent(
        &self,
        principal: &Principal,
        key: &str,
        request: &IdempotentRequest<'_>,
    ) -> ServiceResult<Idempotency> {
        let tenant = principal.tenant.id;
        let (key, fingerprint) = self.idempotency_fingerprint(principal, key, request).await?;
        let key = key.as_str();
        let now = self.now();
        let start = IdempotencyStart {
            tenant_id: tenant,
            key,
            fingerprint: &fingerprint,
            now,
            takeover_before: now - chrono_of(TAKEOVER_AFTER),
            expired_before: now - chrono_of(self.config.idempotency_ttl),
        };
        Ok(match self.store.begin_idempotent(&start).await? {
            IdempotencyBegin::Started { token } => Idempotency::Proceed(IdempotencyTicket {
                tenant,
                key: key.to_owned(),
                token,
            }),
            IdempotencyBegin::Completed(stored) => {
                let (_, data_key) = self.keys.data_key(Some(stored.body.key_version)).await?;
                let body = data_key
                    .open(body_aad(tenant, key).as_bytes(), &stored.body.ciphertext)
                    .map_err(|_| ServiceError::internal("a stored idempotent answer does not open"))?;
                Idempotency::Replay(ReplayedResponse {
                    status: stored.status,
                    content_type: stored.content_type,
                    body: body.expose().to_vec(),
                })
            }
            IdempotencyBegin::InFlight => Idempotency::InFlight,
            IdempotencyBegin::Mismatch => Idempotency::Reused,
        })
    }

    /// The key as stored (scoped to the caller's API key) and the request's
    /// fingerprint under the newest idempotency key.
    pub async fn idempotency_fingerprint(
        &self,
        principal: &Principal,
        key: &str,
        request: &IdempotentRequest<'_>,
    ) -> ServiceResult<(String, Vec<u8>)> {
        let key = scoped_key(principal, key);
        let (version, mac) = self.keys.mac_key(Purpose::Idempotency, None).await?;
        let fingerprint = fingerprint(&mac, version, principal.tenant.id, &key, request);
        Ok((key, fingerprint))
    }

    /// Keeps the answer of a request for replay.
    pub async fn complete_idempotent(
        &self,
        ticket: &IdempotencyTicket,
        status: u16,
        content_type: Option<String>,
        body: &[u8],
    ) -> ServiceResult<()> {
        let (version, data_key) = self.keys.data_key(None).await?;
        let sealed = data_key.seal(body_aad(ticket.tenant, &ticket.key).as_bytes(), body, &mut OsRng);
        let response = IdempotentResponse {
            status,
            content_type,
            body: SealedData {
                ciphertext: sealed,
                key_version: version,
            },
        };
        if !self
            .store
            .finish_idempotent(ticket.tenant, &ticket.key, ticket.token, &response, self.now())
            .await?
        {
            tracing::warn!("an idempotency key was taken over before its first request finished");
        }
        Ok(())
    }

    /// Forgets a request whose outcome is unknown, so that a retry with the
    /// same key runs again.
    pub async fn abandon_idempotent(&self, ticket: &IdempotencyTicket) -> ServiceResult<()> {
        self.store
            .abandon_idempotent(ticket.tenant, &ticket.key, ticket.token)
            .await?;
        Ok(())
    }

    /// Deletes the keys older than the TTL; returns how many.
    pub async fn purge_idempotency_keys(&self) -> ServiceResult<u64> {
        let cut = self.now() - chrono_of(self.config.idempotency_ttl);
        Ok(self.store.purge_idempotency_keys(cut).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardcore_crypto::SecretBytes;
    use sha2::{Digest, Sha256};

    fn mac(byte: u8) -> MacKey {
        MacKey::new(&SecretBytes::from_slice(&[byte; 32])).unwrap()
    }

    fn req<'a>(method: &'a str, target: &'a str, body: &'a [u8]) -> IdempotentRequest<'a> {
        IdempotentRequest { method, target, body }
    }

    #[test]
    fn fingerprints_are_keyed_versioned_and_tell_every_part_apart() {
        let t = TenantId::new();
        let k = mac(1);
        let body: &[u8] = br#"{"pin":"4821"}"#;
        let base = fingerprint(&k, 1, t, "a/k", &req("PUT", "/v1/cards/x/pin", body));
        assert_eq!(base.len(), 4 + 32);
        assert_eq!(&base[..4], &1i32.to_be_bytes());
        assert_eq!(base, fingerprint(&k, 1, t, "a/k", &req("PUT", "/v1/cards/x/pin", body)));
        for other in [
            fingerprint(&mac(2), 1, t, "a/k", &req("PUT", "/v1/cards/x/pin", body)),
            fingerprint(&k, 1, TenantId::new(), "a/k", &req("PUT", "/v1/cards/x/pin", body)),
            fingerprint(&k, 1, t, "b/k", &req("PUT", "/v1/cards/x/pin", body)),
            fingerprint(&k, 1, t, "a/k", &req("POST", "/v1/cards/x/pin", body)),
            fingerprint(&k, 1, t, "a/k", &req("PUT", "/v1/cards/y/pin", body)),
            fingerprint(&k, 1, t, "a/k", &req("PUT", "/v1/cards/x/pin", br#"{"pin":"4822"}"#)),
        ] {
            assert_ne!(base[4..], other[4..]);
        }
        // Length framing: bytes cannot move between parts.
        assert_ne!(
            fingerprint(&k, 1, t, "a/k", &req("POST", "/a", b"b")),
            fingerprint(&k, 1, t, "a/k", &req("POST", "/ab", b""))
        );
        // Not an unkeyed hash of the body.
        assert_ne!(base[4..], Sha256::digest(body)[..]);
    }

    #[test]
    fn keys_are_scoped_per_api_key() {
        let tenant = cardcore_domain::Tenant {
            id: TenantId::new(),
            name: "t".into(),
            default_program_id: cardcore_domain::ProgramId::new(),
            created_at: crate::now(),
        };
        let a = Principal {
            tenant: tenant.clone(),
            api_key_id: Some(cardcore_domain::ApiKeyId::new()),
            can_reveal: true,
        };
        let b = Principal {
            api_key_id: Some(cardcore_domain::ApiKeyId::new()),
            ..a.clone()
        };
        assert_ne!(scoped_key(&a, "k"), scoped_key(&b, "k"));
        assert_eq!(scoped_key(&a, "k"), scoped_key(&a, "k"));
        assert!(scoped_key(&a, "k").ends_with("/k"));
    }
}
