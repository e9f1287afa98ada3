//! `cardcore-load run`: one scenario against a running server. Waits for
//! the server, gets an M2P token if the scenario needs one, probes one
//! iteration (a missing route makes the scenario "not available"), then
//! runs the load and gathers the figures: throughput, latency, errors, and
//! the server's CPU and peak RSS from /proc.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;

use crate::driver::{self, RunPlan};
use crate::report::{cpu_seconds, rss_of, Latency, Part, ScenarioResult};
use crate::scenario::{self, Material, Scenario};
use crate::seedfile;

/// What `cardcore-load run` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The server: http://127.0.0.1:PORT (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// The CSV `cardcore seed` wrote (not needed for healthz).
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Measured seconds.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Unmeasured seconds before (connections open, caches warm).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Runtime threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The server's process id: its CPU use and peak RSS go into the result.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Label of the table the line belongs to (sqlite, postgres).
    #[arg(long)]
    pub backend: Option<String>,
    /// Seed of the card picker (same seed, same card sequence).
    #[arg(long, default_value_t = 1)]
    pub rng_seed: u64,
    /// Append the JSON line to this file too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    if !(0.0..=3600.0).contains(&s) {
        bail!("{what} must be 0 to 3600 seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// `http://127.0.0.1:PORT` → a loopback socket address (anything else is refused).
pub fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url:?}: only http:// is supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("--url {url:?}: expected http://127.0.0.1:PORT"))?
        .next()
        .with_context(|| format!("--url {url:?}: resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        bail!("--url {url:?}: load goes to a loopback address only (127.0.0.1)");
    }
    Ok(addr)
}

fn header(value: &str, what: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(value).with_context(|| format!("{what} is not a valid header value"))
}

fn is_missing_route(a: &driver::Answer) -> bool {
    a.status == hyper::StatusCode::NOT_FOUND && a.body.windows(15).any(|w| w == b"route_not_found")
}

