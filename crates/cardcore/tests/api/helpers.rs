//! `spawn_app`: a real cardcore server on a free port, with its own data
//! directory, and helpers to speak to it.

#![allow(dead_code)]

use std::path::PathBuf;

use cardcore::cli::{Cli, Command, ServeArgs};
use cardcore::Server;
use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Tenant A's first API key (may reveal card data).
    pub key: String,
    pub tenant_id: String,
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
}

/// Serve-command arguments for a fresh database in `dir`, plus `extra` flags.
pub fn serve_args(dir: &std::path::Path, extra: &[&str]) -> ServeArgs {
    let db = format!("sqlite://{}", dir.join("cardcore.db").display());
    let mut argv = vec!["cardcore", "serve", "--listen", "127.0.0.1:0", "--database", &db];
    if !extra.contains(&"--rate-limit-per-second") {
        // Tests fire requests as fast as they can; the limiter has its own tests.
        argv.extend_from_slice(&["--rate-limit-per-second", "0"]);
    }
    if !extra.contains(&"--card-pin-calls-per-minute") {
        argv.extend_from_slice(&["--card-pin-calls-per-minute", "0"]);
    }
    if !extra.contains(&"--auth-failures-per-minute") {
        argv.extend_from_slice(&["--auth-failures-per-minute", "0"]);
    }
    if !extra.contains(&"--webhook-allow-networks") {
        // The tests' webhook receivers listen on loopback.
        argv.extend_from_slice(&["--webhook-allow-networks", "127.0.0.0/8,::1/128"]);
    }
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Serve(args) => args,
        _ => unreachable!(),
    }
}

/// A plain HTTP client for tests (reqwest needs the process's TLS provider
/// installed even for http:// URLs).
pub fn client() -> reqwest::Client {
    cardcore_webhooks::install_tls_provider();
    reqwest::Client::new()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = serve_args(dir.path(), extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = Server::start(&args, Some(listener)).await.expect("server starts");
    let (tenant, key) = server.service.create_tenant("tenant-a").await.expect("tenant");
    TestApp {
        base: format!("http://{}", server.addr),
        client: client(),
        key: key.secret.to_string(),
        tenant_id: tenant.id.to_string(),
        dir,
        server: Some(server),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The problem `code`, or "" for a success.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            self.text
        );
        self.body
    }

    #[track_caller]
    pub fn expect(self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.code(), code, "{}", self.text);
        if status >= 400 {
            assert_eq!(
                self.headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/problem+json"),
                "problems are problem+json"
            );
            assert!(
                self.body["request_id"].is_string(),
                "problem carries request_id: {}",
                self.text
            );
        }
        self.body
    }
}

