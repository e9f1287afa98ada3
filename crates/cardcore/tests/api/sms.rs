//! OTPs by SMS: a fake Twilio and a fake generic provider on 127.0.0.1
//! receive the messages the dispatcher sends from the outbox.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::dialect_cross::{m2p, m2p_login, Owned};
use crate::helpers::{contains_token, spawn_app_with, TestApp};

/// One request the fake provider got.
#[derive(Debug, Clone)]
struct Sms {
    path: String,
    authorization: Option<String>,
    extra_header: Option<String>,
    content_type: Option<String>,
    body: String,
    status: u16,
}

#[derive(Default)]
struct Inner {
    /// Statuses to answer, in order; then 201.
    answers: VecDeque<u16>,
    got: Vec<Sms>,
}

#[derive(Clone)]
struct Provider {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut g = inner.lock().unwrap();
    let status = g.answers.pop_front().unwrap_or(201);
    g.got.push(Sms {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        extra_header: header("x-provider-key"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Provider {
    async fn start(answers: &[u16]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            answers: answers.iter().copied().collect(),
            got: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            inner,
        }
    }

    fn got(&self) -> Vec<Sms> {
        self.inner.lock().unwrap().got.clone()
    }

    /// Waits (20 s at most) until `done` holds for what arrived.
    async fn wait(&self, what: &str, done: impl Fn(&[Sms]) -> bool) -> Vec<Sms> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}; got {got:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Form fields of a Twilio request, decoded.
fn form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() + 1 {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The 6-digit code in a message.
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

/// Runs `cardcore tenant sms` on the app's database.
fn tenant_sms(app: &TestApp, args: &[&str]) -> Value {
    let db = format!("sqlite://{}", app.db_path().display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .args(["tenant", "sms", "--tenant", &app.tenant_id, "--json", "--database", &db])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn http_flags(provider: &Provider) -> Vec<String> {
    [
        "--sms-provider",
        "http",
        "--sms-http-url",
        &format!("{}/send", provider.base),
        "--sms-http-body",
        r#"{"recipient":"{to}","message":"{text}","ref":"{otp_id}"}"#,
        "--sms-http-header",
        "X-Provider-Key: pk-test",
        "--sms-retry-schedule",
        "50ms,50ms,50ms,50ms",
        "--webhook-poll-interval-ms",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn spawn(flags: &[String]) -> TestApp {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    spawn_app_with(&flags).await
}

/// The story the issue asks for: an M2P app generates an OTP, the
/// cardholder gets it by SMS (a fake Twilio), and the PIN change with that
/// code succeeds. With the code turned off in events, `otp.created` carries
/// none.
#[tokio::test]
async fn m2p_pin_change_end_to_end_with_the_code_from_a_fake_twilio() {
    let twilio = Provider::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("twilio.token");
    std::fs::write(&token_file, "tw-secret-token\n").unwrap();
    let app = spawn(&[
        "--sms-provider".into(),
        "twilio".into(),
        "--twilio-account-sid".into(),
        "AC0123456789".into(),
        "--twilio-auth-token-file".into(),
        token_file.display().to_string(),
        "--sms-from".into(),
        "+15550001111".into(),
        "--twilio-base-url".into(),
        twilio.base.clone(),
        "--webhook-poll-interval-ms".into(),
        "20".into(),
    ])
    .await;
    let settings = tenant_sms(
        &app,
        &[
            "--enabled",
            "true",
            "--otp-in-events",
            "false",
            "--text",
            "Your {tenant} code is {code}. It expires in {minutes} minutes.",
        ],
    );
    assert_eq!(settings["enabled"], true);
    assert_eq!(settings["otp_in_events"], false);

    let holder = app.create_cardholder("621643170420004195030925").await;
    let card = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "virtual")
        .await;
    let c = Owned {
        external_id: "621643170420004195030925".into(),
        card,
    };
    app.set_pin(c.id(), "4821").await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key.clone()).await;
    let r = m2p(
        &app,
        &auth,
        "otp/generate",
        json!({"mobileNumber": "9600389470", "entityId": c.external_id, "kitNo": c.kit(), "otpType": "S"}),
    )
    .await
    .ok();
    let trace = r["result"]["traceNumber"].as_str().unwrap().to_owned();

    let got = twilio.wait("the SMS", |g| !g.is_empty()).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let sms = &got[0];
    assert_eq!(sms.path, "/2010-04-01/Accounts/AC0123456789/Messages.json");
    let basic = sms.authorization.as_deref().unwrap().strip_prefix("Basic ").unwrap();
    assert_eq!(
        basic,
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "AC0123456789:tw-secret-token"
        )
    );
    assert_eq!(sms.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    let fields = form(&sms.body);
    assert_eq!(field(&fields, "To"), "+919600389470");
    assert_eq!(field(&fields, "From"), "+15550001111");
    let code = code_in(field(&fields, "Body"));
    assert_eq!(
        field(&fields, "Body"),
        format!("Your tenant-a code is {code}. It expires in 5 minutes.")
    );

    // The event says an OTP was made, without the code.
    let event = app
        .card_events(c.id())
        .await
        .into_iter()
        .find(|e| e["type"] == "otp.created")
        .unwrap();
    assert_eq!(event["data"]["trace_number"], trace.as_str());
    assert!(event["data"].get("otp").is_none(), "{event}");
    assert!(!event.to_string().contains(&code), "{event}");
    let detail = app
        .get(&format!("/v1/events/{}", event["id"].as_str().unwrap()))
        .await
        .ok();
    assert!(!detail.to_string().contains(&code), "{detail}");

    // The M2P PIN change with the code from the SMS.
    let body = json!({
        "mobile": {"value": "9600389470", "countryCode": 91},
        "entityId": c.external_id,
        "kit": c.kit(),
        "expiryDate": c.expiry(),
        "otp": code,
        "oldPin": "4821",
        "newPin": "4545",
        "otpDetails": {"traceNumber": trace, "mobileNumber": "9600389470", "otp": code},
        "rule": {"expiryDate": c.expiry(), "otp": code, "traceNumber": trace}
    });
    let r = m2p(&app, &auth, "cards/update/pin", body).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(app.verify(c.id(), "4545").await.ok()["valid"], true);
}

/// A provider 500 is retried; after the 2xx the message is never sent
/// again, not even on a redelivery of its event.
#[tokio::test]
async fn a_provider_500_is_retried_and_a_sent_sms_is_not_sent_again() {
    let provider = Provider::start(&[500, 500]).await;
    let app = spawn(&http_flags(&provider)).await;
    tenant_sms(&app, &["--enabled", "true"]);
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    let (trace, code) = app.otp(id).await; // the code is in the event too (the default)

    let got = provider
        .wait("a success after two failures", |g| g.iter().any(|s| s.status == 201))
        .await;
    assert_eq!(got.iter().map(|s| s.status).collect::<Vec<_>>(), [500, 500, 201]);
    for sms in &got {
        assert_eq!(sms.path, "/send");
        assert_eq!(sms.extra_header.as_deref(), Some("pk-test"));
        let v: Value = serde_json::from_str(&sms.body).unwrap();
        assert_eq!(v["recipient"], "+919600389470");
        assert_eq!(v["ref"], trace.as_str());
        assert_eq!(
            v["message"],
            format!("Your verification code is {code}. It expires in 5 minutes.")
        );
    }
    let event = app
        .card_events(id)
        .await
        .into_iter()
        .find(|e| e["type"] == "otp.created")
        .unwrap();
    let event_id = event["id"].as_str().unwrap();
    // The provider answered 201 a moment before the attempt is recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let detail = loop {
        let detail = app.get(&format!("/v1/events/{event_id}")).await.ok();
        if detail["deliveries"][0]["state"] == "succeeded" || std::time::Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{detail}");
    assert_eq!(deliveries[0]["state"], "succeeded", "{detail}");
    assert_eq!(deliveries[0]["attempts"], 3);

    // A redelivery does not queue the SMS again.
    let again = app.post(&format!("/v1/events/{event_id}/redeliver"), json!({})).await;
    assert_eq!(again.status.as_u16(), 202, "{}", again.text);
    assert_eq!(again.body["deliveries"].as_array().unwrap().len(), 1);
    // A second OTP's SMS arrives, and the first is still sent once.
    let (trace2, _) = app.otp(id).await;
    let got = provider
        .wait("the second OTP's SMS", |g| g.iter().any(|s| s.body.contains(&trace2)))
        .await;
    assert_eq!(
        got.iter()
            .filter(|s| s.body.contains(&trace) && s.status == 201)
            .count(),
        1
    );
    assert_eq!(got.iter().filter(|s| s.body.contains(&trace)).count(), 3);
    // The SMS endpoint is the operator's: not in the tenant's list.
    assert_eq!(app.get("/v1/webhook-endpoints").await.ok()["data"], json!([]));
}

/// An SMS that failed before the server stopped is sent after it starts again.
#[tokio::test]
async fn a_pending_sms_is_sent_after_a_restart() {
    let provider = Provider::start(&[503]).await;
    let mut flags = http_flags(&provider);
    // Long enough that the retry is still pending when the server stops.
    let pos = flags.iter().position(|f| f == "50ms,50ms,50ms,50ms").unwrap();
    flags[pos] = "1s,1s,1s".into();
    let mut app = spawn(&flags).await;
    tenant_sms(&app, &["--enabled", "true"]);
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap().to_owned();
    let (trace, _) = app.otp(&id).await;
    provider.wait("the failed attempt", |g| g.len() == 1).await;

    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    app.restart(&refs).await;
    let got = provider
        .wait("the SMS after the restart", |g| g.iter().any(|s| s.status == 201))
        .await;
    assert!(got.iter().all(|s| s.body.contains(&trace)));
    assert_eq!(got.iter().filter(|s| s.status == 201).count(), 1);
}

/// Settings are checked, and bad provider flags stop the server at start.
#[tokio::test]
async fn bad_settings_and_flags_are_refused_naming_them() {
    let app = crate::helpers::spawn_app().await;
    let db = format!("sqlite://{}", app.db_path().display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .args([
            "tenant",
            "sms",
            "--tenant",
            &app.tenant_id,
            "--text",
            "no code here",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("{code}"));
    // Nothing changed.
    assert_eq!(
        tenant_sms(&app, &[])["text"],
        "Your verification code is {code}. It expires in {minutes} minutes."
    );
    // `tenant update --otp-in-events` is the same setting (docs/native-api.md).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .args([
            "tenant",
            "update",
            "--tenant",
            &app.tenant_id,
            "--otp-in-events",
            "false",
        ])
        .args(["--database", &db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let settings = tenant_sms(&app, &[]);
    assert_eq!(settings["otp_in_events"], false);
    assert_eq!(settings["enabled"], false);

    let dir = tempfile::tempdir().unwrap();
    for (flags, needle) in [
        (vec!["--sms-provider", "http"], "--sms-http-url"),
        (
            vec!["--sms-provider", "http", "--sms-http-url", "ftp://x"],
            "--sms-http-url",
        ),
        (
            vec![
                "--sms-provider",
                "http",
                "--sms-http-url",
                "http://127.0.0.1:9/",
                "--sms-http-body",
                "{\"t\": {text}}",
            ],
            "--sms-http-body",
        ),
        (
            vec!["--sms-provider", "twilio", "--sms-from", "+1555"],
            "--twilio-account-sid",
        ),
        (
            vec![
                "--sms-provider",
                "twilio",
                "--twilio-account-sid",
                "AC1",
                "--sms-from",
                "+1",
            ],
            "--twilio-auth-token-file",
        ),
    ] {
        let args = crate::helpers::serve_args(dir.path(), &flags);
        let err = match cardcore::Server::start(&args, None).await {
            Ok(_) => panic!("{flags:?} started"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
}

/// The code reaches the provider and nowhere in the server's output, even
/// at debug level and with the code kept out of the events.
#[tokio::test]
async fn the_code_never_reaches_a_log_line() {
    use std::io::Read;
    let provider = Provider::start(&[500]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cardcore.db").display());
    let bin = env!("CARGO_BIN_EXE_cardcore");
    let tenant = std::process::Command::new(bin)
        .args(["tenant", "create", "--name", "smslogs", "--json", "--database", &db])
        .output()
        .unwrap();
    let tenant: Value = serde_json::from_slice(&tenant.stdout).unwrap();
    let key = tenant["api_key"].as_str().unwrap().to_owned();
    let out = std::process::Command::new(bin)
        .args([
            "tenant",
            "sms",
            "--tenant",
            tenant["tenant_id"].as_str().unwrap(),
            "--enabled",
            "true",
        ])
        .args(["--otp-in-events", "false", "--database", &db])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let url = format!("{}/send", provider.base);
    let mut child = std::process::Command::new(bin)
        .env("RUST_LOG", "debug")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &db,
            "--sms-provider",
            "http",
        ])
        .args([
            "--sms-http-url",
            &url,
            "--sms-retry-schedule",
            "50ms,50ms",
            "--webhook-poll-interval-ms",
            "20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut first = [0u8; 256];
    let n = child.stdout.as_mut().unwrap().read(&mut first).unwrap();
    let line = String::from_utf8_lossy(&first[..n]).to_string();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let client = crate::helpers::client();
    let call = |method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, format!("http://{addr}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let holder: Value = call(
        reqwest::Method::POST,
        "/v1/cardholders".into(),
        json!({"external_id": "u-1", "name": "Ana", "phone": {"country_code": "91", "number": "9600389470"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let card: Value = call(
        reqwest::Method::POST,
        "/v1/cards".into(),
        json!({"cardholder_id": holder["id"], "type": "virtual"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = card["id"].as_str().unwrap();
    let r = call(reqwest::Method::POST, format!("/v1/cards/{id}/otp"), json!({}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let got = provider.wait("the SMS", |g| g.iter().any(|s| s.status == 201)).await;
    let v: Value = serde_json::from_str(&got.last().unwrap().body).unwrap();
    let code = code_in(v["text"].as_str().unwrap());
    // Stop the server, then read everything it printed.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut rest = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut rest);
    let logs = std::fs::read_to_string(&log_path).unwrap() + &line + &rest;
    assert!(logs.contains("webhook"), "debug logs were captured: {logs}");
    assert!(!contains_token(&logs, &code), "the code {code} is in the logs");
    assert!(!logs.contains("9600389470"), "the phone number is in the logs");
}
