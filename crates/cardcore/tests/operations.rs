//! Operations, through the real binary: serialization failures retried on
//! PostgreSQL at SERIALIZABLE, backups that restore, graceful hand-over.
//!
//! The PostgreSQL tests need PostgreSQL (`CARDCORE_TEST_POSTGRES_URL`);
//! skipped without one, except under `CI`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::Write as _;

use reqwest::Method;
use serde_json::{json, Value};
use support::{count_type, postgres_or_skip, Api, Database};

fn id(card: &Value) -> String {
    card["id"].as_str().expect("id").to_owned()
}

/// The sum of a Prometheus counter over its label sets, from a node's /metrics.
async fn counter(api: &Api, name: &str) -> f64 {
    let text = api.get("/metrics").await.text;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tenant and two nodes on `db` at SERIALIZABLE, with an API client of each.
fn serializable_nodes(db: &Database, tenant: &str) -> (support::Node, support::Node, Api, Api) {
    let tenant = db.create_tenant(tenant);
    let extra = ["--db-isolation", "serializable", "--db-pool-size", "12"];
    let na = db.start("a", &extra);
    let nb = db.start("b", &extra);
    let a = Api::new(&na, &tenant.key);
    let b = a.on(&nb);
    (na, nb, a, b)
}

/// The database did abort transactions (else the test proves nothing), and
/// each ran again within the bounds (none gave up).
async fn assert_retried(test: &str, a: &Api, b: &Api) {
    let retries = counter(a, "cardcore_db_retries_total").await + counter(b, "cardcore_db_retries_total").await;
    let exhausted = counter(a, "cardcore_db_retries_exhausted_total").await
        + counter(b, "cardcore_db_retries_exhausted_total").await;
    let _ = writeln!(
        std::io::stderr(),
        "{test}: {retries} transactions run again, {} gave up",
        exhausted.abs()
    );
    assert!(
        retries > 0.0,
        "no serialization failure was forced: the test proves nothing"
    );
    assert_eq!(exhausted, 0.0);
}

/// Concurrent writers on one card from two nodes at SERIALIZABLE: the card
/// lock's `SELECT ... FOR UPDATE` meets rows committed after the
/// transaction's snapshot, which PostgreSQL answers with 40001. Every such
/// transaction runs again as a whole, so no request sees a 5xx, every
/// acknowledged change is in the audit trail and the outbox once, and the
/// card's events follow its audit trail's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_retried_whole_with_no_5xx_and_nothing_lost() {
    let test = "serialization_failures_are_retried_whole_with_no_5xx_and_nothing_lost";
    if !postgres_or_skip(test) {
        return;
    }
    let db = Database::postgres();
    let (na, nb, a, b) = serializable_nodes(&db, "serializable");
    let card = id(&a.new_card("serial-1").await);
    a.put(&format!("/v1/cards/{card}/pin"), json!({ "pin": "4821" }))
        .await
        .ok();
    let limits = a.get(&format!("/v1/cards/{card}/limits")).await.ok();

    // 16 writers, 8 per node, each 12 limit changes with values no other
    // request uses, and a wrong PIN now and then (a counter write).
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let api = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (card, limits) = (card.clone(), limits.clone());
        set.spawn(async move {
            let mut answers = Vec::new();
            for n in 0..12u64 {
                let value = 1_000 + w * 100 + n;
                let mut body = limits.clone();
                body["channels"]["pos"]["per_transaction"] = json!(value);
                let rid = format!("w{w}-n{n}");
                let r = api
                    .send(
                        Method::PUT,
                        &format!("/v1/cards/{card}/limits"),
                        Some(body),
                        &[("x-request-id", rid.as_str())],
                    )
                    .await
                    .expect("an answer");
                answers.push((rid, value, r.status, r.text));
                if n % 4 == 3 {
                    let r = api
                        .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": "0000" }))
                        .await;
                    answers.push((format!("w{w}-v{n}"), 0, r.status, r.text));
                    // Right again before the counter blocks the PIN.
                    let r = api
                        .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": "4821" }))
                        .await;
                    answers.push((format!("w{w}-r{n}"), 0, r.status, r.text));
                }
            }
            answers
        });
    }
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut verifications = 0;
    while let Some(answers) = set.join_next().await {
        for (rid, value, status, text) in answers.expect("writer") {
            assert!(
                status < 500,
                "{rid}: {status} {text}\nnode a: {}\nnode b: {}",
                na.log_tail(),
                nb.log_tail()
            );
            if value > 0 {
                assert_eq!(status, 200, "{rid}: {text}");
                acked.insert(rid, value);
            } else {
                // A wrong PIN may meet a PIN another writer's wrong PINs
                // blocked meanwhile; anything but a 5xx is an answer.
                verifications += 1;
            }
        }
    }
    assert_eq!(acked.len(), 16 * 12);
    assert!(verifications > 0);

    // The database did abort transactions, and they were run again.
    assert_retried(test, &a, &b).await;
    // A wrong PIN is counted once, however often its transaction ran:
    // the metric agrees with the audit trail.
    let failures = counter(&a, "cardcore_pin_verification_failures_total").await
        + counter(&b, "cardcore_pin_verification_failures_total").await;
    let audited: f64 = db
        .sql("SELECT count(*) FROM audit_log WHERE type IN ('card.pin_verification_failed', 'card.pin_blocked')")
        .trim()
        .parse()
        .unwrap();
    assert!(audited > 0.0);
    assert_eq!(
        failures, audited,
        "wrong PINs counted in /metrics and in the audit trail"
    );

    // Every acknowledged change is audited once, with its own value.
    let audit = a.audit(&card).await;
    let mut audited: Vec<u64> = Vec::new();
    for e in audit.iter().rev().filter(|e| e["type"] == "card.limits_updated") {
        let rid = e["request_id"].as_str().expect("request_id");
        let value = e["after"]["channels"]["pos"]["per_transaction"]
            .as_u64()
            .expect("value");
        assert_eq!(acked.get(rid), Some(&value), "audit row {e}");
        audited.push(value);
    }
    assert_eq!(audited.len(), acked.len(), "one audit row per acknowledged change");
    // The outbox has one event per change, in the audit trail's order.
    let events = b
        .events_until(&card, |e| count_type(e, "card.limits_updated") >= audited.len())
        .await;
    let published: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "card.limits_updated")
        .map(|e| {
            e["data"]["limits"]["channels"]["pos"]["per_transaction"]
                .as_u64()
                .expect("value")
        })
        .collect();
    assert_eq!(published, audited, "events in commit order, none lost or doubled");
    // The card ends with the last change's value.
    let now = a.get(&format!("/v1/cards/{card}/limits")).await.ok();
    assert_eq!(
        now["channels"]["pos"]["per_transaction"].as_u64(),
        audited.last().copied()
    );
}

