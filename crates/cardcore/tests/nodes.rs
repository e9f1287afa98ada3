//! Two cardcore processes on one PostgreSQL database behave as one: every
//! piece of state a later request depends on (PIN try counter, OTP attempts
//! and lock, the status machine, audit and outbox) is in the database, and
//! concurrent requests from both nodes on the same cards are serialised by
//! row locks.
//!
//! Needs PostgreSQL (`CARDCORE_TEST_POSTGRES_URL`); skipped without one,
//! except under `CI`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use support::{check_chain, count_type, postgres_or_skip, spread, Api, Database, Reply};

/// Two nodes on a fresh schema, a tenant, and a client per node.
struct Cluster {
    a: Api,
    b: Api,
    // Field order: the nodes stop before the schema is dropped.
    _nodes: [support::Node; 2],
    _db: Database,
}

fn cluster(test: &str, extra: &[&str]) -> Option<Cluster> {
    if !postgres_or_skip(test) {
        return None;
    }
    let db = Database::postgres();
    let tenant = db.create_tenant("nodes");
    let na = db.start("a", extra);
    let nb = db.start("b", extra);
    let a = Api::new(&na, &tenant.key);
    let b = a.on(&nb);
    Some(Cluster {
        a,
        b,
        _nodes: [na, nb],
        _db: db,
    })
}

fn id(card: &Value) -> String {
    card["id"].as_str().expect("id").to_owned()
}

