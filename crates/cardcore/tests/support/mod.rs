//! What the multi-process tests (`nodes`, `crash`, `outage`) share: a
//! database of their own (a SQLite file, or a fresh PostgreSQL schema that is
//! dropped at the end), the real `cardcore` binary started as a separate
//! process on port 0, and a small HTTP client.
//!
//! PostgreSQL is found at `CARDCORE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it is not reachable a
//! test fails under `CI` and otherwise prints a `SKIP` line and returns, as
//! the store-postgres tests do.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cardcore");

/// The server the tests use unless `CARDCORE_TEST_POSTGRES_URL` names another.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Test schemas are named `cc_test_<uuid v7>` (the store-postgres tests sweep
/// stale ones by that prefix).
pub const SCHEMA_PREFIX: &str = "cc_test_";

/// Longest a single HTTP call of a test may take before it counts as hung.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

pub fn pg_url() -> String {
    std::env::var("CARDCORE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// The URL with any password masked, for messages.
pub fn shown_pg_url() -> String {
    let url = pg_url();
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
            None => url,
        },
        _ => url,
    }
}

/// Host and port of the PostgreSQL URL (default port 5432).
pub fn pg_host_port() -> (String, u16) {
    let url = pg_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.trim_matches(['[', ']']).to_owned(), p.parse().unwrap_or(5432)),
        _ => (host_port.trim_matches(['[', ']']).to_owned(), 5432),
    }
}

/// Says PostgreSQL is missing: fails under CI, prints SKIP otherwise.
/// Returns false (the test should return early).
pub fn missing_postgres(test: &str, why: &str) -> bool {
    let hint = "start it with scripts/ensure-postgres.sh, or point CARDCORE_TEST_POSTGRES_URL at a server";
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: PostgreSQL is not reachable at {} ({why}); {hint}",
            shown_pg_url()
        );
    }
    // Straight to stderr: libtest captures print! and eprint!, and a skip
    // that nobody sees passes for a test that ran.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: PostgreSQL is not reachable at {} ({why}); {hint}",
        shown_pg_url()
    );
    false
}

/// A quick TCP probe of the PostgreSQL server.
pub fn pg_reachable() -> Result<(), String> {
    let (host, port) = pg_host_port();
    if host.starts_with('/') {
        return Ok(());
    }
    let addrs = (host.as_str(), port).to_socket_addrs().map_err(|e| e.to_string())?;
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// True when PostgreSQL can be used; otherwise fails (CI) or prints SKIP.
pub fn postgres_or_skip(test: &str) -> bool {
    match pg_reachable() {
        Ok(()) => true,
        Err(why) => missing_postgres(test, &why),
    }
}

/// Runs `psql` on the test database; the output, or the error text.
pub fn psql(sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([pg_url().as_str(), "-v", "ON_ERROR_STOP=1", "-X", "-q", "-At", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A new random master key, from the binary itself.
pub fn master_key() -> String {
    let out = Command::new(BIN)
        .args(["master-key", "generate"])
        .output()
        .expect("run cardcore master-key generate");
    assert!(out.status.success(), "master-key generate failed");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// A tenant made with the CLI.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub key: String,
}

/// A database of one test: a SQLite file in a temporary directory, or a
/// PostgreSQL schema of its own, dropped when this is dropped.
pub struct Database {
    pub dir: tempfile::TempDir,
    pub schema: Option<String>,
    pub master_key: String,
    url: String,
}

impl Database {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cardcore.db").display());
        Self {
            dir,
            schema: None,
            master_key: master_key(),
            url,
        }
    }

    /// A SQLite database not made yet (a restore makes it), with `master_key`.
    pub fn sqlite_unmade(master_key: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("restored").join("cardcore.db").display());
        Self {
            dir,
            schema: None,
            master_key: master_key.to_owned(),
            url,
        }
    }

    /// The SQLite file (SQLite only).
    pub fn sqlite_file(&self) -> PathBuf {
        PathBuf::from(self.url.strip_prefix("sqlite://").expect("a SQLite database"))
    }

    /// A fresh schema on the test PostgreSQL (check [`postgres_or_skip`] first).
    pub fn postgres() -> Self {
        let schema = format!("{SCHEMA_PREFIX}{}", uuid::Uuid::now_v7().simple());
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            schema: Some(schema),
            master_key: master_key(),
            url: pg_url(),
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.schema.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// `--database ... [--db-schema ...]`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--database".to_owned(), self.url.clone()];
        if let Some(s) = &self.schema {
            args.extend(["--db-schema".to_owned(), s.clone()]);
        }
        args
    }

    /// Runs a CLI command on this database; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .args(self.args())
            .env("CARDCORE_MASTER_KEY", &self.master_key)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run cardcore");
        assert!(
            out.status.success(),
            "cardcore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    pub fn create_tenant(&self, name: &str) -> Tenant {
        let v: Value = serde_json::from_str(&self.cli(&["tenant", "create", "--name", name, "--json"])).expect("json");
        Tenant {
            id: v["tenant_id"].as_str().expect("tenant_id").to_owned(),
            key: v["api_key"].as_str().expect("api_key").to_owned(),
        }
    }

    /// Another API key of the tenant.
    pub fn api_key(&self, tenant: &Tenant) -> String {
        let v: Value =
            serde_json::from_str(&self.cli(&["tenant", "api-key", "--tenant", &tenant.id, "--can-reveal", "--json"]))
                .expect("json");
        v["api_key"].as_str().expect("api_key").to_owned()
    }

    /// Starts `cardcore serve` on this database (rate limits off) plus `extra`.
    pub fn start(&self, name: &str, extra: &[&str]) -> Node {
        Node::start(self, name, extra)
    }

    /// Runs SQL in this test's schema (PostgreSQL only).
    pub fn sql(&self, sql: &str) -> String {
        let schema = self.schema.as_ref().expect("a PostgreSQL database");
        psql(&format!("SET search_path TO \"{schema}\"; {sql}")).expect("psql")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            if let Err(e) = psql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")) {
                let _ = writeln!(std::io::stderr(), "could not drop test schema {schema}: {e}");
            }
        }
    }
}

