//! The load: a fixed number of keep-alive HTTP/1.1 connections (hyper's own
//! client connections, no pool), each a task sending requests back to back
//! until the deadline. A closed loop: each connection has one request in
//! flight, so latencies are service times at that concurrency.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::net::TcpStream;

use crate::report::{new_histogram, record};
use crate::scenario::{Material, Scenario, Step};

/// Most requests one connection sends in one run: a bound far above what
/// any run reaches (a million requests per second for over an hour).
const MAX_ITERATIONS: u64 = 4_000_000_000;
/// Most connection attempts in a row before a connection gives up.
const MAX_CONNECT_ATTEMPTS: u32 = 50;

/// What a run needs besides the request material.
#[derive(Debug, Clone, Copy)]
pub struct RunPlan {
    pub addr: SocketAddr,
    pub scenario: Scenario,
    pub connections: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub rng_seed: u64,
}

/// What one connection saw.
pub struct ConnStats {
    /// All successful requests started in the window.
    pub all: Histogram<u64>,
    /// The same, per part of the iteration.
    pub parts: Vec<Histogram<u64>>,
    pub part_requests: Vec<u64>,
    /// Requests started in the window and completed (any outcome).
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Authorizations answered `DECLINED`, by `decline_reason` (neither
    /// successes nor errors).
    pub declines: BTreeMap<String, u64>,
    pub unblocks: u64,
}

impl ConnStats {
    fn new(parts: usize) -> Self {
        Self {
            all: new_histogram(),
            parts: (0..parts).map(|_| new_histogram()).collect(),
            part_requests: vec![0; parts],
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            declines: BTreeMap::new(),
            unblocks: 0,
        }
    }

    /// Adds another connection's figures.
    pub fn merge(&mut self, other: &ConnStats) {
        let _ = self.all.add(&other.all);
        for (a, b) in self.parts.iter_mut().zip(&other.parts) {
            let _ = a.add(b);
        }
        for (a, b) in self.part_requests.iter_mut().zip(&other.part_requests) {
            *a += b;
        }
        self.requests += other.requests;
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.declines {
            *self.declines.entry(k.clone()).or_default() += v;
        }
        self.unblocks += other.unblocks;
    }

    fn error(&mut self, key: String) {
        *self.errors.entry(key).or_default() += 1;
    }
}

/// An answer: status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One keep-alive connection, reopened after a transport error.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole answer. A transport error
    /// drops the connection; the next call opens a new one.
    pub async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = None;
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            anyhow::bail!("no connection");
        };
        let result = async {
            sender.ready().await?;
            let res = sender.send_request(req).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            anyhow::Ok(Answer { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// Error keys of declined authorizations start with this.
const DECLINED: &str = "declined:";

/// Sends `step` and classifies the outcome: `Ok(())` when it is a 2xx with
/// the expected body, else the error key (`declined:REASON` for an
/// authorization answered `DECLINED`).
async fn attempt(conn: &mut Conn, material: &Material, scenario: Scenario, step: &Step) -> (Result<(), String>, Bytes) {
    let req = match material.request(scenario, step) {
        Ok(r) => r,
        Err(_) => return (Err("bad_request_built".into()), Bytes::new()),
    };
    match conn.send(req).await {
        Err(_) => (Err("transport".into()), Bytes::new()),
        Ok(a) if !a.status.is_success() => (Err(a.status.as_u16().to_string()), a.body),
        Ok(a) if !step.expect.body_ok(&a.body) => match crate::scenario::decline_reason(&a.body) {
            Some(reason) => (Err(format!("{DECLINED}{reason}")), a.body),
            None => (Err("unexpected_body".into()), a.body),
        },
        Ok(a) => (Ok(()), a.body),
    }
}

/// One connection's loop.
async fn connection(
    index: u32,
    plan: RunPlan,
    material: Arc<Material>,
    measure_from: Instant,
    end: Instant,
) -> ConnStats {
    let scenario = plan.scenario;
    let parts = scenario.parts();
    let mut stats = ConnStats::new(parts.len());
    let mut rng = StdRng::seed_from_u64(plan.rng_seed ^ (u64::from(index) << 32 | 0x5eed));
    let cards = &material.seed.cards;
    let n = scenario.card_count(cards.len());
    let c = plan.connections.max(1) as usize;
    // Partitioned scenarios: this connection owns cards index, index + c, ...
    let owned = if scenario.partitioned() {
        (n.saturating_sub(index as usize)).div_ceil(c)
    } else {
        n
    };
    if owned == 0 {
        return stats;
    }
    let mut conn = Conn::new(plan.addr);
    let mut failed_connects = 0u32;
    for _ in 0..MAX_ITERATIONS {
        if Instant::now() >= end {
            break;
        }
        let pick = rng.gen_range(0..owned);
        let card = if scenario.partitioned() {
            &cards[index as usize + pick * c]
        } else {
            &cards[pick]
        };
        // A whole iteration (a pair) runs even if the deadline passes in
        // its middle, so a card is never left locked or with a failure
        // counted; only requests started inside the window are counted.
        for (part, _) in parts.iter().enumerate() {
            let step = material.step(scenario, card, part);
            let started = Instant::now();
            let (outcome, body) = attempt(&mut conn, &material, scenario, &step).await;
            let us = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
            let counted = started >= measure_from && started < end;
            if matches!(&outcome, Err(k) if k == "transport") {
                failed_connects += 1;
                if failed_connects >= MAX_CONNECT_ATTEMPTS {
                    stats.error("transport_gave_up".into());
                    return stats;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            } else {
                failed_connects = 0;
            }
            if counted {
                stats.requests += 1;
                match &outcome {
                    Ok(()) => {
                        stats.ok += 1;
                        record(&mut stats.all, us);
                        record(&mut stats.parts[part], us);
                        stats.part_requests[part] += 1;
                    }
                    Err(key) => match key.strip_prefix(DECLINED) {
                        Some(reason) => *stats.declines.entry(reason.to_owned()).or_default() += 1,
                        None => stats.error(key.clone()),
                    },
                }
            }
            // A blocked PIN (a previous run interrupted mid-pair, or cards
            // shared with another client): unblock it and go on.
            if outcome.is_err() && body.windows(11).any(|w| w == b"pin_blocked") {
                let unblock = material.unblock(card);
                if attempt(&mut conn, &material, scenario, &unblock).await.0.is_ok() {
                    stats.unblocks += 1;
                }
            }
        }
    }
    stats
}

/// Runs the plan: warm-up, then the measured window. Returns the merged
/// figures of every connection.
pub async fn run(plan: RunPlan, material: Arc<Material>) -> ConnStats {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..plan.connections {
        set.spawn(connection(i, plan, material.clone(), measure_from, end));
    }
    let mut total = ConnStats::new(plan.scenario.parts().len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(stats) => total.merge(&stats),
            Err(_) => total.error("task_panicked".into()),
        }
    }
    total
}

/// Waits until the server answers `GET /healthz`, at most `timeout`.
pub async fn wait_ready(addr: SocketAddr, host: &hyper::header::HeaderValue, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let attempts = timeout.as_millis() / 50 + 1;
    for _ in 0..attempts {
        let mut conn = Conn::new(addr);
        let req = hyper::Request::get("/healthz")
            .header(hyper::header::HOST, host.clone())
            .body(Full::new(Bytes::new()))?;
        if let Ok(a) = conn.send(req).await {
            if a.status.is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the server at {addr} did not answer GET /healthz within {timeout:?}")
}

/// Sends one request outside the measurement (probes, token).
pub async fn one(addr: SocketAddr, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<Answer> {
    Conn::new(addr).send(req).await
}