async fn verify(api: &Api, card: &str, pin: &str) -> Reply {
    api.post(&format!("/v1/cards/{card}/pin/verify"), json!({ "pin": pin }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_try_counter_blocks_at_three_across_nodes() {
    let Some(c) = cluster("pin_try_counter_blocks_at_three_across_nodes", &[]) else {
        return;
    };
    let (a, b) = (&c.a, &c.b);
    let card = id(&a.new_card("pin-user").await);
    assert_eq!(
        b.put(&format!("/v1/cards/{card}/pin"), json!({"pin": "4821"}))
            .await
            .ok()["pin_status"],
        "SET"
    );
    assert_eq!(verify(a, &card, "4821").await.ok()["valid"], true);

    // Wrong PINs alternate between the nodes; the counter is one.
    for (i, api) in [a, b, a].into_iter().enumerate() {
        let r = verify(api, &card, "7391").await.ok();
        assert_eq!(r["valid"], false);
        assert_eq!(r["remaining_attempts"], 2 - i, "attempt {} on {}", i + 1, api.base);
    }
    // Blocked for both nodes, the right PIN too.
    for api in [a, b] {
        verify(api, &card, "4821").await.expect(409, "pin_blocked");
        assert_eq!(
            api.get(&format!("/v1/cards/{card}")).await.ok()["pin_status"],
            "BLOCKED"
        );
    }
    let audit = b.audit(&card).await;
    assert_eq!(count_type(&audit, "card.pin_verification_failed"), 2);
    assert_eq!(count_type(&audit, "card.pin_blocked"), 1);
    let events = a.events_until(&card, |e| count_type(e, "card.pin_blocked") >= 1).await;
    assert_eq!(count_type(&events, "card.pin_blocked"), 1, "one event for one block");

    // Unblocked on one node, usable on the other at once.
    assert_eq!(
        b.post(&format!("/v1/cards/{card}/pin/unblock"), json!({})).await.ok()["changed"],
        true
    );
    assert_eq!(verify(a, &card, "4821").await.ok()["valid"], true);

    // The same at once: 9 wrong PINs fired together, alternating nodes. The
    // row lock serialises them: remaining 2, 1 and 0 exactly once each, then
    // pin_blocked, and one block.
    let card = id(&a.new_card("pin-burst").await);
    a.put(&format!("/v1/cards/{card}/pin"), json!({"pin": "4821"}))
        .await
        .ok();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..9 {
        let api = if i % 2 == 0 { a.clone() } else { b.clone() };
        let card = card.clone();
        set.spawn(async move { verify(&api, &card, "7391").await });
    }
    let mut remaining = Vec::new();
    let mut blocked = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        match r.status {
            200 => {
                assert_eq!(r.body["valid"], false, "{}", r.text);
                remaining.push(r.body["remaining_attempts"].as_u64().expect("remaining"));
            }
            409 if r.code() == "pin_blocked" => blocked += 1,
            _ => panic!("unexpected answer {}: {}", r.status, r.text),
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, [0, 1, 2], "each count answered once");
    assert_eq!(blocked, 6);
    let audit = a.audit(&card).await;
    assert_eq!(count_type(&audit, "card.pin_verification_failed"), 2);
    assert_eq!(count_type(&audit, "card.pin_blocked"), 1);
    let events = b.events_until(&card, |e| count_type(e, "card.pin_blocked") >= 1).await;
    assert_eq!(count_type(&events, "card.pin_blocked"), 1);
}

/// An OTP and its code, read from the `otp.created` event (on the other node).
async fn otp(issuer: &Api, reader: &Api, card: &str) -> (String, String) {
    let created = issuer
        .post(&format!("/v1/cards/{card}/otp"), json!({"purpose": "pin_change"}))
        .await
        .expect(201, "");
    let trace = created["trace_number"].as_str().expect("trace").to_owned();
    let events = reader
        .events_until(card, |e| {
            e.iter()
                .any(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
        })
        .await;
    let event = events
        .iter()
        .find(|e| e["type"] == "otp.created" && e["data"]["trace_number"] == trace.as_str())
        .expect("otp.created event listed within 10 s");
    (trace, event["data"]["otp"].as_str().expect("otp").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_lock_holds_across_nodes() {
    let Some(c) = cluster("otp_lock_holds_across_nodes", &[]) else {
        return;
    };
    let (a, b) = (&c.a, &c.b);
    let card = id(&a.new_card("otp-user").await);
    a.put(&format!("/v1/cards/{card}/pin"), json!({"pin": "4821"}))
        .await
        .ok();
    let (trace, code) = otp(a, b, &card).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let change = |otp: &str| json!({"old_pin": "4821", "new_pin": "5083", "otp": otp, "trace_number": trace});
    let path = format!("/v1/cards/{card}/pin/change");

    let p = b.post(&path, change(wrong)).await.expect(422, "otp_invalid");
    assert_eq!(p["remaining_attempts"], 2);
    let p = a.post(&path, change(wrong)).await.expect(422, "otp_invalid");
    assert_eq!(p["remaining_attempts"], 1);
    let r = b.post(&path, change(wrong)).await;
    assert_eq!(r.retry_after.as_deref(), Some("600"), "{}", r.text);
    r.expect(409, "otp_locked");

    // Locked on both nodes: the right code, and new codes.
    for api in [a, b] {
        let r = api.post(&path, change(&code)).await;
        let secs: u64 = r.retry_after.as_deref().expect("Retry-After").parse().expect("seconds");
        assert!(secs > 590 && secs <= 600, "{secs}");
        r.expect(409, "otp_locked");
        api.post(&format!("/v1/cards/{card}/otp"), json!({}))
            .await
            .expect(409, "otp_locked");
    }
    assert_eq!(
        verify(b, &card, "4821").await.ok()["valid"],
        true,
        "the PIN did not change"
    );

    // The same at once: 8 wrong codes fired together from both nodes count
    // exactly 3 attempts: remaining 2 and 1 once each, then the lock.
    let card = id(&b.new_card("otp-burst").await);
    b.put(&format!("/v1/cards/{card}/pin"), json!({"pin": "4821"}))
        .await
        .ok();
    let (trace, code) = otp(b, a, &card).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let api = if i % 2 == 0 { a.clone() } else { b.clone() };
        let path = format!("/v1/cards/{card}/pin/change");
        let body = json!({"old_pin": "4821", "new_pin": "5083", "otp": wrong, "trace_number": trace});
        set.spawn(async move { api.post(&path, body).await });
    }
    let mut remaining = Vec::new();
    let mut locked = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        match (r.status, r.code()) {
            (422, "otp_invalid") => remaining.push(r.body["remaining_attempts"].as_u64().expect("remaining")),
            (409, "otp_locked") => locked += 1,
            _ => panic!("unexpected answer {}: {}", r.status, r.text),
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, [1, 2]);
    assert_eq!(locked, 6);
    a.post(
        &format!("/v1/cards/{card}/pin/change"),
        json!({"old_pin": "4821", "new_pin": "5083", "otp": code, "trace_number": trace}),
    )
    .await
    .expect(409, "otp_locked");
}

/// One request of the storm and its answer.
struct Shot {
    request_id: String,
    card: usize,
    action: &'static str,
    reply: Reply,
    ms: u128,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_status_changes_from_two_nodes_keep_the_machine() {
    const CARDS: usize = 5;
    const REQUESTS: usize = 200;
    let Some(c) = cluster(
        "two_hundred_concurrent_status_changes_from_two_nodes_keep_the_machine",
        &[],
    ) else {
        return;
    };
    let (a, b) = (&c.a, &c.b);
    let mut cards = Vec::new();
    for i in 0..CARDS {
        cards.push(id(&a.new_card(&format!("storm-{i}")).await));
    }
    let seed: u64 = rand::random();
    eprintln!("storm seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let run = uuid::Uuid::now_v7().simple().to_string();

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let card = rng.gen_range(0..CARDS);
        let roll = rng.gen_range(0..100);
        let action = match roll {
            0..=47 => "lock",
            48..=96 => "unlock",
            _ => "block",
        };
        let api = if i % 2 == 0 { a.clone() } else { b.clone() };
        let path = format!("/v1/cards/{}/{action}", cards[card]);
        let request_id = format!("storm-{run}-{i}");
        set.spawn(async move {
            let body = (action == "block").then(|| json!({"reason_code": "LOST_CARD"}));
            let t = Instant::now();
            let reply = match api
                .send(Method::POST, &path, body, &[("x-request-id", request_id.as_str())])
                .await
            {
                Ok(r) => r,
                Err(e) => panic!("POST {path} on {}: no answer: {e}", api.base),
            };
            Shot {
                request_id,
                card,
                action,
                reply,
                ms: t.elapsed().as_millis(),
            }
        });
    }
    let mut shots = Vec::new();
    while let Some(s) = set.join_next().await {
        shots.push(s.expect("task"));
    }
    let took = started.elapsed();

    // Every answer is a success or a refusal the table explains; no 5xx.
    let (mut changed, mut unchanged, mut refused) = (0, 0, 0);
    for s in &shots {
        let r = &s.reply;
        match r.status {
            200 => {
                let target = match s.action {
                    "lock" => "LOCKED",
                    "unlock" => "ACTIVE",
                    _ => "BLOCKED",
                };
                assert_eq!(r.body["status"], target, "{} {}", s.action, r.text);
                if r.body["changed"] == true {
                    changed += 1;
                } else {
                    assert_eq!(r.body["changed"], false, "{}", r.text);
                    unchanged += 1;
                }
            }
            409 => {
                assert_eq!(r.code(), "invalid_status_transition", "{}", r.text);
                assert_eq!(r.content_type.as_deref(), Some("application/problem+json"));
                // Lock and unlock are refused only on a BLOCKED card; block
                // is never refused on these (ACTIVE, LOCKED or BLOCKED).
                assert_ne!(s.action, "block", "{}", r.text);
                assert_eq!(r.body["current_status"], "BLOCKED", "{}", r.text);
                refused += 1;
            }
            _ => panic!("{} {}: unexpected {}: {}", s.action, s.card, r.status, r.text),
        }
    }

    for (i, card) in cards.iter().enumerate() {
        let mine: Vec<&Shot> = shots.iter().filter(|s| s.card == i).collect();
        let moved: HashMap<&str, &Shot> = mine
            .iter()
            .filter(|s| s.reply.status == 200 && s.reply.body["changed"] == true)
            .map(|s| (s.request_id.as_str(), *s))
            .collect();

        // The audit trail is one valid chain, and its moves are exactly the
        // answers that said `changed: true`.
        let audit = b.audit(card).await;
        let moves = check_chain(card, &audit, "ACTIVE");
        assert_eq!(moves.len(), moved.len(), "card {card}: audit rows vs changed answers");
        let mut seen = HashSet::new();
        for (action, _, to, rid) in &moves {
            let shot = moved
                .get(rid.as_str())
                .unwrap_or_else(|| panic!("card {card}: audit row {rid} answers no changed request"));
            assert!(seen.insert(rid.clone()), "card {card}: two audit rows for {rid}");
            assert_eq!(action, shot.action);
            assert_eq!(shot.reply.body["status"], to.as_str());
        }
        // BLOCKED ends the chain for these actions: at most one block moves.
        assert!(moves.iter().filter(|m| m.0 == "block").count() <= 1);
        let last = moves.last().map_or("ACTIVE", |m| m.2.as_str()).to_owned();
        if mine.iter().any(|s| s.reply.status == 409) {
            assert_eq!(last, "BLOCKED", "card {card}: refusals without a block");
        }
        for api in [a, b] {
            assert_eq!(
                api.get(&format!("/v1/cards/{card}")).await.ok()["status"],
                last.as_str()
            );
        }

        // One event per real change, in the same order as the audit rows.
        let events = a
            .events_until(card, |e| count_type(e, "card.status_changed") >= moves.len())
            .await;
        let changes: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "card.status_changed")
            .map(|e| {
                (
                    e["data"]["previous_status"].as_str().expect("previous").to_owned(),
                    e["data"]["card"]["status"].as_str().expect("status").to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = moves.iter().map(|m| (m.1.clone(), m.2.clone())).collect();
        assert_eq!(changes, expected, "card {card}: events vs audit");
    }

    let (min, median, max) = spread(shots.iter().map(|s| s.ms).collect());
    eprintln!(
        "storm: {REQUESTS} requests on {CARDS} cards from 2 nodes in {took:?}: {changed} changed, {unchanged} \
         unchanged, {refused} refused (409); latency ms min {min} median {median} max {max}"
    );
    assert_eq!(changed + unchanged + refused, REQUESTS);
    assert!(took < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_one_request_across_nodes() {
    let Some(c) = cluster("an_idempotency_key_is_one_request_across_nodes", &[]) else {
        return;
    };
    let (a, b) = (&c.a, &c.b);
    let card = id(&a.new_card("idem-user").await);
    let key = format!("lock-{}", uuid::Uuid::new_v4());

    // The same request with the same key, 10 times at once from both nodes:
    // it runs once; the others replay its answer or are told it is running.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let api = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (path, key) = (format!("/v1/cards/{card}/lock"), key.clone());
        set.spawn(async move {
            api.send(
                Method::POST,
                &path,
                Some(json!({})),
                &[("idempotency-key", key.as_str())],
            )
            .await
            .expect("answer")
        });
    }
    let (mut first, mut replayed, mut in_progress) = (Vec::new(), 0, 0);
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        match (r.status, r.code()) {
            (200, _) if r.replayed => {
                replayed += 1;
                assert_eq!(r.body["changed"], true, "a replay is the first answer: {}", r.text);
            }
            (200, _) => first.push(r),
            (409, "idempotency_key_in_progress") => in_progress += 1,
            _ => panic!("unexpected answer {}: {}", r.status, r.text),
        }
    }
    assert_eq!(first.len(), 1, "{replayed} replayed, {in_progress} in progress");
    assert_eq!(first[0].body["changed"], true);

    // Later, from either node: the kept answer, not a second run.
    for api in [a, b] {
        let r = api
            .send(
                Method::POST,
                &format!("/v1/cards/{card}/lock"),
                Some(json!({})),
                &[("idempotency-key", key.as_str())],
            )
            .await
            .expect("answer");
        assert!(r.replayed, "{}", r.text);
        assert_eq!(r.body, first[0].body);
    }
    let audit = b.audit(&card).await;
    assert_eq!(count_type(&audit, "card.lock"), 1, "one execution");
    let events = a
        .events_until(&card, |e| count_type(e, "card.status_changed") >= 1)
        .await;
    assert_eq!(count_type(&events, "card.status_changed"), 1);

    // The same key on another request is refused on the other node too.
    let r = b
        .send(
            Method::POST,
            &format!("/v1/cards/{card}/unlock"),
            Some(json!({})),
            &[("idempotency-key", key.as_str())],
        )
        .await
        .expect("answer");
    assert_eq!((r.status, r.code()), (422, "idempotency_key_reused"), "{}", r.text);
}

/// One burst's answers (see [`bursts_in_card_order`]).
#[derive(Debug, Default)]
struct Burst {
    accepted: bool,
    right_blocked: bool,
    remaining: std::collections::BTreeMap<u64, usize>,
    blocked: usize,
}

/// `rounds` bursts of 19 guesses on fresh cards, the right PIN among them
/// at a different place each time, the requests spread over `apis` (nodes)
/// and released together (a barrier). Every burst must be answered as some
/// serial order of its guesses would be: k < 3 wrong, the right one
/// (accepted, the count reset), 3 wrong (the 3rd blocks), then "blocked";
/// or 3 wrong then "blocked", the right one included. The card ends BLOCKED
/// with the audit trail of exactly the wrong tries answered. Returns in how
/// many bursts the right PIN was accepted.
async fn bursts_in_card_order(apis: &[Api], rounds: usize) -> usize {
    const BURST: usize = 19;
    let a = &apis[0];
    let mut accepted = 0;
    for round in 0..rounds {
        let card = id(&a.new_card(&format!("burst-{round}")).await);
        a.put(&format!("/v1/cards/{card}/pin"), json!({"pin": "4821"}))
            .await
            .ok();
        let right_at = (round * 7 + 3) % BURST;
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(BURST));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let api = apis[i % apis.len()].clone();
            let card = card.clone();
            let start = start.clone();
            let guess = if i == right_at {
                "4821".to_owned()
            } else {
                format!("{:04}", 5000 + i)
            };
            set.spawn(async move {
                start.wait().await;
                (guess == "4821", verify(&api, &card, &guess).await)
            });
        }
        let mut burst = Burst::default();
        while let Some(r) = set.join_next().await {
            let (right, r) = r.expect("task");
            match (r.status, r.body["valid"].as_bool(), r.code()) {
                (200, Some(true), _) => {
                    assert!(right, "a wrong PIN accepted: {}", r.text);
                    burst.accepted = true;
                }
                (200, Some(false), _) => {
                    assert!(!right, "the right PIN refused as wrong: {}", r.text);
                    *burst
                        .remaining
                        .entry(r.body["remaining_attempts"].as_u64().expect("remaining"))
                        .or_default() += 1;
                }
                (409, _, "pin_blocked") => {
                    burst.blocked += 1;
                    burst.right_blocked |= right;
                }
                _ => panic!("unexpected answer {}: {}", r.status, r.text),
            }
        }
        let count = |r: u64| burst.remaining.get(&r).copied().unwrap_or(0);
        let (c2, c1, c0) = (count(2), count(1), count(0));
        assert_eq!(burst.remaining.keys().filter(|r| **r > 2).count(), 0, "{burst:?}");
        assert_eq!(
            burst.blocked + c2 + c1 + c0 + usize::from(burst.accepted),
            BURST,
            "{burst:?}"
        );
        assert_eq!(c0, 1, "one blocking answer: {burst:?}");
        let serial = match (burst.accepted, burst.right_blocked, (c2, c1)) {
            (false, true, (1, 1)) => true,
            (true, false, (1, 1) | (2, 1) | (2, 2)) => {
                accepted += 1;
                true
            }
            _ => false,
        };
        assert!(serial, "no serial order answers this: {burst:?}");
        for api in apis {
            assert_eq!(
                api.get(&format!("/v1/cards/{card}")).await.ok()["pin_status"],
                "BLOCKED"
            );
        }
        let audit = a.audit(&card).await;
        assert_eq!(count_type(&audit, "card.pin_verification_failed"), c2 + c1, "{burst:?}");
        assert_eq!(count_type(&audit, "card.pin_blocked"), 1, "{burst:?}");
    }
    accepted
}

/// Bursts of guesses alternating between two nodes on PostgreSQL (see
/// [`bursts_in_card_order`]). Decided in card order, the right PIN is
/// accepted only when it is among the first 3 decided (about 3 in 19 when
/// the order is random); checked against a count read before the wrong ones
/// committed, it was accepted in most bursts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_across_nodes_is_decided_in_card_order() {
    const ROUNDS: usize = 30;
    let Some(c) = cluster("a_burst_across_nodes_is_decided_in_card_order", &[]) else {
        return;
    };
    let accepted = bursts_in_card_order(&[c.a.clone(), c.b.clone()], ROUNDS).await;
    eprintln!("right PIN accepted in {accepted} of {ROUNDS} bursts across two nodes");
    assert!(accepted <= ROUNDS / 2, "accepted in {accepted} of {ROUNDS} bursts");
}

/// The same on one `cardcore serve` process on SQLite, where the card order
/// is the process's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_sqlite_is_decided_in_card_order() {
    const ROUNDS: usize = 30;
    let db = Database::sqlite();
    let tenant = db.create_tenant("burst");
    let node = db.start("solo", &[]);
    let accepted = bursts_in_card_order(&[Api::new(&node, &tenant.key)], ROUNDS).await;
    eprintln!("right PIN accepted in {accepted} of {ROUNDS} bursts on SQLite");
    assert!(accepted <= ROUNDS / 2, "accepted in {accepted} of {ROUNDS} bursts");
}

/// A SQLite database has one server: its card order lives in that process.
/// A second `cardcore serve` on the same file refuses to start, naming the
/// first one's pid and pointing to PostgreSQL, and changes nothing; the
/// first keeps serving, and other commands (`tenant create`) work beside it.
/// Once the first is gone (even killed), a new server starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let db = Database::sqlite();
    let tenant = db.create_tenant("solo");
    let mut first = db.start("first", &[]);
    let api = Api::new(&first, &tenant.key);
    let card = id(&api.new_card("solo-1").await);

    let out = std::process::Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(db.args())
        .env("CARDCORE_MASTER_KEY", &db.master_key)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second cardcore serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second server started: {stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "names the first server: {stderr}"
    );
    assert!(stderr.contains("PostgreSQL"), "points to PostgreSQL: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "never listened"
    );

    // The first one serves on, and the CLI works beside it.
    let other = db.create_tenant("solo-cli");
    assert!(other.key.len() > 10);
    assert_eq!(api.get(&format!("/v1/cards/{card}")).await.ok()["id"], card.as_str());

    // Killed, it lets go: a new server starts on the file.
    first.kill9();
    let second = db.start("second", &[]);
    let api = Api::new(&second, &tenant.key);
    assert_eq!(api.get(&format!("/v1/cards/{card}")).await.ok()["id"], card.as_str());
}

/// Polls `call` until it answers 401 (up to 15 s) and checks the promise:
/// every call that started more than 5 s after `revoked` was refused.
/// Returns the observed delay.
async fn refused_within_5_s<F, Fut>(revoked: Instant, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let promise = Duration::from_secs(5);
    let deadline = revoked + Duration::from_secs(15);
    loop {
        let started = Instant::now();
        let r = call().await;
        let after = started.duration_since(revoked);
        if r.status == 401 {
            return after;
        }
        assert!(
            after <= promise && started < deadline,
            "a call started {after:?} after the revocation was still answered {}: {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_with_the_cli_is_refused_on_both_nodes_within_5_s() {
    if !postgres_or_skip("a_key_revoked_with_the_cli_is_refused_on_both_nodes_within_5_s") {
        return;
    }
    let db = Database::postgres();
    let tenant = db.create_tenant("revoking");
    let made: Value = serde_json::from_str(&db.cli(&[
        "tenant",
        "api-key",
        "create",
        "--tenant",
        &tenant.id,
        "--name",
        "to revoke",
        "--json",
    ]))
    .expect("json");
    let key = made["api_key"].as_str().expect("api_key").to_owned();
    let key_id = made["key_id"].as_str().expect("key_id").to_owned();
    let na = db.start("a", &[]);
    let nb = db.start("b", &[]);
    let a = Api::new(&na, &key);
    let b = a.on(&nb);
    let other = Api::new(&na, &tenant.key);

    // Both nodes know the key (their caches hold it), and an M2P token
    // minted on node a works on node b.
    a.get("/v1/cards").await.ok();
    b.get("/v1/cards").await.ok();
    let token = a
        .post(
            "/m2p/auth/token",
            json!({"clientId": tenant.id, "clientSecret": key, "grantType": "client_credentials"}),
        )
        .await
        .ok()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let m2p_on_b = Api::new(&nb, &token);
    let fetch = || async {
        m2p_on_b
            .send(
                Method::POST,
                "/m2p/prepaid/customer/v1/customers/fetch-all-cards",
                Some(json!({"entityId": "nobody"})),
                &[("X-TENANT-ID", tenant.id.as_str())],
            )
            .await
            .expect("answer")
    };
    assert_ne!(fetch().await.status, 401, "the token works before");

    db.cli(&[
        "tenant", "api-key", "revoke", "--tenant", &tenant.id, "--key-id", &key_id,
    ]);
    let revoked = Instant::now();
    let (on_a, on_b, token_on_b) = tokio::join!(
        refused_within_5_s(revoked, || a.get("/v1/cards")),
        refused_within_5_s(revoked, || b.get("/v1/cards")),
        refused_within_5_s(revoked, fetch),
    );
    let _ = writeln!(
        std::io::stderr(),
        "revocation observed after {on_a:?} (node a), {on_b:?} (node b), {token_on_b:?} (M2P token on node b)"
    );
    // It stays refused, and the tenant's other key is untouched.
    a.get("/v1/cards").await.expect(401, "unauthorized");
    b.get("/v1/cards").await.expect(401, "unauthorized");
    other.get("/v1/cards").await.ok();
    other.on(&nb).get("/v1/cards").await.ok();
    let listed: Value =
        serde_json::from_str(&db.cli(&["tenant", "api-key", "list", "--tenant", &tenant.id, "--json"])).expect("json");
    let row = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .expect("listed")
        .clone();
    assert!(row["revoked_at"].is_string(), "{row}");
    assert!(!listed.to_string().contains(&key), "never the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_transport_key_asked_for_on_two_nodes_at_once_is_one_key() {
    let Some(c) = cluster("a_tenants_transport_key_asked_for_on_two_nodes_at_once_is_one_key", &[]) else {
        return;
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let api = if i % 2 == 0 { c.a.clone() } else { c.b.clone() };
        set.spawn(async move { api.get("/v1/pin-encryption-key").await.ok() });
    }
    let mut keys = Vec::new();
    while let Some(k) = set.join_next().await {
        keys.push(k.expect("task"));
    }
    assert!(keys.iter().all(|k| k == &keys[0]), "one key for the tenant: {keys:?}");
    assert_eq!(keys[0]["key_id"], "rsa-oaep-v1");
    assert_eq!(c._db.sql("SELECT count(*) FROM tenant_transport_keys"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_lock_holds_across_nodes() {
    let Some(c) = cluster("activation_lock_holds_across_nodes", &[]) else {
        return;
    };
    let (a, b) = (&c.a, &c.b);
    let holder = a
        .post(
            "/v1/cardholders",
            json!({
                "external_id": "activation-user",
                "name": "Ana Silva",
                "phone": {"country_code": "351", "number": "912345678"}
            }),
        )
        .await
        .ok();
    let card = a
        .post("/v1/cards", json!({"cardholder_id": holder["id"], "type": "physical"}))
        .await
        .ok();
    assert_eq!(card["status"], "INACTIVE");
    let card = id(&card);
    let events = b
        .events_until(&card, |e| count_type(e, "card.activation_code") >= 1)
        .await;
    let right = events
        .iter()
        .find(|e| e["type"] == "card.activation_code")
        .and_then(|e| e["data"]["activation_code"].as_str())
        .expect("activation code")
        .to_owned();
    let wrong = |n: u32| format!("{:06}", (right.parse::<u32>().unwrap() + 1 + n) % 1_000_000);

    // 10 wrong codes at once, alternating nodes: the row lock serialises
    // them, so exactly 3 are counted (remaining 2 and 1 answered once each,
    // the 3rd sets the lock) and every other one meets the lock.
    let mut set = tokio::task::JoinSet::new();
    for n in 0..10 {
        let api = if n % 2 == 0 { a.clone() } else { b.clone() };
        let (card, code) = (card.clone(), wrong(n));
        set.spawn(async move {
            api.post(
                &format!("/v1/cards/{card}/activate"),
                json!({ "activation_code": code }),
            )
            .await
        });
    }
    let mut remaining = Vec::new();
    let mut locked = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        match (r.status, r.code()) {
            (422, "activation_code_invalid") => remaining.push(r.body["remaining_attempts"].as_u64().expect("n")),
            (409, "activation_locked") => locked += 1,
            _ => panic!("unexpected answer {}: {}", r.status, r.text),
        }
    }
    remaining.sort_unstable();
    assert_eq!(remaining, [1, 2]);
    assert_eq!(locked, 8);

    // The right code is refused on both nodes, with how long to wait.
    for api in [a, b] {
        let r = api
            .post(
                &format!("/v1/cards/{card}/activate"),
                json!({ "activation_code": right }),
            )
            .await;
        let retry: u64 = r.retry_after.clone().expect("Retry-After").parse().expect("seconds");
        assert!((1..=600).contains(&retry));
        let body = r.expect(409, "activation_locked");
        assert_eq!(body["retry_after_seconds"].as_u64(), Some(retry));
        assert_eq!(api.get(&format!("/v1/cards/{card}")).await.ok()["status"], "INACTIVE");
    }
    let audit = a.audit(&card).await;
    assert_eq!(count_type(&audit, "card.activation_failed"), 3);
    assert_eq!(count_type(&audit, "card.activation_locked"), 1);
}

/// No overspend across nodes: 30 authorizations of 3,000 fired together at
/// two nodes on one card with a daily limit of 10,000 approve exactly 3;
/// the card's totals, its authorizations and their events agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_authorizations_on_two_nodes_approve_exactly_three() {
    let Some(c) = cluster(
        "thirty_concurrent_authorizations_on_two_nodes_approve_exactly_three",
        &[],
    ) else {
        return;
    };
    let (a, b) = (&c.a, &c.b);
    let card = id(&a.new_card("spender").await);
    let open = json!({"enabled": true, "per_transaction": null, "daily": null, "monthly": null});
    b.put(
        &format!("/v1/cards/{card}/limits"),
        json!({"currency": "EUR", "channels": {
            "pos": {"enabled": true, "per_transaction": null, "daily": 10_000, "monthly": null},
            "ecommerce": open, "atm": open, "contactless": open}}),
    )
    .await
    .ok();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..30 {
        let api = if i % 2 == 0 { a.clone() } else { b.clone() };
        let card = card.clone();
        set.spawn(async move {
            api.post(
                "/v1/authorizations",
                json!({"card_id": card, "amount": 3_000, "currency": "EUR", "channel": "pos",
                       "merchant": {"mcc": "5411", "country": "PT"}, "network_reference": format!("n-{i}")}),
            )
            .await
        });
    }
    let mut approved = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        assert_eq!(r.status, 201, "{}", r.text);
        match r.body["status"].as_str() {
            Some("APPROVED") => approved += 1,
            Some("DECLINED") => assert_eq!(r.body["decline_reason"], "LIMIT_DAILY", "{}", r.text),
            _ => panic!("unexpected answer: {}", r.text),
        }
    }
    assert_eq!(approved, 3);
    let spend = a.get(&format!("/v1/cards/{card}/spend")).await.ok();
    assert_eq!(spend["channels"]["pos"]["daily"]["used"], 9_000);
    assert_eq!(spend["channels"]["pos"]["daily"]["count"], 3);
    let list = b
        .get(&format!("/v1/cards/{card}/authorizations?status=APPROVED"))
        .await
        .ok();
    assert_eq!(list["data"].as_array().expect("data").len(), 3);
    let events = a
        .events_until(&card, |e| {
            count_type(e, "authorization.approved") + count_type(e, "authorization.declined") >= 30
        })
        .await;
    assert_eq!(count_type(&events, "authorization.approved"), 3);
    assert_eq!(count_type(&events, "authorization.declined"), 27);
}

/// A console session and a PIN widget session live in the database: signed
/// in on one node, the session works on the other, and signing out on the
/// other ends it on the first; a PIN session made on one node is spent once
/// across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_pin_sessions_hold_across_nodes() {
    let Some(c) = cluster("console_and_pin_sessions_hold_across_nodes", &[]) else {
        return;
    };
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser.get(format!("{}/console/login", c.a.base)).send().await.unwrap();
    let login_cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let text = form.text().await.unwrap();
    let csrf = text.split(r#"name="csrf_token" value=""#).nth(1).unwrap();
    let csrf = csrf[..csrf.find('"').unwrap()].to_owned();
    let signed_in = browser
        .post(format!("{}/console/login", c.a.base))
        .header("cookie", login_cookie)
        .form(&[("api_key", c.a.key.as_str()), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |base: String| {
        let browser = browser.clone();
        let cookie = cookie.clone();
        async move {
            browser
                .get(format!("{base}/console"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    let on_b = page(c.b.base.clone()).await;
    assert_eq!(on_b.status(), 200, "node b knows node a's session");
    let text = on_b.text().await.unwrap();
    let session_csrf = text.split(r#"name="csrf_token" value=""#).nth(1).unwrap();
    let session_csrf = session_csrf[..session_csrf.find('"').unwrap()].to_owned();
    let out = browser
        .post(format!("{}/console/logout", c.b.base))
        .header("cookie", &cookie)
        .form(&[("csrf_token", session_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(
        page(c.a.base.clone()).await.status(),
        303,
        "signed out on b: gone on a too"
    );

    // A PIN session made on a, spent on b, is gone on a.
    let holder =
        c.a.post(
            "/v1/cardholders",
            json!({"external_id": "n-1", "name": "Ana", "phone": {"country_code": "351", "number": "912345678"}}),
        )
        .await
        .ok();
    let card =
        c.a.post("/v1/cards", json!({"cardholder_id": holder["id"], "type": "virtual"}))
            .await
            .ok();
    let card = id(&card);
    let session =
        c.a.post(
            &format!("/v1/cards/{card}/pin-sessions"),
            json!({"purpose": "set", "allowed_origin": "https://app.example.com"}),
        )
        .await
        .ok();
    let token = session["session_token"].as_str().unwrap();
    let pem = c.a.call(Method::GET, "/v1/pin-encryption-key", None).await.ok()["public_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |base: String, pin: &'static str| {
        let browser = browser.clone();
        let pem = pem.clone();
        let token = token.to_owned();
        async move {
            let encrypted = cardcore_crypto::transport::encrypt_with_public_pem(&pem, pin.as_bytes()).unwrap();
            browser
                .post(format!("{base}/widget/pin"))
                .header("origin", "https://app.example.com")
                .json(&json!({"session_token": token, "encrypted_pin": encrypted}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (x, y) = tokio::join!(post(c.b.base.clone(), "4821"), post(c.a.base.clone(), "5937"));
    let mut statuses = [x.as_u16(), y.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 410], "one node spends it, the other finds it spent");
    let right = if x.as_u16() == 200 { "4821" } else { "5937" };
    assert_eq!(verify(&c.a, &card, right).await.ok()["valid"], true);
}