/// An M2P access token for the seed's tenant, or why there is none.
async fn m2p_token(
    addr: SocketAddr,
    host: &HeaderValue,
    seed: &seedfile::SeedFile,
) -> anyhow::Result<Result<String, String>> {
    let body = serde_json::json!({
        "clientId": seed.tenant_id,
        "clientSecret": seed.api_key,
        "grantType": "client_credentials",
    });
    let req = hyper::Request::post("/m2p/auth/token")
        .header(hyper::header::HOST, host.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let a = driver::one(addr, req).await?;
    if is_missing_route(&a) {
        return Ok(Err(
            "POST /m2p/auth/token answers 404: the M2P dialect is not in this build".into(),
        ));
    }
    if !a.status.is_success() {
        bail!(
            "POST /m2p/auth/token answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&a.body).context("the M2P token answer is not JSON")?;
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .context("the M2P token answer has no access_token")?;
    Ok(Ok(token.to_owned()))
}

pub async fn run_scenario(args: &RunArgs) -> anyhow::Result<ScenarioResult> {
    let addr = loopback_addr(&args.url)?;
    let scenario = args.scenario;
    if args.connections == 0 || args.connections > 10_000 {
        bail!("--connections must be 1 to 10000");
    }
    let warmup = seconds(args.warmup, "--warmup")?;
    let duration = seconds(args.duration, "--duration")?;
    if duration.is_zero() {
        bail!("--duration must be positive");
    }
    let seed = match (&args.seed, scenario) {
        (Some(path), _) => seedfile::load(path)?,
        (None, Scenario::Healthz) => seedfile::parse(
            "# tenant_id=-\n# api_key=-\n# pin=0000\n\
             card_id,external_id,kit_number,phone_country_code,phone_number,expiry\n-,-,-,-,-,-\n",
        )?,
        (None, _) => bail!("--seed FILE is needed for {}", scenario.name()),
    };
    if scenario.partitioned() && seed.cards.len() < args.connections as usize {
        bail!(
            "{} gives each connection its own cards: seed at least {} cards",
            scenario.name(),
            args.connections
        );
    }
    let host = header(&addr.to_string(), "the host")?;
    driver::wait_ready(addr, &host, Duration::from_secs(10)).await?;
    let seeded = seed.cards.len() as u64;
    let unavailable = |reason: String| {
        let mut r = ScenarioResult::unavailable(scenario.name(), scenario.kind().as_str(), reason);
        r.backend = args.backend.clone();
        r.cards = args.seed.is_some().then_some(seeded);
        r
    };
    let m2p_auth = if scenario.needs_m2p_token() {
        match m2p_token(addr, &host, &seed).await? {
            Ok(token) => Some((
                header(&format!("Bearer {token}"), "the M2P token")?,
                header(&seed.tenant_id, "the tenant id")?,
            )),
            Err(reason) => return Ok(unavailable(reason)),
        }
    } else {
        None
    };
    if scenario.needs_pin_blocks() && (seed.zone_key_id.is_none() || seed.cards.iter().any(|c| c.pin_block.is_none())) {
        return Ok(unavailable(
            "the seed file has no PIN blocks: seed again with this version's `cardcore seed`".into(),
        ));
    }
    let material = Arc::new(Material {
        host: host.clone(),
        native_auth: header(&format!("Bearer {}", seed.api_key), "the API key")?,
        p100_key: header(&seed.api_key, "the API key")?,
        m2p_auth,
        wrong_pin: scenario::wrong_pin_for(&seed.pin),
        pin: seed.pin.clone(),
        seed,
        run_nonce: rand::random(),
        next_reference: std::sync::atomic::AtomicU64::new(0),
    });

    // Probe: one iteration on the first card, outside the measurement. A
    // missing route makes the scenario "not available", not a failure.
    if let Some(card) = material.seed.cards.first() {
        for part in 0..scenario.parts().len() {
            let step = material.step(scenario, card, part);
            let a = driver::one(addr, material.request(scenario, &step)?).await?;
            if is_missing_route(&a) {
                return Ok(unavailable(format!(
                    "{} {} answers 404: not in this build",
                    step.method, step.path
                )));
            }
            if a.status == hyper::StatusCode::UNAUTHORIZED {
                bail!(
                    "{} {} answered 401: the seed file's credentials were refused ({})",
                    step.method,
                    step.path,
                    String::from_utf8_lossy(&a.body)
                );
            }
            if !a.status.is_success() || !step.expect.body_ok(&a.body) {
                eprintln!(
                    "cardcore-load: warning: probe {} {} answered {}: {}",
                    step.method,
                    step.path,
                    a.status,
                    String::from_utf8_lossy(&a.body)
                );
            }
        }
    }

    let card_count = args.seed.is_some().then_some(material.seed.cards.len() as u64);
    let plan = RunPlan {
        addr,
        scenario,
        connections: args.connections,
        warmup,
        duration,
        rng_seed: args.rng_seed,
    };
    let pid = args.server_pid;
    let started = Instant::now();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until((started + warmup).into()).await;
        let from = (cpu_seconds(pid), cpu_seconds(None));
        tokio::time::sleep_until((started + warmup + duration).into()).await;
        let to = (cpu_seconds(pid), cpu_seconds(None));
        let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(((b - a) / duration.as_secs_f64() * 1000.0).round() / 10.0),
            _ => None,
        };
        (if pid.is_some() { pct(from.0, to.0) } else { None }, pct(from.1, to.1))
    });
    let stats = driver::run(plan, material).await;
    let (server_cpu, loadgen_cpu) = sampler.await.unwrap_or((None, None));
    let rss = pid.and_then(rss_of);
    let secs = duration.as_secs_f64();
    Ok(ScenarioResult {
        scenario: scenario.name().into(),
        kind: scenario.kind().as_str().into(),
        available: true,
        reason: None,
        backend: args.backend.clone(),
        cards: card_count,
        connections: args.connections,
        duration_s: secs,
        requests: stats.requests,
        errors: stats.errors.values().sum(),
        errors_by_status: stats.errors.clone(),
        declines: scenario.authorizes().then(|| stats.declines.values().sum()),
        declines_by_reason: stats.declines.clone(),
        throughput_rps: (stats.ok as f64 / secs * 10.0).round() / 10.0,
        latency: Latency::of(&stats.all),
        parts: if scenario.parts().len() > 1 {
            scenario
                .parts()
                .iter()
                .zip(stats.parts.iter().zip(&stats.part_requests))
                .map(|(name, (h, n))| Part {
                    name: (*name).into(),
                    requests: *n,
                    latency: Latency::of(h),
                })
                .collect()
        } else {
            Vec::new()
        },
        unblocks: (scenario == Scenario::VerifyWrong || stats.unblocks > 0).then_some(stats.unblocks),
        server_cpu_pct: server_cpu,
        loadgen_cpu_pct: loadgen_cpu,
        peak_rss_mb: rss.map(|(hwm, _)| (hwm * 10.0).round() / 10.0),
        rss_mb: rss.map(|(_, now)| (now * 10.0).round() / 10.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_goes_to_loopback_only() {
        assert_eq!(loopback_addr("http://127.0.0.1:8080").unwrap().port(), 8080);
        assert!(loopback_addr("http://127.0.0.1:8080/").is_ok());
        assert!(loopback_addr("http://10.0.0.1:8080").is_err());
        assert!(loopback_addr("https://127.0.0.1:8080").is_err());
    }
}