/// What a writer of the authorization test was answered for one payment.
#[derive(Debug)]
struct Payment {
    reference: String,
    id: String,
    amount: u64,
    captured: u64,
    reversed: u64,
}

/// Concurrent authorizations, captures and reversals on one card from two
/// nodes at SERIALIZABLE: each decision's transaction meets the other node's
/// commits on the card's row and is aborted (40001), then decided again whole
/// on what is committed. No request sees a 5xx, every approval is there
/// exactly once with what was captured or reversed of it, a capture sent to
/// both nodes at once counts once (both answer it), so does a refund, and
/// the card's running totals are the approved amounts less what was reversed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizations_captures_and_reversals_at_serializable_are_retried_with_no_5xx_and_counted_once() {
    let test = "authorizations_captures_and_reversals_at_serializable_are_retried_with_no_5xx_and_counted_once";
    if !postgres_or_skip(test) {
        return;
    }
    let db = Database::postgres();
    let (na, nb, a, b) = serializable_nodes(&db, "serializable-money");
    let card = id(&a.new_card("serial-money").await);
    let open = json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null});
    a.put(
        &format!("/v1/cards/{card}/limits"),
        json!({"currency": "EUR", "channels": {"pos": open, "ecommerce": open, "atm": open, "contactless": open}}),
    )
    .await
    .ok();

    // 16 writers, 8 per node, each 6 payments of amounts no other uses; of
    // each approval, one in three is captured in full (the same capture sent
    // to both nodes at once), one in three reversed in part, and with the
    // third a controls change; then a refund, sent to both nodes at once.
    let show = |what: &str, r: &support::Reply| format!("{what}: {} {}", r.status, r.text);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let (api, other) = if w % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let card = card.clone();
        set.spawn(async move {
            let mut paid = Vec::new();
            let mut fives = Vec::new();
            for n in 0..6u64 {
                let amount = 1_000 + w * 10 + n;
                let reference = format!("w{w}-n{n}");
                let r = api
                    .post(
                        "/v1/authorizations",
                        json!({"card_id": card, "amount": amount, "currency": "EUR", "channel": "pos",
                               "merchant": {"mcc": "5411", "country": "PT"}, "network_reference": reference}),
                    )
                    .await;
                if r.status >= 500 || r.status != 201 || r.body["status"] != "APPROVED" {
                    fives.push(show(&reference, &r));
                    continue;
                }
                let auth = r.body["id"].as_str().expect("id").to_owned();
                let mut p = Payment {
                    reference,
                    id: auth.clone(),
                    amount,
                    captured: 0,
                    reversed: 0,
                };
                match n % 3 {
                    0 => {
                        let path = format!("/v1/authorizations/{auth}/capture");
                        let body = json!({"amount": amount, "network_reference": format!("c-{w}-{n}")});
                        let (r1, r2) = tokio::join!(api.post(&path, body.clone()), other.post(&path, body));
                        for r in [&r1, &r2] {
                            if r.status != 200 || r.body["captured_amount"].as_u64() != Some(amount) {
                                fives.push(show(&format!("capture of {}", p.reference), r));
                            }
                        }
                        p.captured = amount;
                    }
                    1 => {
                        let r = api
                            .post(&format!("/v1/authorizations/{auth}/reverse"), json!({"amount": 300}))
                            .await;
                        if r.status != 200 {
                            fives.push(show(&format!("reversal of {}", p.reference), &r));
                        }
                        p.reversed = 300;
                    }
                    _ => {
                        // A controls change in the mix: another card write,
                        // with a value no other writer sets.
                        let r = api
                            .put(
                                &format!("/v1/cards/{card}/controls"),
                                json!({"blocked_mccs": [format!("{}", 7000 + w * 10 + n)]}),
                            )
                            .await;
                        if r.status != 200 {
                            fives.push(show(&format!("controls of w{w}"), &r));
                        }
                    }
                }
                paid.push(p);
            }
            // A refund sent to both nodes at once: one is made, the other
            // answers it.
            let path = format!("/v1/cards/{card}/refunds");
            let body = json!({"amount": 50, "currency": "EUR", "network_reference": format!("r-{w}")});
            let (r1, r2) = tokio::join!(api.post(&path, body.clone()), other.post(&path, body));
            let mut statuses = [r1.status, r2.status];
            statuses.sort_unstable();
            if statuses != [200, 201] || r1.body["id"] != r2.body["id"] {
                fives.push(show(&format!("refund r-{w}"), &r1));
                fives.push(show(&format!("refund r-{w}"), &r2));
            }
            (paid, fives)
        });
    }
    let mut payments = Vec::new();
    let mut wrong = Vec::new();
    while let Some(r) = set.join_next().await {
        let (paid, fives) = r.expect("writer");
        payments.extend(paid);
        wrong.extend(fives);
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}\nnode a: {}\nnode b: {}",
        wrong.join("\n"),
        na.log_tail(),
        nb.log_tail()
    );
    assert_eq!(payments.len(), 16 * 6);

    // The database did abort transactions, and they were run again.
    assert_retried(test, &a, &b).await;

    // Every approval is there exactly once, with what was done with it.
    let mut listed: HashMap<String, Value> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = b
            .get(&format!(
                "/v1/cards/{card}/authorizations?limit=100{}",
                cursor.as_deref().map(|c| format!("&cursor={c}")).unwrap_or_default()
            ))
            .await
            .ok();
        for auth in page["data"].as_array().expect("data") {
            let key = auth["id"].as_str().expect("id").to_owned();
            assert!(listed.insert(key, auth.clone()).is_none(), "listed twice: {auth}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed.len(), payments.len(), "one authorization per payment, no other");
    for p in &payments {
        let auth = listed
            .get(&p.id)
            .unwrap_or_else(|| panic!("{} is not listed", p.reference));
        assert_eq!(auth["network_reference"], p.reference.as_str());
        assert_eq!(auth["status"], if p.captured > 0 { "CLOSED" } else { "APPROVED" });
        assert_eq!(auth["approved_amount"].as_u64(), Some(p.amount));
        assert_eq!(auth["captured_amount"].as_u64(), Some(p.captured), "{auth}");
        assert_eq!(auth["reversed_amount"].as_u64(), Some(p.reversed), "{auth}");
        assert_eq!(
            auth["pending_amount"].as_u64(),
            Some(p.amount - p.captured - p.reversed)
        );
    }
    // One capture per captured payment and one refund per writer, although
    // each was sent twice.
    let mut captures = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = a
            .get(&format!(
                "/v1/cards/{card}/transactions?limit=100{}",
                cursor.as_deref().map(|c| format!("&cursor={c}")).unwrap_or_default()
            ))
            .await
            .ok();
        captures += page["data"].as_array().expect("data").len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        captures,
        payments.iter().filter(|p| p.captured > 0).count() + 16,
        "captures and refunds"
    );

    // The card's running totals: what was approved, less what was reversed.
    let approved: u64 = payments.iter().map(|p| p.amount).sum();
    let reversed: u64 = payments.iter().map(|p| p.reversed).sum();
    let spend = a.get(&format!("/v1/cards/{card}/spend")).await.ok();
    assert_eq!(
        spend["channels"]["pos"]["daily"]["used"].as_u64(),
        Some(approved - reversed)
    );
    assert_eq!(
        spend["channels"]["pos"]["monthly"]["used"].as_u64(),
        Some(approved - reversed)
    );
    assert_eq!(
        spend["channels"]["pos"]["daily"]["count"].as_u64(),
        Some(payments.len() as u64)
    );
    // And one event per decision and movement.
    let events = b
        .events_until(&card, |e| count_type(e, "authorization.approved") >= payments.len())
        .await;
    assert_eq!(count_type(&events, "authorization.approved"), payments.len());
    assert_eq!(
        count_type(&events, "transaction.captured"),
        payments.iter().filter(|p| p.captured > 0).count()
    );
    assert_eq!(
        count_type(&events, "authorization.reversed"),
        payments.iter().filter(|p| p.reversed > 0).count()
    );
    assert_eq!(count_type(&events, "transaction.refunded"), 16);
    assert_eq!(count_type(&events, "card.controls_updated"), 2 * 16);
}

