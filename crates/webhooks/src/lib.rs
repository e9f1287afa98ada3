//! The webhook dispatcher: a background task on every node that
//!
//! 1. fans new outbox events out into deliveries, one per endpoint that
//!    wants the event (the store does it in one transaction with the
//!    cursor, one node at a time);
//! 2. claims due deliveries with a lease (only the oldest open delivery of
//!    each (endpoint, card) pair, so a card's events arrive in order);
//! 3. sends each, signed per the Standard Webhooks spec, with a timeout and
//!    no redirects followed, and records the attempt: succeeded, retrying at
//!    the next time of the [`RetrySchedule`], or dead after the last.
//!
//! Delivery is at least once: an event is in the outbox from the commit
//! that made it, a delivery is finished only once its attempt is recorded,
//! and a lease that runs out (the node died mid-attempt) frees the delivery
//! for any node. On shutdown the dispatcher stops claiming and finishes the
//! attempts in flight.
//!
//! Never logged here: payloads (some carry codes for the cardholder),
//! secrets, signatures, endpoint URLs (they may carry a token).

pub mod decision;
mod p100;
mod schedule;
pub mod sms;

pub use schedule::{RetrySchedule, ScheduleError, DEFAULT_SCHEDULE, JITTER};
pub use sms::SmsProvider;

/// P100's retries: after about 8, 16, 32 and 64 s (5 attempts).
pub const P100_SCHEDULE: &str = "8s,16s,32s,64s";

/// SMS retries: within an OTP's 5 minutes (a later SMS is useless).
pub const SMS_SCHEDULE: &str = "2s,5s,15s,30s,60s,120s";

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardcore_domain::TenantId;
use cardcore_service::egress::{Refusal, WebhookNetworks};
use cardcore_service::Service;
use cardcore_store::{ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, EndpointFormat};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Waits between attempts.
    pub schedule: RetrySchedule,
    /// How often an idle dispatcher looks for new events and due retries.
    pub poll_interval: Duration,
    /// Longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// How long a claim holds a delivery: longer than an attempt can take,
    /// so only a dead node's claims lapse.
    pub lease: Duration,
    /// Most attempts in flight on this node.
    pub max_in_flight: usize,
    /// Most attempts of one tenant in flight on this node, so that one
    /// tenant's slow or many receivers cannot take every slot.
    pub tenant_in_flight: usize,
    /// Most outbox events fanned out per transaction.
    pub fan_out_batch: u32,
    /// Waits between attempts of P100-format endpoints.
    pub p100_schedule: RetrySchedule,
    /// Waits between attempts of an SMS.
    pub sms_schedule: RetrySchedule,
    /// The node's SMS provider.
    pub sms: SmsProvider,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            poll_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            max_in_flight: 32,
            tenant_in_flight: 8,
            fan_out_batch: 100,
            p100_schedule: RetrySchedule::parse(P100_SCHEDULE).unwrap_or_default(),
            sms_schedule: RetrySchedule::parse(SMS_SCHEDULE).unwrap_or_default(),
            sms: SmsProvider::None,
        }
    }
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
    #[error("the webhook lease ({lease:?}) must be longer than the attempt timeout ({timeout:?})")]
    Lease { lease: Duration, timeout: Duration },
}

/// The HTTP client deliveries use: rustls on aws-lc-rs, the given timeout
/// for the whole attempt, redirects never followed (a 3xx is a failure),
/// no proxy from the environment. It applies no address rules (it is for
/// tests and tools); the dispatcher sends through [`guarded_clients`].
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, DispatchError> {
    client_builder(timeout)
        .build()
        .map_err(|e| DispatchError::Client(e.to_string()))
}

fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("cardcore-webhooks/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
}

