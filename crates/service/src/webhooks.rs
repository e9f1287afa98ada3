//! Webhook endpoints and the event detail with its deliveries. The
//! dispatcher that sends the deliveries lives in `cardcore-webhooks`; this
//! module holds the rules: what a valid endpoint is, how its secret is made
//! and kept, and what a tenant sees.

use cardcore_crypto::webhook::WebhookSecret;
use cardcore_domain::{Event, EventId, EventType, Timestamp, WebhookEndpointId};
use cardcore_store::{EndpointFormat, SealedData, StoredEvent, WebhookDelivery, WebhookEndpointRecord};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Longest accepted endpoint URL.
pub const MAX_URL_LEN: usize = 2048;

/// Most live endpoints per tenant.
pub const MAX_ENDPOINTS: usize = 20;

/// The `events` value meaning every event type.
pub const ALL_EVENTS: &str = "*";

/// Input for a new endpoint, as the caller sent it.
#[derive(Debug, Clone)]
pub struct CreateWebhookEndpoint {
    pub url: String,
    /// `None`: every event type.
    pub events: Option<Vec<String>>,
    /// `standard` (the default) or `p100` (never `sms`: that endpoint is
    /// the operator's, see `update_sms_settings`).
    pub format: EndpointFormat,
}

/// The event types a P100 endpoint can receive: those P100 has a webhook
/// for (Card Activation Code; Card 3DS Code, from `otp.created` with the
/// purpose `three_ds`; Card Transaction, from authorizations and their movements).
pub const P100_EVENTS: [EventType; 8] = [
    EventType::CardActivationCode,
    EventType::OtpCreated,
    EventType::AuthorizationApproved,
    EventType::AuthorizationDeclined,
    EventType::AuthorizationReversed,
    EventType::AuthorizationExpired,
    EventType::TransactionCaptured,
    EventType::TransactionRefunded,
];

/// An endpoint as a tenant sees it (never the secret).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub url: String,
    /// Event type names, or `["*"]` for every type.
    pub events: Vec<String>,
    pub format: EndpointFormat,
    pub created_at: Timestamp,
}

/// A new endpoint and its secret, shown once.
pub struct NewWebhookEndpoint {
    pub endpoint: WebhookEndpoint,
    /// `whsec_...`.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for NewWebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewWebhookEndpoint({}, [redacted])", self.endpoint.id)
    }
}

/// An event with its deliveries.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: Event,
    pub deliveries: Vec<WebhookDelivery>,
}

pub(crate) fn secret_aad(tenant: cardcore_domain::TenantId, id: WebhookEndpointId) -> String {
    format!("cardcore/webhook-secret/{tenant}/{id}")
}

fn view(rec: &WebhookEndpointRecord) -> WebhookEndpoint {
    WebhookEndpoint {
        id: rec.id,
        url: rec.url.clone(),
        events: match &rec.event_types {
            None => vec![ALL_EVENTS.to_owned()],
            Some(types) => types.iter().map(|t| t.as_str().to_owned()).collect(),
        },
        format: rec.format,
        created_at: rec.created_at,
    }
}

fn endpoint_json(e: &WebhookEndpoint) -> serde_json::Value {
    serde_json::json!({ "id": e.id, "url": e.url, "events": e.events, "format": e.format })
}

/// An absolute `http` or `https` URL with a host and no credentials (its
/// target is checked apart, by [`crate::egress`]).
pub fn validate_url(url: &str) -> ServiceResult<url::Url> {
    if url.len() > MAX_URL_LEN {
        return Err(ServiceError::invalid(
            "url",
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let parsed =
        url::Url::parse(url).map_err(|_| ServiceError::invalid("url", "must be an absolute http or https URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ServiceError::invalid(
            "url",
            "must be an http or https URL (other schemes are refused)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::invalid("url", "must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::invalid(
            "url",
            "must not carry credentials: the webhook-signature header authenticates cardcore to the receiver",
        ));
    }
    Ok(parsed)
}

/// The per-tenant limit on redeliveries (each one is a request to every
/// endpoint that takes the event's type): per node, in memory, like the
/// per-card throttle.
pub(crate) struct RedeliverThrottle {
    limiter: Option<governor::DefaultKeyedRateLimiter<cardcore_domain::TenantId>>,
    per_minute: u32,
}

impl RedeliverThrottle {
    /// `per_minute` redeliveries per tenant (also the burst); 0 turns it off.
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            limiter: std::num::NonZeroU32::new(per_minute)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            per_minute,
        }
    }

    fn check(&self, tenant: cardcore_domain::TenantId) -> ServiceResult<()> {
        use governor::clock::Clock as _;
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&tenant).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            ServiceError::RateLimited {
                limit: self.per_minute,
                period: "minute",
                scope: "tenant's redeliveries",
                retry_after_seconds: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            }
        })
    }
}

