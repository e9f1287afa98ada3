//! Rate limits per API key (GCRA: a steady rate with a burst), answered
//! with `429` and the `RateLimit-*` headers.
//!
//! The limiter is per node, in memory: a global limiter would cost a database
//! round trip on every request, and these limits protect capacity, not
//! secrets. What must hold across nodes is in the database: the PIN try
//! counter, the OTP lock and the OTP issue limit. With N nodes behind a load
//! balancer, a key's effective limit is up to N times the setting.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

use cardcore_service::ServiceError;

type KeyedLimiter = RateLimiter<[u8; 32], DashMapStateStore<[u8; 32]>, DefaultClock, StateInformationMiddleware>;

/// The per-key limiter and its settings.
pub struct RateLimits {
    limiter: Option<KeyedLimiter>,
    per_second: u32,
    burst: u32,
    seen: AtomicU64,
}

impl RateLimits {
    /// `per_second` requests a second with bursts of `burst`; 0 turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> Arc<Self> {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            RateLimiter::dashmap(Quota::per_second(rate).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>()
        });
        Arc::new(Self {
            limiter,
            per_second,
            burst: burst.max(per_second),
            seen: AtomicU64::new(0),
        })
    }

    /// No limits.
    pub fn off() -> Arc<Self> {
        Self::new(0, 0)
    }
}

/// The credential a request carries, whatever the API and header it comes
/// in (`Authorization: Bearer K`, `x-api-key: K` and `API-CLIENT-KEY: K` are
/// one budget): hashed, so the limiter never holds a key in clear.
fn credential(headers: &HeaderMap) -> Option<[u8; 32]> {
    let raw = ["authorization", "x-api-key", "api-client-key"]
        .iter()
        .find_map(|h| headers.get(*h))?
        .as_bytes();
    let token = match raw.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &raw[7..],
        _ => raw,
    };
    Some(Sha256::digest(token.trim_ascii()).into())
}

fn header(res: &mut Response, name: &'static str, value: u64) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        res.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// Applies the per-key limit to every request that carries a credential.
pub async fn limit(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    let (Some(limiter), Some(key)) = (&limits.limiter, credential(req.headers())) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    if limits.seen.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
        // Forget keys that have been idle long enough to be back at full burst.
        limiter.retain_recent();
    }
    let burst = u64::from(limits.burst);
    match limiter.check_key(&key) {
        Ok(snapshot) => {
            let remaining = u64::from(snapshot.remaining_burst_capacity());
            let mut res = next.run(req).await;
            header(&mut res, "ratelimit-limit", burst);
            header(&mut res, "ratelimit-remaining", remaining);
            header(
                &mut res,
                "ratelimit-reset",
                (burst - remaining).div_ceil(u64::from(limits.per_second.max(1))),
            );
            res
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            let refusal = ServiceError::RateLimited {
                limit: limits.per_second,
                period: "second",
                scope: "API key",
                retry_after_seconds: secs,
            };
            // A vendor's app gets the vendor's error shape.
            let mut res = match crate::dialects::render_for_path(&path, refusal.clone()) {
                Some(res) => res,
                None => crate::error::problem_of(refusal).into_response(),
            };
            header(&mut res, "ratelimit-limit", burst);
            header(&mut res, "ratelimit-remaining", 0);
            header(&mut res, "ratelimit-reset", secs);
            res
        }
    }
}
