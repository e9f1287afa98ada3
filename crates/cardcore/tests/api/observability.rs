//! Metrics, rate limits and graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn prometheus_metrics_by_route_pattern_and_status() {
    let app = spawn_app().await;
    let id = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "4821").await;
    app.verify(&id, "4822").await.ok();
    app.get(&format!("/v1/cards/{}", uuid::Uuid::new_v4()))
        .await
        .expect(404, "card_not_found");
    // Made-up methods share one label value: each distinct value would be a
    // series kept for the life of the process.
    for method in ["XYZZY", "PLUGH"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        app.client
            .request(method, format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
    }
    let res = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"cardcore_http_requests_total{method="GET",route="/v1/cards/{id}",status="404"}"#),
        "{text}"
    );
    assert!(text
        .contains(r#"cardcore_http_request_duration_seconds_bucket{method="POST",route="/v1/cards/{id}/pin/verify""#));
    assert!(text.contains("cardcore_pin_verification_failures_total"));
    assert!(text.contains(r#"cardcore_db_pool_connections{state="idle"}"#));
    assert!(!text.contains(&id), "no ids in label values");
    assert!(text.contains(r#"method="OTHER""#), "{text}");
    assert!(!text.contains("XYZZY") && !text.contains("PLUGH"), "{text}");
}

#[tokio::test]
async fn per_key_rate_limit_answers_429_with_headers() {
    let app = spawn_app_with(&["--rate-limit-per-second", "1", "--rate-limit-burst", "3"]).await;
    let other = app.new_tenant("tenant-b").await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let r = app.get("/v1/cards").await;
        statuses.push(r.status.as_u16());
        last = Some(r);
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let r = last.unwrap();
    assert_eq!(r.headers["ratelimit-limit"], "3");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    assert!(r.headers.contains_key("ratelimit-reset"));
    assert!(r.headers.contains_key("retry-after"));
    r.expect(429, "rate_limited");
    // Another key has its own budget; health checks are not limited.
    assert_eq!(app.call_as(&other, Method::GET, "/v1/cards", None).await.status, 200);
    let ok = app.call_as(&other, Method::GET, "/v1/cards", None).await;
    assert_eq!(ok.headers["ratelimit-remaining"], "1");
    for _ in 0..5 {
        assert_eq!(app.raw(Method::GET, "/healthz", None, None, None).await.status, 200);
    }
    let _ = json!({});
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardcore"))
        .current_dir(dir.path())
        .env_remove("CARDCORE_DATABASE_URL")
        .env_remove("CARDCORE_MASTER_KEY")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        crate::helpers::client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

#[tokio::test]
async fn per_card_limit_on_pin_and_otp_calls_through_every_api() {
    let app = spawn_app_with(&["--card-pin-calls-per-minute", "3"]).await;
    let card = app.active_card("virtual").await;
    let id = card["id"].as_str().unwrap().to_owned();
    let other = app.active_card("virtual").await["id"].as_str().unwrap().to_owned();
    app.set_pin(&id, "4821").await; // 1
    app.verify(&id, "4821").await.ok(); // 2
    app.post(&format!("/v1/cards/{id}/otp"), json!({}))
        .await
        .expect(201, ""); // 3
    let r = app.verify(&id, "4821").await;
    assert_eq!(r.headers["ratelimit-limit"], "3");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let p = r.expect(429, "rate_limited");
    assert!(p["detail"].as_str().unwrap().contains("card"), "{p}");
    // The same card through a vendor dialect: the same budget, the vendor's shape.
    let holder = app
        .get(&format!("/v1/cardholders/{}", card["cardholder_id"].as_str().unwrap()))
        .await
        .ok();
    let res = app
        .client
        .patch(format!("{}/p100/v1/card/pin", app.base))
        .header("x-api-key", &app.key)
        .json(&json!({"externalUserId": holder["external_id"], "cardId": id, "pin": "7391"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errorCode"], "P429");
    // Another card has its own budget; reads of the card are not counted.
    app.set_pin(&other, "4821").await;
    app.get(&format!("/v1/cards/{id}")).await.ok();
}

#[tokio::test]
async fn per_card_limit_in_qi_tech_and_m2p_shapes() {
    use crate::dialect_cross::{m2p, m2p_login, owned_card, qi};
    let app = spawn_app_with(&["--card-pin-calls-per-minute", "1"]).await;
    // QI Tech: a plastic card spent its budget on its activation (activation
    // calls count like PIN and OTP calls), so its password waits.
    let c = owned_card(&app, "physical").await;
    let path = format!("/wallet/{}/card/{}/password", c.account(), c.id());
    let r = qi(&app, &app.key, &path, json!({"pin": "7391"})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["code"], "QIT000429");
    assert!(r.headers.contains_key("retry-after"));
    // M2P: validate-pin on a card that already spent its budget on a PIN set.
    let c = owned_card(&app, "virtual").await;
    app.set_pin(c.id(), "4821").await;
    let auth = m2p_login(&app, &app.tenant_id, &app.key).await;
    let r = m2p(
        &app,
        &auth,
        "cards/v2/validate-pin",
        json!({"entityId": c.external_id, "kit": c.kit(), "oldPin": "4821"}),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["businessCode"], "rate.limited");
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn per_key_limit_answers_in_each_vendors_shape() {
    use crate::dialect_cross::{m2p, m2p_login, owned_card, p100, qi};
    let app = spawn_app_with(&["--rate-limit-per-second", "1", "--rate-limit-burst", "5"]).await;
    let c = owned_card(&app, "physical").await;
    let tenant = app.tenant_id.parse().unwrap();
    let key = app
        .service()
        .create_api_key(tenant, None, true)
        .await
        .unwrap()
        .secret
        .to_string();
    // Spend the second key's burst, then each vendor answers in its shape.
    for _ in 0..5 {
        app.call_as(&key, Method::GET, "/v1/cards", None).await;
    }
    let details = format!("/v1/card/details/{}/{}", c.external_id, c.id());
    let r = p100(&app, &key, Method::GET, &details, None).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["errorCode"], "P429");
    assert!(r.headers.contains_key("retry-after") && r.headers.contains_key("ratelimit-limit"));
    let path = format!("/wallet/{}/card/{}/password", c.account(), c.id());
    let r = qi(&app, &key, &path, json!({"pin": "4821"})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["code"], "QIT000429");
    app.call_as(&key, Method::GET, "/v1/cards", None)
        .await
        .expect(429, "rate_limited");
    // M2P: a token spends the budget of the key it was issued for.
    let third = app
        .service()
        .create_api_key(tenant, None, true)
        .await
        .unwrap()
        .secret
        .to_string();
    let auth = m2p_login(&app, &app.tenant_id, &third).await;
    let body = json!({"entityId": c.external_id});
    let mut last = None;
    for _ in 0..5 {
        last = Some(m2p(&app, &auth, "customers/fetch-all-cards", body.clone()).await);
    }
    let r = last.unwrap();
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["businessCode"], "rate.limited");
    assert!(r.headers.contains_key("retry-after") && r.headers.contains_key("ratelimit-limit"));
}
