//! Rate limits at the HTTP edge (GCRA: a steady rate with a burst),
//! answered with `429` and the `RateLimit-*` headers, in the shape of the API
//! the route belongs to.
//!
//! - **Per API key**, counted after authentication and keyed by the key's id,
//!   whatever headers the request carries: `Authorization: Basic <junk>`
//!   beside a real `x-api-key` spends that key's budget, and an M2P token
//!   spends the budget of the key it was issued for. Whoever authenticates a
//!   request (an extractor, the idempotency layer) calls [`admit`]; the first
//!   call decides for the whole request.
//! - **Failed authentications per client address** (the TCP peer; IPv6 by
//!   /64): after a burst of refused credentials (or `401`s), the address's API requests are answered
//!   `429` before anything reads the database, unless every credential they
//!   carry authenticated on this node recently. So guessing keys costs the
//!   guesser, and a client that shares the address (a NAT, a proxy) keeps
//!   working with its known key. Behind a proxy every client has the proxy's
//!   address: see docs/DEPLOYMENT.md.
//!
//! Both are per node, in memory: a global limiter would cost a database
//! round trip on every request, and these limits protect capacity, not
//! secrets. What must hold across nodes is in the database: the PIN try
//! counter, the OTP lock and the OTP issue limit. With N nodes behind a load
//! balancer, a key's effective limit is up to N times the setting.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cardcore_domain::ApiKeyId;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

use cardcore_service::{Principal, ServiceError, ServiceResult};

use crate::dialects::Dialect;

type KeyedLimiter = RateLimiter<ApiKeyId, DashMapStateStore<ApiKeyId>, DefaultClock, StateInformationMiddleware>;
type AddressLimiter = RateLimiter<IpAddr, DashMapStateStore<IpAddr>, DefaultClock>;

/// How long a credential that authenticated counts as known to this node.
const KNOWN_FOR: Duration = Duration::from_secs(600);
const KNOWN_MAX: usize = 10_000;

/// The limits' settings.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Requests a second per API key (0 turns the per-key limit off).
    pub per_second: u32,
    /// Burst per API key above the steady rate.
    pub burst: u32,
    /// Failed authentications a minute per client address, once its burst is
    /// spent (0 turns the per-address limit off).
    pub auth_failures_per_minute: u32,
    /// Failed authentications an address may have in a row before it is limited.
    pub auth_failures_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 200,
            auth_failures_per_minute: 30,
            auth_failures_burst: 20,
        }
    }
}

/// The limiters and their settings.
pub struct RateLimits {
    limiter: Option<KeyedLimiter>,
    per_second: u32,
    burst: u32,
    seen: AtomicU64,
    failures: Option<AddressLimiter>,
    failures_per_minute: u32,
    failures_seen: AtomicU64,
    /// Addresses refused until the instant given.
    refused: RwLock<HashMap<IpAddr, Instant>>,
    /// SHA-256 of credentials that authenticated here recently.
    known: RwLock<HashMap<[u8; 32], Instant>>,
}

impl RateLimits {
    /// `per_second` requests a second per key with bursts of `burst` (0 turns
    /// the per-key limit off), and the default limit on failed authentications.
    pub fn new(per_second: u32, burst: u32) -> Arc<Self> {
        Self::with(RateLimitConfig {
            per_second,
            burst,
            ..RateLimitConfig::default()
        })
    }