/// Resolves a name once and hands the connector only the addresses the
/// webhook rules allow: what was checked is what is connected to, so a DNS
/// answer that changes between the check and the connection (rebinding)
/// changes nothing. A name with any refused address is refused whole, and
/// the error is a [`Refusal`], found again by [`refusal_of`].
pub struct GuardedResolver {
    networks: WebhookNetworks,
    https: bool,
}

impl GuardedResolver {
    /// A resolver for `https` URLs (public or admitted addresses) or plain
    /// `http` ones (admitted networks only).
    pub fn new(networks: WebhookNetworks, https: bool) -> Self {
        Self { networks, https }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let networks = self.networks.clone();
        let https = self.https;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs = networks
                .resolve(https, &url::Host::Domain(host.as_str()), 0)
                .await
                .map_err(|refusal| Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The dispatcher's clients: one for `https` URLs, one for plain `http`
/// ones, each resolving through the [`GuardedResolver`] of its scheme.
pub fn guarded_clients(
    timeout: Duration,
    networks: &WebhookNetworks,
) -> Result<(reqwest::Client, reqwest::Client), DispatchError> {
    let build = |https: bool| {
        client_builder(timeout)
            .dns_resolver(Arc::new(GuardedResolver::new(networks.clone(), https)))
            .build()
            .map_err(|e| DispatchError::Client(e.to_string()))
    };
    Ok((build(true)?, build(false)?))
}

/// The webhook rules' refusal behind a failed request, if that is why it failed.
pub fn refusal_of(e: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return Some(refusal.clone());
        }
        next = err.source();
    }
    None
}

/// Installs aws-lc-rs as the process-wide rustls provider (reqwest is built
/// without one, so that ring is never compiled). Every reqwest client in the
/// process needs it; a second call finds it installed, which is fine.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Starts the dispatcher; it runs until `stop` turns true (or its sender is
/// dropped), then finishes the attempts in flight and returns.
pub fn spawn(
    service: Arc<Service>,
    config: DispatcherConfig,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, DispatchError> {
    if config.lease <= config.timeout {
        return Err(DispatchError::Lease {
            lease: config.lease,
            timeout: config.timeout,
        });
    }
    let (https, http) = guarded_clients(config.timeout, &service.config().webhook_networks)?;
    let operator = http_client(config.timeout)?;
    let dispatcher = Arc::new(Dispatcher {
        service,
        https,
        http,
        operator,
        config,
        tenants: std::sync::Mutex::new(HashMap::new()),
    });
    Ok(tokio::spawn(dispatcher.run(stop)))
}

struct Dispatcher {
    service: Arc<Service>,
    /// For `https` endpoints: public or admitted addresses.
    https: reqwest::Client,
    /// For plain `http` endpoints: admitted networks only.
    http: reqwest::Client,
    /// For the operator's SMS provider: not subject to the tenants'
    /// network rules (the operator chose it).
    operator: reqwest::Client,
    config: DispatcherConfig,
    /// Attempts in flight per tenant on this node.
    tenants: std::sync::Mutex<HashMap<TenantId, usize>>,
}

/// A tenant's place among the attempts in flight, given back when dropped.
struct TenantSlot {
    dispatcher: Arc<Dispatcher>,
    tenant: TenantId,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut tenants = self.dispatcher.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = tenants.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                tenants.remove(&self.tenant);
            }
        }
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut in_flight: JoinSet<()> = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            while in_flight.try_join_next().is_some() {}
            // A round waiting on an unreachable database must not hold up a
            // shutdown. Cut short, a fan-out rolls back; a claim whose
            // deliveries were leased but not started has them sent again
            // once the lease runs out.
            let busy = tokio::select! {
                busy = self.step(&mut in_flight) => busy,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let wait = if busy {
                Duration::ZERO
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                // A finished attempt may free its card's next delivery.
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        if !in_flight.is_empty() {
            tracing::info!(
                in_flight = in_flight.len(),
                "webhooks: finishing the attempts in flight"
            );
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// One round: fan out, claim, start attempts. True when there is more
    /// to do at once.
    async fn step(self: &Arc<Self>, in_flight: &mut JoinSet<()>) -> bool {
        let store = self.service.store();
        let mut busy = false;
        match store
            .fan_out_events(self.config.fan_out_batch, cardcore_service::now())
            .await
        {
            Ok(n) => busy |= n >= self.config.fan_out_batch,
            Err(e) => tracing::warn!(cause = %e, "webhooks: fan-out failed"),
        }
        let room = self.config.max_in_flight.saturating_sub(in_flight.len());
        if room == 0 {
            return busy;
        }
        let now = cardcore_service::now();
        let limit = u32::try_from(room).unwrap_or(u32::MAX);
        let full: Vec<TenantId> = self
            .tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, n)| **n >= self.config.tenant_in_flight)
            .map(|(t, _)| *t)
            .collect();
        match store
            .claim_deliveries_except(now, now + chrono_of(self.config.lease), limit, &full)
            .await
        {
            Ok(claimed) => {
                busy |= claimed.len() >= room;
                for c in claimed {
                    let Some(slot) = self.tenant_slot(c.delivery.tenant_id) else {
                        // Over the tenant's share: back untried, for any node.
                        if let Err(e) = store.release_delivery(c.delivery.id, c.lease).await {
                            tracing::warn!(cause = %e, "webhooks: releasing a delivery failed; its lease will lapse");
                        }
                        continue;
                    };
                    let me = self.clone();
                    in_flight.spawn(async move {
                        let _slot = slot;
                        me.attempt(c).await
                    });
                }
            }
            Err(e) => tracing::warn!(cause = %e, "webhooks: claiming deliveries failed"),
        }
        busy
    }

    /// A place for one more attempt of the tenant, if it has one left.
    fn tenant_slot(self: &Arc<Self>, tenant: TenantId) -> Option<TenantSlot> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let n = tenants.entry(tenant).or_insert(0);
        if *n >= self.config.tenant_in_flight {
            return None;
        }
        *n += 1;
        Some(TenantSlot {
            dispatcher: self.clone(),
            tenant,
        })
    }

