//! Crash safety: a server killed with SIGKILL in the middle of write load
//! loses no write it acknowledged, on SQLite and on PostgreSQL.
//!
//! Each card has one writer at a time (PIN sets, locks and unlocks, one
//! request after another), so the order of its requests is known. Five
//! times the server is killed at a random moment and restarted on the same
//! database. Then, per card (`support::check_card_history`): every request
//! that got a 2xx is in the audit trail exactly once (found by its
//! `x-request-id`), in the order it was sent; nothing else is, except
//! requests whose answer was lost to the kill; the trail is a valid chain of
//! the status machine; the card's status is where the trail ends; the PIN of
//! the last PIN set in the trail verifies; and the outbox holds one event per
//! audited change, in the same order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{check_card_history, postgres_or_skip, writer, Api, Database, Tally};

const CARDS: usize = 12;
const ROUNDS: usize = 5;

async fn acknowledged_writes_survive_kill_9(test: &str, db: Database) {
    let backend = db.backend();
    let tenant = db.create_tenant("crash");
    // Room for more wrong PINs than a check could ever use.
    let extra = ["--pin-max-tries", "10"];
    let seed: u64 = rand::random();
    eprintln!("{test}: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();

    let mut node = db.start("round0", &extra);
    let mut cards = Vec::new();
    {
        let api = Api::new(&node, &tenant.key);
        for i in 0..CARDS {
            cards.push(
                api.new_card(&format!("crash-{i}")).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
    }
    let mut log: Vec<Vec<support::Op>> = vec![Vec::new(); CARDS];
    let mut kills = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            node = db.start(&format!("round{round}"), &extra);
        }
        let api = Api::new(&node, &tenant.key);
        let never = Arc::new(AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        for (i, card) in cards.iter().enumerate() {
            let w = writer(
                api.clone(),
                card.clone(),
                format!("crash-{run}-{i}-{round}"),
                rng.gen(),
                never.clone(),
                true,
            );
            set.spawn(async move { (i, w.await) });
        }
        let kill_after = Duration::from_millis(rng.gen_range(300..1500));
        tokio::time::sleep(kill_after).await;
        node.kill9();
        kills.push(kill_after.as_millis());
        while let Some(done) = set.join_next().await {
            let (i, ops) = done.expect("writer");
            log[i].extend(ops);
        }
    }

    // The last restart, then the checks.
    let check_node = db.start("check", &extra);
    let api = Api::new(&check_node, &tenant.key);
    let mut tally = Tally::default();
    for (i, card) in cards.iter().enumerate() {
        check_card_history(&api, card, &log[i], &mut tally).await;
    }
    eprintln!(
        "{test} ({backend}): {ROUNDS} kills at {kills:?} ms; {} acknowledged ({} writes), {} unknown ({} of them \
         applied), {} refused connections; {:?} in all",
        tally.acked,
        tally.acked_writes,
        tally.unknown,
        tally.unknown_applied,
        tally.not_sent,
        started.elapsed()
    );
    assert!(
        tally.acked_writes >= CARDS,
        "the load wrote too little to prove anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_no_acknowledged_write_to_kill_9() {
    acknowledged_writes_survive_kill_9("sqlite_loses_no_acknowledged_write_to_kill_9", Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_no_acknowledged_write_to_kill_9() {
    let test = "postgres_loses_no_acknowledged_write_to_kill_9";
    if !postgres_or_skip(test) {
        return;
    }
    acknowledged_writes_survive_kill_9(test, Database::postgres()).await;
}