/// A `cardcore serve` process.
pub struct Node {
    child: Child,
    pub name: String,
    pub base: String,
    pub log: PathBuf,
    running: bool,
}

impl Node {
    fn start(db: &Database, name: &str, extra: &[&str]) -> Node {
        let log = db
            .dir
            .path()
            .join(format!("{name}-{}.log", uuid::Uuid::now_v7().simple()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rate-limit-per-second",
                "0",
                "--card-pin-calls-per-minute",
                "0",
            ])
            .args(db.args())
            .args(extra)
            .env("CARDCORE_MASTER_KEY", &db.master_key)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn cardcore serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads the "listening on" line, then keeps draining stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("cardcore listening on ") {
                        break rest.split_whitespace().next().expect("address").to_owned();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("node {name} exited at start ({status}): {}", tail(&log));
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("node {name} did not listen within 60 s: {}", tail(&log));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait");
                    panic!("node {name} exited at start ({status}): {}", tail(&log));
                }
            }
        };
        Node {
            child,
            name: name.to_owned(),
            base,
            log,
            running: true,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill {signal} {} failed", self.pid());
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        if !self.running {
            return;
        }
        self.signal("-KILL");
        self.child.wait().expect("wait");
        self.running = false;
    }

    /// SIGTERM and waits (up to 30 s) for a graceful exit.
    /// Waits up to `limit` for the node to exit by itself; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.running = false;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn terminate(&mut self) -> ExitStatus {
        assert!(self.running, "node {} is not running", self.name);
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.running = false;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill9();
                panic!("node {} did not stop within 30 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new("kill").args(["-KILL", &self.pid().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}

fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    /// `Idempotent-Replayed: true`: the kept answer of an earlier request.
    pub replayed: bool,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The native problem code, or "".
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.is_success(),
            "expected success, got {}: {}",
            self.status,
            self.text
        );
        self.body
    }

    #[track_caller]
    pub fn expect(self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.code(), code, "{}", self.text);
        self.body
    }
}

/// A client for one node, as one tenant.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub client: reqwest::Client,
}

pub fn client() -> reqwest::Client {
    // reqwest is built with rustls and no default crypto provider (the
    // webhook dispatcher installs aws-lc-rs when a server starts); a test
    // process that runs no server in-process must install it too, even to
    // speak plain HTTP. This call installs it (and the client is dropped).
    let _ = cardcore_webhooks::http_client(HTTP_TIMEOUT);
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("HTTP client")
}

impl Api {
    pub fn new(node: &Node, key: &str) -> Self {
        Self {
            base: node.base.clone(),
            key: key.to_owned(),
            client: client(),
        }
    }

