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

mod schedule;

pub use schedule::{RetrySchedule, ScheduleError, DEFAULT_SCHEDULE, JITTER};

use std::sync::Arc;
use std::time::{Duration, Instant};

use cardcore_service::Service;
use cardcore_store::{ClaimedDelivery, DeliveryAttempt, DeliveryOutcome};
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
    /// Most outbox events fanned out per transaction.
    pub fan_out_batch: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            poll_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            max_in_flight: 32,
            fan_out_batch: 100,
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
/// no proxy from the environment.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, DispatchError> {
    install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("cardcore-webhooks/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .build()
        .map_err(|e| DispatchError::Client(e.to_string()))
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
    let client = http_client(config.timeout)?;
    let dispatcher = Arc::new(Dispatcher {
        service,
        client,
        config,
    });
    Ok(tokio::spawn(dispatcher.run(stop)))
}

struct Dispatcher {
    service: Arc<Service>,
    client: reqwest::Client,
    config: DispatcherConfig,
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
        match store
            .claim_deliveries(now, now + chrono_of(self.config.lease), limit)
            .await
        {
            Ok(claimed) => {
                busy |= claimed.len() >= room;
                for c in claimed {
                    let me = self.clone();
                    in_flight.spawn(async move { me.attempt(c).await });
                }
            }
            Err(e) => tracing::warn!(cause = %e, "webhooks: claiming deliveries failed"),
        }
        busy
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
        let sent = self.send(&claimed).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (attempt, ok) = match sent {
            Sent::Answered(status) => {
                let ok = (200..300).contains(&status);
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
            match self.config.schedule.next_delay(d.attempts + 1, unit) {
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

    async fn send(&self, claimed: &ClaimedDelivery) -> Sent {
        let d = &claimed.delivery;
        let store = self.service.store();
        let endpoint = match store.webhook_endpoint(d.tenant_id, d.endpoint_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return Sent::Gone("endpoint deleted"),
            Err(e) => {
                tracing::warn!(cause = %e, "webhook endpoint could not be read");
                return Sent::Failed("internal error before sending".into());
            }
        };
        let event = match store.event(d.tenant_id, d.event_id).await {
            Ok(Some(stored)) => match self.service.open_stored_event(stored).await {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(cause = %e, "webhook event could not be opened");
                    return Sent::Failed("internal error before sending".into());
                }
            },
            Ok(None) => return Sent::Gone("event not found"),
            Err(e) => {
                tracing::warn!(cause = %e, "webhook event could not be read");
                return Sent::Failed("internal error before sending".into());
            }
        };
        let secret = match self.service.webhook_secret(&endpoint).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(cause = %e, "webhook secret could not be opened");
                return Sent::Failed("internal error before sending".into());
            }
        };
        // Serialized once: these exact bytes are signed and sent.
        let body = match serde_json::to_vec(&event.webhook_payload()) {
            Ok(b) => b,
            Err(_) => return Sent::Failed("internal error before sending".into()),
        };
        let id = event.id.to_string();
        let timestamp = cardcore_service::now().timestamp();
        let signature = secret.sign(&id, timestamp, &body);
        let request = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(response) => Sent::Answered(response.status().as_u16()),
            Err(e) => Sent::Failed(describe(&e, self.config.timeout)),
        }
    }
}

enum Sent {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer: the error, for the attempt log.
    Failed(String),
    /// Nothing left to deliver to or from.
    Gone(&'static str),
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
