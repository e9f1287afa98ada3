//! What only PostgreSQL has to show: several nodes on one database, commits
//! out of order, and a server that goes away and comes back. The rest of
//! the contract is in tests/contract.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardcore_domain::{
    AccountId, ApiKeyId, AuditEntry, AuditId, Brand, Card, CardId, CardStatus, CardType, Cardholder, CardholderId,
    Event, EventType, Expiry, ExternalId, KitNumber, Limits, Phone, PinStatus, ProgramId, Tenant, TenantId,
};
use cardcore_store::{
    ApiKeyRecord, CardRecord, CardSecrets, EventQuery, Store, StoreError, StoreResult, StoredEvent, StoredKey,
};
use cardcore_store_postgres::{PostgresOptions, PostgresStore};
use common::TestSchema;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

// --- fixtures ----------------------------------------------------------------

fn now() -> cardcore_domain::Timestamp {
    cardcore_domain::Timestamp::from_timestamp_micros(1_767_225_600_000_000).unwrap()
}

fn unique(len: usize) -> Vec<u8> {
    let mut v = uuid::Uuid::new_v4().as_bytes().to_vec();
    v.resize(len, 7);
    v
}

async fn tenant_and_card(store: &dyn Store) -> (TenantId, CardId) {
    let t = Tenant {
        id: TenantId::new(),
        name: "acme".into(),
        default_program_id: ProgramId::new(),
        created_at: now(),
    };
    let key = ApiKeyRecord {
        id: ApiKeyId::new(),
        tenant_id: t.id,
        key_hash: unique(32),
        prefix: "ck_test_".into(),
        can_reveal: false,
        created_at: now(),
        name: None,
        last_used_at: None,
        revoked_at: None,
    };
    assert!(store.create_tenant(&t, &key).await.unwrap());
    let holder = Cardholder {
        id: CardholderId::new(),
        tenant_id: t.id,
        external_id: ExternalId::parse("h-1").unwrap(),
        name: "Ana".into(),
        phone: Phone {
            country_code: "351".into(),
            number: "912345678".into(),
        },
        email: None,
        date_of_birth: None,
        default_account_id: AccountId::new(),
        created_at: now(),
    };
    let n = uuid::Uuid::new_v4().as_u128() % 10_000_000_000;
    let card = CardRecord {
        card: Card {
            id: CardId::new(),
            tenant_id: t.id,
            cardholder_id: holder.id,
            account_id: AccountId::new(),
            program_id: ProgramId::new(),
            card_type: CardType::Virtual,
            status: CardStatus::Active,
            status_reason: None,
            pin_status: PinStatus::NotSet,
            brand: Brand::Visa,
            last_four: "4242".into(),
            expiry: Expiry::new(1, 2030).unwrap(),
            card_name: None,
            printed_name: None,
            kit_number: KitNumber::parse(&format!("{n:010}")).unwrap(),
            replacement_for: None,
            limits: Limits::unlimited("EUR"),
            created_at: now(),
            updated_at: now(),
        },
        secrets: CardSecrets {
            pan_hash: unique(32),
            pan_sealed: unique(40),
            data_key_version: 1,
            activation_code: None,
            pin: None,
            pin_failures: 0,
        },
        usage: Default::default(),
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_cardholder(&holder).await.unwrap());
    assert!(tx.insert_card(&card).await.unwrap());
    tx.commit().await.unwrap();
    (t.id, card.card.id)
}

fn event(tenant: TenantId) -> StoredEvent {
    StoredEvent {
        event: Event::new(tenant, None, EventType::CardLimitsUpdated, now(), serde_json::json!({})),
        sealed_data: None,
    }
}

fn audit(tenant: TenantId) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        tenant_id: tenant,
        card_id: None,
        entry_type: "test".into(),
        actor: cardcore_domain::Actor::system(),
        request_id: None,
        reason: None,
        before: None,
        after: None,
        created_at: now(),
    }
}

async fn event_ids(store: &dyn Store, tenant: TenantId, after: Option<&StoredEvent>) -> Vec<cardcore_domain::EventId> {
    let q = EventQuery {
        after: after.map(|e| e.event.id),
        limit: 100,
        ..EventQuery::default()
    };
    store
        .events(tenant, &q)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.id)
        .collect()
}