    /// Same tenant, same client, another node.
    pub fn on(&self, node: &Node) -> Self {
        Self {
            base: node.base.clone(),
            ..self.clone()
        }
    }

    /// A request; `Err` when no answer came (refused, reset, timed out).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        let text = res.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            content_type,
            retry_after,
            replayed,
            body,
            text,
        })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        match self.send(method.clone(), path, body, &[]).await {
            Ok(r) => r,
            Err(e) => panic!("{method} {}{path}: no answer: {e}", self.base),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// A cardholder (external id `external_id`) with one ACTIVE virtual card; the card.
    pub async fn new_card(&self, external_id: &str) -> Value {
        let holder = self
            .post(
                "/v1/cardholders",
                json!({
                    "external_id": external_id,
                    "name": "Ana Silva",
                    "phone": {"country_code": "351", "number": "912345678"},
                    "date_of_birth": "1990-05-17"
                }),
            )
            .await
            .ok();
        let card = self
            .post("/v1/cards", json!({"cardholder_id": holder["id"], "type": "virtual"}))
            .await
            .ok();
        assert_eq!(card["status"], "ACTIVE");
        card
    }

    /// The card's whole audit trail, newest first (every page).
    pub async fn audit(&self, card_id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/cards/{card_id}/events?limit=100&cursor={c}"),
                None => format!("/v1/cards/{card_id}/events?limit=100"),
            };
            let page = self.get(&path).await.ok();
            out.extend(page["data"].as_array().expect("data").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// Every event of a card listed now (every page), oldest first.
    pub async fn events(&self, card_id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/events?card_id={card_id}&limit=100&after={a}"),
                None => format!("/v1/events?card_id={card_id}&limit=100"),
            };
            let page = self.get(&path).await.ok();
            let data = page["data"].as_array().expect("data");
            out.extend(data.iter().cloned());
            match (page["next_cursor"].as_str(), data.len()) {
                (Some(c), n) if n > 0 => after = Some(c.to_owned()),
                _ => return out,
            }
        }
    }

    /// The card's events once `done` says the list is complete, polling for
    /// up to 10 s: on PostgreSQL an event is listed only once every older
    /// write transaction has ended, so a read right after a write may miss
    /// it for a moment. Returns the last list seen either way.
    pub async fn events_until(&self, card_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(card_id).await;
            if done(&events) || Instant::now() >= deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How many of `events` have type `t`.
pub fn count_type(events: &[Value], t: &str) -> usize {
    events.iter().filter(|e| e["type"] == t).count()
}

/// The status moves of the native-api.md table that lock, unlock, block and
/// close may make (activation is not among them: it needs its code).
pub fn allowed_move(action: &str, from: &str, to: &str) -> bool {
    matches!(
        (action, from, to),
        ("lock", "ACTIVE", "LOCKED")
            | ("unlock", "LOCKED", "ACTIVE")
            | ("block", "ACTIVE" | "LOCKED", "BLOCKED")
            | ("close", "INACTIVE" | "ACTIVE" | "LOCKED" | "BLOCKED", "CLOSED")
    )
}

/// Checks a card's audit trail (newest first, as the API lists it) is one
/// valid chain from `initial`: each entry starts where the previous one
/// ended, and each status move is on the table. Returns the status moves,
/// oldest first, as (action, from, to, request_id).
#[track_caller]
pub fn check_chain(
    card_id: &str,
    audit_newest_first: &[Value],
    initial: &str,
) -> Vec<(String, String, String, String)> {
    let mut status = initial.to_owned();
    let mut moves = Vec::new();
    for e in audit_newest_first.iter().rev() {
        let t = e["type"].as_str().expect("type");
        if t == "card.created" {
            assert_eq!(e["after"]["status"], initial, "card {card_id}: {e}");
            continue;
        }
        // Entries without a before/after snapshot (PIN failures) move nothing.
        let (Some(before), Some(after)) = (e["before"]["status"].as_str(), e["after"]["status"].as_str()) else {
            continue;
        };
        assert_eq!(
            before, status,
            "card {card_id}: entry does not start where the previous ended: {e}"
        );
        if let Some(action) = t
            .strip_prefix("card.")
            .filter(|a| ["lock", "unlock", "block", "close"].contains(a))
        {
            assert!(
                allowed_move(action, before, after),
                "card {card_id}: move not on the table: {e}"
            );
            let rid = e["request_id"].as_str().unwrap_or("").to_owned();
            moves.push((action.to_owned(), before.to_owned(), after.to_owned(), rid));
        } else {
            assert_eq!(before, after, "card {card_id}: {t} changed the status: {e}");
        }
        status = after.to_owned();
    }
    moves
}

/// A short summary of a duration list: (min, median, max) in ms.
pub fn spread(mut ms: Vec<u128>) -> (u128, u128, u128) {
    if ms.is_empty() {
        return (0, 0, 0);
    }
    ms.sort_unstable();
    (ms[0], ms[ms.len() / 2], ms[ms.len() - 1])
}

// --- write load with a known history, and its check ------------------------

/// PINs the policy accepts (not weak, not the test cardholder's birth date).
pub const PINS: [&str; 8] = ["4821", "7391", "5083", "6150", "2957", "3864", "9172", "8416"];

/// What a request of the write load asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pin(&'static str),
    Status(&'static str),
}

/// What became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: `wrote` when it changed something (a PIN set always does).
    Acked { wrote: bool, status: String },
    /// A 4xx: nothing was written.
    Refused(String),
    /// No answer after the request may have reached the server, or a 5xx:
    /// it may or may not have happened.
    Unknown(String),
    /// The connection was refused: it never reached a server.
    NotSent,
}

