//! The tenant's authorization endpoint: its own decision service, asked
//! after cardcore's own checks passed (`PUT /v1/authorization-endpoint`).
//!
//! A request is `{"type": "authorization.request", "data": <the
//! authorization, status "PENDING">}`, signed as webhooks are (Standard
//! Webhooks headers, the endpoint's own `whsec_` secret); the answer is
//! `{"approved": true | false, "reason"?: "..."}`. No answer within the
//! endpoint's `timeout_ms` (connecting included), a non-2xx or a malformed
//! answer: the endpoint's `on_timeout` stands in. The URL obeys the webhook
//! network rules ([`crate::egress`]), at `PUT` and again at every request
//! (the transport resolves through the same rules).
//!
//! The HTTP transport is the webhooks crate's ([`DecisionTransport`],
//! installed at start-up), so this crate needs no HTTP client; the rules
//! (timeout, what counts as an answer, stand-in) are here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cardcore_crypto::webhook::WebhookSecret;
use cardcore_domain::{TenantId, Timestamp};
use cardcore_store::{AuthorizationEndpointRecord, OnTimeout, SealedData};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::webhooks::validate_url;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Shortest and longest wait for a tenant's answer, and the default.
pub const MIN_TIMEOUT_MS: u32 = 100;
pub const MAX_TIMEOUT_MS: u32 = 1500;
pub const DEFAULT_TIMEOUT_MS: u32 = 800;

/// Most bytes of an answer read; a longer answer is malformed.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Longest `reason` kept from a tenant's answer (longer ones are cut).
pub const MAX_REASON_CHARS: usize = 200;

/// The request's `type`.
pub const REQUEST_TYPE: &str = "authorization.request";

/// An endpoint as the caller sent it.
#[derive(Debug, Clone)]
pub struct SetAuthorizationEndpoint {
    pub url: String,
    /// None: [`DEFAULT_TIMEOUT_MS`].
    pub timeout_ms: Option<u32>,
    /// None: `decline` (an unanswered authorization is declined, as Lithic
    /// and Stripe do by default).
    pub on_timeout: Option<OnTimeout>,
    /// Make a new secret although the tenant has one.
    pub rotate_secret: bool,
}

/// The endpoint as a tenant sees it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationEndpoint {
    pub url: String,
    pub timeout_ms: u32,
    pub on_timeout: OnTimeout,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A `PUT` answer: the endpoint, and its secret when a new one was made
/// (the first `PUT`, or `rotate_secret`), shown this once.
pub struct SetAuthorizationEndpointResult {
    pub endpoint: AuthorizationEndpoint,
    pub secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for SetAuthorizationEndpointResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SetAuthorizationEndpointResult({:?}, [redacted])",
            self.endpoint.on_timeout
        )
    }
}

/// What the tenant's decision service decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantDecision {
    /// It answered in time: approve.
    Approved,
    /// It answered in time: decline, with its reason if it gave one.
    Declined { reason: Option<String> },
    /// No usable answer in time: `on_timeout` decided.
    StandIn { approved: bool },
}

/// What the transport brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportAnswer {
    /// The endpoint answered: its status and up to [`MAX_ANSWER_BYTES`] +
    /// 1 bytes of its body (more marks it too long).
    Answered { status: u16, body: Vec<u8> },
    /// No answer: why (for the log; never the URL nor the body).
    Failed(String),
}

/// A request to a tenant's decision service, ready to send.
pub struct DecisionRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Sends a [`DecisionRequest`] (an HTTP POST) through the webhook network
/// rules; implemented by `cardcore-webhooks`, installed at start-up.
pub trait DecisionTransport: Send + Sync {
    fn post<'a>(&'a self, request: &'a DecisionRequest) -> Pin<Box<dyn Future<Output = TransportAnswer> + Send + 'a>>;
}

/// What a node read about tenants' endpoints, trusted for
/// [`crate::settings::SETTINGS_TTL`] (a change made on another node holds
/// here within 5 s; on this node at once), so an authorization of a tenant
/// without an endpoint costs no extra read.
#[derive(Default)]
pub(crate) struct EndpointCache {
    entries: RwLock<HashMap<TenantId, (Option<AuthorizationEndpointRecord>, Instant)>>,
}

