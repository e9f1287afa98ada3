//! Database outage: cardcore on PostgreSQL while the local PostgreSQL is
//! stopped and started again.
//!
//! This binary stops the local cluster (`pg_ctlcluster ... stop`), which
//! every other PostgreSQL test would feel: cargo runs test binaries one at a
//! time, and the tests here take turns (`TURN`). A guard starts the cluster
//! again and waits for `pg_isready` even when a test panics.
//!
//! Needs a local Debian cluster (`pg_ctlcluster`, `/etc/postgresql`) and
//! PostgreSQL at `CARDCORE_TEST_POSTGRES_URL` on this machine. Without them
//! the tests print SKIP, except under `CI`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{check_card_history, pg_host_port, postgres_or_skip, writer, Api, Database, Reply, Tally};

/// The correctness bound: while the database is away, an answer within this.
const BOUND: Duration = Duration::from_secs(5);

/// One test at a time stops the cluster.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Debian cluster version to stop and start (the newest installed), or
/// why these tests cannot run here.
fn local_cluster() -> Result<String, String> {
    let (host, _) = pg_host_port();
    if !["127.0.0.1", "localhost", "::1"].contains(&host.as_str()) {
        return Err(format!("PostgreSQL at {host} is not on this machine"));
    }
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map_err(|e| format!("no /etc/postgresql ({e})"))?
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort_by_key(|v| v.split('.').next().and_then(|m| m.parse::<u32>().ok()).unwrap_or(0));
    let version = versions.pop().ok_or("no cluster in /etc/postgresql")?;
    Command::new("pg_ctlcluster")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run pg_ctlcluster ({e})"))?;
    Ok(version)
}

/// Says the cluster cannot be stopped here: fails under CI, SKIP otherwise.
fn cannot_run(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot stop and start the local PostgreSQL: {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: cannot stop and start the local PostgreSQL: {why}"
    );
}