    /// Limits as configured.
    pub fn with(config: RateLimitConfig) -> Arc<Self> {
        let per_second = config.per_second;
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(config.burst.max(per_second)).unwrap_or(rate);
            RateLimiter::dashmap(Quota::per_second(rate).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>()
        });
        let failures = NonZeroU32::new(config.auth_failures_per_minute).map(|rate| {
            let burst = NonZeroU32::new(config.auth_failures_burst).unwrap_or(rate);
            RateLimiter::dashmap(Quota::per_minute(rate).allow_burst(burst))
        });
        Arc::new(Self {
            limiter,
            per_second,
            burst: config.burst.max(per_second),
            seen: AtomicU64::new(0),
            failures,
            failures_per_minute: config.auth_failures_per_minute,
            failures_seen: AtomicU64::new(0),
            refused: RwLock::new(HashMap::new()),
            known: RwLock::new(HashMap::new()),
        })
    }

    /// No limits.
    pub fn off() -> Arc<Self> {
        Self::with(RateLimitConfig {
            per_second: 0,
            burst: 0,
            auth_failures_per_minute: 0,
            auth_failures_burst: 0,
        })
    }

    fn is_known(&self, credential: &[u8; 32]) -> bool {
        self.known
            .read()
            .ok()
            .and_then(|k| k.get(credential).map(|at| at.elapsed() < KNOWN_FOR))
            .unwrap_or(false)
    }

    fn remember(&self, credential: [u8; 32]) {
        // A write only when the entry is missing or half-way stale, so that
        // requests of a busy key take the read lock only.
        let fresh = self
            .known
            .read()
            .ok()
            .and_then(|k| k.get(&credential).map(|at| at.elapsed() < KNOWN_FOR / 2))
            .unwrap_or(false);
        if fresh {
            return;
        }
        if let Ok(mut known) = self.known.write() {
            if known.len() >= KNOWN_MAX {
                known.retain(|_, at| at.elapsed() < KNOWN_FOR);
                if known.len() >= KNOWN_MAX {
                    known.clear();
                }
            }
            known.insert(credential, Instant::now());
        }
    }

    /// Seconds until `address` may try to authenticate again, if it is refused now.
    fn refused_for(&self, address: IpAddr) -> Option<u64> {
        let refused = self.refused.read().ok()?;
        let until = refused.get(&address)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }

    /// Counts a failed authentication from `address`.
    fn failed(&self, address: IpAddr) {
        let Some(failures) = &self.failures else { return };
        if self.failures_seen.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            // Forget addresses idle long enough to be back at full burst:
            // one entry per failing address would otherwise stay for good.
            failures.retain_recent();
        }
        if let Err(not_until) = failures.check_key(&address) {
            let wait = not_until.wait_time_from(failures.clock().now());
            if let Ok(mut refused) = self.refused.write() {
                let now = Instant::now();
                refused.retain(|_, until| *until > now);
                refused.insert(address, now + wait);
            }
        }
    }
}

/// What [`admit`] decided for one request.
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// Within the key's budget (`remaining` after this request), or not limited.
    Allowed { remaining: Option<u64> },
    /// Over the key's budget.
    Refused { retry_after_seconds: u64 },
}

/// The credential (hashed) that authenticated a request, and the decision.
type Admitted = ([u8; 32], Decision);

/// The per-request handle the middleware leaves for whoever authenticates.
#[derive(Clone)]
pub(crate) struct Gate(Arc<GateState>);

struct GateState {
    limits: Arc<RateLimits>,
    outcome: Mutex<Option<Admitted>>,
    /// A credential was presented and refused (whatever status the API
    /// answers that with: QI Tech's is a 404).
    failed: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn decision(&self) -> Option<Admitted> {
        self.0.outcome.lock().ok().and_then(|o| *o)
    }
}

/// Counts an authenticated request against its API key's budget: `secret`
/// is the credential that authenticated it (an API key, or an M2P token),
/// `principal` who it is. The first call of a request decides; later calls
/// (the idempotency layer, then the handler) get the same answer.
pub(crate) fn admit(parts: &Parts, secret: &str, principal: &Principal) -> ServiceResult<()> {
    admit_at(parts.extensions.get::<Gate>(), secret, principal)
}