impl TestApp {
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("cardcore.db")
    }

    pub fn service(&self) -> &cardcore_service::Service {
        &self.server.as_ref().expect("running").service
    }

    /// A second tenant, with its key.
    pub async fn new_tenant(&self, name: &str) -> String {
        let (_, key) = self.service().create_tenant(name).await.expect("tenant");
        key.secret.to_string()
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(
            headers.contains_key("x-request-id"),
            "every response carries x-request-id"
        );
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn call_as(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let ct = bytes.as_ref().map(|_| "application/json");
        self.raw(method, path, Some(key), bytes, ct).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call_as(&self.key, Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call_as(&self.key, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call_as(&self.key, Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call_as(&self.key, Method::DELETE, path, None).await
    }

    pub async fn create_cardholder_as(&self, key: &str, external_id: &str) -> Value {
        self.call_as(
            key,
            Method::POST,
            "/v1/cardholders",
            Some(json!({
                "external_id": external_id,
                "name": "Ana Silva",
                "phone": {"country_code": "91", "number": "9600389470"},
                "email": "ana@example.com",
                "date_of_birth": "1990-05-17"
            })),
        )
        .await
        .ok()
    }

    pub async fn create_cardholder(&self, external_id: &str) -> Value {
        self.create_cardholder_as(&self.key.clone(), external_id).await
    }

    pub async fn create_card_as(&self, key: &str, cardholder_id: &str, card_type: &str) -> Value {
        self.call_as(
            key,
            Method::POST,
            "/v1/cards",
            Some(json!({"cardholder_id": cardholder_id, "type": card_type})),
        )
        .await
        .ok()
    }

    /// A cardholder with one card of `card_type`.
    pub async fn card(&self, card_type: &str) -> Value {
        let ext = format!("u-{}", uuid::Uuid::new_v4().simple());
        let holder = self.create_cardholder(&ext).await;
        self.create_card_as(&self.key.clone(), holder["id"].as_str().unwrap(), card_type)
            .await
    }

    /// An ACTIVE card: virtual, or physical and activated.
    pub async fn active_card(&self, card_type: &str) -> Value {
        let card = self.card(card_type).await;
        if card_type == "physical" {
            let id = card["id"].as_str().unwrap();
            let code = self.activation_code(id).await;
            return self
                .post(&format!("/v1/cards/{id}/activate"), json!({"activation_code": code}))
                .await
                .ok();
        }
        card
    }

    /// Every event of the tenant (all pages).
    pub async fn all_events_as(&self, key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/events?limit=100&after={a}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let page = self.call_as(key, Method::GET, &path, None).await.ok();
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => after = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    pub async fn all_events(&self) -> Vec<Value> {
        self.all_events_as(&self.key.clone()).await
    }

    pub async fn card_events(&self, card_id: &str) -> Vec<Value> {
        self.all_events()
            .await
            .into_iter()
            .filter(|e| e["card_id"] == card_id)
            .collect()
    }

    /// The activation code from the card's `card.activation_code` event.
    pub async fn activation_code(&self, card_id: &str) -> String {
        self.card_events(card_id)
            .await
            .into_iter()
            .rev()
            .find(|e| e["type"] == "card.activation_code")
            .and_then(|e| e["data"]["activation_code"].as_str().map(str::to_owned))
            .expect("activation code event")
    }

    /// The card's audit trail, newest first (first page of 100).
    pub async fn audit(&self, card_id: &str) -> Vec<Value> {
        self.get(&format!("/v1/cards/{card_id}/events?limit=100")).await.ok()["data"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl TestApp {
    /// The card's PAN, through the audited reveal.
    pub async fn pan(&self, card_id: &str) -> String {
        self.get(&format!("/v1/cards/{card_id}/sensitive")).await.ok()["pan"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Sets a plain PIN.
    pub async fn set_pin(&self, card_id: &str, pin: &str) -> Value {
        self.put(&format!("/v1/cards/{card_id}/pin"), json!({ "pin": pin }))
            .await
            .ok()
    }

    /// Verifies a plain PIN.
    pub async fn verify(&self, card_id: &str, pin: &str) -> Resp {
        self.post(&format!("/v1/cards/{card_id}/pin/verify"), json!({ "pin": pin }))
            .await
    }

    /// Asks for an OTP and reads the code from the `otp.created` event.
    pub async fn otp(&self, card_id: &str) -> (String, String) {
        let created = self
            .post(&format!("/v1/cards/{card_id}/otp"), json!({"purpose": "pin_change"}))
            .await
            .expect(201, "");
        let trace = created["trace_number"].as_str().unwrap().to_owned();
        let event = self
            .card_events(card_id)
            .await
            .into_iter()
            .rev()
            .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
            .expect("otp.created event");
        (trace, event["data"]["otp"].as_str().unwrap().to_owned())
    }

    /// Stops the server (gracefully) and starts a new one on the same data.
    pub async fn restart(&mut self, extra: &[&str]) {
        self.server.take().expect("running").stop().await.expect("stops");
        let args = serve_args(self.dir.path(), extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Server::start(&args, Some(listener)).await.expect("server restarts");
        self.base = format!("http://{}", server.addr);
        self.server = Some(server);
    }

    /// Tries to start a second server on the same SQLite database: refused
    /// while this one runs (one server per SQLite file; several nodes need
    /// PostgreSQL, see tests/nodes.rs).
    pub async fn second_server(&self) -> anyhow::Result<Server> {
        let args = serve_args(self.dir.path(), &[]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Server::start(&args, Some(listener)).await
    }
}

/// Whether `needle` appears in `haystack` as a token of its own: not inside a
/// longer run of hex digits (UUIDs, hashes) and not as fractional seconds.
pub fn contains_token(haystack: &str, needle: &str) -> bool {
    let bytes = haystack.as_bytes();
    let mut from = 0;
    while let Some(pos) = haystack[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        let glued = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
        if !glued(before) && !glued(after) && before != Some(b'.') {
            return true;
        }
        from = start + 1;
    }
    false
}