    /// Sends one claimed delivery and records the attempt.
    async fn attempt(self: Arc<Self>, claimed: ClaimedDelivery) {
        let d = &claimed.delivery;
        let span = tracing::info_span!(
            "webhook",
            delivery_id = %d.id,
            event_id = %d.event_id,
            endpoint_id = %d.endpoint_id,
            attempt = d.attempts + 1,
        );
        tracing::Instrument::instrument(self.attempt_inner(claimed), span).await;
    }

    async fn attempt_inner(&self, claimed: ClaimedDelivery) {
        let d = &claimed.delivery;
        let at = cardcore_service::now();
        let started = Instant::now();
        let (sent, format) = self.send(&claimed).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (attempt, ok) = match sent {
            Sent::Answered(status) => {
                // P100 counts only a 200 as received.
                let ok = match format {
                    EndpointFormat::P100 => status == 200,
                    _ => (200..300).contains(&status),
                };
                let error = (300..400)
                    .contains(&status)
                    .then(|| "redirects are not followed".to_owned());
                (
                    DeliveryAttempt {
                        at,
                        status: Some(status),
                        error,
                        duration_ms,
                    },
                    ok,
                )
            }
            Sent::Failed(error) => (
                DeliveryAttempt {
                    at,
                    status: None,
                    error: Some(error),
                    duration_ms,
                },
                false,
            ),
            Sent::Nothing(why) => {
                let attempt = DeliveryAttempt {
                    at,
                    status: None,
                    error: Some(why.to_owned()),
                    duration_ms,
                };
                self.record(&claimed, &attempt, DeliveryOutcome::Succeeded).await;
                return;
            }
            Sent::Gone(why) => {
                let attempt = DeliveryAttempt {
                    at,
                    status: None,
                    error: Some(why.to_owned()),
                    duration_ms,
                };
                self.record(&claimed, &attempt, DeliveryOutcome::Dead).await;
                return;
            }
        };
        let outcome = if ok {
            DeliveryOutcome::Succeeded
        } else {
            let unit: f64 = rand::thread_rng().gen();
            let schedule = match format {
                EndpointFormat::Standard => &self.config.schedule,
                EndpointFormat::P100 => &self.config.p100_schedule,
                EndpointFormat::Sms => &self.config.sms_schedule,
            };
            match schedule.next_delay(d.attempts + 1, unit) {
                Some(wait) => DeliveryOutcome::Retry(cardcore_service::now() + chrono_of(wait)),
                None => DeliveryOutcome::Dead,
            }
        };
        match (&outcome, attempt.status) {
            (DeliveryOutcome::Succeeded, status) => tracing::info!(?status, duration_ms, "webhook delivered"),
            (DeliveryOutcome::Retry(next), status) => {
                tracing::info!(?status, error = attempt.error.as_deref(), %next, "webhook attempt failed; will retry")
            }
            (DeliveryOutcome::Dead, status) => {
                tracing::warn!(
                    ?status,
                    error = attempt.error.as_deref(),
                    "webhook attempt failed; delivery is dead"
                )
            }
        }
        self.record(&claimed, &attempt, outcome).await;
    }