impl EndpointCache {
    fn get(&self, tenant: TenantId) -> Option<Option<AuthorizationEndpointRecord>> {
        let entries = self.entries.read().ok()?;
        let (record, at) = entries.get(&tenant)?;
        (at.elapsed() < crate::settings::SETTINGS_TTL).then(|| record.clone())
    }

    fn put(&self, tenant: TenantId, record: Option<AuthorizationEndpointRecord>) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (_, at)| at.elapsed() < crate::settings::SETTINGS_TTL);
            entries.insert(tenant, (record, Instant::now()));
        }
    }

    fn forget(&self, tenant: TenantId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(&tenant);
        }
    }
}

fn secret_aad(tenant: TenantId) -> String {
    format!("cardcore/authorization-endpoint-secret/{tenant}")
}

fn view(rec: &AuthorizationEndpointRecord) -> AuthorizationEndpoint {
    AuthorizationEndpoint {
        url: rec.url.clone(),
        timeout_ms: rec.timeout_ms,
        on_timeout: rec.on_timeout,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
    }
}

fn audit_json(e: &AuthorizationEndpoint) -> serde_json::Value {
    serde_json::json!({ "url": e.url, "timeout_ms": e.timeout_ms, "on_timeout": e.on_timeout })
}

/// Reads a tenant's answer: a 2xx whose body is a JSON object with a
/// boolean `approved` (and optionally a string `reason`); anything else is
/// None (malformed).
pub fn read_answer(status: u16, body: &[u8]) -> Option<TenantDecision> {
    if !(200..300).contains(&status) || body.len() > MAX_ANSWER_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let approved = object.get("approved")?.as_bool()?;
    let reason = match object.get("reason") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(r)) => Some(r.chars().take(MAX_REASON_CHARS).collect()),
        Some(_) => return None,
    };
    Some(if approved {
        TenantDecision::Approved
    } else {
        TenantDecision::Declined { reason }
    })
}