/// One request of a card's writer.
#[derive(Debug, Clone)]
pub struct Op {
    pub request_id: String,
    pub kind: Kind,
    pub outcome: Outcome,
    pub ms: u128,
}

/// One card's writer: PIN sets, locks and unlocks, one request after
/// another (so the card's requests are totally ordered), each with its own
/// `x-request-id` (`{tag}-{n}`). Stops when `stop` is set, after 60 s, or,
/// with `stop_without_answer`, at the first request that got no answer.
pub async fn writer(
    api: Api,
    card: String,
    tag: String,
    seed: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop_without_answer: bool,
) -> Vec<Op> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ops = Vec::new();
    for n in 0.. {
        if Instant::now() > deadline || stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let kind = if rng.gen_bool(0.5) {
            Kind::Pin(PINS[rng.gen_range(0..PINS.len())])
        } else if rng.gen_bool(0.5) {
            Kind::Status("lock")
        } else {
            Kind::Status("unlock")
        };
        let request_id = format!("{tag}-{n}");
        let headers = [("x-request-id", request_id.as_str())];
        let t = Instant::now();
        let sent = match kind {
            Kind::Pin(pin) => {
                api.send(
                    Method::PUT,
                    &format!("/v1/cards/{card}/pin"),
                    Some(json!({ "pin": pin })),
                    &headers,
                )
                .await
            }
            Kind::Status(action) => {
                api.send(Method::POST, &format!("/v1/cards/{card}/{action}"), None, &headers)
                    .await
            }
        };
        let ms = t.elapsed().as_millis();
        let (outcome, no_answer) = match sent {
            Ok(r) if r.is_success() => {
                let wrote = match kind {
                    Kind::Pin(_) => true,
                    Kind::Status(_) => r.body["changed"].as_bool().expect("changed"),
                };
                let status = r.body["status"].as_str().expect("status").to_owned();
                (Outcome::Acked { wrote, status }, false)
            }
            Ok(r) if r.status >= 500 => (Outcome::Unknown(format!("{}: {}", r.status, r.text)), false),
            Ok(r) => (Outcome::Refused(format!("{}: {}", r.status, r.text)), false),
            Err(e) if e.is_connect() => (Outcome::NotSent, true),
            Err(e) => (Outcome::Unknown(e.to_string()), true),
        };
        let failed = !matches!(outcome, Outcome::Acked { .. });
        ops.push(Op {
            request_id,
            kind,
            outcome,
            ms,
        });
        if no_answer && stop_without_answer {
            break;
        }
        if failed {
            // Do not spin on a database that is away.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ops
}

/// Counts over a load's requests.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub acked: usize,
    pub acked_writes: usize,
    pub unknown: usize,
    /// Unknown requests whose change is in the database.
    pub unknown_applied: usize,
    pub not_sent: usize,
}