// --- backups ----------------------------------------------------------------

/// A webhook receiver on loopback: every request's `webhook-id` (the event
/// id) and when it came, answered 200.
#[derive(Clone, Default)]
struct Receiver {
    hits: std::sync::Arc<std::sync::Mutex<Vec<(String, std::time::Instant)>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        use axum::routing::post;
        let hits = self.hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: axum::http::HeaderMap| {
                let hits = hits.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    hits.lock().unwrap().push((id, std::time::Instant::now()));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/hook")
    }

    fn since(&self, from: std::time::Instant) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at >= from)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Reads the SQLite file beside a running server (read-only).
fn sqlite_strings(path: &std::path::Path, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// What a writer got acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    card: String,
    request_id: String,
    at: std::time::Instant,
}

/// Writes under load, backs up in the middle, restores into a new file and
/// starts a server on it: every change acknowledged before the backup began
/// is there, the PIN the restored audit trail last set verifies, and the
/// restored server's webhooks go on without re-sending a delivery the
/// backup holds as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_change_and_resumes_webhooks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let db = Database::sqlite();
    let tenant = db.create_tenant("backup");
    // Short leases and retries: a delivery claimed at the backup's moment
    // is open in the backup and waits for its lease to lapse.
    let hooks = [
        "--webhook-allow-networks",
        "127.0.0.0/8",
        "--webhook-poll-interval-ms",
        "50",
        "--webhook-timeout-ms",
        "3000",
        "--webhook-lease-seconds",
        "4",
        "--webhook-retry-schedule",
        "1s,1s,1s,1s,1s,1s,1s,1s",
    ];
    let mut node = db.start("original", &hooks);
    let api = Api::new(&node, &tenant.key);
    let receiver = Receiver::default();
    let hook_url = receiver.start().await;
    api.post("/v1/webhook-endpoints", json!({ "url": hook_url })).await.ok();
    let mut cards = Vec::new();
    for n in 0..6 {
        cards.push(id(&api.new_card(&format!("backup-{n}")).await));
    }

    // One writer per card: PIN sets and lock/unlock, each acknowledged
    // answer noted with when it came.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for (w, card) in cards.iter().enumerate() {
        let (api, card, stop) = (api.clone(), card.clone(), stop.clone());
        writers.spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let request_id = format!("c{w}-{n}");
                let headers = [("x-request-id", request_id.as_str())];
                let r = match n % 3 {
                    0 | 1 => {
                        let pin = support::PINS[(w + n) % support::PINS.len()];
                        api.send(
                            Method::PUT,
                            &format!("/v1/cards/{card}/pin"),
                            Some(json!({ "pin": pin })),
                            &headers,
                        )
                        .await
                    }
                    _ => {
                        let action = if n.is_multiple_of(2) { "lock" } else { "unlock" };
                        api.send(Method::POST, &format!("/v1/cards/{card}/{action}"), None, &headers)
                            .await
                    }
                };
                let r = r.expect("an answer");
                assert!(r.is_success(), "{request_id}: {} {}", r.status, r.text);
                let wrote = r.body.get("changed").and_then(Value::as_bool).unwrap_or(true);
                if wrote {
                    acked.push(Acked {
                        card: card.clone(),
                        request_id,
                        at: Instant::now(),
                    });
                }
                n += 1;
            }
            acked
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // What the database holds as delivered before the backup begins.
    let source = db.sqlite_file();
    let delivered_before: std::collections::HashSet<String> = sqlite_strings(
        &source,
        "SELECT event_id FROM webhook_deliveries WHERE state = 'succeeded'",
    )
    .into_iter()
    .collect();
    let backup = db.dir.path().join("backups").join("cardcore-backup.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let began = Instant::now();
    let out = {
        let (db_args, key, backup) = (db.args(), db.master_key.clone(), backup.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(support::BIN)
                .arg("backup")
                .arg("--to")
                .arg(&backup)
                .args(db_args)
                .env("CARDCORE_MASTER_KEY", key)
                .env("RUST_LOG", "warn")
                .output()
                .expect("run cardcore backup")
        })
        .await
        .unwrap()
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(written.contains("backup written to"), "{written}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    while let Some(a) = writers.join_next().await {
        acked.extend(a.expect("writer"));
    }
    let before: Vec<&Acked> = acked.iter().filter(|a| a.at < began).collect();
    let after = acked.len() - before.len();
    assert!(
        !before.is_empty() && after > 0,
        "the backup ran under load: {} before, {after} after",
        before.len()
    );
    assert_eq!(node.terminate().code(), Some(0));

    // The backup file: private, whole, and it belongs with the master key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(backup.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    let verified = db.cli(&["backup", "verify", backup.to_str().unwrap()]);
    assert!(
        verified.contains("OK") && verified.contains("a card's sealed PAN"),
        "{verified}"
    );

    // Restore into a new file; a second restore there is refused.
    let restored = Database::sqlite_unmade(&db.master_key);
    restored.cli(&["restore", "--from", backup.to_str().unwrap()]);
    let again = std::process::Command::new(support::BIN)
        .args(["restore", "--from", backup.to_str().unwrap()])
        .args(restored.args())
        .env("CARDCORE_MASTER_KEY", &restored.master_key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));

    let started = Instant::now();
    let node = restored.start("restored", &hooks);
    let api = Api::new(&node, &tenant.key);
    for card in &cards {
        let audit = api.audit(card).await;
        let ids: std::collections::HashSet<&str> = audit.iter().filter_map(|e| e["request_id"].as_str()).collect();
        for a in before.iter().filter(|a| &a.card == card) {
            assert!(
                ids.contains(a.request_id.as_str()),
                "card {card}: {} was acknowledged before the backup began and is not in the restored database",
                a.request_id
            );
        }
        // The PIN the restored trail last set verifies.
        let last_pin_set = audit
            .iter()
            .find(|e| e["type"] == "card.pin_set")
            .and_then(|e| e["request_id"].as_str())
            .expect("a PIN set");
        let (w, n) = last_pin_set
            .strip_prefix('c')
            .and_then(|s| s.split_once('-'))
            .map(|(w, n)| (w.parse::<usize>().unwrap(), n.parse::<usize>().unwrap()))
            .unwrap();
        let pin = support::PINS[(w + n) % support::PINS.len()];
        let r = api
            .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": pin }))
            .await
            .ok();
        assert_eq!(r["valid"], true, "card {card}: PIN of {last_pin_set}");
    }

    // The restored server delivers what the backup held as not yet
    // delivered, and nothing it held as delivered.
    let file = restored.sqlite_file();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = sqlite_strings(
            &file,
            "SELECT id FROM webhook_deliveries WHERE state IN ('pending', 'retrying')",
        );
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{} deliveries still open", open.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resent: Vec<String> = receiver
        .since(started)
        .into_iter()
        .filter(|id| delivered_before.contains(id))
        .collect();
    assert!(resent.is_empty(), "re-sent after the restore: {resent:?}");
    let _ = writeln!(
        std::io::stderr(),
        "backup under load: {} changes acknowledged before it began, {after} after; {} delivered before it; {} delivered by the restored server",
        before.len(),
        delivered_before.len(),
        receiver.since(started).len()
    );
}