impl Service {
    /// Sets (or replaces) the tenant's authorization endpoint. The secret is
    /// made on the first `PUT` (or with `rotate_secret`) and answered once;
    /// a later `PUT` keeps it. One transaction: the endpoint and its audit
    /// entry.
    pub async fn set_authorization_endpoint(
        &self,
        ctx: &Ctx,
        input: SetAuthorizationEndpoint,
    ) -> ServiceResult<SetAuthorizationEndpointResult> {
        let url = validate_url(&input.url)?;
        let timeout_ms = input.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(ServiceError::invalid(
                "timeout_ms",
                format!("must be {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} milliseconds"),
            ));
        }
        // Last of the checks on the request: it may wait for a DNS lookup.
        self.config
            .webhook_networks
            .check_url(&url)
            .await
            .map_err(|refusal| ServiceError::invalid("url", refusal.to_string()))?;
        let tenant = ctx.tenant_id();
        // Read, then write only if nobody wrote in between (a compare and
        // set on `updated_at`): two first PUTs at once make one secret, and
        // a PUT that keeps the secret cannot put back the one a concurrent
        // rotation just replaced. The loser reads again and decides again,
        // after a jittered wait, within the bounds of the retry policy.
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let existing = self.store.authorization_endpoint(tenant).await?;
            // Strictly after the version it replaces, so the compare and set
            // on `updated_at` can never mistake one version for another.
            let now = match &existing {
                Some(e) => self.now().max(e.updated_at + chrono::Duration::microseconds(1)),
                None => self.now(),
            };
            let (secret, new_secret) = match &existing {
                Some(old) if !input.rotate_secret => (old.secret.clone(), None),
                _ => {
                    let secret = WebhookSecret::generate(&mut OsRng);
                    let (version, key) = self.keys.data_key(None).await?;
                    let sealed = SealedData {
                        ciphertext: key.seal(secret_aad(tenant).as_bytes(), secret.expose_bytes(), &mut OsRng),
                        key_version: version,
                    };
                    (sealed, Some(secret.to_whsec()))
                }
            };
            let record = AuthorizationEndpointRecord {
                tenant_id: tenant,
                url: input.url.clone(),
                timeout_ms,
                on_timeout: input.on_timeout.unwrap_or(OnTimeout::Decline),
                secret,
                created_at: existing.as_ref().map_or(now, |e| e.created_at),
                updated_at: now,
            };
            let endpoint = view(&record);
            let mut after = audit_json(&endpoint);
            after["secret_rotated"] = serde_json::Value::Bool(new_secret.is_some());
            // The secret was made once, above: every attempt writes the same one.
            let (record, after, existing) = (&record, &after, &existing);
            let written = self
                .unit_of_work(|| async move {
                    let mut tx = self.store.begin().await?;
                    let replacing = existing.as_ref().map(|e| e.updated_at);
                    if !tx.put_authorization_endpoint(record, replacing).await? {
                        return Ok(false);
                    }
                    tx.insert_audit(&self.audit(
                        ctx,
                        None,
                        "authorization_endpoint.set",
                        None,
                        existing.as_ref().map(|e| audit_json(&view(e))),
                        Some(after.clone()),
                    ))
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await?;
            if written {
                self.endpoint_cache.forget(tenant);
                return Ok(SetAuthorizationEndpointResult {
                    endpoint,
                    secret: new_secret,
                });
            }
            let wait = self
                .config
                .retry
                .next_wait(attempt, started.elapsed(), cardcore_store::retry::jitter());
            let Some(wait) = wait else {
                return Err(ServiceError::Conflict {
                    code: "authorization_endpoint_changed",
                    message: format!(
                        "the authorization endpoint was changed by other requests {attempt} times while this one \
                         wrote it; send it again"
                    ),
                });
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The tenant's authorization endpoint (`authorization_endpoint_not_found` when none).
    pub async fn authorization_endpoint(&self, ctx: &Ctx) -> ServiceResult<AuthorizationEndpoint> {
        self.store
            .authorization_endpoint(ctx.tenant_id())
            .await?
            .as_ref()
            .map(view)
            .ok_or(ServiceError::NotFound("authorization_endpoint"))
    }

    /// Removes the tenant's authorization endpoint: cardcore decides alone
    /// from then on.
    pub async fn delete_authorization_endpoint(&self, ctx: &Ctx) -> ServiceResult<()> {
        let existing = self
            .store
            .authorization_endpoint(ctx.tenant_id())
            .await?
            .ok_or(ServiceError::NotFound("authorization_endpoint"))?;
        let existing = &existing;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            if !tx.delete_authorization_endpoint(ctx.tenant_id()).await? {
                return Err(ServiceError::NotFound("authorization_endpoint"));
            }
            tx.insert_audit(&self.audit(
                ctx,
                None,
                "authorization_endpoint.deleted",
                None,
                Some(audit_json(&view(existing))),
                None,
            ))
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.endpoint_cache.forget(ctx.tenant_id());
        Ok(())
    }

    /// Installs the HTTP transport decision requests go out through (the
    /// server does, at start). Without one, every ask stands in.
    pub fn set_decision_transport(&self, transport: Arc<dyn DecisionTransport>) {
        let _ = self.decision_transport.set(transport);
    }

    /// Asks the tenant's decision service about `authorization` (the
    /// authorization object; its `status` is sent as `PENDING`). None when
    /// the tenant has no endpoint: cardcore decides alone. Holds nothing
    /// while waiting (no transaction, no card lock); the whole request,
    /// connecting included, is cut at the endpoint's `timeout_ms`.
    pub async fn ask_tenant(
        &self,
        tenant: TenantId,
        authorization: &serde_json::Value,
    ) -> ServiceResult<Option<TenantDecision>> {
        let Some(endpoint) = self.cached_authorization_endpoint(tenant).await? else {
            return Ok(None);
        };
        let stand_in = TenantDecision::StandIn {
            approved: endpoint.on_timeout == OnTimeout::Approve,
        };
        let mut data = authorization.clone();
        if let Some(object) = data.as_object_mut() {
            object.insert("status".into(), serde_json::Value::from("PENDING"));
        }
        let id = data
            .get("id")
            .and_then(|v| v.as_str())
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        let body = serde_json::to_vec(&serde_json::json!({ "type": REQUEST_TYPE, "data": data }))
            .map_err(|e| ServiceError::caused("encoding an authorization request", e))?;
        let secret = self.authorization_endpoint_secret(&endpoint).await?;
        // Wall-clock time: the receiver checks it against its own clock.
        let timestamp = crate::now().timestamp();
        let request = DecisionRequest {
            url: endpoint.url.clone(),
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("webhook-id", format!("authreq_{id}")),
                ("webhook-timestamp", timestamp.to_string()),
                (
                    "webhook-signature",
                    secret.sign(&format!("authreq_{id}"), timestamp, &body),
                ),
            ],
            body,
        };
        let Some(transport) = self.decision_transport.get() else {
            tracing::warn!("tenant decision: no transport installed; standing in");
            return Ok(Some(stand_in));
        };
        let wait = Duration::from_millis(u64::from(endpoint.timeout_ms));
        let started = std::time::Instant::now();
        let (decision, outcome) = match tokio::time::timeout(wait, transport.post(&request)).await {
            Err(_) => (stand_in, "timeout"),
            Ok(TransportAnswer::Failed(why)) => {
                tracing::info!(reason = %why, "tenant decision: no answer; standing in");
                (stand_in, "failed")
            }
            Ok(TransportAnswer::Answered { status, body }) => match read_answer(status, &body) {
                Some(decision) => (decision, "answered"),
                None => {
                    tracing::info!(status, "tenant decision: unusable answer; standing in");
                    (stand_in, "malformed")
                }
            },
        };
        metrics::counter!("cardcore_tenant_decisions_total", "outcome" => outcome).increment(1);
        metrics::histogram!("cardcore_tenant_decision_seconds").record(started.elapsed().as_secs_f64());
        Ok(Some(decision))
    }

    /// True when the tenant has an authorization endpoint (at most 5 s old).
    pub async fn has_authorization_endpoint(&self, tenant: TenantId) -> ServiceResult<bool> {
        Ok(self.cached_authorization_endpoint(tenant).await?.is_some())
    }

    async fn cached_authorization_endpoint(
        &self,
        tenant: TenantId,
    ) -> ServiceResult<Option<AuthorizationEndpointRecord>> {
        if let Some(known) = self.endpoint_cache.get(tenant) {
            return Ok(known);
        }
        let record = self.store.authorization_endpoint(tenant).await?;
        self.endpoint_cache.put(tenant, record.clone());
        Ok(record)
    }

    async fn authorization_endpoint_secret(
        &self,
        endpoint: &AuthorizationEndpointRecord,
    ) -> ServiceResult<WebhookSecret> {
        let (_, key) = self.keys.data_key(Some(endpoint.secret.key_version)).await?;
        let raw = key
            .open(secret_aad(endpoint.tenant_id).as_bytes(), &endpoint.secret.ciphertext)
            .map_err(|_| {
                ServiceError::internal(format!(
                    "the authorization endpoint secret of tenant {} does not open with its data key",
                    endpoint.tenant_id
                ))
            })?;
        WebhookSecret::from_bytes(raw.expose()).map_err(|e| {
            ServiceError::caused(
                format!("the authorization endpoint secret of tenant {}", endpoint.tenant_id),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_decide_and_answers_that_do_not() {
        assert_eq!(
            read_answer(200, br#"{"approved": true}"#),
            Some(TenantDecision::Approved)
        );
        assert_eq!(
            read_answer(204, br#"{"approved": false, "reason": "velocity"}"#),
            Some(TenantDecision::Declined {
                reason: Some("velocity".into())
            })
        );
        assert_eq!(
            read_answer(200, br#"{"approved": false, "reason": null, "extra": 1}"#),
            Some(TenantDecision::Declined { reason: None })
        );
        let long = format!(r#"{{"approved": false, "reason": "{}"}}"#, "x".repeat(500));
        match read_answer(200, long.as_bytes()) {
            Some(TenantDecision::Declined { reason: Some(r) }) => assert_eq!(r.chars().count(), MAX_REASON_CHARS),
            other => panic!("{other:?}"),
        }
        for (status, body) in [
            (500, &br#"{"approved": true}"#[..]),
            (302, br#"{"approved": true}"#),
            (200, b"approved"),
            (200, b""),
            (200, br#"{"approved": "yes"}"#),
            (200, br#"{"approved": 1}"#),
            (200, br#"{"decision": "approve"}"#),
            (200, br#"[{"approved": true}]"#),
            (200, br#"{"approved": false, "reason": 5}"#),
        ] {
            assert_eq!(
                read_answer(status, body),
                None,
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
        let huge = format!(r#"{{"approved": true, "pad": "{}"}}"#, "x".repeat(MAX_ANSWER_BYTES));
        assert_eq!(read_answer(200, huge.as_bytes()), None);
    }
}