fn pg_ctlcluster(version: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run pg_ctlcluster: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn pg_ready() -> bool {
    let (host, port) = pg_host_port();
    Command::new("pg_isready")
        .args(["-q", "-h", &host, "-p", &port.to_string(), "-t", "2"])
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_ready(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pg_ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pg_ready()
}

/// The cluster, stopped; started again on `start` or when dropped.
struct Stopped {
    version: String,
    running: bool,
}

impl Stopped {
    /// `mode`: `fast` (a clean shutdown) or `immediate` (a crash: no
    /// checkpoint, WAL replay at the next start).
    fn stop(version: &str, mode: &str) -> Self {
        let mut guard = Stopped {
            version: version.to_owned(),
            running: true,
        };
        let stopped = pg_ctlcluster(version, &["stop", "-m", mode]);
        // Whatever happened, start it again when done.
        guard.running = false;
        stopped.expect("pg_ctlcluster stop");
        assert!(!pg_ready(), "PostgreSQL still answers after stop");
        guard
    }

    /// Starts the cluster and waits until it accepts connections.
    fn start(&mut self) -> Duration {
        let t = Instant::now();
        if !self.running {
            pg_ctlcluster(&self.version, &["start"]).expect("pg_ctlcluster start");
            self.running = true;
        }
        assert!(
            wait_ready(Duration::from_secs(60)),
            "PostgreSQL did not come back within 60 s"
        );
        t.elapsed()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.running {
            if let Err(e) = pg_ctlcluster(&self.version, &["start"]) {
                let _ = writeln!(std::io::stderr(), "could not start PostgreSQL again: {e}");
            }
            if !wait_ready(Duration::from_secs(60)) {
                let _ = writeln!(std::io::stderr(), "PostgreSQL is not accepting connections again");
            }
        }
    }
}

/// The version to stop, or None (after SKIP or a CI failure).
fn preconditions(test: &str) -> Option<String> {
    if !postgres_or_skip(test) {
        return None;
    }
    match local_cluster() {
        Ok(v) => Some(v),
        Err(why) => {
            cannot_run(test, &why);
            None
        }
    }
}

/// A P100 call, authenticated its way (`x-api-key`).
async fn p100(api: &Api, path: &str) -> Reply {
    let res = api
        .client
        .get(format!("{}/p100{path}", api.base))
        .header("x-api-key", &api.key)
        .send()
        .await
        .expect("P100 answer");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.text().await.expect("body");
    Reply {
        status,
        content_type,
        retry_after: None,
        replayed: false,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Times a call; fails if it took the bound or longer.
async fn timed(what: &str, call: impl std::future::Future<Output = Reply>) -> (Reply, Duration) {
    let t = Instant::now();
    let r = call.await;
    let took = t.elapsed();
    assert!(
        took < BOUND,
        "{what} took {took:?} while the database was down: {}",
        r.text
    );
    (r, took)
}

#[track_caller]
fn unavailable(what: &str, r: &Reply) {
    assert_eq!(r.status, 503, "{what}: {}", r.text);
    assert_eq!(r.code(), "service_unavailable", "{what}: {}", r.text);
    assert_eq!(r.content_type.as_deref(), Some("application/problem+json"), "{what}");
    assert!(r.body["request_id"].is_string(), "{what}: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_fast_while_postgres_is_down_and_recover_without_restart() {
    const TEST: &str = "requests_fail_fast_while_postgres_is_down_and_recover_without_restart";
    let _turn = TURN.lock().await;
    let Some(version) = preconditions(TEST) else {
        return;
    };
    let db = Database::postgres();
    let tenant = db.create_tenant("outage");
    // A key no node has seen yet: its lookup needs the database.
    let cold = db.api_key(&tenant);
    let mut node = db.start("node", &[]);
    let api = Api::new(&node, &tenant.key);
    let cold_api = Api {
        key: cold.clone(),
        ..api.clone()
    };
    let card = api.new_card("outage-user").await["id"].as_str().expect("id").to_owned();
    let card_path = format!("/v1/cards/{card}");
    let p100_path = format!("/v1/card/details/outage-user/{card}");
    api.get(&card_path).await.ok();
    api.get("/readyz").await.ok();
    assert_eq!(p100(&api, &p100_path).await.status, 200);

    let mut pg = Stopped::stop(&version, "fast");
    let stopped = Instant::now();
    // Many at once, so the pool's waiters are tested too: none may hang.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (api, path) = (api.clone(), card_path.clone());
        set.spawn(async move { timed("concurrent GET card", api.get(&path)).await });
    }
    // Each kind of request, at the same time.
    let (lock_path, pin_path) = (format!("{card_path}/lock"), format!("{card_path}/pin"));
    let (get, lock, pin, ready, cold_get, p100_details) = tokio::join!(
        timed("GET card", api.get(&card_path)),
        timed("POST lock", api.post(&lock_path, json!({}))),
        timed("PUT pin", api.put(&pin_path, json!({"pin": "4821"}))),
        timed("GET /readyz", api.get("/readyz")),
        timed("GET card with a key not cached", cold_api.get(&card_path)),
        timed("P100 card details", p100(&api, &p100_path)),
    );
    let mut took = vec![get.1, lock.1, pin.1, ready.1, cold_get.1, p100_details.1];
    unavailable("GET card", &get.0);
    assert!(get.0.retry_after.is_some(), "503 carries Retry-After");
    unavailable("POST lock", &lock.0);
    unavailable("PUT pin", &pin.0);
    unavailable("GET /readyz", &ready.0);
    unavailable("GET card with a key not cached", &cold_get.0);
    let r = &p100_details.0;
    assert_eq!(r.status, 400, "P100 answers its coded errors with 400: {}", r.text);
    assert_eq!(r.body["errorCode"], "P501", "{}", r.text);
    while let Some(done) = set.join_next().await {
        let (r, t) = done.expect("task");
        unavailable("concurrent GET card", &r);
        took.push(t);
    }
    // Liveness does not depend on the database.
    assert_eq!(api.get("/healthz").await.status, 200);
    // And again, later in the outage.
    let (r, t) = timed("GET card", api.get(&card_path)).await;
    unavailable("GET card", &r);
    took.push(t);
    let down_for = stopped.elapsed();

    // PostgreSQL returns; the same process serves again.
    let restart = pg.start();
    let back = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = api.get(&card_path).await;
        if r.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "no recovery within 15 s: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = back.elapsed();
    // The lock tried during the outage never happened.
    let r = api.post(&format!("{card_path}/lock"), json!({})).await.ok();
    assert_eq!(
        (r["status"].as_str(), r["changed"].as_bool()),
        (Some("LOCKED"), Some(true))
    );
    api.get("/readyz").await.ok();
    cold_api.get(&card_path).await.ok();
    assert_eq!(p100(&api, &p100_path).await.status, 200);
    let events = api
        .events_until(&card, |e| support::count_type(e, "card.status_changed") >= 1)
        .await;
    assert_eq!(support::count_type(&events, "card.status_changed"), 1);
    assert_eq!(support::count_type(&api.audit(&card).await, "card.pin_set"), 0);
    assert!(node.terminate().success(), "graceful stop");

    let ms: Vec<u128> = took.iter().map(Duration::as_millis).collect();
    let (min, median, max) = support::spread(ms.clone());
    eprintln!(
        "{TEST}: {} answers while down for {down_for:?}, ms min {min} median {median} max {max}; PostgreSQL \
         back in {restart:?}; first 200 after {recovered:?} ({attempts} attempt(s))",
        ms.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_under_write_load_loses_no_acknowledged_write() {
    const TEST: &str = "a_postgres_crash_under_write_load_loses_no_acknowledged_write";
    const CARDS: usize = 6;
    let _turn = TURN.lock().await;
    let Some(version) = preconditions(TEST) else {
        return;
    };
    let db = Database::postgres();
    let tenant = db.create_tenant("pgcrash");
    let mut node = db.start("node", &[]);
    let api = Api::new(&node, &tenant.key);
    let mut cards = Vec::new();
    for i in 0..CARDS {
        cards.push(
            api.new_card(&format!("pgcrash-{i}")).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let run = uuid::Uuid::now_v7().simple().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for (i, card) in cards.iter().enumerate() {
        let w = writer(
            api.clone(),
            card.clone(),
            format!("pgcrash-{run}-{i}"),
            rand::random(),
            stop.clone(),
            false,
        );
        set.spawn(async move { (i, w.await) });
    }

    // A crash of the database server in the middle of the load: no
    // checkpoint, WAL replay at the next start.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut pg = Stopped::stop(&version, "immediate");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart = pg.start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut log = vec![Vec::new(); CARDS];
    while let Some(done) = set.join_next().await {
        let (i, ops) = done.expect("writer");
        log[i] = ops;
    }

    // Every answer came within the bound, and was a success or a 503.
    for ops in &log {
        for o in ops {
            assert!(
                o.ms < BOUND.as_millis(),
                "{} took {} ms: {:?}",
                o.request_id,
                o.ms,
                o.outcome
            );
            if let support::Outcome::Unknown(why) = &o.outcome {
                assert!(why.starts_with("503"), "{}: {why}", o.request_id);
            }
        }
    }
    let mut tally = Tally::default();
    for (i, card) in cards.iter().enumerate() {
        check_card_history(&api, card, &log[i], &mut tally).await;
    }
    assert!(node.terminate().success(), "graceful stop");
    eprintln!(
        "{TEST}: PostgreSQL back in {restart:?}; {} acknowledged ({} writes), {} unknown ({} of them applied)",
        tally.acked, tally.acked_writes, tally.unknown, tally.unknown_applied
    );
    assert!(
        tally.acked_writes >= CARDS,
        "the load wrote too little to prove anything"
    );
    assert!(tally.unknown > 0, "the crash did not hit the load");
}