/// [`admit`] for a handler that holds the request's [`Gate`] itself.
pub(crate) fn admit_at(gate: Option<&Gate>, secret: &str, principal: &Principal) -> ServiceResult<()> {
    let Some(gate) = gate else {
        return Ok(());
    };
    let gate = &gate.0;
    let Ok(mut outcome) = gate.outcome.lock() else {
        return Ok(());
    };
    let decision = match *outcome {
        Some((_, decision)) => decision,
        None => {
            let limits = &gate.limits;
            let decision = match (&limits.limiter, principal.api_key_id) {
                (Some(limiter), Some(key)) => {
                    if limits.seen.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
                        // Forget keys idle long enough to be back at full burst.
                        limiter.retain_recent();
                    }
                    match limiter.check_key(&key) {
                        Ok(snapshot) => Decision::Allowed {
                            remaining: Some(u64::from(snapshot.remaining_burst_capacity())),
                        },
                        Err(not_until) => {
                            let wait = not_until.wait_time_from(limiter.clock().now());
                            Decision::Refused {
                                retry_after_seconds: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
                            }
                        }
                    }
                }
                _ => Decision::Allowed { remaining: None },
            };
            *outcome = Some((hash(secret.trim().as_bytes()), decision));
            decision
        }
    };
    match decision {
        Decision::Allowed { .. } => Ok(()),
        Decision::Refused { retry_after_seconds } => Err(ServiceError::RateLimited {
            limit: gate.limits.per_second,
            period: "second",
            scope: "API key",
            retry_after_seconds,
        }),
    }
}

/// Notes a failed authentication of the request, for the per-address limit.
pub(crate) fn note_failure(parts: &Parts, e: &ServiceError) {
    note_failure_at(parts.extensions.get::<Gate>(), e);
}