/// Checks one card after a load whose requests are `ops` (its only writer):
/// every acknowledged change is in the audit trail exactly once and in
/// request order; every audit row is an acknowledged change or an unknown
/// request; the trail is a valid chain from ACTIVE and the card is where it
/// ends (and where the last answer said, unless something unknown came
/// after it); the PIN of the last PIN set in the trail verifies; the outbox
/// has one event per audited change, in the same order.
pub async fn check_card_history(api: &Api, card: &str, ops: &[Op], tally: &mut Tally) {
    let index: std::collections::HashMap<&str, usize> = ops
        .iter()
        .enumerate()
        .map(|(n, o)| (o.request_id.as_str(), n))
        .collect();
    for o in ops {
        match &o.outcome {
            Outcome::Acked { wrote, .. } => {
                tally.acked += 1;
                tally.acked_writes += usize::from(*wrote);
            }
            Outcome::Unknown(_) => tally.unknown += 1,
            Outcome::NotSent => tally.not_sent += 1,
            Outcome::Refused(why) => panic!("card {card}: {:?} refused: {why}", o.kind),
        }
    }

    let audit = api.audit(card).await;
    let moves = check_chain(card, &audit, "ACTIVE");
    assert_eq!(count_type(&audit, "card.created"), 1);

    let mut seen = std::collections::HashSet::new();
    let mut last_index = None;
    let mut last_pin = None;
    for e in audit.iter().rev().filter(|e| e["type"] != "card.created") {
        let rid = e["request_id"].as_str().expect("request_id");
        let n = *index
            .get(rid)
            .unwrap_or_else(|| panic!("card {card}: audit row of no request of its writer: {e}"));
        let op = &ops[n];
        assert!(seen.insert(rid.to_owned()), "card {card}: two audit rows for {rid}");
        assert!(
            last_index < Some(n),
            "card {card}: audit rows out of request order at {rid}"
        );
        last_index = Some(n);
        match &op.outcome {
            Outcome::Acked { wrote: true, .. } => {}
            Outcome::Unknown(_) => tally.unknown_applied += 1,
            other => panic!("card {card}: audit row for a request answered {other:?}: {e}"),
        }
        match op.kind {
            Kind::Pin(pin) => {
                assert_eq!(e["type"], "card.pin_set", "{e}");
                last_pin = Some(pin);
            }
            Kind::Status(action) => assert_eq!(e["type"], format!("card.{action}"), "{e}"),
        }
    }
    for o in ops {
        if let Outcome::Acked { wrote: true, .. } = o.outcome {
            assert!(
                seen.contains(&o.request_id),
                "card {card}: acknowledged {:?} ({}) is lost",
                o.kind,
                o.request_id
            );
        }
    }

    let now = api.get(&format!("/v1/cards/{card}")).await.ok();
    let status = moves.last().map_or("ACTIVE", |m| m.2.as_str());
    assert_eq!(now["status"], status, "card {card}");
    assert!(["ACTIVE", "LOCKED"].contains(&status), "card {card}: {status}");
    if let Some(last) = ops.iter().rposition(|o| matches!(o.outcome, Outcome::Acked { .. })) {
        if !ops[last..].iter().any(|o| matches!(o.outcome, Outcome::Unknown(_))) {
            if let Outcome::Acked { status: said, .. } = &ops[last].outcome {
                assert_eq!(said, status, "card {card}: the last acknowledged answer");
            }
        }
    }

    match last_pin {
        Some(pin) => {
            assert_eq!(now["pin_status"], "SET", "card {card}");
            let r = api
                .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": pin }))
                .await
                .ok();
            assert_eq!(r["valid"], true, "card {card}: PIN {pin} of the last PIN set");
        }
        None => assert_eq!(now["pin_status"], "NOT_SET", "card {card}"),
    }

    let pin_sets = count_type(&audit, "card.pin_set");
    let events = api
        .events_until(card, |e| {
            count_type(e, "card.pin_set") >= pin_sets && count_type(e, "card.status_changed") >= moves.len()
        })
        .await;
    assert_eq!(count_type(&events, "card.created"), 1, "card {card}");
    assert_eq!(
        count_type(&events, "card.pin_set"),
        pin_sets,
        "card {card}: pin_set events"
    );
    let changes: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "card.status_changed")
        .map(|e| {
            (
                e["data"]["previous_status"].as_str().expect("previous"),
                e["data"]["card"]["status"].as_str().expect("status"),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = moves.iter().map(|m| (m.1.as_str(), m.2.as_str())).collect();
    assert_eq!(changes, expected, "card {card}: status_changed events vs audit");
}