/// Lists until `n` events show (other tests' open transactions may hold the
/// horizon back for a moment).
async fn settled(
    store: &dyn Store,
    tenant: TenantId,
    after: Option<&StoredEvent>,
    n: usize,
) -> Vec<cardcore_domain::EventId> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = event_ids(store, tenant, after).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends what `tx` has queued: writes that return nothing wait for the
/// transaction's next read or its commit, and these tests need them in the
/// database (holding their transaction id) at a given point.
async fn send_queued(tx: &mut dyn cardcore_store::Tx, t: TenantId) {
    tx.replacement_of(t, CardId::new()).await.unwrap();
}

fn is_unavailable<T: std::fmt::Debug>(r: &StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::Unavailable(_)))
}

/// Runs `body` on a fresh schema, then drops the schema even if it panicked.
async fn with_schema<F, Fut>(test: &str, options: PostgresOptions, body: F)
where
    F: FnOnce(Arc<TestSchema>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(schema) = common::fresh_schema(test, options).await else {
        return;
    };
    let schema = Arc::new(schema);
    let outcome = tokio::spawn(body(schema.clone())).await;
    if let Ok(schema) = Arc::try_unwrap(schema) {
        schema.drop_schema().await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// --- event visibility --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_after_a_later_one_is_not_skipped() {
    with_schema(
        "an_event_committed_after_a_later_one_is_not_skipped",
        common::options(),
        |s| async move {
            let store = &s.store;
            let (t, _) = tenant_and_card(store).await;

            // A draws the lower seq but commits last.
            let first = event(t);
            let second = event(t);
            let mut a = store.begin().await.unwrap();
            a.insert_event(&first).await.unwrap();
            send_queued(&mut *a, t).await;
            let mut b = store.begin().await.unwrap();
            b.insert_event(&second).await.unwrap();
            b.commit().await.unwrap();
            // A reader now must not be handed `second`: its cursor would pass
            // `first`, which is yet to come.
            assert!(event_ids(store, t, None).await.is_empty());
            a.commit().await.unwrap();
            assert_eq!(settled(store, t, None, 2).await, vec![first.event.id, second.event.id]);

            // Old writes first, event last: `old` started writing before `young`
            // but inserts its event after young's. Listed in transaction order,
            // a cursor at `second` reaches both, and never sees young before old
            // is settled.
            let mut old = store.begin().await.unwrap();
            old.insert_audit(&audit(t)).await.unwrap();
            send_queued(&mut *old, t).await;
            let young_event = event(t);
            let mut young = store.begin().await.unwrap();
            young.insert_event(&young_event).await.unwrap();
            young.commit().await.unwrap();
            let old_event = event(t);
            old.insert_event(&old_event).await.unwrap();
            send_queued(&mut *old, t).await;
            assert!(event_ids(store, t, Some(&second)).await.is_empty());
            old.commit().await.unwrap();
            assert_eq!(
                settled(store, t, Some(&second), 2).await,
                vec![old_event.event.id, young_event.event.id]
            );
            assert_eq!(event_ids(store, t, Some(&old_event)).await, vec![young_event.event.id]);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_writer_does_not_hold_events_back() {
    with_schema(
        "a_rolled_back_writer_does_not_hold_events_back",
        common::options(),
        |s| async move {
            let store = &s.store;
            let (t, _) = tenant_and_card(store).await;
            let mut doomed = store.begin().await.unwrap();
            doomed.insert_event(&event(t)).await.unwrap();
            send_queued(&mut *doomed, t).await;
            let kept = event(t);
            let mut tx = store.begin().await.unwrap();
            tx.insert_event(&kept).await.unwrap();
            tx.commit().await.unwrap();
            drop(doomed);
            assert_eq!(settled(store, t, None, 1).await, vec![kept.event.id]);
        },
    )
    .await;
}

// --- several nodes -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serialise_on_one_card() {
    with_schema("two_nodes_serialise_on_one_card", common::options(), |s| async move {
        let (t, card) = tenant_and_card(&s.store).await;
        let nodes: [Arc<dyn Store>; 2] = [Arc::new(s.store.clone()), Arc::new(s.another_node().await)];
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = nodes[i % 2].clone();
                tokio::spawn(async move {
                    let mut tx = store.begin().await.unwrap();
                    let mut rec = tx.lock_card(t, card).await.unwrap().unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    rec.secrets.pin_failures += 1;
                    tx.update_card(&rec).await.unwrap();
                    tx.commit().await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(s.store.card(t, card).await.unwrap().unwrap().secrets.pin_failures, 20);
    })
    .await;
}

/// PIN decisions hold the card ([`Store::hold_card`]) and write only when the
/// decision changed something. Holds on two nodes are served one after
/// another: a holder that goes on to write finds, under its row lock, the
/// card exactly as its hold read it, and no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_on_two_nodes_decide_one_after_another() {
    with_schema(
        "holds_on_two_nodes_decide_one_after_another",
        common::options(),
        |s| async move {
            let (t, card) = tenant_and_card(&s.store).await;
            let nodes: [Arc<dyn Store>; 2] = [Arc::new(s.store.clone()), Arc::new(s.another_node().await)];
            let tasks: Vec<_> = (0..24)
                .map(|i| {
                    let store = nodes[i % 2].clone();
                    tokio::spawn(async move {
                        let hold = store.hold_card(t, card).await.unwrap();
                        let held = hold.record.clone().unwrap();
                        // Widen the window between the read and the write:
                        // without the hold, others would decide meanwhile.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        if i % 3 == 0 {
                            // A decision that changes nothing: released.
                            hold.release().await.unwrap();
                            return 0;
                        }
                        let mut tx = hold.into_tx(&*store).await.unwrap();
                        let mut rec = tx.lock_card(t, card).await.unwrap().unwrap();
                        assert_eq!(rec, held, "the card changed under a hold");
                        rec.secrets.pin_failures += 1;
                        tx.update_card(&rec).await.unwrap();
                        tx.commit().await.unwrap();
                        1
                    })
                })
                .collect();
            let mut writes = 0;
            for task in tasks {
                writes += task.await.unwrap();
            }
            assert_eq!(writes, 16);
            assert_eq!(s.store.card(t, card).await.unwrap().unwrap().secrets.pin_failures, 16);
        },
    )
    .await;
}

/// A hold released unwritten made nothing durable: while it is held, its
/// session holds the card's advisory lock and no transaction id (a row lock
/// or any write would draw one, and a commit would have to flush it); once
/// released, the advisory lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_hold_draws_no_transaction_id() {
    with_schema(
        "a_released_hold_draws_no_transaction_id",
        common::options(),
        |s| async move {
            let (t, card) = tenant_and_card(&s.store).await;
            let (hi, lo) = card.0.as_u64_pair();
            let key = i64::from_ne_bytes((hi ^ lo).to_ne_bytes());
            let mut observer = sqlx::PgConnection::connect(&common::url()).await.unwrap();
            let holders = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                       AND ((classid::bigint << 32) | objid::bigint) = $1";
            let hold = s.store.hold_card(t, card).await.unwrap();
            assert!(hold.record.is_some());
            let pids: Vec<i32> = sqlx::query_scalar(holders)
                .bind(key)
                .fetch_all(&mut observer)
                .await
                .unwrap();
            assert_eq!(pids.len(), 1, "one session holds the card");
            let xids: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype IN ('transactionid', 'tuple')",
            )
            .bind(pids[0])
            .fetch_one(&mut observer)
            .await
            .unwrap();
            assert_eq!(xids, 0, "a hold draws no transaction id and locks no row");
            hold.release().await.unwrap();
            let pids: Vec<i32> = sqlx::query_scalar(holders)
                .bind(key)
                .fetch_all(&mut observer)
                .await
                .unwrap();
            assert!(pids.is_empty(), "released");

            // What the observer would see otherwise: locking the row to
            // write draws a transaction id.
            let hold = s.store.hold_card(t, card).await.unwrap();
            let mut tx = hold.into_tx(&s.store).await.unwrap();
            tx.lock_card(t, card).await.unwrap().unwrap();
            let pids: Vec<i32> = sqlx::query_scalar(holders)
                .bind(key)
                .fetch_all(&mut observer)
                .await
                .unwrap();
            let xids: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'transactionid'")
                    .bind(pids[0])
                    .fetch_one(&mut observer)
                    .await
                    .unwrap();
            assert_eq!(xids, 1, "a row lock draws a transaction id");
            tx.rollback().await.unwrap();
        },
    )
    .await;
}

/// Transaction ids order the outbox, so for one card they must follow the
/// order in which its changes were made. A transaction that queued on the
/// card's row lock could get its id while still queued (PostgreSQL assigns
/// one when it locks an older row version on the way), and then be
/// overtaken: its event listed before changes that happened earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cards_events_are_listed_in_the_order_of_its_changes() {
    with_schema(
        "one_cards_events_are_listed_in_the_order_of_its_changes",
        common::options(),
        |s| async move {
            const WRITERS: usize = 60;
            let (t, card) = tenant_and_card(&s.store).await;
            let nodes: [Arc<dyn Store>; 2] = [Arc::new(s.store.clone()), Arc::new(s.another_node().await)];
            let tasks: Vec<_> = (0..WRITERS)
                .map(|i| {
                    let store = nodes[i % 2].clone();
                    tokio::spawn(async move {
                        let mut tx = store.begin().await.unwrap();
                        let mut rec = tx.lock_card(t, card).await.unwrap().unwrap();
                        rec.secrets.pin_failures += 1;
                        tx.update_card(&rec).await.unwrap();
                        let data = serde_json::json!({ "n": rec.secrets.pin_failures });
                        let e = StoredEvent {
                            event: Event::new(t, Some(card), EventType::CardLimitsUpdated, now(), data),
                            sealed_data: None,
                        };
                        tx.insert_event(&e).await.unwrap();
                        tx.commit().await.unwrap();
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let q = EventQuery {
                card_id: Some(card),
                limit: 100,
                ..EventQuery::default()
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let listed = loop {
                let got = s.store.events(t, &q).await.unwrap();
                if got.len() >= WRITERS || Instant::now() > deadline {
                    break got;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let order: Vec<u64> = listed.iter().map(|e| e.event.data["n"].as_u64().unwrap()).collect();
            assert_eq!(order, (1..=WRITERS as u64).collect::<Vec<_>>());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_get_one_winner_and_no_error() {
    with_schema(
        "racing_nodes_get_one_winner_and_no_error",
        common::options(),
        |s| async move {
            let nodes: Vec<Arc<dyn Store>> = vec![
                Arc::new(s.store.clone()),
                Arc::new(s.another_node().await),
                Arc::new(s.another_node().await),
            ];
            // Migrations from every node at once (each node migrates at start).
            let migrations: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let n = n.clone();
                    tokio::spawn(async move { n.migrate().await })
                })
                .collect();
            for m in migrations {
                m.await.unwrap().unwrap();
            }

            let mut tasks = Vec::new();
            for (i, node) in nodes.iter().cycle().take(12).enumerate() {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let meta = node
                        .put_meta_if_absent("master_kcv", &format!("node{i}"))
                        .await
                        .unwrap();
                    let key = StoredKey {
                        purpose: "data".into(),
                        version: 1,
                        wrapped: unique(48),
                        created_at: now(),
                    };
                    let service_key = node.insert_service_key(&key).await.unwrap();
                    let tenant = Tenant {
                        id: TenantId::new(),
                        name: "acme".into(),
                        default_program_id: ProgramId::new(),
                        created_at: now(),
                    };
                    let api_key = ApiKeyRecord {
                        id: ApiKeyId::new(),
                        tenant_id: tenant.id,
                        key_hash: unique(32),
                        prefix: "ck_".into(),
                        can_reveal: false,
                        created_at: now(),
                        name: None,
                        last_used_at: None,
                        revoked_at: None,
                    };
                    let tenant = node.create_tenant(&tenant, &api_key).await.unwrap();
                    [meta, service_key, tenant]
                }));
            }
            let mut wins = [0; 3];
            for task in tasks {
                for (w, won) in wins.iter_mut().zip(task.await.unwrap()) {
                    *w += usize::from(won);
                }
            }
            assert_eq!(wins, [1, 1, 1], "meta, service key, tenant");
            assert_eq!(s.store.tenant_count().await.unwrap(), 1);
            assert_eq!(s.store.service_keys().await.unwrap().len(), 1);
        },
    )
    .await;
}

// --- availability ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waiting_too_long_for_a_lock_fails_as_unavailable() {
    let options = PostgresOptions {
        statement_timeout: Duration::from_millis(300),
        ..common::options()
    };
    with_schema(
        "a_statement_waiting_too_long_for_a_lock_fails_as_unavailable",
        options,
        |s| async move {
            let store = &s.store;
            let (t, card) = tenant_and_card(store).await;
            let mut holder = store.begin().await.unwrap();
            holder.lock_card(t, card).await.unwrap().unwrap();
            let mut waiter = store.begin().await.unwrap();
            let started = Instant::now();
            let r = waiter.lock_card(t, card).await;
            assert!(is_unavailable(&r), "{r:?}");
            // Loose: a hang would never return (the holder waits for us).
            assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
            drop(waiter);
            holder.commit().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_replaced() {
    let app = format!("cardcore-test-{}", uuid::Uuid::new_v4().simple());
    let options = PostgresOptions {
        application_name: app.clone(),
        ..common::options()
    };
    with_schema("terminated_connections_are_replaced", options, |s| async move {
        let store = &s.store;
        let (t, card) = tenant_and_card(store).await;
        let mut open = store.begin().await.unwrap();
        open.lock_card(t, card).await.unwrap();
        // What a server restart (or an operator) does to every session.
        let mut admin = sqlx::PgConnection::connect(&common::url()).await.unwrap();
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) k",
        )
        .bind(&app)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(killed >= 1);
        // The transaction in flight is lost, and says so.
        let r = open.lock_card(t, card).await;
        assert!(is_unavailable(&r), "{r:?}");
        drop(open);
        // The pool replaces its dead connections without a restart of ours.
        store.ping().await.unwrap();
        assert!(store.card(t, card).await.unwrap().is_some());
        let mut tx = store.begin().await.unwrap();
        assert!(tx.lock_card(t, card).await.unwrap().is_some());
        tx.commit().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_fast_as_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = PostgresOptions {
        acquire_timeout: Duration::from_secs(1),
        ..common::options()
    };
    let started = Instant::now();
    let r = PostgresStore::connect(&common::url_via(&format!("127.0.0.1:{port}")), &options).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{:?}", r.err());
    // Loose, for a loaded machine: without the timeout this would not return.
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

#[tokio::test]
async fn schema_names_must_be_plain_identifiers() {
    for bad in ["Upper", "has-dash", "x\"; DROP SCHEMA public; --", ""] {
        let options = PostgresOptions {
            schema: Some(bad.into()),
            ..common::options()
        };
        // Refused before any connection is attempted: no server needed.
        let r = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none", &options).await;
        assert!(matches!(r, Err(StoreError::Internal(_))), "{bad}: {:?}", r.err());
    }
}

/// A TCP proxy in front of the server, to play a server that goes down
/// (connections cut, new ones refused) or stops answering.
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Connections stay open but nothing passes, like a network partition.
    Stalled,
    /// Every connection cut, the port closed.
    Down,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Up);
        let mut proxy = Self {
            port,
            upstream,
            mode,
            accept: None,
        };
        proxy.accept = Some(proxy.serve(listener));
        proxy
    }

    fn url(&self) -> String {
        common::url_via(&format!("127.0.0.1:{}", self.port))
    }

    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let upstream = self.upstream;
        let mode = self.mode.subscribe();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut mode = mode.clone();
                tokio::spawn(async move {
                    if *mode.borrow() == Mode::Up {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                            _ = mode.wait_for(|m| *m != Mode::Up) => {}
                        }
                    }
                    // Stalled: hold the sockets, pass nothing, until down.
                    let _ = mode.wait_for(|m| *m == Mode::Down).await;
                });
            }
        })
    }

    fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    async fn down(&mut self) {
        self.mode.send_replace(Mode::Down);
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    async fn up(&mut self) {
        self.mode.send_replace(Mode::Up);
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.accept = Some(self.serve(listener));
    }
}

async fn upstream() -> Option<SocketAddr> {
    let (host, port) = common::server_addr()?;
    let mut addrs = tokio::net::lookup_host((host.as_str(), port)).await.ok()?;
    addrs.next()
}

/// A store through a proxy, on a fresh schema; `None` to skip.
async fn behind_proxy(test: &str) -> Option<(Proxy, PostgresStore, TestSchema)> {
    let schema = common::fresh_schema(test, common::options()).await?;
    let Some(upstream) = upstream().await else {
        common::missing_server(test, "the proxy tests need a TCP address");
        schema.drop_schema().await;
        return None;
    };
    let proxy = Proxy::start(upstream).await;
    let options = PostgresOptions {
        acquire_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(1),
        schema: Some(schema.name.clone()),
        ..common::options()
    };
    let store = PostgresStore::connect(&proxy.url(), &options).await.unwrap();
    Some((proxy, store, schema))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_down_calls_fail_fast_and_the_pool_recovers() {
    let Some((mut proxy, store, schema)) =
        behind_proxy("while_the_server_is_down_calls_fail_fast_and_the_pool_recovers").await
    else {
        return;
    };
    let outcome = tokio::spawn(async move {
        let (t, card) = tenant_and_card(&store).await;
        let mut in_flight = store.begin().await.unwrap();
        in_flight.lock_card(t, card).await.unwrap();

        proxy.down().await;
        let started = Instant::now();
        let r = store.ping().await;
        assert!(is_unavailable(&r), "{r:?}");
        let r = store.card(t, card).await;
        assert!(is_unavailable(&r), "{r:?}");
        let r = store.begin().await.map(|_| ());
        assert!(is_unavailable(&r), "{r:?}");
        // Three calls, each bounded by the 1 s acquire timeout (loose, for
        // a loaded machine: without it they would not return).
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
        let r = in_flight.lock_card(t, card).await;
        assert!(is_unavailable(&r), "{r:?}");
        let r = in_flight.commit().await;
        assert!(is_unavailable(&r), "{r:?}");

        proxy.up().await;
        // The very first call after the outage succeeds: dead connections
        // are tested and replaced before use.
        store.ping().await.unwrap();
        assert!(store.card(t, card).await.unwrap().is_some());
        let mut tx = store.begin().await.unwrap();
        assert!(tx.lock_card(t, card).await.unwrap().is_some());
        tx.commit().await.unwrap();
        store.close().await;
    })
    .await;
    schema.drop_schema().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_fails_calls_instead_of_hanging() {
    let Some((mut proxy, store, schema)) =
        behind_proxy("a_server_that_stops_answering_fails_calls_instead_of_hanging").await
    else {
        return;
    };
    let outcome = tokio::spawn(async move {
        let (t, card) = tenant_and_card(&store).await;
        let mut in_flight = store.begin().await.unwrap();
        in_flight.lock_card(t, card).await.unwrap();

        proxy.stall();
        // A pooled connection is tested first; the test hangs and the
        // acquire timeout (1 s) cuts it.
        // The bounds are not speed claims: a hang never returns, and a
        // loaded CI machine may take a few seconds more than the deadlines.
        let started = Instant::now();
        let r = store.ping().await;
        assert!(is_unavailable(&r), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
        // A transaction's own connection has no acquire to time out: the
        // client-side deadline (1 + 2 x 1 + 1 = 4 s) does.
        let started = Instant::now();
        let r = in_flight.lock_card(t, card).await;
        assert!(is_unavailable(&r), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
        drop(in_flight);

        proxy.down().await;
        proxy.up().await;
        // Recovery is `while_the_server_is_down_...`'s test; here a
        // connection stalled before may still be timing out on its test
        // when the first call comes, so wait for the pool (not forever).
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = store.ping().await {
            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
            assert!(Instant::now() < deadline, "the pool did not recover: {e:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(store.card(t, card).await.unwrap().is_some());
    })
    .await;
    schema.drop_schema().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Migration 0004: the PAN lookup hash is unique across the whole table
/// (the per-tenant constraint is gone), and no card row holds a CVV: one
/// written the way the store writes cards leaves `cvv_sealed` empty.
#[tokio::test]
async fn pan_hashes_are_unique_across_tenants_and_no_cvv_is_stored() {
    let Some(schema) = common::fresh_schema("pan_hash_index", common::options()).await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&common::url()).await.unwrap();
    let index: String =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'cards_pan_hash'")
            .bind(&schema.name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        index.starts_with("CREATE UNIQUE INDEX") && index.ends_with("(pan_hash)"),
        "{index}"
    );
    let per_tenant: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE n.nspname = $1 AND c.conname = 'cards_tenant_id_pan_hash_key'",
    )
    .bind(&schema.name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(per_tenant, 0, "the per-tenant constraint is dropped");

    // A card written as the store writes cards (insert, then update).
    let (tenant, card) = tenant_and_card(&schema.store).await;
    let mut rec = schema.store.card(tenant, card).await.unwrap().unwrap();
    rec.card.card_name = Some("renamed".into());
    let mut tx = schema.store.begin().await.unwrap();
    tx.update_card(&rec).await.unwrap();
    tx.commit().await.unwrap();
    let stored: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".cards WHERE length(cvv_sealed) > 0",
        schema.name
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    let _ = conn.close().await;
    schema.drop_schema().await;
}
