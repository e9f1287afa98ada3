//! Webhook targets, tried as an attacker would: a tenant names an address
//! inside the server's networks (in any spelling) and hopes cardcore calls
//! it. Every address here is a literal or `localhost`, so no test packet
//! leaves loopback; a listener on 127.0.0.1 counts the connections it
//! accepts, which is how "refused before any packet" is shown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{serve_args, spawn_app_with, TestApp};

/// A listener on 127.0.0.1 that counts accepted connections and answers
/// each request `200` (so an allowed delivery succeeds and is not retried).
struct Counter {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// Requests being answered now, the most at once, and answered.
    busy: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

impl Counter {
    async fn start() -> Self {
        Self::answering_after(Duration::ZERO).await
    }

    /// Answers each request after `delay`.
    async fn answering_after(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let (b, m, a) = (busy.clone(), most.clone(), answered.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (busy, most, answered) = (b.clone(), m.clone(), a.clone());
                tokio::spawn(async move {
                    // Read the head and the body it announces, then answer.
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (name, value) = l.split_once(':')?;
                                    name.eq_ignore_ascii_case("content-length")
                                        .then(|| value.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    answered.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            accepted,
            busy,
            most,
            answered,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

const NO_NETWORKS: &[&str] = &["--webhook-allow-networks", ""];

/// Fast retries and polling, and no admitted network unless `allow`.
fn fast(allow: &str) -> Vec<String> {
    [
        "--webhook-retry-schedule",
        "100ms,100ms,100ms",
        "--webhook-poll-interval-ms",
        "20",
        "--webhook-timeout-ms",
        "2000",
        "--webhook-lease-seconds",
        "5",
        "--webhook-allow-networks",
        allow,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn register(app: &TestApp, url: &str) -> crate::helpers::Resp {
    app.post("/v1/webhook-endpoints", json!({ "url": url })).await
}

#[tokio::test]
async fn inside_addresses_are_refused_at_registration_in_every_spelling() {
    let counter = Counter::start().await;
    let p = counter.port;
    let app = spawn_app_with(NO_NETWORKS).await;
    // (URL, a word the reason must name). The path carries a token that
    // must never be echoed.
    let cases: Vec<(String, &str)> = vec![
        (format!("http://127.0.0.1:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("https://127.0.0.1:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("http://2130706433:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("http://0x7f000001:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("http://0177.0.0.1:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("http://127.1:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("http://[::1]:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (
            format!("http://[::ffff:127.0.0.1]:{p}/hook?token=tok-SECRET-1"),
            "loopback",
        ),
        (
            format!("https://[::ffff:7f00:1]:{p}/hook?token=tok-SECRET-1"),
            "loopback",
        ),
        (format!("http://localhost:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("https://localhost:{p}/hook?token=tok-SECRET-1"), "loopback"),
        (format!("http://0.0.0.0:{p}/hook?token=tok-SECRET-1"), "unspecified"),
        (
            "http://169.254.169.254/latest/meta-data/?token=tok-SECRET-1".into(),
            "link-local",
        ),
        ("https://2852039166/latest/meta-data/".into(), "link-local"),
        ("https://[::ffff:169.254.169.254]/".into(), "link-local"),
        ("https://[fe80::1]/".into(), "link-local"),
        ("https://10.0.0.1/".into(), "private"),
        ("https://012.1.2.3/".into(), "private"),
        ("https://192.168.0.1/".into(), "private"),
        ("https://0xc0a80001/".into(), "private"),
        ("https://172.16.0.1/".into(), "private"),
        ("https://[fd00:ec2::254]/".into(), "private"),
        ("https://100.64.0.1/".into(), "carrier-grade NAT"),
        ("https://224.0.0.1/".into(), "multicast"),
        ("https://[ff02::1]/".into(), "multicast"),
        ("https://255.255.255.255/".into(), "broadcast"),
        ("https://192.0.2.1/".into(), "reserved"),
        ("https://[2001:db8::1]/".into(), "reserved"),
    ];
    for (url, reason) in &cases {
        let res = register(&app, url).await;
        let body = res.expect(422, "validation_error");
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{url}: {message}");
        let text = body.to_string();
        assert!(!text.contains("tok-SECRET-1"), "{url}: the URL is never echoed: {text}");
    }
    // Nothing was registered, and nothing reached the listener.
    let list = app.get("/v1/webhook-endpoints").await.ok();
    assert_eq!(list["data"], json!([]));
    assert_eq!(counter.accepted(), 0, "no connection was made to check a URL");
}

#[tokio::test]
async fn public_targets_need_https_and_admitted_networks_may_use_http() {
    let app = spawn_app_with(&["--webhook-allow-networks", "127.0.0.0/8,10.9.0.0/16"]).await;
    let refused = register(&app, "http://8.8.8.8/hook")
        .await
        .expect(422, "validation_error");
    assert_eq!(refused["errors"][0]["field"], "url");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("https"));
    // https to a public address is fine (it is never called: the endpoint
    // is deleted before any event is made).
    let public = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": "https://8.8.8.8/hook", "events": ["card.pin_blocked"]}),
        )
        .await
        .expect(201, "");
    app.delete(&format!("/v1/webhook-endpoints/{}", public["id"].as_str().unwrap()))
        .await
        .ok();
    // An admitted network takes plain http; the next network does not.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.9.1.2/hook",
        "http://localhost:9/hook",
    ] {
        let made = register(&app, url).await.expect(201, "");
        app.delete(&format!("/v1/webhook-endpoints/{}", made["id"].as_str().unwrap()))
            .await
            .ok();
    }
    for url in ["http://10.8.1.2/hook", "https://10.8.1.2/hook", "http://[::1]:9/hook"] {
        let res = register(&app, url).await.expect(422, "validation_error");
        assert_eq!(res["errors"][0]["field"], "url", "{url}");
    }
}

/// Polls the event until every delivery has `attempts` attempts or more.
async fn attempted(app: &TestApp, event_id: &str, deliveries: usize, attempts: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = app.get(&format!("/v1/events/{event_id}")).await.ok();
        let list = e["deliveries"].as_array().unwrap();
        if list.len() == deliveries && list.iter().all(|d| d["attempts"].as_u64().unwrap() >= attempts) {
            return e;
        }
        assert!(Instant::now() < deadline, "gave up waiting for attempts: {e:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_target_no_longer_allowed_is_refused_at_connection_without_a_packet() {
    let counter = Counter::start().await;
    let p = counter.port;
    // Registered while loopback is admitted: by address, and by a name that
    // resolves to it (the dispatcher's resolver is what checks names).
    let allowed = fast("127.0.0.0/8,::1/128");
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let mut app = spawn_app_with(&allowed).await;
    for url in [format!("http://127.0.0.1:{p}/a"), format!("http://localhost:{p}/b")] {
        app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["card.created"]}))
            .await
            .expect(201, "");
    }
    // While admitted, both are called: the resolver path connects.
    let card = app.card("virtual").await;
    let first = app.card_events(card["id"].as_str().unwrap()).await;
    let first_id = first[0]["id"].as_str().unwrap().to_owned();
    let e = attempted(&app, &first_id, 2, 1).await;
    for d in e["deliveries"].as_array().unwrap() {
        assert_eq!(d["state"], "succeeded", "{e:#}");
    }
    assert!(counter.accepted() >= 2);

    // The operator stops admitting loopback; a node starts with the new rules.
    let strict = fast("");
    let strict: Vec<&str> = strict.iter().map(String::as_str).collect();
    let args = serve_args(app.dir.path(), &strict);
    app.server.take().unwrap().stop().await.unwrap();
    let before = counter.accepted();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = cardcore::Server::start(&args, Some(listener)).await.unwrap();
    app.base = format!("http://{}", server.addr);
    app.server = Some(server);

    let card = app.card("virtual").await;
    let events = app.card_events(card["id"].as_str().unwrap()).await;
    let created = events.iter().find(|e| e["type"] == "card.created").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Two attempts each (a retry too), every one refused before connecting.
    let e = attempted(&app, &created, 2, 2).await;
    for d in e["deliveries"].as_array().unwrap() {
        for attempt in d["attempts_log"].as_array().unwrap() {
            let error = attempt["error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with("refused before connecting") && error.contains("loopback"),
                "{e:#}"
            );
            assert!(attempt.get("status").is_none(), "no HTTP status: nothing answered");
            assert!(
                !error.contains(&p.to_string()),
                "the attempt log never names the target"
            );
        }
    }
    assert_eq!(counter.accepted(), before, "not one connection to a refused target");
}

#[tokio::test]
async fn redeliveries_are_limited_per_tenant() {
    let app = spawn_app_with(&["--webhook-redeliveries-per-minute", "3"]).await;
    let card = app.card("virtual").await;
    let event = app.card_events(card["id"].as_str().unwrap()).await.remove(0);
    let path = format!("/v1/events/{}/redeliver", event["id"].as_str().unwrap());
    for _ in 0..3 {
        app.post(&path, json!({})).await.expect(202, "");
    }
    let refused = app.post(&path, json!({})).await;
    assert!(refused.headers.contains_key("retry-after"));
    refused.expect(429, "rate_limited");
    // Another tenant has its own budget.
    let other = app.new_tenant("tenant-b").await;
    let theirs = {
        let holder = app.create_cardholder_as(&other, "b-1").await;
        app.create_card_as(&other, holder["id"].as_str().unwrap(), "virtual")
            .await
    };
    let their_events = app
        .call_as(
            &other,
            reqwest::Method::GET,
            &format!("/v1/events?card_id={}", theirs["id"].as_str().unwrap()),
            None,
        )
        .await
        .ok();
    let their_event = their_events["data"][0]["id"].as_str().unwrap();
    app.call_as(
        &other,
        reqwest::Method::POST,
        &format!("/v1/events/{their_event}/redeliver"),
        Some(json!({})),
    )
    .await
    .expect(202, "");
}

#[tokio::test]
async fn one_tenant_gets_at_most_its_share_of_attempts_in_flight() {
    // Every answer takes a while, so due deliveries pile up.
    let counter = Counter::answering_after(Duration::from_millis(300)).await;
    let mut args = fast("127.0.0.0/8");
    args.extend(["--webhook-tenant-in-flight".to_owned(), "2".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = spawn_app_with(&args).await;
    app.post(
        "/v1/webhook-endpoints",
        json!({"url": format!("http://127.0.0.1:{}/hook", counter.port), "events": ["card.created"]}),
    )
    .await
    .expect(201, "");
    // Eight cards: eight deliveries that need not wait for each other.
    for _ in 0..8 {
        app.card("virtual").await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter.answered.load(Ordering::SeqCst) < 8 {
        assert!(Instant::now() < deadline, "gave up waiting for the deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counter.busy.load(Ordering::SeqCst), 0);
    assert_eq!(
        counter.most.load(Ordering::SeqCst),
        2,
        "never more than the tenant's 2 attempts at once (and both used)"
    );
}