    async fn record(&self, claimed: &ClaimedDelivery, attempt: &DeliveryAttempt, outcome: DeliveryOutcome) {
        let label = match outcome {
            DeliveryOutcome::Succeeded => "succeeded",
            DeliveryOutcome::Retry(_) => "retrying",
            DeliveryOutcome::Dead => "dead",
        };
        metrics::counter!("cardcore_webhook_attempts_total", "outcome" => label).increment(1);
        match self
            .service
            .store()
            .record_delivery_attempt(claimed.delivery.id, claimed.lease, attempt, outcome)
            .await
        {
            Ok(true) => {}
            // Our lease lapsed and another node took the delivery over, or
            // the endpoint was deleted meanwhile: theirs is the record.
            Ok(false) => tracing::info!("webhook attempt not recorded: the delivery is no longer this node's"),
            // The lease will lapse and the delivery be tried again: at least once.
            Err(e) => tracing::warn!(cause = %e, "webhook attempt could not be recorded"),
        }
    }

    /// Sends one delivery in its endpoint's format. Every request of the
    /// dispatcher goes out here: tenants' URLs (webhooks of every format)
    /// through the guarded clients, the operator's SMS provider through its
    /// own client.
    async fn send(&self, claimed: &ClaimedDelivery) -> (Sent, EndpointFormat) {
        let d = &claimed.delivery;
        let store = self.service.store();
        let endpoint = match store.webhook_endpoint(d.tenant_id, d.endpoint_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return (Sent::Gone("endpoint deleted"), EndpointFormat::Standard),
            Err(e) => {
                tracing::warn!(cause = %e, "webhook endpoint could not be read");
                return (
                    Sent::Failed("internal error before sending".into()),
                    EndpointFormat::Standard,
                );
            }
        };
        let format = endpoint.format;
        let stored = match store.event(d.tenant_id, d.event_id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return (Sent::Gone("event not found"), format),
            Err(e) => {
                tracing::warn!(cause = %e, "webhook event could not be read");
                return (Sent::Failed("internal error before sending".into()), format);
            }
        };
        if format == EndpointFormat::Sms {
            let message = match self.service.sms_message(stored).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return (
                        Sent::Gone("not sent: the code expired (or the cardholder has no phone)"),
                        format,
                    )
                }
                Err(e) => {
                    tracing::error!(cause = %e, "SMS message could not be made");
                    return (Sent::Failed("internal error before sending".into()), format);
                }
            };
            let Some(request) = self.config.sms.request(&self.operator, &message) else {
                return (Sent::Failed("no SMS provider on this node".into()), format);
            };
            let sent = match request.send().await {
                Ok(response) => Sent::Answered(response.status().as_u16()),
                Err(e) => Sent::Failed(describe(&e, self.config.timeout)),
            };
            return (sent, format);
        }
        let event = match self.service.open_stored_event(stored).await {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(cause = %e, "webhook event could not be opened");
                return (Sent::Failed("internal error before sending".into()), format);
            }
        };
        let secret = match self.service.webhook_secret(&endpoint).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(cause = %e, "webhook secret could not be opened");
                return (Sent::Failed("internal error before sending".into()), format);
            }
        };
        let Ok(url) = url::Url::parse(&endpoint.url) else {
            return (Sent::Failed("invalid endpoint URL".into()), format);
        };
        let https = url.scheme() == "https";
        // An address in the URL is never looked up, so never reaches the
        // resolver: it is checked here (it cannot change until connecting).
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if let Err(refusal) = self.service.config().webhook_networks.check(https, ip) {
                return (Sent::Failed(refused(&refusal)), format);
            }
        }
        let client = if https { &self.https } else { &self.http };
        let request = if format == EndpointFormat::P100 {
            let body = match p100::body(&self.service, &event).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    return (
                        Sent::Nothing("nothing to send: P100 has no webhook for this event"),
                        format,
                    )
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "P100 webhook body could not be made");
                    return (Sent::Failed("internal error before sending".into()), format);
                }
            };
            let Ok(body) = serde_json::to_vec(&body) else {
                return (Sent::Failed("internal error before sending".into()), format);
            };
            let token = secret.to_whsec();
            client
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", token.as_str())
                .body(body)
        } else {
            // Serialized once: these exact bytes are signed and sent.
            let body = match serde_json::to_vec(&event.webhook_payload()) {
                Ok(b) => b,
                Err(_) => return (Sent::Failed("internal error before sending".into()), format),
            };
            let id = event.id.to_string();
            let timestamp = cardcore_service::now().timestamp();
            let signature = secret.sign(&id, timestamp, &body);
            client
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
        };
        let sent = match request.send().await {
            Ok(response) => Sent::Answered(response.status().as_u16()),
            Err(e) => match refusal_of(&e) {
                Some(refusal) => Sent::Failed(refused(&refusal)),
                None => Sent::Failed(describe(&e, self.config.timeout)),
            },
        };
        (sent, format)
    }
}

