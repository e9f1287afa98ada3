//! Idempotency keys without secrets: after PIN and OTP calls sent with
//! `Idempotency-Key`, the database file holds nothing a dictionary of the
//! 10^4 PIN bodies (or the exact bodies sent, OTP included) reproduces; and
//! keys are scoped per API key, so a second key of the same tenant never
//! gets the first key's stored answer.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app, Resp, TestApp};

/// Sends exactly `body`'s bytes with an API key and an `Idempotency-Key`.
async fn send(app: &TestApp, api_key: &str, method: Method, path: &str, idem: &str, body: &[u8]) -> Resp {
    let res = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(api_key)
        .header("idempotency-key", idem)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
        text,
    }
}

fn replayed(r: &Resp) -> bool {
    r.headers.get("idempotent-replayed").is_some_and(|v| v == "true")
}

/// The fingerprint cardcore used to store: SHA-256 over method, path and
/// body, each prefixed with its length (u64, big-endian).
fn framed_sha256(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// What an attacker with the database and a dictionary looks for.
#[derive(Default)]
struct Dictionary {
    /// Hashes, raw and in hex (both cases).
    digests: HashSet<Vec<u8>>,
    /// Secrets and bodies in clear.
    plain: Vec<Vec<u8>>,
}

impl Dictionary {
    fn add_body(&mut self, requests: &[(&str, &str)], body: &[u8]) {
        let mut add = |d: &[u8]| {
            self.digests.insert(d.to_vec());
            self.digests.insert(hex::encode(d).into_bytes());
            self.digests.insert(hex::encode_upper(d).into_bytes());
        };
        add(&Sha256::digest(body));
        for (method, path) in requests {
            add(&framed_sha256(method, path, body));
        }
    }

    /// Every value, or part of a value, that the dictionary reproduces.
    fn leaks(&self, value: &[u8]) -> bool {
        if self.digests.contains(value) {
            return true;
        }
        // A digest inside a longer value (JSON, a prefixed fingerprint).
        if value.len() >= 32 && value.windows(32).any(|w| self.digests.contains(w)) {
            return true;
        }
        if value.len() >= 64 && value.windows(64).any(|w| self.digests.contains(w)) {
            return true;
        }
        self.plain
            .iter()
            .any(|p| value.windows(p.len()).any(|w| w == p.as_slice()))
    }
}

/// Every non-null value of every table of the SQLite file, as bytes, with
/// where it was found.
fn every_value(db: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, name) in names.iter().enumerate() {
                let bytes = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => continue,
                    rusqlite::types::ValueRef::Integer(n) => n.to_string().into_bytes(),
                    rusqlite::types::ValueRef::Real(f) => f.to_string().into_bytes(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.to_vec(),
                };
                out.push((format!("{table}.{name}"), bytes));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_database_gives_back_no_pin_or_otp_from_idempotency_records() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    let pin_path = format!("/v1/cards/{id}/pin");
    let verify_path = format!("/v1/cards/{id}/pin/verify");
    let change_path = format!("/v1/cards/{id}/pin/change");
    let otp_path = format!("/v1/cards/{id}/otp");
    let mut sent: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let body = |v: Value| serde_json::to_vec(&v).unwrap();

    // PIN set, right and wrong verifications, an OTP and a PIN change, each
    // with its own Idempotency-Key, each replayed once.
    let mut calls = vec![
        ("PUT", pin_path.clone(), body(json!({"pin": "4821"}))),
        ("POST", verify_path.clone(), body(json!({"pin": "4821"}))),
        ("POST", verify_path.clone(), body(json!({"pin": "5093"}))),
        ("POST", otp_path.clone(), body(json!({"purpose": "pin_change"}))),
    ];
    let mut answers = Vec::new();
    for (method, path, bytes) in &calls {
        let idem = uuid::Uuid::new_v4().to_string();
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let first = send(&app, &key, m.clone(), path, &idem, bytes).await;
        assert!(first.status.is_success(), "{}", first.text);
        let again = send(&app, &key, m, path, &idem, bytes).await;
        assert!(replayed(&again), "{method} {path} replays for the same key");
        assert_eq!(again.text, first.text);
        answers.push(first);
    }
    let trace = answers[3].body["trace_number"].as_str().unwrap().to_owned();
    let otp = app
        .card_events(&id)
        .await
        .into_iter()
        .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
        .unwrap()["data"]["otp"]
        .as_str()
        .unwrap()
        .to_owned();
    let change = body(json!({"old_pin": "4821", "new_pin": "7315", "otp": otp, "trace_number": trace}));
    let idem = uuid::Uuid::new_v4().to_string();
    send(&app, &key, Method::POST, &change_path, &idem, &change).await.ok();
    assert!(replayed(
        &send(&app, &key, Method::POST, &change_path, &idem, &change).await
    ));
    assert_eq!(app.verify(&id, "7315").await.ok()["valid"], true);
    calls.push(("POST", change_path.clone(), change));
    sent.extend(calls);

    // The attacker's dictionary: every 4-digit PIN body, hashed the way an
    // unkeyed fingerprint would be, for each PIN route; the exact bodies
    // sent (the OTP's among them); and the PINs and the OTP in clear.
    let mut dict = Dictionary::default();
    let pin_routes = [("PUT", pin_path.as_str()), ("POST", verify_path.as_str())];
    for n in 0..10_000 {
        dict.add_body(&pin_routes, format!(r#"{{"pin":"{n:04}"}}"#).as_bytes());
    }
    for (method, path, bytes) in &sent {
        dict.add_body(&[(method, path.as_str())], bytes);
        if !path.ends_with("/otp") {
            dict.plain.push(bytes.clone());
        }
    }
    for secret in [
        r#""pin":"4821""#.to_owned(),
        r#""pin":"5093""#.to_owned(),
        r#""old_pin":"4821""#.to_owned(),
        r#""new_pin":"7315""#.to_owned(),
        format!(r#""otp":"{otp}""#),
    ] {
        dict.plain.push(secret.into_bytes());
    }

    // The checker finds what it looks for: the fingerprint cardcore used to
    // store for the first PIN set, and a body in clear.
    assert!(dict.leaks(&framed_sha256("PUT", &pin_path, br#"{"pin":"4821"}"#)));
    assert!(dict.leaks(hex::encode(Sha256::digest(br#"{"pin":"0000"}"#)).as_bytes()));
    assert!(dict.leaks(br#"x{"pin":"4821"}y"#));

    let values = every_value(&app.db_path());
    let idempotency_rows = values
        .iter()
        .filter(|(at, _)| at == "idempotency_keys.fingerprint")
        .count();
    assert_eq!(idempotency_rows, 5, "every call's key is recorded");
    let leaks: Vec<&String> = values.iter().filter(|(_, v)| dict.leaks(v)).map(|(at, _)| at).collect();
    assert!(leaks.is_empty(), "the dictionary reproduces values in {leaks:?}");
}

#[tokio::test]
async fn a_second_api_key_never_gets_the_first_keys_answer() {
    let app = spawn_app().await;
    let tenant = app.tenant_id.parse().unwrap();
    let first = app.key.clone();
    let second = app
        .service()
        .create_api_key(tenant, Some("second"), true)
        .await
        .unwrap()
        .secret
        .to_string();
    let idem = "shared-key-1";
    let holder = serde_json::to_vec(&json!({
        "external_id": "idem-scope",
        "name": "Ana Silva",
        "phone": {"country_code": "91", "number": "9600389470"}
    }))
    .unwrap();

    let made = send(&app, &first, Method::POST, "/v1/cardholders", idem, &holder).await;
    assert_eq!(made.status.as_u16(), 201, "{}", made.text);

    // The same Idempotency-Key and body from the second key runs as its own
    // request (the external id is taken now): no replay of the first answer.
    let other = send(&app, &second, Method::POST, "/v1/cardholders", idem, &holder).await;
    assert!(!replayed(&other));
    other.expect(409, "cardholder_exists");

    // Nor does another body from the second key answer "key reused": the
    // second key cannot probe what the first key sent.
    let probe = serde_json::to_vec(&json!({
        "external_id": "idem-scope-2",
        "name": "Ana Silva",
        "phone": {"country_code": "91", "number": "9600389470"}
    }))
    .unwrap();
    let r = send(&app, &second, Method::POST, "/v1/cardholders", "shared-key-2", &probe).await;
    assert_eq!(r.status.as_u16(), 201);
    let r = send(&app, &first, Method::POST, "/v1/cardholders", "shared-key-2", &holder).await;
    assert!(!replayed(&r));
    assert_ne!(r.code(), "idempotency_key_reused", "{}", r.text);

    // The first key still gets its own answer back, byte for byte.
    let again = send(&app, &first, Method::POST, "/v1/cardholders", idem, &holder).await;
    assert!(replayed(&again));
    assert_eq!(again.status.as_u16(), 201);
    assert_eq!(again.text, made.text);
    // And the second key its own (the 409), replayed.
    let again = send(&app, &second, Method::POST, "/v1/cardholders", idem, &holder).await;
    assert!(replayed(&again));
    assert_eq!(again.status.as_u16(), 409);
}