// --- hand-over ----------------------------------------------------------------

/// On SIGTERM `/readyz` turns 503 at once while the node keeps answering
/// requests for `--drain-seconds`, then it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_unready_at_once_serves_through_the_drain_then_exits() {
    use std::time::{Duration, Instant};
    let db = Database::sqlite();
    let tenant = db.create_tenant("drain");
    let mut node = db.start("draining", &["--drain-seconds", "2"]);
    let api = Api::new(&node, &tenant.key);
    let card = id(&api.new_card("drain-1").await);
    assert_eq!(api.get("/readyz").await.status, 200);

    let signalled = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &node.pid().to_string()])
        .status()
        .unwrap()
        .success());
    // The signal arrives asynchronously: the first answer after it is seen is 503.
    let unready = loop {
        let r = api.get("/readyz").await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "still ready 1 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(unready.code(), "service_unavailable");
    assert!(unready.text.contains("stopping"), "{}", unready.text);
    // Requests are still served during the drain, and it stays unready.
    api.post(&format!("/v1/cards/{card}/lock"), json!({})).await.ok();
    assert_eq!(api.get(&format!("/v1/cards/{card}")).await.ok()["status"], "LOCKED");
    assert_eq!(api.get("/readyz").await.status, 503);
    assert_eq!(node.terminate().code(), Some(0));
    let lived = signalled.elapsed();
    assert!(
        lived >= Duration::from_secs(2),
        "left before the drain period: {lived:?}"
    );
}