/// [`note_failure`] for a handler that holds the request's [`Gate`] itself.
pub(crate) fn note_failure_at(gate: Option<&Gate>, e: &ServiceError) {
    if let (Some(gate), ServiceError::Unauthorized) = (gate, e) {
        gate.0.failed.store(true, Ordering::Relaxed);
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The native API's credential headers.
const NATIVE_CREDENTIALS: [&str; 2] = ["authorization", "x-api-key"];

/// Every credential a request carries in a header, whatever the API (the
/// native ones and those `dialects` name: `Authorization` with its scheme
/// stripped, `x-api-key`, ...), hashed: the limiter never holds one in clear.
fn credentials(headers: &HeaderMap, dialects: &[Dialect]) -> Vec<[u8; 32]> {
    let mut names: Vec<&str> = NATIVE_CREDENTIALS.to_vec();
    for name in dialects.iter().flat_map(|d| d.credential_headers.iter()) {
        if !names.contains(name) {
            names.push(name);
        }
    }
    names
        .iter()
        .flat_map(|h| headers.get_all(*h))
        .map(|v| {
            let raw = v.as_bytes();
            let token = match raw.iter().position(|b| *b == b' ') {
                Some(space) => &raw[space + 1..],
                None => raw,
            };
            hash(token.trim_ascii())
        })
        .collect()
}

/// The budget an address belongs to: IPv4 as is (IPv4-mapped IPv6 too), IPv6
/// by its /64 (one host usually holds a whole /64).
fn budget_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Routes that need a credential: the native API's and every dialect's
/// (the system routes, health and docs, do not).
fn is_api(path: &str, dialects: &[Dialect]) -> bool {
    path.starts_with("/v1/") || crate::dialects::of_path(dialects, path).is_some() || path == CONSOLE_LOGIN
}

/// The console's sign-in: a failed one counts like any failed authentication.
const CONSOLE_LOGIN: &str = "/console/login";

fn header(res: &mut Response, name: &'static str, value: u64) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        res.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// A refusal in the shape of the API `path` belongs to.
fn refusal(dialects: &[Dialect], path: &str, e: ServiceError) -> Response {
    if path == CONSOLE_LOGIN {
        if let ServiceError::RateLimited {
            retry_after_seconds, ..
        } = e
        {
            return crate::console::too_many(retry_after_seconds);
        }
    }
    match crate::dialects::of_path(dialects, path) {
        Some(d) => (d.render_error)(e),
        None => crate::error::problem_of(e).into_response(),
    }
}

/// The middleware's state: the limits, and the dialects whose shapes its
/// refusals take.
#[derive(Clone)]
pub struct Edge {
    pub limits: Arc<RateLimits>,
    pub dialects: Arc<[Dialect]>,
}

/// The middleware: refuses addresses that failed to authenticate too often,
/// leaves a [`Gate`] for [`admit`], and adds the `RateLimit-*` headers.
pub async fn limit(State(edge): State<Edge>, mut req: Request, next: Next) -> Response {
    let Edge { limits, dialects } = edge;
    let path = req.uri().path().to_owned();
    // The sign-in form itself (GET) stays reachable; posting it counts.
    if !is_api(&path, &dialects) || (path == CONSOLE_LOGIN && req.method() != axum::http::Method::POST) {
        return next.run(req).await;
    }
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| budget_of(c.0.ip()))
        .filter(|_| limits.failures.is_some());
    if let Some(address) = address {
        if let Some(secs) = limits.refused_for(address) {
            let presented = credentials(req.headers(), &dialects);
            if presented.is_empty() || !presented.iter().all(|c| limits.is_known(c)) {
                let mut res = refusal(
                    &dialects,
                    &path,
                    ServiceError::RateLimited {
                        limit: limits.failures_per_minute,
                        period: "minute",
                        scope: "client address (failed authentications)",
                        retry_after_seconds: secs,
                    },
                );
                header(&mut res, "ratelimit-remaining", 0);
                header(&mut res, "ratelimit-reset", secs);
                return res;
            }
        }
    }
    let gate = Gate(Arc::new(GateState {
        limits: limits.clone(),
        outcome: Mutex::new(None),
        failed: std::sync::atomic::AtomicBool::new(false),
    }));
    req.extensions_mut().insert(gate.clone());
    let mut res = next.run(req).await;
    match gate.decision() {
        Some((credential, decision)) => {
            limits.remember(credential);
            if limits.limiter.is_some() {
                let burst = u64::from(limits.burst);
                header(&mut res, "ratelimit-limit", burst);
                match decision {
                    Decision::Allowed { remaining } => {
                        let remaining = remaining.unwrap_or(burst);
                        header(&mut res, "ratelimit-remaining", remaining);
                        header(
                            &mut res,
                            "ratelimit-reset",
                            (burst - remaining).div_ceil(u64::from(limits.per_second.max(1))),
                        );
                    }
                    Decision::Refused { retry_after_seconds } => {
                        header(&mut res, "ratelimit-remaining", 0);
                        header(&mut res, "ratelimit-reset", retry_after_seconds);
                    }
                }
            }
        }
        None => {
            if let Some(address) = address {
                if gate.0.failed.load(Ordering::Relaxed) || res.status() == StatusCode::UNAUTHORIZED {
                    limits.failed(address);
                }
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_share_a_budget_by_host() {
        let v6: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        assert_eq!(budget_of(v6), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(budget_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(budget_of(v4), v4);
    }

    #[test]
    fn every_credential_header_is_seen() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Basic junk"));
        h.insert("x-api-key", HeaderValue::from_static("cc_real"));
        let all = crate::dialects::all();
        let c = credentials(&h, &all);
        assert_eq!(c, vec![hash(b"junk"), hash(b"cc_real")]);
        h.insert("authorization", HeaderValue::from_static("Bearer cc_real"));
        assert_eq!(credentials(&h, &all), vec![hash(b"cc_real"), hash(b"cc_real")]);
        h.insert("api-client-key", HeaderValue::from_static("cc_qi"));
        assert_eq!(credentials(&h, &all).len(), 3, "a dialect's own header counts");
    }

    #[test]
    fn an_address_is_refused_after_its_burst_of_failures() {
        let limits = RateLimits::with(RateLimitConfig {
            auth_failures_per_minute: 1,
            auth_failures_burst: 3,
            ..RateLimitConfig::default()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limits.failed(a);
            assert_eq!(limits.refused_for(a), None);
        }
        limits.failed(a);
        let secs = limits.refused_for(a).expect("refused");
        assert!((1..=60).contains(&secs), "{secs}");
        assert_eq!(limits.refused_for(b), None, "another address has its own budget");
    }
}
