//! The transport of tenant decision requests (`cardcore_service::
//! authorization_endpoint`): an HTTP POST through the same guarded clients
//! as webhooks (the address checked is the address connected to; a literal
//! address is checked before any packet leaves), no redirects, the answer
//! read up to a cap. The hard timeout is the service's, around this whole
//! call; the clients' own timeout is only a backstop.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cardcore_service::authorization_endpoint::{
    DecisionRequest, DecisionTransport, TransportAnswer, MAX_ANSWER_BYTES, MAX_TIMEOUT_MS,
};
use cardcore_service::egress::WebhookNetworks;

use crate::{guarded_clients, refusal_of, DispatchError};

/// Sends decision requests to tenants' endpoints.
pub struct DecisionClient {
    networks: WebhookNetworks,
    https: reqwest::Client,
    http: reqwest::Client,
}

impl DecisionClient {
    /// Clients under the given network rules (the webhook rules).
    pub fn new(networks: &WebhookNetworks) -> Result<Self, DispatchError> {
        // Backstop only: the service cuts every request at the endpoint's timeout.
        let backstop = Duration::from_millis(u64::from(MAX_TIMEOUT_MS) + 500);
        let (https, http) = guarded_clients(backstop, networks)?;
        Ok(Self {
            networks: networks.clone(),
            https,
            http,
        })
    }

    async fn send(&self, request: &DecisionRequest) -> TransportAnswer {
        let Ok(url) = url::Url::parse(&request.url) else {
            return TransportAnswer::Failed("invalid endpoint URL".into());
        };
        let https = url.scheme() == "https";
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if let Err(refusal) = self.networks.check(https, ip) {
                tracing::warn!(reason = %refusal, "tenant decision target refused before connecting");
                return TransportAnswer::Failed(format!("refused before connecting: {refusal}"));
            }
        }
        let client = if https { &self.https } else { &self.http };
        let mut builder = client.post(url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let mut response = match builder.body(request.body.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                return TransportAnswer::Failed(match refusal_of(&e) {
                    Some(refusal) => {
                        tracing::warn!(reason = %refusal, "tenant decision target refused before connecting");
                        format!("refused before connecting: {refusal}")
                    }
                    None if e.is_connect() => "could not connect".into(),
                    None => "the request failed".into(),
                })
            }
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => return TransportAnswer::Failed("the answer was cut off".into()),
            }
        }
        TransportAnswer::Answered { status, body }
    }
}

impl DecisionTransport for DecisionClient {
    fn post<'a>(&'a self, request: &'a DecisionRequest) -> Pin<Box<dyn Future<Output = TransportAnswer> + Send + 'a>> {
        Box::pin(self.send(request))
    }
}