/// `migrate --check` changes nothing and says whether this binary runs on the database.
#[test]
fn migrate_check_says_whether_this_binary_runs_on_the_database() {
    let run = |db: &Database| {
        let out = std::process::Command::new(support::BIN)
            .args(["migrate", "--check"])
            .args(db.args())
            .env("CARDCORE_MASTER_KEY", &db.master_key)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // A database no migration ran on: it needs them (exit 2), and stays as it was.
    let fresh = Database::sqlite();
    let (code, text) = run(&fresh);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("needs [1, 2, 3"), "{text}");
    let (code, _) = run(&fresh);
    assert_eq!(code, Some(2), "--check applied nothing");

    let db = Database::sqlite();
    db.create_tenant("check");
    let (code, text) = run(&db);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("as it is"), "{text}");

    // A newer release migrated it: this binary would not start.
    let conn = rusqlite::Connection::open(db.sqlite_file()).unwrap();
    conn.execute(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
         VALUES (9999, 'from the future', '2030-01-01 00:00:00', 1, x'00', 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let (code, text) = run(&db);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("newer than this binary") && text.contains("9999"),
        "{text}"
    );
}

// --- master key rotation -----------------------------------------------------------

/// Two nodes on PostgreSQL under load; `master-key rotate` rewraps every
/// key. The old nodes answer every request (no 5xx) until they stop by
/// themselves at their next key refresh, saying why; nodes on the new key
/// read everything; the old key no longer starts a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_under_load_on_two_nodes_and_old_nodes_stop_saying_why() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let test = "the_master_key_rotates_under_load_on_two_nodes_and_old_nodes_stop_saying_why";
    if !postgres_or_skip(test) {
        return;
    }
    let mut db = Database::postgres();
    let tenant = db.create_tenant("rotation");
    let zone: Value = serde_json::from_str(&db.cli(&["tenant", "zone-key", "--tenant", &tenant.id, "--json"])).unwrap();
    let refresh = ["--key-refresh-seconds", "1"];
    let mut na = db.start("a", &refresh);
    let mut nb = db.start("b", &refresh);
    let a = Api::new(&na, &tenant.key);
    let b = a.on(&nb);
    let transport = a.get("/v1/pin-encryption-key").await.ok();
    let card = id(&a.new_card("rotation-1").await);
    a.put(&format!("/v1/cards/{card}/pin"), json!({ "pin": "4821" }))
        .await
        .ok();

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for api in [a.clone(), b.clone()] {
        let (card, stop) = (card.clone(), stop.clone());
        load.spawn(async move {
            let (mut answered, mut refused) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let sent = api
                    .send(
                        Method::POST,
                        &format!("/v1/cards/{card}/pin/verify"),
                        Some(json!({ "pin": "4821" })),
                        &[],
                    )
                    .await;
                match sent {
                    Ok(r) => {
                        assert!(r.status < 500, "{} answered {}: {}", api.base, r.status, r.text);
                        assert_eq!(r.body["valid"], true, "{}", r.text);
                        answered += 1;
                    }
                    // The node stopped: its listener is gone.
                    Err(_) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (answered, refused)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let new_key = support::master_key();
    let key_file = db.dir.path().join("new-master.key");
    std::fs::write(&key_file, &new_key).unwrap();
    let rotated = db.cli(&["master-key", "rotate", "--new-key-file", key_file.to_str().unwrap()]);
    assert!(rotated.contains("master key rotated"), "{rotated}");

    // Both old nodes stop by themselves, non-zero, saying why.
    for node in [&mut na, &mut nb] {
        let status = node.wait_exit(Duration::from_secs(20)).expect("the old node stopped");
        assert!(!status.success(), "{status}");
        let log = node.log_tail();
        assert!(log.contains("the master key was rotated"), "{log}");
    }
    stop.store(true, Ordering::SeqCst);
    while let Some(r) = load.join_next().await {
        let (answered, _) = r.unwrap();
        assert!(answered > 0);
    }

    // The old key no longer opens the database.
    let out = std::process::Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(db.args())
        .env("CARDCORE_MASTER_KEY", &db.master_key)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));

    // Nodes on the new key read everything the old one wrapped.
    db.master_key = new_key;
    let nc = db.start("c", &[]);
    let c = Api::new(&nc, &tenant.key);
    let r = c
        .post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": "4821" }))
        .await
        .ok();
    assert_eq!(r["valid"], true);
    assert_eq!(c.get("/v1/pin-encryption-key").await.ok(), transport);
    let verified = db.cli(&["backup", "verify"]);
    assert!(verified.contains("a card's sealed PAN"), "{verified}");
    let zone_id = zone["key_id"].as_str().unwrap();
    let keys: Value = serde_json::from_str(&db.cli(&["tenant", "zone-key", "--tenant", &tenant.id, "--json"])).unwrap();
    assert_ne!(keys["key_id"].as_str().unwrap(), zone_id);
    assert_eq!(db.sql("SELECT count(*) FROM zone_keys"), "2");
}

// --- retention -------------------------------------------------------------------------

/// A number from the SQLite file beside a running server.
fn sqlite_count(path: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Changes the SQLite file beside a running server (what time does to rows).
fn sqlite_exec(path: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// `cardcore retention` as typed: exit code and what it printed.
fn retention_cli(db: &Database, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(support::BIN)
        .arg("retention")
        .args(args)
        .args(db.args())
        .env("CARDCORE_MASTER_KEY", &db.master_key)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The JSON lines of every export file in `dir`.
fn exported(dir: &std::path::Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let path = f.unwrap().path();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is readable by others", path.display());
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            lines.push(serde_json::from_str(line).unwrap());
        }
    }
    lines
}

/// Old rows go and young ones stay, through the command and through the
/// server's background job: delivered events with their deliveries, dead
/// deliveries, audit entries (written to a JSON Lines file first); an old
/// event whose delivery is still open stays; `--dry-run` counts and
/// changes nothing; a run finds the lease of another and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_what_is_past_its_period_and_exports_audit_first() {
    use std::time::{Duration, Instant};

    let db = Database::sqlite();
    let file = db.sqlite_file();
    let tenant = db.create_tenant("retention");
    let hooks = [
        "--webhook-allow-networks",
        "127.0.0.0/8",
        "--webhook-poll-interval-ms",
        "50",
        "--retention-interval-seconds",
        "0",
    ];
    let mut node = db.start("first", &hooks);
    let api = Api::new(&node, &tenant.key);
    let receiver = Receiver::default();
    let hook_url = receiver.start().await;
    api.post("/v1/webhook-endpoints", json!({ "url": hook_url })).await.ok();
    let mut cards = Vec::new();
    for n in 0..4 {
        let card = id(&api.new_card(&format!("retention-{n}")).await);
        api.post(&format!("/v1/cards/{card}/lock"), json!({})).await.ok();
        cards.push(card);
    }
    let events = sqlite_count(&file, "SELECT COUNT(*) FROM events");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sqlite_count(
        &file,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'succeeded'",
    ) < events
    {
        assert!(Instant::now() < deadline, "webhooks not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit = sqlite_count(&file, "SELECT COUNT(*) FROM audit_log");
    assert!(events >= 8 && audit >= 8, "{events} events, {audit} audit entries");

    // Time passes: every event so far is 100 days old; one of them still
    // waits for a retry. Two audit entries are 401 days old; one delivery
    // died 31 days ago (its event is young).
    let held = sqlite_strings(&file, "SELECT id FROM events ORDER BY seq LIMIT 1").remove(0);
    let old_audit = sqlite_strings(&file, "SELECT id FROM audit_log ORDER BY seq LIMIT 2");
    let young = id(&api.new_card("retention-young").await);
    let young_event = sqlite_strings(&file, "SELECT id FROM events ORDER BY seq DESC LIMIT 1").remove(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sqlite_count(
        &file,
        &format!("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = '{young_event}' AND state = 'succeeded'"),
    ) == 0
    {
        assert!(Instant::now() < deadline, "webhook not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hundred_days =
        (chrono::Utc::now() - chrono::Duration::days(100)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let past = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    sqlite_exec(
        &file,
        &format!(
            "UPDATE events SET created_at = '{hundred_days}' WHERE id <> '{young_event}';
             UPDATE webhook_deliveries SET state = 'retrying', next_attempt_at = '2999-01-01T00:00:00.000000Z'
                 WHERE event_id = '{held}';
             UPDATE audit_log SET created_at = '{}' WHERE id IN ('{}', '{}');
             INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, card_id, state, attempts, created_at)
                 SELECT '{}', tenant_id, event_id, endpoint_id, card_id, 'dead', 8, '{}'
                 FROM webhook_deliveries WHERE event_id = '{young_event}';",
            past(401),
            old_audit[0],
            old_audit[1],
            uuid::Uuid::new_v4(),
            past(31),
        ),
    );
    let before = (
        sqlite_count(&file, "SELECT COUNT(*) FROM events"),
        sqlite_count(&file, "SELECT COUNT(*) FROM webhook_deliveries"),
        sqlite_count(&file, "SELECT COUNT(*) FROM audit_log"),
    );
    let old_events = before.0 - 2; // all but the held one and the young one

    // A dry run counts and deletes nothing.
    let (code, text) = retention_cli(&db, &["--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            ": {old_events} would go, with {old_events} webhook deliveries"
        )),
        "{text}"
    );
    assert!(text.contains("kept for now: 1 old events"), "{text}");
    assert!(text.contains("(30 days): 1 would go"), "{text}");
    assert!(text.contains("(400 days): 2 would go"), "{text}");
    assert_eq!(
        before,
        (
            sqlite_count(&file, "SELECT COUNT(*) FROM events"),
            sqlite_count(&file, "SELECT COUNT(*) FROM webhook_deliveries"),
            sqlite_count(&file, "SELECT COUNT(*) FROM audit_log"),
        )
    );

    // Another holder's lease: the command says so and deletes nothing.
    sqlite_exec(
        &file,
        &format!(
            "INSERT INTO job_leases (name, holder, lease_until) VALUES ('retention', '{}', '2999-01-01T00:00:00.000000Z')",
            uuid::Uuid::new_v4()
        ),
    );
    let (code, text) = retention_cli(&db, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("holds the lease"), "{text}");
    assert_eq!(sqlite_count(&file, "SELECT COUNT(*) FROM events"), before.0);
    sqlite_exec(&file, "DELETE FROM job_leases");

    // Bad settings are refused before anything is read.
    let (code, text) = retention_cli(&db, &["--retention-audit-days", "90"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("at least 365 days"), "{text}");
    let (code, text) = retention_cli(&db, &["--retention-events-days", "40000"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("at most 36500"), "{text}");
    let not_a_dir = db.dir.path().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let (code, text) = retention_cli(&db, &["--export-dir", not_a_dir.join("x").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("audit export to"), "{text}");
    assert_eq!(
        sqlite_count(&file, "SELECT COUNT(*) FROM events"),
        before.0,
        "refused before anything went"
    );

    // The run, in batches of 3, with the audit export.
    let export = db.dir.path().join("audit-export");
    let (code, text) = retention_cli(
        &db,
        &["--retention-batch-size", "3", "--export-dir", export.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!(": {old_events} deleted")), "{text}");
    let remaining = sqlite_strings(&file, "SELECT id FROM events ORDER BY seq");
    assert_eq!(remaining, vec![held.clone(), young_event.clone()]);
    assert_eq!(
        sqlite_count(
            &file,
            &format!("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = '{held}'")
        ),
        1,
        "the open delivery stays"
    );
    assert_eq!(
        sqlite_count(&file, "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'dead'"),
        0
    );
    assert_eq!(
        sqlite_count(
            &file,
            &format!("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = '{young_event}'")
        ),
        1,
        "the young event's delivered delivery stays"
    );
    assert_eq!(sqlite_count(&file, "SELECT COUNT(*) FROM audit_log"), before.2 - 2);
    let lines = exported(&export);
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, old_audit.iter().map(String::as_str).collect::<Vec<_>>());
    for l in &lines {
        assert_eq!(l["tenant_id"], tenant.id.as_str());
        assert!(!l["type"].as_str().unwrap().is_empty(), "{l}");
        assert!(l["created_at"].is_string() && l["actor"].is_object(), "{l}");
    }
    // What the API shows: the deleted events are gone, the rest are there.
    let listed = api.get("/v1/events?limit=100").await.ok();
    let listed: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![held.as_str(), young_event.as_str()]);
    assert_eq!(api.get(&format!("/v1/cards/{young}")).await.status, 200);
    assert_eq!(node.terminate().code(), Some(0));

    // The server's own job, every second, with its export directory.
    let mut with_job = hooks[..4].to_vec();
    let job_export = db.dir.path().join("job-export");
    with_job.extend([
        "--retention-interval-seconds",
        "1",
        "--export-dir",
        job_export.to_str().unwrap(),
    ]);
    let mut node = db.start("with-job", &with_job);
    let oldest = sqlite_strings(&file, "SELECT id FROM audit_log ORDER BY seq LIMIT 1").remove(0);
    sqlite_exec(
        &file,
        &format!(
            "UPDATE audit_log SET created_at = '{}' WHERE id = '{oldest}'",
            past(500)
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlite_count(&file, &format!("SELECT COUNT(*) FROM audit_log WHERE id = '{oldest}'")) > 0 {
        assert!(Instant::now() < deadline, "the job did not run: {}", node.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = exported(&job_export);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], oldest.as_str());
    assert_eq!(node.terminate().code(), Some(0));
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("retention deleted what was past its period"), "{log}");
}

/// Two nodes on PostgreSQL both run the retention job every second, in
/// batches of 4: the old rows go, the young stay, each deleted row is
/// counted once across the nodes, and `--dry-run` counted them first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_on_two_postgres_nodes_and_deletes_each_row_once() {
    use std::time::{Duration, Instant};
    let test = "retention_runs_on_two_postgres_nodes_and_deletes_each_row_once";
    if !postgres_or_skip(test) {
        return;
    }
    let db = Database::postgres();
    let tenant = db.create_tenant("retention-pg");
    let quiet = ["--retention-interval-seconds", "0"];
    let mut na = db.start("a", &quiet);
    let api = Api::new(&na, &tenant.key);
    for n in 0..5 {
        let card = id(&api.new_card(&format!("retention-pg-{n}")).await);
        api.post(&format!("/v1/cards/{card}/lock"), json!({})).await.ok();
    }
    // Fanned out (no endpoint: nothing to deliver), so the events may go.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = db.sql("SELECT count(*) FROM events e, webhook_cursor c WHERE (e.tx_id, e.seq) > (c.tx_id, c.seq)");
        if left.trim() == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox was not fanned out: {left}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: i64 = db.sql("SELECT count(*) FROM events").trim().parse().unwrap();
    let audit: i64 = db.sql("SELECT count(*) FROM audit_log").trim().parse().unwrap();
    db.sql(
        "UPDATE events SET created_at = now() - interval '100 days' \
         WHERE seq NOT IN (SELECT seq FROM events ORDER BY seq DESC LIMIT 1); \
         UPDATE audit_log SET created_at = now() - interval '401 days' \
         WHERE seq IN (SELECT seq FROM audit_log ORDER BY seq LIMIT 6)",
    );
    let (code, text) = retention_cli(&db, &["--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(": {} would go, with 0 webhook deliveries", events - 1)),
        "{text}"
    );
    assert!(text.contains("(400 days): 6 would go"), "{text}");
    na.terminate();

    let job = ["--retention-interval-seconds", "1", "--retention-batch-size", "4"];
    let na = db.start("a-job", &job);
    let nb = db.start("b-job", &job);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e: i64 = db.sql("SELECT count(*) FROM events").trim().parse().unwrap();
        let a: i64 = db.sql("SELECT count(*) FROM audit_log").trim().parse().unwrap();
        if e == 1 && a == audit - 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{e} events and {a} audit entries left: {}",
            na.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (a, b) = (Api::new(&na, &tenant.key), Api::new(&nb, &tenant.key));
    let deleted = |kind: &'static str| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let name = format!("cardcore_retention_deleted_total{{kind=\"{kind}\"}}");
            counter(&a, &name).await + counter(&b, &name).await
        }
    };
    assert_eq!(deleted("events").await, (events - 1) as f64);
    assert_eq!(deleted("audit_entries").await, 6.0);
    for node in [&na, &nb] {
        let log = std::fs::read_to_string(&node.log).unwrap();
        assert!(!log.contains("retention failed"), "{log}");
    }
}