/// The event types asked for: `None` (every type) for an absent list or
/// `["*"]`; refuses an empty list and unknown names, naming `events[i]`.
pub fn parse_event_filter(events: Option<&[String]>) -> ServiceResult<Option<Vec<EventType>>> {
    let Some(events) = events else {
        return Ok(None);
    };
    if events.is_empty() {
        return Err(ServiceError::invalid(
            "events",
            "must name at least one event type; leave it out (or send [\"*\"]) for every type",
        ));
    }
    if events.len() == 1 && events[0] == ALL_EVENTS {
        return Ok(None);
    }
    let mut types = Vec::with_capacity(events.len());
    for (i, name) in events.iter().enumerate() {
        let t = EventType::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            let message = if name == ALL_EVENTS {
                "\"*\" (every type) must be alone in the list".to_owned()
            } else {
                format!("unknown event type; expected one of {}", known.join(", "))
            };
            ServiceError::invalid(&format!("events[{i}]"), message)
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(Some(types))
}

impl Service {
    /// Creates an endpoint; its secret is answered once and kept sealed
    /// under the data key, bound to the tenant and the endpoint.
    pub async fn create_webhook_endpoint(
        &self,
        ctx: &Ctx,
        input: CreateWebhookEndpoint,
    ) -> ServiceResult<NewWebhookEndpoint> {
        let url = validate_url(&input.url)?;
        let mut event_types = parse_event_filter(input.events.as_deref())?;
        match input.format {
            EndpointFormat::Standard => {}
            EndpointFormat::P100 => match &event_types {
                None => event_types = Some(P100_EVENTS.to_vec()),
                Some(types) => {
                    if let Some((i, _)) = types.iter().enumerate().find(|(_, t)| !P100_EVENTS.contains(t)) {
                        return Err(ServiceError::invalid(
                            &format!("events[{i}]"),
                            "P100 has no webhook for this event type; a p100 endpoint takes card.activation_code, \
                             otp.created and the authorization.* and transaction.* events",
                        ));
                    }
                }
            },
            EndpointFormat::Sms => {
                return Err(ServiceError::invalid(
                    "format",
                    "must be standard or p100 (SMS is the operator's setting: cardcore tenant sms)",
                ))
            }
        }
        // Last of the checks on the request: it may wait for a DNS lookup.
        self.config
            .webhook_networks
            .check_url(&url)
            .await
            .map_err(|refusal| ServiceError::invalid("url", refusal.to_string()))?;
        let live = self.store.webhook_endpoints(ctx.tenant_id()).await?;
        if live.iter().filter(|e| e.format != EndpointFormat::Sms).count() >= MAX_ENDPOINTS {
            return Err(ServiceError::Conflict {
                code: "webhook_endpoint_limit",
                message: format!("a tenant has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"),
            });
        }
        let id = WebhookEndpointId::new();
        let secret = WebhookSecret::generate(&mut OsRng);
        let (version, key) = self.keys.data_key(None).await?;
        let sealed = key.seal(
            secret_aad(ctx.tenant_id(), id).as_bytes(),
            secret.expose_bytes(),
            &mut OsRng,
        );
        let record = WebhookEndpointRecord {
            id,
            tenant_id: ctx.tenant_id(),
            url: input.url,
            event_types,
            secret: SealedData {
                ciphertext: sealed,
                key_version: version,
            },
            format: input.format,
            created_at: self.now(),
        };
        let endpoint = view(&record);
        // The id and secret were made once, above: every attempt writes them.
        let (record, endpoint_ref) = (&record, &endpoint);
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            tx.insert_webhook_endpoint(record).await?;
            tx.insert_audit(&self.audit(
                ctx,
                None,
                "webhook_endpoint.created",
                None,
                None,
                Some(endpoint_json(endpoint_ref)),
            ))
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        Ok(NewWebhookEndpoint {
            endpoint,
            secret: secret.to_whsec(),
        })
    }

    /// The tenant's endpoints, oldest first, without secrets.
    pub async fn webhook_endpoints(&self, ctx: &Ctx) -> ServiceResult<Vec<WebhookEndpoint>> {
        Ok(self
            .store
            .webhook_endpoints(ctx.tenant_id())
            .await?
            .iter()
            .filter(|e| e.format != EndpointFormat::Sms)
            .map(view)
            .collect())
    }

    /// Deletes an endpoint: it gets nothing more, and its deliveries still
    /// open are given up.
    pub async fn delete_webhook_endpoint(&self, ctx: &Ctx, id: WebhookEndpointId) -> ServiceResult<()> {
        let existing = self
            .store
            .webhook_endpoint(ctx.tenant_id(), id)
            .await?
            .filter(|e| e.format != EndpointFormat::Sms)
            .ok_or(ServiceError::NotFound("webhook_endpoint"))?;
        let existing = &existing;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            if !tx.delete_webhook_endpoint(ctx.tenant_id(), id, self.now()).await? {
                return Err(ServiceError::NotFound("webhook_endpoint"));
            }
            tx.insert_audit(&self.audit(
                ctx,
                None,
                "webhook_endpoint.deleted",
                None,
                Some(endpoint_json(&view(existing))),
                None,
            ))
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// One event of the tenant (codes included) with its deliveries.
    pub async fn event_detail(&self, ctx: &Ctx, id: EventId) -> ServiceResult<EventDetail> {
        let stored = self
            .store
            .event(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("event"))?;
        let event = self.open_event(stored).await?;
        let deliveries = self.store.event_deliveries(ctx.tenant_id(), id).await?;
        Ok(EventDetail { event, deliveries })
    }

    /// Queues the event again for every endpoint that receives its type,
    /// with the same `webhook-id`; answers the event with its deliveries.
    pub async fn redeliver_event(&self, ctx: &Ctx, id: EventId) -> ServiceResult<EventDetail> {
        self.redeliver_throttle.check(ctx.tenant_id())?;
        self.store
            .redeliver_event(ctx.tenant_id(), id, self.now())
            .await?
            .ok_or(ServiceError::NotFound("event"))?;
        self.event_detail(ctx, id).await
    }

    /// An endpoint's signing secret, opened (for the dispatcher).
    pub async fn webhook_secret(&self, endpoint: &WebhookEndpointRecord) -> ServiceResult<WebhookSecret> {
        let (_, key) = self.keys.data_key(Some(endpoint.secret.key_version)).await?;
        let raw = key
            .open(
                secret_aad(endpoint.tenant_id, endpoint.id).as_bytes(),
                &endpoint.secret.ciphertext,
            )
            .map_err(|_| {
                ServiceError::internal(format!(
                    "the secret of webhook endpoint {} does not open with its data key",
                    endpoint.id
                ))
            })?;
        WebhookSecret::from_bytes(raw.expose())
            .map_err(|e| ServiceError::caused(format!("webhook endpoint {}", endpoint.id), e))
    }

    /// A stored event as its tenant (and webhooks) see it, codes opened.
    pub async fn open_stored_event(&self, stored: StoredEvent) -> ServiceResult<Event> {
        self.open_event(stored).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ServiceError) -> String {
        match e {
            ServiceError::Invalid { errors, .. } => errors.0[0].field.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_and_no_credentials() {
        for ok in [
            "https://hooks.example.com/cardcore",
            "http://127.0.0.1:8080/hook?x=1",
            "https://[::1]:9/",
        ] {
            assert!(validate_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "example.com/hook",
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "",
        ] {
            assert_eq!(field(validate_url(bad).unwrap_err()), "url", "{bad}");
        }
        assert!(validate_url(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn event_filters_name_the_bad_entry() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_event_filter(None).unwrap(), None);
        assert_eq!(parse_event_filter(Some(&list(&["*"]))).unwrap(), None);
        assert_eq!(
            parse_event_filter(Some(&list(&["card.created", "otp.created", "card.created"]))).unwrap(),
            Some(vec![EventType::CardCreated, EventType::OtpCreated])
        );
        assert_eq!(field(parse_event_filter(Some(&[])).unwrap_err()), "events");
        assert_eq!(
            field(parse_event_filter(Some(&list(&["card.created", "card.exploded"]))).unwrap_err()),
            "events[1]"
        );
        assert_eq!(
            field(parse_event_filter(Some(&list(&["card.created", "*"]))).unwrap_err()),
            "events[1]"
        );
    }
}