enum Sent {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer: the error, for the attempt log.
    Failed(String),
    /// Nothing left to deliver to or from.
    Gone(&'static str),
    /// Nothing to send in the endpoint's format: finished, not sent.
    Nothing(&'static str),
}

/// The attempt log's words for a target the address rules refused: no
/// connection was made.
fn refused(refusal: &Refusal) -> String {
    tracing::warn!(reason = %refusal, "webhook target refused before connecting");
    format!("refused before connecting: {refusal}")
}

/// A short description of a failed request, for the tenant's attempt log:
/// never the URL (it may carry a token) nor anything from the body.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("timed out after {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_builder() {
        "invalid request (check the endpoint URL)".to_owned()
    } else {
        "the request failed (connection closed or protocol error)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::io::AsyncReadExt;

    use super::*;

    /// The client speaks TLS (rustls on the aws-lc-rs provider, installed by
    /// `http_client`): a local listener receives a TLS handshake record.
    #[tokio::test]
    async fn https_goes_through_rustls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut record = [0u8; 3];
            socket.read_exact(&mut record).await.unwrap();
            record
        });
        let client = http_client(Duration::from_secs(5)).unwrap();
        let sent = client.post(format!("https://{addr}/hook")).body("{}").send().await;
        let record = server.await.unwrap();
        assert_eq!(record[0], 0x16, "a TLS handshake record");
        assert_eq!(record[1], 0x03, "TLS major version 3");
        assert!(sent.is_err(), "the listener never completes the handshake");
    }
}
