//! API keys as things an operator manages (create, list, revoke from the
//! command line), and the limits that count per authenticated key and per
//! client address, tried the way a caller or an attacker would.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::dialect_cross::{m2p, m2p_login, owned_card, p100, qi, send, Body};
use crate::helpers::{spawn_app, spawn_app_with, Resp, TestApp};

/// What the contract promises: a revoked key is refused on every node within this.
const PROMISE: Duration = Duration::from_secs(5);

/// `cardcore ARGS --database <the app's database>`; stdout, or a panic with stderr.
fn cli(app: &TestApp, args: &[&str]) -> String {
    let out = cli_output(app, args);
    assert!(
        out.status.success(),
        "cardcore {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cli_output(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .env_remove("CARDCORE_MASTER_KEY")
        .env_remove("CARDCORE_DATABASE_URL")
        .args(args)
        .arg("--database")
        .arg(format!("sqlite://{}", app.db_path().display()))
        // The server writes to the same file; under a loaded test run the
        // write lock may take longer than the default 3 s to get.
        .args(["--db-timeout-seconds", "30"])
        .output()
        .unwrap()
}

fn one_json_line(stdout: &str) -> Value {
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints the JSON and nothing else: {stdout}"
    );
    serde_json::from_str(stdout).unwrap()
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked_with_the_cli() {
    let app = spawn_app().await;
    let t = app.tenant_id.clone();

    let made = one_json_line(&cli(
        &app,
        &[
            "tenant",
            "api-key",
            "create",
            "--tenant",
            &t,
            "--name",
            "batch job",
            "--json",
        ],
    ));
    let mut fields: Vec<&str> = made.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["api_key", "key_id"], "{made}");
    let key = made["api_key"].as_str().unwrap().to_owned();
    let key_id = made["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cc_"));
    // The key works at once, and cannot reveal card data unless asked for.
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap();
    app.call_as(&key, Method::GET, &format!("/v1/cards/{id}/sensitive"), None)
        .await
        .expect(403, "forbidden");
    // The older spelling still makes a key.
    let old = one_json_line(&cli(
        &app,
        &["tenant", "api-key", "--tenant", &t, "--can-reveal", "--json"],
    ));
    let old_key = old["api_key"].as_str().unwrap().to_owned();
    assert_eq!(old["api_key_id"], old["key_id"]);
    app.call_as(&old_key, Method::GET, &format!("/v1/cards/{id}/sensitive"), None)
        .await
        .ok();

    // The list names every key, never a secret, and shows its use.
    app.call_as(&key, Method::GET, "/v1/cards", None).await.ok();
    let listing = |app: &TestApp| {
        let out = cli(app, &["tenant", "api-key", "list", "--tenant", &t, "--json"]);
        for secret in [&app.key, &key, &old_key] {
            assert!(!out.contains(secret.as_str()), "a listing never shows a key: {out}");
        }
        let text = cli(app, &["tenant", "api-key", "list", "--tenant", &t]);
        for secret in [&app.key, &key, &old_key] {
            assert!(!text.contains(secret.as_str()), "a listing never shows a key: {text}");
        }
        one_json_line(&out).as_array().unwrap().clone()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mine = loop {
        let keys = listing(&app);
        assert_eq!(keys.len(), 3, "{keys:?}");
        let mine = keys.iter().find(|k| k["key_id"] == key_id.as_str()).unwrap().clone();
        // "last used" is written off the request's path: wait for it.
        if !mine["last_used_at"].is_null() || Instant::now() > deadline {
            break mine;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mine["name"], "batch job");
    assert_eq!(mine["can_reveal"], false);
    assert!(mine["created_at"].is_string());
    assert!(mine["last_used_at"].is_string(), "{mine}");
    assert!(mine["revoked_at"].is_null());

    // Revoked: the listing says when, and the key authenticates nothing.
    let revoked = one_json_line(&cli(
        &app,
        &[
            "tenant", "api-key", "revoke", "--tenant", &t, "--key-id", &key_id, "--json",
        ],
    ));
    assert_eq!(revoked["key_id"], key_id.as_str());
    let keys = listing(&app);
    let mine = keys.iter().find(|k| k["key_id"] == key_id.as_str()).unwrap();
    assert_eq!(mine["revoked_at"], revoked["revoked_at"]);
    refused_within_promise(Instant::now(), || async {
        app.call_as(&key, Method::GET, "/v1/cards", None).await
    })
    .await;

    // Mistakes are refused with a message that says what is wrong.
    for (args, says) in [
        (
            vec![
                "tenant",
                "api-key",
                "revoke",
                "--tenant",
                &t,
                "--key-id",
                "0195f3a0-1c2d-7000-8000-00000000abcd",
            ],
            "has no API key",
        ),
        (
            vec!["tenant", "api-key", "revoke", "--tenant", &t, "--key-id", "nope"],
            "--key-id",
        ),
        (
            vec!["tenant", "api-key", "create", "--tenant", &t, "--name", " "],
            "name",
        ),
        (vec!["tenant", "api-key"], "subcommand"),
    ] {
        let out = cli_output(&app, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Polls `call` until it answers 401 (up to 15 s) and checks the promise:
/// every call that started more than [`PROMISE`] after `revoked` was refused.
/// Returns the observed delay.
async fn refused_within_promise<F, Fut>(revoked: Instant, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    loop {
        let started = Instant::now();
        let r = call().await;
        let after = started.duration_since(revoked);
        if r.status == 401 {
            return after;
        }
        assert!(
            after <= PROMISE,
            "a call started {after:?} after the revocation was still answered {}: {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_api_and_so_are_its_m2p_tokens() {
    let app = spawn_app().await;
    let t = app.tenant_id.clone();
    let c = owned_card(&app, "physical").await;
    let made = one_json_line(&cli(
        &app,
        &["tenant", "api-key", "create", "--tenant", &t, "--can-reveal", "--json"],
    ));
    let key = made["api_key"].as_str().unwrap().to_owned();
    let details = format!("/v1/card/details/{}/{}", c.external_id, c.id());
    let password = format!("/wallet/{}/card/{}/password", c.account(), c.id());
    let fetch = json!({"entityId": c.external_id});
    // Before: the key works everywhere, and mints an M2P token that works.
    app.call_as(&key, Method::GET, "/v1/cards", None).await.ok();
    assert_eq!(p100(&app, &key, Method::GET, &details, None).await.status, 200);
    assert_eq!(qi(&app, &key, &password, json!({"pin": "4821"})).await.status, 200);
    let token = m2p_login(&app, &t, &key).await;
    assert_eq!(
        m2p(&app, &token, "customers/fetch-all-cards", fetch.clone())
            .await
            .status,
        200
    );

    // Revoked by the operator, from another process.
    cli(
        &app,
        &[
            "tenant",
            "api-key",
            "revoke",
            "--tenant",
            &t,
            "--key-id",
            made["key_id"].as_str().unwrap(),
        ],
    );
    let revoked = Instant::now();
    let native = refused_within_promise(revoked, || async {
        app.call_as(&key, Method::GET, "/v1/cards", None).await
    })
    .await;
    let token_delay = refused_within_promise(revoked, || async {
        m2p(&app, &token, "customers/fetch-all-cards", fetch.clone()).await
    })
    .await;
    eprintln!("revocation observed after {native:?} (native), {token_delay:?} (M2P token)");

    // Every API refuses it in its own shape; the token too; no new token.
    app.call_as(&key, Method::GET, "/v1/cards", None)
        .await
        .expect(401, "unauthorized");
    let r = p100(&app, &key, Method::GET, &details, None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = qi(&app, &key, &password, json!({"pin": "7391"})).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (404, Some("GDF000018")),
        "{}",
        r.text
    );
    let r = m2p(&app, &token, "customers/fetch-all-cards", fetch).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = send(
        &app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": t, "clientSecret": key, "grantType": "client_credentials"}),
        )),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    // What was refused changed nothing: the PIN set before revocation stands.
    assert_eq!(app.verify(c.id(), "4821").await.ok()["valid"], true);
    // The tenant's other key is untouched.
    app.get("/v1/cards").await.ok();
}

/// Sends `GET /v1/cards` with exactly these headers.
async fn with_headers(app: &TestApp, headers: &[(&str, &str)]) -> Resp {
    send(app, Method::GET, "/v1/cards", headers, None).await
}

#[tokio::test]
async fn junk_in_another_auth_header_does_not_escape_the_keys_limit() {
    let app = spawn_app_with(&["--rate-limit-per-second", "1", "--rate-limit-burst", "4"]).await;
    let bearer = format!("Bearer {}", app.key);
    // The same key in every spelling, with junk beside it: one budget.
    let spellings: [&[(&str, &str)]; 4] = [
        &[("authorization", "Basic anVuazpqdW5r"), ("x-api-key", &app.key)],
        &[("authorization", &bearer)],
        &[("x-api-key", &app.key), ("api-client-key", "cc_junk")],
        &[("authorization", "Basic b3RoZXI6anVuaw=="), ("x-api-key", &app.key)],
    ];
    for headers in spellings {
        with_headers(&app, headers).await.ok();
    }
    for headers in spellings {
        let r = with_headers(&app, headers).await;
        assert_eq!(r.headers["ratelimit-remaining"], "0");
        assert!(r.headers.contains_key("retry-after"));
        r.expect(429, "rate_limited");
    }
}

#[tokio::test]
async fn junk_keys_from_one_address_get_429_after_the_burst_without_database_reads() {
    let app = spawn_app_with(&["--auth-failures-per-minute", "1", "--auth-failures-burst", "5"]).await;
    // A key that authenticated before the attack keeps working from the
    // same address (a client behind the same NAT).
    app.get("/v1/cards").await.ok();
    let spare = app
        .service()
        .create_api_key(app.tenant_id.parse().unwrap(), None, false)
        .await
        .unwrap()
        .secret
        .to_string();
    let junk = |i: usize| format!("cc_{:0>43}", i);
    let before = app.service().auth_key_lookups();
    let mut statuses = Vec::new();
    for i in 0..6 {
        // Native and QI Tech (which answers an unknown key with a 404) alike.
        let r = if i % 2 == 0 {
            app.call_as(&junk(i), Method::GET, "/v1/cards", None).await
        } else {
            qi(&app, &junk(i), "/wallet/w/card/c/password", json!({"pin": "4821"})).await
        };
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses,
        [401, 404, 401, 404, 401, 404],
        "the burst, then the failure that spends it"
    );
    assert_eq!(
        app.service().auth_key_lookups(),
        before + 6,
        "each new junk key was looked up"
    );
    let spent = app.service().auth_key_lookups();
    for i in 6..30 {
        let r = app.call_as(&junk(i), Method::GET, "/v1/cards", None).await;
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        r.expect(429, "rate_limited");
    }
    // Vendors' routes answer in their shape; junk in a body is limited too.
    let r = p100(&app, &junk(99), Method::GET, "/v1/card/all/someone", None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["errorCode"].as_str()),
        (429, Some("P429")),
        "{}",
        r.text
    );
    let r = send(
        &app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": app.tenant_id, "clientSecret": junk(100), "grantType": "client_credentials"}),
        )),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["businessCode"].as_str()),
        (429, Some("rate.limited")),
        "{}",
        r.text
    );
    assert_eq!(
        app.service().auth_key_lookups(),
        spent,
        "refused before any database read"
    );
    // The key known to this node still works from the address; a key it has
    // never seen waits like the junk (documented), and health checks are not limited.
    app.get("/v1/cards").await.ok();
    app.call_as(&spare, Method::GET, "/v1/cards", None)
        .await
        .expect(429, "rate_limited");
    assert_eq!(app.raw(Method::GET, "/healthz", None, None, None).await.status, 200);
}

#[tokio::test]
async fn a_junk_key_costs_one_database_read_however_often_it_is_sent() {
    let app = spawn_app().await;
    let before = app.service().auth_key_lookups();
    let junk = format!("cc_{}", "x".repeat(43));
    for _ in 0..50 {
        app.call_as(&junk, Method::GET, "/v1/cards", None)
            .await
            .expect(401, "unauthorized");
    }
    assert_eq!(app.service().auth_key_lookups(), before + 1, "remembered as unknown");
    // Things that cannot be a key are refused without any lookup.
    for bad in ["cc_short", "sk_live_abcdef", &format!("cc_{}", "!".repeat(43))] {
        app.call_as(bad, Method::GET, "/v1/cards", None)
            .await
            .expect(401, "unauthorized");
    }
    assert_eq!(app.service().auth_key_lookups(), before + 1);
    // A known key is read once per cache period (5 s), not once per request.
    for _ in 0..50 {
        app.get("/v1/cards").await.ok();
    }
    let reads = app.service().auth_key_lookups() - before - 1;
    assert!(reads < 10, "{reads} reads for 50 requests");
}

#[tokio::test]
async fn an_m2p_token_spends_its_keys_budget() {
    let app = spawn_app_with(&["--rate-limit-per-second", "1", "--rate-limit-burst", "5"]).await;
    let c = owned_card(&app, "virtual").await;
    let key = app
        .service()
        .create_api_key(app.tenant_id.parse().unwrap(), None, false)
        .await
        .unwrap()
        .secret
        .to_string();
    let auth = m2p_login(&app, &app.tenant_id, &key).await; // 1
    let body = json!({"entityId": c.external_id});
    for _ in 0..4 {
        assert_eq!(
            m2p(&app, &auth, "customers/fetch-all-cards", body.clone()).await.status,
            200
        );
    }
    // The key's budget is spent, whichever credential carries it.
    app.call_as(&key, Method::GET, "/v1/cards", None)
        .await
        .expect(429, "rate_limited");
    let r = m2p(&app, &auth, "customers/fetch-all-cards", body).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["businessCode"], "rate.limited");
    // A second token of the same key gets no fresh budget.
    let r = send(
        &app,
        Method::POST,
        "/m2p/auth/token",
        &[],
        Some(Body::Json(
            json!({"clientId": app.tenant_id, "clientSecret": key, "grantType": "client_credentials"}),
        )),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text);
    // The tenant's first key has its own budget.
    app.get("/v1/cards").await.ok();
}
