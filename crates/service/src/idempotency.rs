//! Idempotency keys: a request sent again with the same key within the
//! TTL gets the first answer back instead of running again. The state is in
//! the database, so it holds across nodes and restarts.
//!
//! Stored answers are sealed under the data key (bound to the tenant and
//! the key): they can hold personal data, and one (a new webhook endpoint)
//! holds a secret that is otherwise never kept in clear.

use std::time::Duration;

use cardcore_domain::TenantId;
use cardcore_store::{IdempotencyBegin, IdempotencyStart, IdempotentResponse, SealedData};
use rand::rngs::OsRng;

use crate::{Service, ServiceError, ServiceResult};

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
    pub key: String,
    token: uuid::Uuid,
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
    /// Starts a request with an idempotency key (scoped to the tenant);
    /// `fingerprint` identifies the request (method, path, body).
    pub async fn begin_idempotent(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &[u8],
    ) -> ServiceResult<Idempotency> {
        let now = self.now();
        let start = IdempotencyStart {
            tenant_id: tenant,
            key,
            fingerprint,
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
                    .map_err(|_| ServiceError::Internal("a stored idempotent answer does not open".into()))?;
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
