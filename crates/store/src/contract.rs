//! The contract test suite: what every [`Store`] backend must do, written
//! once. A backend's `tests/contract.rs` calls [`contract_tests!`](crate::contract_tests)
//! with a function that makes a fresh, migrated, empty store; the macro
//! expands to one `#[tokio::test]` per test below.
//!
//! Compiled only with the `contract` feature, from a backend's
//! dev-dependencies. It is test code that lives in the library so backends
//! can share it, hence the panicking assertions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cardcore_domain::activation::ActivationState;
use cardcore_domain::otp::{IssuedOtp, OtpPurpose, OtpState};
use cardcore_domain::{
    AccountId, Actor, ApiKeyId, AuditEntry, AuditId, Brand, Card, CardId, CardStatus, CardType, Cardholder,
    CardholderId, Channel, ChannelLimit, Event, EventId, EventType, Expiry, ExternalId, KitNumber, Limits, Phone,
    PinStatus, ProgramId, ReasonCode, StatusReason, Tenant, TenantId, Timestamp, ZoneKeyId,
};
use serde_json::json;

use crate::{
    ApiKeyRecord, AuditPage, AuthorizationEndpointRecord, AuthorizationRecord, CardFilter, CardRecord, CardSecrets,
    EventQuery, MoneyPage, OnTimeout, SealedData, Store, StoreError, StoredEvent, StoredKey, TransactionKind,
    TransactionRecord, TransportKeyRecord, Verifier, ZoneKeyRecord,
};
use crate::{ConsoleSessionRecord, EndpointFormat, PinSessionRecord, TenantSmsRecord};
use crate::{
    DeliveryAttempt, DeliveryOutcome, DeliveryState, IdempotencyBegin, IdempotencyStart, IdempotentResponse,
    WebhookDelivery, WebhookEndpointRecord,
};
use cardcore_domain::WebhookEndpointId;

/// A fresh, migrated, empty database for one contract test.
#[async_trait]
pub trait FreshStore: Send {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Deletes the database (best effort; runs even when the test failed).
    async fn remove(self: Box<Self>);
}

/// How long one contract test may take before it counts as hung.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one contract test on a fresh store, then removes the store, also
/// when the test panics. `fresh` yields `None` to skip (e.g. no server).
pub async fn run<F, T, Fut>(name: &str, fresh: F, test: T)
where
    F: Future<Output = Option<Box<dyn FreshStore>>>,
    T: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fresh) = fresh.await else {
        return;
    };
    // A spawned task turns a panic into a JoinError, so cleanup still runs.
    let mut task = tokio::spawn(test(fresh.store()));
    let outcome = tokio::time::timeout(TEST_TIMEOUT, &mut task).await;
    if outcome.is_err() {
        task.abort();
    }
    fresh.remove().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("{name}: {e}"),
        },
        Err(_) => panic!("{name}: no result within {TEST_TIMEOUT:?} (a lock never released?)"),
    }
}

/// Expands to one `#[tokio::test]` per contract test, each given a store from
/// `$fresh(test_name)`, an async fn returning `Option<Box<dyn FreshStore>>`.
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! contract_tests {
    ($fresh:path) => {
        // Every pub async fn of cardcore_store::contract that takes a store.
        $crate::contract_tests!(@each $fresh;
            backend_answers_and_migrations_are_idempotent,
            meta_is_set_only_once,
            service_keys_are_inserted_once_per_purpose_and_version,
            zone_keys_are_per_tenant_oldest_first,
            tenant_names_are_unique,
            tenant_settings_start_empty_and_are_replaced,
            api_keys_are_found_by_hash_with_their_tenant,
            api_keys_are_listed_touched_and_revoked,
            transport_keys_are_one_per_tenant_and_version,
            cardholder_external_ids_are_unique_per_tenant,
            cards_round_trip_every_field,
            card_collisions_return_false_and_keep_the_transaction,
            pan_hashes_are_rewritten_across_tenants_and_stop_on_a_duplicate,
            update_card_persists_every_mutable_field,
            replacement_of_names_the_new_card,
            cards_are_filtered_and_paged_by_id,
            tenants_are_isolated,
            otp_state_round_trips_and_upserts,
            activation_state_round_trips_per_card,
            audit_entries_are_newest_first_with_a_cursor,
            events_are_oldest_first_with_filters_and_a_cursor,
            event_data_round_trips_sealed_or_not,
            a_dropped_transaction_leaves_nothing,
            a_held_card_reads_what_was_committed_and_writes_only_when_told,
            a_transaction_sees_its_writes_and_a_failed_write_fails_it,
            concurrent_locked_increments_are_not_lost,
            event_paging_never_skips_an_event,
            webhook_endpoints_are_per_tenant_and_deleted_softly,
            fan_out_gives_each_wanting_endpoint_one_delivery,
            concurrent_fan_outs_deliver_every_event_once,
            claims_follow_card_order_retries_and_leases,
            claims_skip_tenants_and_released_deliveries_come_back,
            concurrent_claims_never_share_a_delivery,
            redelivery_queues_behind_the_cards_open_deliveries,
            idempotency_keys_begin_finish_replay_and_refuse,
            concurrent_idempotent_begins_start_once,
            endpoint_formats_and_tenant_sms_settings_round_trip,
            cardholders_are_updated_in_their_tenant_only,
            authorizations_and_transactions_round_trip_page_and_stay_unique,
            authorization_endpoints_are_one_per_tenant,
            console_search_finds_cards_by_last_four_and_expiry_and_holders_by_phone,
            recent_events_are_newest_first,
            console_sessions_expire_and_end,
            pin_sessions_are_spent_once_before_they_expire,
            retention_deletes_only_what_it_may,
            a_redelivery_racing_the_purge_never_outlives_its_event,
        );
    };
    (@each $fresh:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::contract::run(stringify!($name), $fresh(stringify!($name)), $crate::contract::$name).await;
            }
        )+
    };
}

// --- fixtures ----------------------------------------------------------------

/// A fixed instant plus `secs`, with microseconds: both backends keep
/// timestamps to the microsecond, and the fixtures check they do.
fn at(secs: i64) -> Timestamp {
    Timestamp::from_timestamp_micros(1_767_225_600_000_000 + secs * 1_000_000 + 123_456).unwrap()
}

fn unique_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(len);
    out
}

fn unique_kit() -> KitNumber {
    let n = uuid::Uuid::new_v4().as_u128() % 10_000_000_000;
    KitNumber::parse(&format!("{n:010}")).unwrap()
}

fn tenant(name: &str) -> Tenant {
    Tenant {
        id: TenantId::new(),
        name: name.into(),
        default_program_id: ProgramId::new(),
        created_at: at(0),
    }
}

fn api_key(tenant: TenantId, can_reveal: bool) -> ApiKeyRecord {
    ApiKeyRecord {
        id: ApiKeyId::new(),
        tenant_id: tenant,
        key_hash: unique_bytes(32),
        prefix: "ck_test_ab".into(),
        can_reveal,
        created_at: at(1),
        name: None,
        last_used_at: None,
        revoked_at: None,
    }
}

fn cardholder(tenant: TenantId, external_id: &str) -> Cardholder {
    Cardholder {
        id: CardholderId::new(),
        tenant_id: tenant,
        external_id: ExternalId::parse(external_id).unwrap(),
        name: "Ana Silva".into(),
        phone: Phone {
            country_code: "351".into(),
            number: "912345678".into(),
        },
        email: Some("ana@example.com".into()),
        date_of_birth: chrono::NaiveDate::from_ymd_opt(1990, 5, 17),
        default_account_id: AccountId::new(),
        created_at: at(2),
    }
}

/// A card with every optional field empty.
fn card(tenant: TenantId, holder: CardholderId) -> CardRecord {
    CardRecord {
        card: Card {
            id: CardId::new(),
            tenant_id: tenant,
            cardholder_id: holder,
            account_id: AccountId::new(),
            program_id: ProgramId::new(),
            card_type: CardType::Virtual,
            status: CardStatus::Inactive,
            status_reason: None,
            pin_status: PinStatus::NotSet,
            brand: Brand::Visa,
            last_four: "4242".into(),
            expiry: Expiry::new(3, 2029).unwrap(),
            card_name: None,
            printed_name: None,
            kit_number: unique_kit(),
            replacement_for: None,
            limits: Limits::unlimited("EUR"),
            created_at: at(3),
            updated_at: at(3),
        },
        secrets: CardSecrets {
            pan_hash: unique_bytes(32),
            pan_sealed: unique_bytes(44),
            data_key_version: 1,
            activation_code: None,
            pin: None,
            pin_failures: 0,
        },
        usage: Default::default(),
    }
}

/// Limits with every kind of value: set, unset, disabled, the maximum.
fn busy_limits() -> Limits {
    let mut limits = Limits::unlimited("BRL");
    limits.channels.atm = ChannelLimit {
        enabled: true,
        per_transaction: Some(500),
        daily: Some(1_000),
        monthly: Some(10_000),
        daily_count: Some(7),
    };
    limits.channels.ecommerce.enabled = false;
    limits.channels.contactless.monthly = Some(cardcore_domain::limits::MAX_AMOUNT);
    limits
}

/// A card with every optional field set.
fn full_card(tenant: TenantId, holder: CardholderId, replacing: CardId) -> CardRecord {
    let mut rec = card(tenant, holder);
    let c = &mut rec.card;
    c.card_type = CardType::Physical;
    c.status = CardStatus::Locked;
    c.status_reason = Some(StatusReason {
        code: ReasonCode::builtin(ReasonCode::LOST_CARD),
        message: Some("lost at the airport — “quotes”".into()),
    });
    c.pin_status = PinStatus::Set;
    c.brand = Brand::Mastercard;
    c.last_four = "0004".into();
    c.expiry = Expiry::new(12, 2031).unwrap();
    c.card_name = Some("Travel".into());
    c.printed_name = Some("ANA SILVA".into());
    c.replacement_for = Some(replacing);
    c.limits = busy_limits();
    c.updated_at = at(9);
    let s = &mut rec.secrets;
    s.data_key_version = 2;
    s.activation_code = Some(Verifier {
        value: unique_bytes(32),
        key_version: 3,
    });
    s.pin = Some(Verifier {
        value: unique_bytes(32),
        key_version: 7,
    });
    s.pin_failures = 2;
    rec.usage.controls = Some(cardcore_domain::authorization::SpendingControls {
        allowed_mccs: Some(vec!["5411".into()]),
        blocked_mccs: vec!["7995".into()],
        allowed_countries: None,
        blocked_countries: vec!["KP".into()],
    });
    rec.usage.totals.add(
        cardcore_domain::authorization::PaymentChannel::Pos,
        &cardcore_domain::authorization::Windows {
            day: "2026-01-31".into(),
            month: "2026-01".into(),
        },
        1_234,
    );
    rec
}

fn audit(tenant: TenantId, card: Option<CardId>, entry_type: &str, secs: i64) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        tenant_id: tenant,
        card_id: card,
        entry_type: entry_type.into(),
        actor: Actor::cli(),
        request_id: None,
        reason: None,
        before: None,
        after: None,
        created_at: at(secs),
    }
}

fn event(tenant: TenantId, card: Option<CardId>, event_type: EventType, data: serde_json::Value) -> StoredEvent {
    StoredEvent {
        event: Event::new(tenant, card, event_type, at(5), data),
        sealed_data: None,
    }
}

fn page(limit: u32) -> EventQuery {
    EventQuery {
        limit,
        ..EventQuery::default()
    }
}

fn ids(events: &[StoredEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event.id).collect()
}

/// A tenant with an API key and a cardholder, committed.
async fn tenant_with_holder(store: &dyn Store, name: &str) -> (Tenant, Cardholder) {
    let t = tenant(name);
    assert!(store.create_tenant(&t, &api_key(t.id, false)).await.unwrap());
    let h = cardholder(t.id, "holder-1");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_cardholder(&h).await.unwrap());
    tx.commit().await.unwrap();
    (t, h)
}

async fn insert_cards(store: &dyn Store, cards: &[&CardRecord]) {
    let mut tx = store.begin().await.unwrap();
    for c in cards {
        assert!(tx.insert_card(c).await.unwrap(), "insert {:?}", c.card.id);
    }
    tx.commit().await.unwrap();
}

async fn insert_events(store: &dyn Store, events: &[&StoredEvent]) {
    let mut tx = store.begin().await.unwrap();
    for e in events {
        tx.insert_event(e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Lists events until at least `n` are visible. A backend may list a
/// committed event a moment late (PostgreSQL waits until every older writer
/// has finished, so that a cursor never passes an event), never out of order.
async fn events_settled(store: &dyn Store, tenant: TenantId, query: &EventQuery, n: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = store.events(tenant, query).await.unwrap();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- the contract ------------------------------------------------------------

/// `ping` answers, `backend` names the engine, `migrate` can run again, and
/// `pool_status` counts a connection in use.
pub async fn backend_answers_and_migrations_are_idempotent(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(matches!(store.backend(), "sqlite" | "postgres"), "{}", store.backend());
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.tenant_count().await.unwrap(), 0);
    // A transaction holds a connection, and pool_status (where there is a
    // pool) counts it.
    let tx = store.begin().await.unwrap();
    if let Some(status) = store.pool_status() {
        assert!(status.in_use >= 1, "{status:?}");
        assert!(status.in_use + status.idle <= status.max, "{status:?}");
    }
    drop(tx);
}

/// `put_meta_if_absent` sets a key once; later calls neither overwrite nor fail.
pub async fn meta_is_set_only_once(store: Arc<dyn Store>) {
    assert_eq!(store.meta("master_kcv").await.unwrap(), None);
    assert!(store.put_meta_if_absent("master_kcv", "A1B2C3").await.unwrap());
    assert!(!store.put_meta_if_absent("master_kcv", "FFFFFF").await.unwrap());
    assert_eq!(store.meta("master_kcv").await.unwrap().as_deref(), Some("A1B2C3"));
    assert!(store.put_meta_if_absent("other", "").await.unwrap());
    assert_eq!(store.meta("other").await.unwrap().as_deref(), Some(""));
}

/// Service keys: one per (purpose, version), first writer wins, listed by
/// purpose then version.
pub async fn service_keys_are_inserted_once_per_purpose_and_version(store: Arc<dyn Store>) {
    assert!(store.service_keys().await.unwrap().is_empty());
    let key = |purpose: &str, version: i32, secs: i64| StoredKey {
        purpose: purpose.into(),
        version,
        wrapped: unique_bytes(60),
        created_at: at(secs),
    };
    let pin1 = key("pin", 1, 10);
    let data2 = key("data", 2, 11);
    let data1 = key("data", 1, 12);
    for k in [&pin1, &data2, &data1] {
        assert!(store.insert_service_key(k).await.unwrap(), "{k:?}");
    }
    // Another node made data v1 first: refused, and the original is kept.
    assert!(!store.insert_service_key(&key("data", 1, 13)).await.unwrap());
    assert_eq!(store.service_keys().await.unwrap(), vec![data1, data2, pin1]);
}

/// Zone keys belong to one tenant and list oldest first.
pub async fn zone_keys_are_per_tenant_oldest_first(store: Arc<dyn Store>) {
    let (a, _) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    let zone = |tenant: TenantId, algorithm: &str, secs: i64| ZoneKeyRecord {
        id: ZoneKeyId::new(),
        tenant_id: tenant,
        algorithm: algorithm.into(),
        wrapped: unique_bytes(40),
        kcv: format!("KCV{secs:03}"),
        created_at: at(secs),
    };
    let newer = zone(a.id, "aes", 20);
    let older = zone(a.id, "tdes", 10);
    let other = zone(b.id, "aes", 5);
    // A Visa PIN verification key, imported for PVVs (migration 0008).
    let pvk = zone(a.id, "pvk", 30);
    for z in [&newer, &older, &other, &pvk] {
        store.insert_zone_key(z).await.unwrap();
    }
    assert_eq!(store.zone_keys(a.id).await.unwrap(), vec![older, newer, pvk]);
    assert_eq!(store.zone_keys(b.id).await.unwrap(), vec![other]);
    assert!(store.zone_keys(TenantId::new()).await.unwrap().is_empty());
}

/// `create_tenant` refuses a taken name (false, and its key is not stored).
pub async fn tenant_names_are_unique(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let key = api_key(acme.id, true);
    assert!(store.create_tenant(&acme, &key).await.unwrap());
    let again = tenant("acme");
    let again_key = api_key(again.id, true);
    assert!(!store.create_tenant(&again, &again_key).await.unwrap());
    assert_eq!(store.tenant_count().await.unwrap(), 1);
    assert_eq!(store.tenant(acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.tenant_by_name("acme").await.unwrap(), Some(acme.clone()));
    assert_eq!(store.tenant(again.id).await.unwrap(), None);
    assert_eq!(store.api_key_by_hash(&again_key.key_hash).await.unwrap(), None);
    assert_eq!(store.tenant_by_name("ACME").await.unwrap(), None);

    let globex = tenant("globex");
    assert!(store.create_tenant(&globex, &api_key(globex.id, false)).await.unwrap());
    assert_eq!(store.tenant_count().await.unwrap(), 2);
    assert_eq!(store.tenant_by_name("globex").await.unwrap(), Some(globex));
}

/// A new tenant's settings are `{}`; a write replaces them for that tenant
/// only; an unknown tenant has none and cannot be written.
pub async fn tenant_settings_start_empty_and_are_replaced(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let globex = tenant("globex");
    assert!(store.create_tenant(&acme, &api_key(acme.id, true)).await.unwrap());
    assert!(store.create_tenant(&globex, &api_key(globex.id, true)).await.unwrap());
    assert_eq!(store.tenant_settings(acme.id).await.unwrap().as_deref(), Some("{}"));
    let settings = r#"{"pin_rules":["common"]}"#;
    assert!(store.set_tenant_settings(acme.id, settings).await.unwrap());
    assert_eq!(store.tenant_settings(acme.id).await.unwrap().as_deref(), Some(settings));
    assert_eq!(store.tenant_settings(globex.id).await.unwrap().as_deref(), Some("{}"));
    let nobody = TenantId::new();
    assert_eq!(store.tenant_settings(nobody).await.unwrap(), None);
    assert!(!store.set_tenant_settings(nobody, settings).await.unwrap());
    assert_eq!(store.tenant(acme.id).await.unwrap(), Some(acme));
}

/// An API key is found by its hash, with its own tenant.
pub async fn api_keys_are_found_by_hash_with_their_tenant(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let first = api_key(acme.id, false);
    assert!(store.create_tenant(&acme, &first).await.unwrap());
    let second = api_key(acme.id, true);
    store.insert_api_key(&second).await.unwrap();
    let globex = tenant("globex");
    let third = api_key(globex.id, false);
    assert!(store.create_tenant(&globex, &third).await.unwrap());

    assert_eq!(
        store.api_key_by_hash(&first.key_hash).await.unwrap(),
        Some((first, acme.clone()))
    );
    assert_eq!(
        store.api_key_by_hash(&second.key_hash).await.unwrap(),
        Some((second, acme))
    );
    assert_eq!(
        store.api_key_by_hash(&third.key_hash).await.unwrap(),
        Some((third, globex))
    );
    assert_eq!(store.api_key_by_hash(&unique_bytes(32)).await.unwrap(), None);
}

/// A tenant's keys list oldest first with their name, last use and
/// revocation; a revoked key is found neither by hash nor by id.
pub async fn api_keys_are_listed_touched_and_revoked(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    let first = api_key(acme.id, true);
    assert!(store.create_tenant(&acme, &first).await.unwrap());
    let mut second = api_key(acme.id, false);
    second.name = Some("batch job".into());
    second.created_at = at(2);
    store.insert_api_key(&second).await.unwrap();
    let globex = tenant("globex");
    let other = api_key(globex.id, false);
    assert!(store.create_tenant(&globex, &other).await.unwrap());
    assert_eq!(
        store.api_keys(acme.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        store.api_key_by_id(second.id).await.unwrap(),
        Some((second.clone(), acme.clone()))
    );

    // Last use only moves forward.
    store.touch_api_key(second.id, at(100)).await.unwrap();
    store.touch_api_key(second.id, at(50)).await.unwrap();
    second.last_used_at = Some(at(100));
    assert_eq!(store.api_keys(acme.id).await.unwrap()[1], second);

    // Another tenant cannot revoke it; its own can, once (the first time stays).
    assert_eq!(store.revoke_api_key(globex.id, second.id, at(200)).await.unwrap(), None);
    assert_eq!(
        store.revoke_api_key(acme.id, ApiKeyId::new(), at(200)).await.unwrap(),
        None
    );
    second.revoked_at = Some(at(200));
    assert_eq!(
        store.revoke_api_key(acme.id, second.id, at(200)).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store.revoke_api_key(acme.id, second.id, at(300)).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.api_key_by_hash(&second.key_hash).await.unwrap(), None);
    assert_eq!(store.api_key_by_id(second.id).await.unwrap(), None);
    assert_eq!(store.api_keys(acme.id).await.unwrap(), vec![first.clone(), second]);
    assert_eq!(store.api_key_by_id(first.id).await.unwrap(), Some((first, acme)));
    assert_eq!(store.api_keys(globex.id).await.unwrap(), vec![other]);
}

/// Transport key versions are per tenant, one row per version whoever
/// inserts it first; retiring only ever brings a retirement forward.
pub async fn transport_keys_are_one_per_tenant_and_version(store: Arc<dyn Store>) {
    let (a, _) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    let key = |tenant: TenantId, version: i32| TransportKeyRecord {
        tenant_id: tenant,
        version,
        wrapped: unique_bytes(64),
        created_at: at(i64::from(version)),
        retires_at: None,
    };
    let mut a1 = key(a.id, 1);
    assert!(store.insert_transport_key(&a1).await.unwrap());
    // Another node made version 1 at the same time: refused, the first kept.
    assert!(!store.insert_transport_key(&key(a.id, 1)).await.unwrap());
    let a2 = key(a.id, 2);
    assert!(store.insert_transport_key(&a2).await.unwrap());
    let b1 = key(b.id, 1);
    assert!(store.insert_transport_key(&b1).await.unwrap());

    store.retire_transport_keys(a.id, 2, at(50)).await.unwrap();
    store.retire_transport_keys(a.id, 2, at(60)).await.unwrap();
    a1.retires_at = Some(at(50));
    assert_eq!(store.transport_keys(a.id).await.unwrap(), vec![a1.clone(), a2.clone()]);
    store.retire_transport_keys(a.id, 2, at(40)).await.unwrap();
    a1.retires_at = Some(at(40));
    assert_eq!(store.transport_keys(a.id).await.unwrap(), vec![a1, a2]);
    assert_eq!(store.transport_keys(b.id).await.unwrap(), vec![b1]);
    assert!(store.transport_keys(TenantId::new()).await.unwrap().is_empty());
    let mut tenants = store.transport_key_tenants().await.unwrap();
    tenants.sort_by_key(|t| t.to_string());
    let mut want = vec![a.id, b.id];
    want.sort_by_key(|t| t.to_string());
    assert_eq!(tenants, want);
}

/// External ids are unique within a tenant only; a refused insert leaves the
/// transaction usable.
pub async fn cardholder_external_ids_are_unique_per_tenant(store: Arc<dyn Store>) {
    let (a, _) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    let ana = cardholder(a.id, "u-1");
    let clash = cardholder(a.id, "u-1");
    let mut bare = cardholder(a.id, "u-2");
    bare.email = None;
    bare.date_of_birth = None;
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_cardholder(&ana).await.unwrap());
    assert!(!tx.insert_cardholder(&clash).await.unwrap());
    assert!(tx.insert_cardholder(&bare).await.unwrap());
    tx.commit().await.unwrap();

    assert_eq!(store.cardholder(a.id, ana.id).await.unwrap(), Some(ana.clone()));
    assert_eq!(store.cardholder(a.id, clash.id).await.unwrap(), None);
    assert_eq!(store.cardholder(a.id, bare.id).await.unwrap(), Some(bare.clone()));
    let u1 = ExternalId::parse("u-1").unwrap();
    assert_eq!(
        store.cardholder_by_external_id(a.id, &u1).await.unwrap(),
        Some(ana.clone())
    );
    assert_eq!(store.cardholder_by_external_id(b.id, &u1).await.unwrap(), None);

    let other = cardholder(b.id, "u-1");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_cardholder(&other).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.cardholder_by_external_id(b.id, &u1).await.unwrap(), Some(other));
    assert_eq!(store.cardholder_by_external_id(a.id, &u1).await.unwrap(), Some(ana));
}

/// A card reads back equal through `card`, `card_by_kit` and `lock_card`,
/// with every field set or every optional field empty, and a transaction
/// reads its own inserts.
pub async fn cards_round_trip_every_field(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let bare = card(t.id, h.id);
    let full = full_card(t.id, h.id, bare.card.id);
    let mut blocked = card(t.id, h.id);
    blocked.card.status = CardStatus::Blocked;
    blocked.card.status_reason = Some(StatusReason {
        code: ReasonCode::builtin(ReasonCode::PIN_TRIES_EXCEEDED),
        message: None,
    });
    blocked.card.pin_status = PinStatus::Blocked;
    blocked.secrets.pin = Some(Verifier {
        value: unique_bytes(16),
        key_version: 1,
    });
    blocked.secrets.pin_failures = u32::MAX;

    let mut tx = store.begin().await.unwrap();
    for c in [&bare, &full, &blocked] {
        assert!(tx.insert_card(c).await.unwrap());
    }
    assert_eq!(tx.lock_card(t.id, full.card.id).await.unwrap(), Some(full.clone()));
    tx.commit().await.unwrap();

    for c in [&bare, &full, &blocked] {
        assert_eq!(store.card(t.id, c.card.id).await.unwrap().as_ref(), Some(c));
        assert_eq!(
            store.card_by_kit(t.id, &c.card.kit_number).await.unwrap().as_ref(),
            Some(c)
        );
        assert_eq!(
            store
                .card_by_pan_hash(t.id, &c.secrets.pan_hash)
                .await
                .unwrap()
                .as_ref(),
            Some(c)
        );
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.lock_card(t.id, c.card.id).await.unwrap().as_ref(), Some(c));
        drop(tx);
    }
    assert_eq!(store.card(t.id, CardId::new()).await.unwrap(), None);
    assert_eq!(store.card_by_kit(t.id, &unique_kit()).await.unwrap(), None);
    assert_eq!(store.card_by_pan_hash(t.id, &unique_bytes(32)).await.unwrap(), None);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.lock_card(t.id, CardId::new()).await.unwrap(), None);
}

/// A PAN-hash or kit-number collision returns false and the transaction goes
/// on to commit; the PAN hash is unique across tenants, the kit number per
/// tenant.
pub async fn card_collisions_return_false_and_keep_the_transaction(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let first = card(t.id, h.id);
    let mut same_pan = card(t.id, h.id);
    same_pan.secrets.pan_hash = first.secrets.pan_hash.clone();
    let mut same_kit = card(t.id, h.id);
    same_kit.card.kit_number = first.card.kit_number.clone();
    let fine = card(t.id, h.id);

    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_card(&first).await.unwrap());
    assert!(!tx.insert_card(&same_pan).await.unwrap());
    assert!(!tx.insert_card(&same_kit).await.unwrap());
    assert!(tx.insert_card(&fine).await.unwrap());
    tx.insert_audit(&audit(t.id, Some(fine.card.id), "card.create", 4))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(store.card(t.id, first.card.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.card(t.id, fine.card.id).await.unwrap(), Some(fine.clone()));
    assert_eq!(store.card(t.id, same_pan.card.id).await.unwrap(), None);
    assert_eq!(store.card(t.id, same_kit.card.id).await.unwrap(), None);

    // Against committed cards too.
    let mut again = card(t.id, h.id);
    again.secrets.pan_hash = fine.secrets.pan_hash.clone();
    let after = card(t.id, h.id);
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.insert_card(&again).await.unwrap());
    assert!(tx.insert_card(&after).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.card(t.id, after.card.id).await.unwrap(), Some(after));

    // Another tenant may hold the same kit number, never the same PAN hash.
    let (other, oh) = tenant_with_holder(&*store, "globex").await;
    let mut same_pan_elsewhere = card(other.id, oh.id);
    same_pan_elsewhere.secrets.pan_hash = first.secrets.pan_hash.clone();
    let mut twin = card(other.id, oh.id);
    twin.card.kit_number = first.card.kit_number.clone();
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.insert_card(&same_pan_elsewhere).await.unwrap());
    assert!(tx.insert_card(&twin).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.card(other.id, same_pan_elsewhere.card.id).await.unwrap(), None);
    assert_eq!(store.card(other.id, twin.card.id).await.unwrap(), Some(twin));
}

/// The PAN lookup upgrade: every card of every tenant is listed by id with
/// its sealed PAN, hashes are set in one transaction, and a hash that is
/// another card's (of any tenant) writes nothing and names both cards.
pub async fn pan_hashes_are_rewritten_across_tenants_and_stop_on_a_duplicate(store: Arc<dyn Store>) {
    let (t1, h1) = tenant_with_holder(&*store, "acme").await;
    let (t2, h2) = tenant_with_holder(&*store, "globex").await;
    let (a, b, c) = (card(t1.id, h1.id), card(t2.id, h2.id), card(t1.id, h1.id));
    insert_cards(&*store, &[&a, &b, &c]).await;
    let mut ids = vec![a.card.id, b.card.id, c.card.id];
    ids.sort();
    let first = store.pan_rows(None, 2).await.unwrap();
    let rest = store.pan_rows(Some(first[1].id), 2).await.unwrap();
    let listed: Vec<CardId> = first.iter().chain(&rest).map(|r| r.id).collect();
    assert_eq!(listed, ids, "every tenant's cards, by id, a page at a time");
    let row_a = first.iter().chain(&rest).find(|r| r.id == a.card.id).unwrap();
    assert_eq!(
        (row_a.tenant_id, &row_a.pan_sealed, row_a.data_key_version),
        (t1.id, &a.secrets.pan_sealed, a.secrets.data_key_version)
    );

    let (ha, hb, hc) = (unique_bytes(32), unique_bytes(32), unique_bytes(32));
    let set = vec![
        (a.card.id, ha.clone()),
        (b.card.id, hb.clone()),
        (c.card.id, hc.clone()),
    ];
    assert_eq!(store.set_pan_hashes(&set).await.unwrap(), None);
    // Again: a card keeps its own hash.
    assert_eq!(store.set_pan_hashes(&set).await.unwrap(), None);
    assert_eq!(
        store.card(t2.id, b.card.id).await.unwrap().unwrap().secrets.pan_hash,
        hb
    );

    // c takes a's hash: nothing of the batch is written, both are named.
    let fresh = unique_bytes(32);
    let clash = vec![(b.card.id, fresh), (c.card.id, ha.clone())];
    assert_eq!(
        store.set_pan_hashes(&clash).await.unwrap(),
        Some((c.card.id, a.card.id))
    );
    assert_eq!(
        store.card(t2.id, b.card.id).await.unwrap().unwrap().secrets.pan_hash,
        hb
    );
    assert_eq!(
        store.card(t1.id, c.card.id).await.unwrap().unwrap().secrets.pan_hash,
        hc
    );
}

/// `update_card` writes every mutable field, to values and back to empty,
/// and touches no other card.
pub async fn update_card_persists_every_mutable_field(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let original = card(t.id, h.id);
    let bystander = card(t.id, h.id);
    insert_cards(&*store, &[&original, &bystander]).await;

    let mut changed = original.clone();
    let c = &mut changed.card;
    c.status = CardStatus::Locked;
    c.status_reason = Some(StatusReason {
        code: ReasonCode::builtin(ReasonCode::CUST_REQ),
        message: Some("on holiday".into()),
    });
    c.pin_status = PinStatus::Set;
    c.card_name = Some("Groceries".into());
    c.printed_name = Some("ANA M SILVA".into());
    c.limits = busy_limits();
    c.updated_at = at(100);
    let s = &mut changed.secrets;
    s.pan_sealed = unique_bytes(44);
    s.data_key_version = 5;
    s.activation_code = Some(Verifier {
        value: unique_bytes(32),
        key_version: 2,
    });
    s.pin = Some(Verifier {
        value: unique_bytes(32),
        key_version: 3,
    });
    s.pin_failures = 3;

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.lock_card(t.id, original.card.id).await.unwrap(),
        Some(original.clone())
    );
    tx.update_card(&changed).await.unwrap();
    assert_eq!(
        tx.lock_card(t.id, original.card.id).await.unwrap(),
        Some(changed.clone())
    );
    tx.commit().await.unwrap();
    assert_eq!(store.card(t.id, original.card.id).await.unwrap(), Some(changed.clone()));

    let mut cleared = changed.clone();
    cleared.card.status = CardStatus::Active;
    cleared.card.status_reason = None;
    cleared.card.card_name = None;
    cleared.card.printed_name = None;
    cleared.card.updated_at = at(101);
    cleared.secrets.activation_code = None;
    cleared.secrets.pin = None;
    cleared.secrets.pin_failures = 0;
    let mut tx = store.begin().await.unwrap();
    tx.update_card(&cleared).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.card(t.id, original.card.id).await.unwrap(), Some(cleared));
    assert_eq!(store.card(t.id, bystander.card.id).await.unwrap(), Some(bystander));
}

/// `replacement_of` finds the card whose `replacement_for` names this one.
pub async fn replacement_of_names_the_new_card(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let old = card(t.id, h.id);
    let mut new = card(t.id, h.id);
    new.card.replacement_for = Some(old.card.id);
    insert_cards(&*store, &[&old, &new]).await;

    let (other, _) = tenant_with_holder(&*store, "globex").await;
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.replacement_of(t.id, old.card.id).await.unwrap(), Some(new.card.id));
    assert_eq!(tx.replacement_of(t.id, new.card.id).await.unwrap(), None);
    assert_eq!(tx.replacement_of(other.id, old.card.id).await.unwrap(), None);
    assert_eq!(tx.replacement_of(t.id, CardId::new()).await.unwrap(), None);
}

/// `cards` filters by cardholder and status, orders by id and pages with
/// `after` and `limit`.
pub async fn cards_are_filtered_and_paged_by_id(store: Arc<dyn Store>) {
    let (t, ana) = tenant_with_holder(&*store, "acme").await;
    let bob = cardholder(t.id, "bob");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_cardholder(&bob).await.unwrap());
    tx.commit().await.unwrap();
    let with = |holder: CardholderId, status: CardStatus| {
        let mut c = card(t.id, holder);
        c.card.status = status;
        c
    };
    let all = [
        with(ana.id, CardStatus::Active),
        with(bob.id, CardStatus::Active),
        with(ana.id, CardStatus::Locked),
        with(ana.id, CardStatus::Active),
        with(bob.id, CardStatus::Closed),
    ];
    insert_cards(&*store, &all.iter().collect::<Vec<_>>()).await;
    let mut sorted: Vec<Card> = all.iter().map(|c| c.card.clone()).collect();
    sorted.sort_by_key(|c| c.id);
    let only = |f: &dyn Fn(&Card) -> bool| sorted.iter().filter(|c| f(c)).cloned().collect::<Vec<_>>();
    let list = |filter: CardFilter| {
        let store = store.clone();
        async move { store.cards(t.id, &filter).await.unwrap() }
    };

    assert_eq!(
        list(CardFilter {
            limit: 100,
            ..CardFilter::default()
        })
        .await,
        sorted
    );
    assert_eq!(
        list(CardFilter {
            cardholder_id: Some(ana.id),
            limit: 100,
            ..CardFilter::default()
        })
        .await,
        only(&|c| c.cardholder_id == ana.id)
    );
    assert_eq!(
        list(CardFilter {
            status: Some(CardStatus::Active),
            limit: 100,
            ..CardFilter::default()
        })
        .await,
        only(&|c| c.status == CardStatus::Active)
    );
    let ana_active = only(&|c| c.cardholder_id == ana.id && c.status == CardStatus::Active);
    assert_eq!(ana_active.len(), 2);
    assert_eq!(
        list(CardFilter {
            cardholder_id: Some(ana.id),
            status: Some(CardStatus::Active),
            limit: 100,
            ..CardFilter::default()
        })
        .await,
        ana_active
    );
    assert_eq!(
        list(CardFilter {
            cardholder_id: Some(ana.id),
            status: Some(CardStatus::Active),
            after: Some(ana_active[0].id),
            limit: 100,
            ..CardFilter::default()
        })
        .await,
        ana_active[1..]
    );

    // Pages of two, each after the last id of the page before.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let got = list(CardFilter {
            after,
            limit: 2,
            ..CardFilter::default()
        })
        .await;
        assert!(got.len() <= 2);
        let Some(last) = got.last() else { break };
        after = Some(last.id);
        paged.extend(got);
    }
    assert_eq!(paged, sorted);
    assert!(list(CardFilter {
        status: Some(CardStatus::Blocked),
        limit: 100,
        ..CardFilter::default()
    })
    .await
    .is_empty());
}

/// Every read, and `lock_card`, `replacement_of` and `update_card`, with
/// another tenant's id finds nothing and changes nothing.
pub async fn tenants_are_isolated(store: Arc<dyn Store>) {
    let (a, holder) = tenant_with_holder(&*store, "acme").await;
    // B has no data at all, so anything B finds leaked from A.
    let b = tenant("globex");
    assert!(store.create_tenant(&b, &api_key(b.id, false)).await.unwrap());
    let old = card(a.id, holder.id);
    let mut c = card(a.id, holder.id);
    c.card.replacement_for = Some(old.card.id);
    let entry = audit(a.id, Some(c.card.id), "card.create", 4);
    let ev = event(a.id, Some(c.card.id), EventType::CardCreated, json!({"id": c.card.id}));
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_card(&old).await.unwrap());
    assert!(tx.insert_card(&c).await.unwrap());
    tx.insert_audit(&entry).await.unwrap();
    tx.insert_event(&ev).await.unwrap();
    tx.commit().await.unwrap();
    store
        .insert_zone_key(&ZoneKeyRecord {
            id: ZoneKeyId::new(),
            tenant_id: a.id,
            algorithm: "aes".into(),
            wrapped: unique_bytes(40),
            kcv: "ABCDEF".into(),
            created_at: at(1),
        })
        .await
        .unwrap();
    // A's event is listed for A, so any absence below is isolation, not lag.
    assert_eq!(
        ids(&events_settled(&*store, a.id, &page(10), 1).await),
        vec![ev.event.id]
    );

    assert_eq!(store.cardholder(b.id, holder.id).await.unwrap(), None);
    assert_eq!(
        store
            .cardholder_by_external_id(b.id, &holder.external_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.card(b.id, c.card.id).await.unwrap(), None);
    assert_eq!(store.card_by_kit(b.id, &c.card.kit_number).await.unwrap(), None);
    assert_eq!(store.card_by_pan_hash(b.id, &c.secrets.pan_hash).await.unwrap(), None);
    let everything = CardFilter {
        limit: 100,
        ..CardFilter::default()
    };
    assert!(store.cards(b.id, &everything).await.unwrap().is_empty());
    let by_holder = CardFilter {
        cardholder_id: Some(holder.id),
        limit: 100,
        ..CardFilter::default()
    };
    assert!(store.cards(b.id, &by_holder).await.unwrap().is_empty());
    let audit_page = AuditPage {
        before: None,
        limit: 10,
    };
    assert!(store
        .audit_entries(b.id, c.card.id, &audit_page)
        .await
        .unwrap()
        .is_empty());
    let foreign_audit_cursor = AuditPage {
        before: Some(entry.id),
        limit: 10,
    };
    assert_eq!(
        store.audit_entries(b.id, c.card.id, &foreign_audit_cursor).await,
        Err(StoreError::NotFound("cursor"))
    );
    assert!(store.events(b.id, &page(10)).await.unwrap().is_empty());
    let by_card = EventQuery {
        card_id: Some(c.card.id),
        limit: 10,
        ..EventQuery::default()
    };
    assert!(store.events(b.id, &by_card).await.unwrap().is_empty());
    let foreign_cursor = EventQuery {
        after: Some(ev.event.id),
        limit: 10,
        ..EventQuery::default()
    };
    assert_eq!(
        store.events(b.id, &foreign_cursor).await,
        Err(StoreError::NotFound("cursor"))
    );
    assert!(store.zone_keys(b.id).await.unwrap().is_empty());

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.lock_card(b.id, c.card.id).await.unwrap(), None);
    assert_eq!(tx.replacement_of(b.id, old.card.id).await.unwrap(), None);
    let mut hijack = c.clone();
    hijack.card.tenant_id = b.id;
    hijack.card.status = CardStatus::Closed;
    tx.update_card(&hijack).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.card(a.id, c.card.id).await.unwrap(), Some(c));
}

/// Activation attempts: none until saved, read back equal in the same and
/// later transactions, a second save replaces the first, cards apart, and a
/// save in a dropped transaction is gone.
pub async fn activation_state_round_trips_per_card(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    let other = card(t.id, h.id);
    insert_cards(&*store, &[&c, &other]).await;
    let counting = ActivationState {
        failures: 2,
        locked_until: None,
    };
    let locked = ActivationState {
        failures: 0,
        locked_until: Some(at(600)),
    };

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.activation_state(c.card.id).await.unwrap(),
        ActivationState::default()
    );
    tx.save_activation_state(c.card.id, &counting).await.unwrap();
    assert_eq!(tx.activation_state(c.card.id).await.unwrap(), counting);
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.activation_state(c.card.id).await.unwrap(), counting);
    tx.save_activation_state(c.card.id, &locked).await.unwrap();
    tx.save_activation_state(other.card.id, &counting).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.activation_state(c.card.id).await.unwrap(), locked);
    assert_eq!(tx.activation_state(other.card.id).await.unwrap(), counting);
    tx.save_activation_state(c.card.id, &ActivationState::default())
        .await
        .unwrap();
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.activation_state(c.card.id).await.unwrap(), locked);
    drop(tx);
}

/// OTP state: empty until saved, saved state reads back equal (in the same
/// and later transactions), a second save replaces it; cards and purposes
/// are apart.
pub async fn otp_state_round_trips_and_upserts(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    let other = card(t.id, h.id);
    insert_cards(&*store, &[&c, &other]).await;
    let code = |trace: &str, secs: i64, used: bool| IssuedOtp {
        trace_number: trace.into(),
        verifier: unique_bytes(32),
        key_version: 2,
        created_at: at(secs),
        expires_at: at(secs + 300),
        used,
    };
    let first = OtpState {
        failures: 2,
        locked_until: Some(at(900)),
        codes: vec![code("000001", 10, true), code("000002", 20, false)],
    };
    let second = OtpState {
        failures: 0,
        locked_until: None,
        codes: vec![code("000003", 30, false)],
    };

    // Another purpose, where the domain has more than one.
    let other_purpose = OtpPurpose::ALL.into_iter().find(|p| *p != OtpPurpose::PinChange);

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap(),
        OtpState::default()
    );
    tx.save_otp_state(c.card.id, OtpPurpose::PinChange, &first)
        .await
        .unwrap();
    assert_eq!(tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap(), first);
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap(), first);
    assert_eq!(
        tx.otp_state(other.card.id, OtpPurpose::PinChange).await.unwrap(),
        OtpState::default()
    );
    tx.save_otp_state(c.card.id, OtpPurpose::PinChange, &second)
        .await
        .unwrap();
    if let Some(p) = other_purpose {
        assert_eq!(tx.otp_state(c.card.id, p).await.unwrap(), OtpState::default());
        tx.save_otp_state(c.card.id, p, &first).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap(), second);
    if let Some(p) = other_purpose {
        assert_eq!(tx.otp_state(c.card.id, p).await.unwrap(), first);
    }
    assert_eq!(
        tx.otp_state(other.card.id, OtpPurpose::PinChange).await.unwrap(),
        OtpState::default()
    );
}

/// A card's audit trail lists newest first, pages with `before`, holds
/// every field, and refuses a cursor that is not one of the card's entries.
pub async fn audit_entries_are_newest_first_with_a_cursor(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    let other = card(t.id, h.id);
    insert_cards(&*store, &[&c, &other]).await;

    let mut full = audit(t.id, Some(c.card.id), "card.lock", 10);
    full.actor = Actor::api_key(ApiKeyId::new(), Channel::api("qitech"));
    full.request_id = Some("req-42".into());
    full.reason = Some(StatusReason {
        code: ReasonCode::builtin(ReasonCode::FRAUD_SUSPECTED),
        message: Some("velocity".into()),
    });
    full.before = Some(c.card.snapshot());
    full.after = Some(json!({"status": "LOCKED", "nested": {"list": [1, 2.5, null, "x"]}}));
    // Entries in the order written; created_at deliberately not monotonic:
    // the order is the order of writing.
    let mut written = vec![full];
    for (i, secs) in [(1, 5), (2, 20), (3, 15), (4, 30)] {
        written.push(audit(t.id, Some(c.card.id), &format!("card.step{i}"), secs));
    }
    let elsewhere = audit(t.id, Some(other.card.id), "card.lock", 11);
    let cardless = audit(t.id, None, "tenant.key_created", 12);
    for (i, e) in written.iter().enumerate() {
        let mut tx = store.begin().await.unwrap();
        tx.insert_audit(e).await.unwrap();
        if i == 2 {
            tx.insert_audit(&elsewhere).await.unwrap();
            tx.insert_audit(&cardless).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let newest_first: Vec<AuditEntry> = written.iter().rev().cloned().collect();
    let list = |before: Option<AuditId>, limit: u32| {
        let store = store.clone();
        async move { store.audit_entries(t.id, c.card.id, &AuditPage { before, limit }).await }
    };

    assert_eq!(list(None, 100).await.unwrap(), newest_first);
    assert_eq!(list(None, 2).await.unwrap(), newest_first[..2]);
    assert_eq!(list(Some(newest_first[1].id), 2).await.unwrap(), newest_first[2..4]);
    assert_eq!(list(Some(newest_first[3].id), 2).await.unwrap(), newest_first[4..]);
    assert!(list(Some(newest_first[4].id), 2).await.unwrap().is_empty());
    assert_eq!(list(Some(AuditId::new()), 2).await, Err(StoreError::NotFound("cursor")));
    assert_eq!(list(Some(elsewhere.id), 2).await, Err(StoreError::NotFound("cursor")));
    let page = AuditPage {
        before: None,
        limit: 10,
    };
    assert_eq!(
        store.audit_entries(t.id, other.card.id, &page).await.unwrap(),
        vec![elsewhere]
    );
}

/// A tenant's events list oldest first (the order written, within and across
/// transactions), filter by type and card, page with `after`, and refuse an
/// unknown cursor.
pub async fn events_are_oldest_first_with_filters_and_a_cursor(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c1 = card(t.id, h.id);
    let c2 = card(t.id, h.id);
    insert_cards(&*store, &[&c1, &c2]).await;
    let e1 = event(t.id, Some(c1.card.id), EventType::CardCreated, json!({"n": 1}));
    let e2 = event(t.id, Some(c2.card.id), EventType::CardCreated, json!({"n": 2}));
    let e3 = event(
        t.id,
        Some(c1.card.id),
        EventType::CardStatusChanged,
        json!({"n": 3, "to": "LOCKED"}),
    );
    let e4 = event(t.id, Some(c1.card.id), EventType::CardPinSet, json!({"n": 4}));
    let e5 = event(t.id, Some(c2.card.id), EventType::CardStatusChanged, json!({"n": 5}));
    let e6 = event(t.id, None, EventType::CardLimitsUpdated, json!({"n": 6}));
    insert_events(&*store, &[&e1]).await;
    insert_events(&*store, &[&e2]).await;
    insert_events(&*store, &[&e3, &e4]).await;
    insert_events(&*store, &[&e5, &e6]).await;
    let all = vec![e1.clone(), e2.clone(), e3.clone(), e4.clone(), e5.clone(), e6.clone()];
    assert_eq!(events_settled(&*store, t.id, &page(100), all.len()).await, all);

    let query = |event_type: Option<EventType>, card_id: Option<CardId>, after: Option<EventId>, limit: u32| {
        let store = store.clone();
        async move {
            let q = EventQuery {
                event_type,
                card_id,
                after,
                limit,
            };
            store.events(t.id, &q).await.map(|e| ids(&e))
        }
    };
    let status = Some(EventType::CardStatusChanged);
    let id = |e: &StoredEvent| e.event.id;
    assert_eq!(query(status, None, None, 100).await.unwrap(), vec![id(&e3), id(&e5)]);
    assert_eq!(
        query(None, Some(c1.card.id), None, 100).await.unwrap(),
        vec![id(&e1), id(&e3), id(&e4)]
    );
    assert_eq!(query(status, Some(c1.card.id), None, 100).await.unwrap(), vec![id(&e3)]);
    assert!(query(Some(EventType::OtpCreated), None, None, 100)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(query(None, None, None, 2).await.unwrap(), vec![id(&e1), id(&e2)]);
    assert_eq!(
        query(None, None, Some(id(&e2)), 2).await.unwrap(),
        vec![id(&e3), id(&e4)]
    );
    assert_eq!(
        query(None, None, Some(id(&e4)), 2).await.unwrap(),
        vec![id(&e5), id(&e6)]
    );
    assert!(query(None, None, Some(id(&e6)), 2).await.unwrap().is_empty());
    // The cursor need not match the filter.
    assert_eq!(
        query(None, Some(c1.card.id), Some(id(&e2)), 100).await.unwrap(),
        vec![id(&e3), id(&e4)]
    );
    assert_eq!(query(status, None, Some(id(&e4)), 100).await.unwrap(), vec![id(&e5)]);
    assert_eq!(
        query(None, None, Some(EventId::new()), 2).await,
        Err(StoreError::NotFound("cursor"))
    );
}

/// Event data reads back equal: sealed (with `data` null), plain JSON of
/// every kind, and a plain JSON null.
pub async fn event_data_round_trips_sealed_or_not(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let mut sealed = event(
        t.id,
        Some(c.card.id),
        EventType::CardActivationCode,
        serde_json::Value::Null,
    );
    sealed.sealed_data = Some(SealedData {
        ciphertext: unique_bytes(61),
        key_version: 4,
    });
    let rich = event(
        t.id,
        Some(c.card.id),
        EventType::CardStatusChanged,
        json!({
            "big": u64::MAX,
            "negative": -7,
            "float": 0.1,
            "text": "ação — \"quoted\" \\ \u{1F512}",
            "list": [true, false, null, [], {}],
            "nested": {"b": 1, "a": {"z": []}},
        }),
    );
    let null = event(t.id, None, EventType::CardLimitsUpdated, serde_json::Value::Null);
    insert_events(&*store, &[&sealed, &rich, &null]).await;
    assert_eq!(
        events_settled(&*store, t.id, &page(10), 3).await,
        vec![sealed, rich, null]
    );
}

/// A transaction dropped without commit leaves no trace and no lock.
pub async fn a_dropped_transaction_leaves_nothing(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;

    let newcomer = cardholder(t.id, "newcomer");
    let new_card = card(t.id, h.id);
    let mut changed = c.clone();
    changed.card.status = CardStatus::Closed;
    changed.secrets.pin_failures = 9;
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.lock_card(t.id, c.card.id).await.unwrap(), Some(c.clone()));
    assert!(tx.insert_cardholder(&newcomer).await.unwrap());
    assert!(tx.insert_card(&new_card).await.unwrap());
    tx.update_card(&changed).await.unwrap();
    tx.save_otp_state(
        c.card.id,
        OtpPurpose::PinChange,
        &OtpState {
            failures: 1,
            locked_until: None,
            codes: Vec::new(),
        },
    )
    .await
    .unwrap();
    tx.insert_audit(&audit(t.id, Some(c.card.id), "card.close", 7))
        .await
        .unwrap();
    tx.insert_event(&event(t.id, Some(c.card.id), EventType::CardStatusChanged, json!({})))
        .await
        .unwrap();
    // A read sends the writes a backend holds back: the rollback below has
    // them to undo.
    assert_eq!(
        tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap().failures,
        1
    );
    drop(tx);

    assert_eq!(store.cardholder(t.id, newcomer.id).await.unwrap(), None);
    assert_eq!(store.card(t.id, new_card.card.id).await.unwrap(), None);
    assert_eq!(store.card(t.id, c.card.id).await.unwrap(), Some(c.clone()));
    let page_all = AuditPage {
        before: None,
        limit: 10,
    };
    assert!(store
        .audit_entries(t.id, c.card.id, &page_all)
        .await
        .unwrap()
        .is_empty());
    // Once a later committed event is listed, the dropped one would be too.
    let marker = event(t.id, None, EventType::CardLimitsUpdated, json!({"marker": true}));
    insert_events(&*store, &[&marker]).await;
    assert_eq!(events_settled(&*store, t.id, &page(10), 1).await, vec![marker]);

    // The row lock went with the transaction.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.lock_card(t.id, c.card.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap(),
        OtpState::default()
    );
    tx.commit().await.unwrap();
}

/// [`Store::hold_card`] reads the committed card (None for another tenant's
/// or an unknown id); a released hold, or a hold's transaction dropped
/// uncommitted, leaves the card as it was; a hold's transaction that locks,
/// writes and commits makes the write durable; and the card can be held
/// and locked again afterwards (nothing of a hold lingers).
pub async fn a_held_card_reads_what_was_committed_and_writes_only_when_told(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let (other, _) = tenant_with_holder(&*store, "other").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;

    let foreign = store.hold_card(other.id, c.card.id).await.unwrap();
    assert_eq!(foreign.record, None);
    foreign.release().await.unwrap();
    let unknown = store.hold_card(t.id, CardId::new()).await.unwrap();
    assert_eq!(unknown.record, None);
    unknown.release().await.unwrap();

    let hold = store.hold_card(t.id, c.card.id).await.unwrap();
    assert_eq!(hold.record, Some(c.clone()));
    hold.release().await.unwrap();

    // Written but not committed: gone.
    let hold = store.hold_card(t.id, c.card.id).await.unwrap();
    let mut tx = hold.into_tx(&*store).await.unwrap();
    let mut rec = tx.lock_card(t.id, c.card.id).await.unwrap().unwrap();
    assert_eq!(rec, c);
    rec.secrets.pin_failures = 2;
    tx.update_card(&rec).await.unwrap();
    assert_eq!(tx.lock_card(t.id, c.card.id).await.unwrap(), Some(rec.clone()));
    tx.rollback().await.unwrap();
    assert_eq!(store.card(t.id, c.card.id).await.unwrap(), Some(c.clone()));

    // Written and committed: kept, and the next hold reads it.
    let hold = store.hold_card(t.id, c.card.id).await.unwrap();
    let mut tx = hold.into_tx(&*store).await.unwrap();
    let mut rec = tx.lock_card(t.id, c.card.id).await.unwrap().unwrap();
    rec.secrets.pin_failures = 1;
    rec.card.pin_status = PinStatus::Set;
    tx.update_card(&rec).await.unwrap();
    tx.commit().await.unwrap();
    let hold = store.hold_card(t.id, c.card.id).await.unwrap();
    assert_eq!(hold.record, Some(rec.clone()));
    drop(hold);

    // Nothing lingers: a plain transaction locks and writes the card.
    let mut tx = store.begin().await.unwrap();
    let mut again = tx.lock_card(t.id, c.card.id).await.unwrap().unwrap();
    assert_eq!(again, rec);
    again.secrets.pin_failures = 0;
    tx.update_card(&again).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.card(t.id, c.card.id).await.unwrap(), Some(again));
}

/// A transaction reads its own writes, keeps the order of its calls (two
/// updates of one card, two events), and a write that fails fails the
/// transaction no later than its commit, leaving nothing of it. Backends may
/// hold writes back and send them together (both do); this is what they
/// must keep.
pub async fn a_transaction_sees_its_writes_and_a_failed_write_fails_it(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let otp = OtpState {
        failures: 2,
        locked_until: None,
        codes: Vec::new(),
    };
    let mut first = c.clone();
    first.secrets.pin_failures = 1;
    let mut second = first.clone();
    second.secrets.pin_failures = 2;
    second.card.status = CardStatus::Locked;
    let entry = audit(t.id, Some(c.card.id), "card.locked", 6);
    let e1 = event(t.id, Some(c.card.id), EventType::CardPinSet, json!({"n": 1}));
    let e2 = event(t.id, Some(c.card.id), EventType::CardStatusChanged, json!({"n": 2}));

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.lock_card(t.id, c.card.id).await.unwrap(), Some(c.clone()));
    tx.update_card(&first).await.unwrap();
    tx.save_otp_state(c.card.id, OtpPurpose::PinChange, &otp).await.unwrap();
    tx.insert_event(&e1).await.unwrap();
    tx.insert_audit(&entry).await.unwrap();
    tx.update_card(&second).await.unwrap();
    tx.insert_event(&e2).await.unwrap();
    assert_eq!(tx.lock_card(t.id, c.card.id).await.unwrap(), Some(second.clone()));
    assert_eq!(tx.otp_state(c.card.id, OtpPurpose::PinChange).await.unwrap(), otp);
    tx.commit().await.unwrap();

    assert_eq!(store.card(t.id, c.card.id).await.unwrap(), Some(second.clone()));
    assert_eq!(
        events_settled(&*store, t.id, &page(10), 2).await,
        vec![e1.clone(), e2.clone()]
    );
    let page_all = AuditPage {
        before: None,
        limit: 10,
    };
    assert_eq!(
        store.audit_entries(t.id, c.card.id, &page_all).await.unwrap(),
        vec![entry.clone()]
    );

    // The same audit id again: a unique violation, in whichever call sends
    // it.
    let mut closed = second.clone();
    closed.card.status = CardStatus::Closed;
    let late = event(t.id, Some(c.card.id), EventType::CardStatusChanged, json!({"n": 3}));
    let mut tx = store.begin().await.unwrap();
    tx.lock_card(t.id, c.card.id).await.unwrap().unwrap();
    let mut outcome = tx.update_card(&closed).await;
    if outcome.is_ok() {
        outcome = tx.insert_audit(&entry).await;
    }
    if outcome.is_ok() {
        outcome = tx.insert_event(&late).await;
    }
    if outcome.is_ok() {
        outcome = tx.commit().await;
    } else {
        drop(tx);
    }
    assert!(outcome.is_err(), "a duplicate audit id must fail the transaction");

    assert_eq!(store.card(t.id, c.card.id).await.unwrap(), Some(second));
    assert_eq!(
        store.audit_entries(t.id, c.card.id, &page_all).await.unwrap(),
        vec![entry]
    );
    let marker = event(t.id, None, EventType::CardLimitsUpdated, json!({"marker": true}));
    insert_events(&*store, &[&marker]).await;
    assert_eq!(events_settled(&*store, t.id, &page(10), 3).await, vec![e1, e2, marker]);
}

/// N concurrent read-modify-write transactions on one card, each through
/// `lock_card`, lose no update: the row lock serialises them.
pub async fn concurrent_locked_increments_are_not_lost(store: Arc<dyn Store>) {
    const N: u32 = 16;
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let card_id = c.card.id;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let mut rec = tx.lock_card(t.id, card_id).await.unwrap().unwrap();
                // Widen the window between read and write: without the lock,
                // others would read the same value meanwhile.
                tokio::time::sleep(Duration::from_millis(2)).await;
                rec.secrets.pin_failures += 1;
                tx.update_card(&rec).await.unwrap();
                tx.insert_audit(&audit(t.id, Some(card_id), &format!("card.pin_failed.{i}"), 8))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rec = store.card(t.id, card_id).await.unwrap().unwrap();
    assert_eq!(rec.secrets.pin_failures, N);
    let page_all = AuditPage {
        before: None,
        limit: 100,
    };
    assert_eq!(
        store.audit_entries(t.id, card_id, &page_all).await.unwrap().len(),
        N as usize
    );
}

/// A reader paging with `after` while several writers commit concurrently,
/// in an order unrelated to when they inserted, sees every event exactly once.
pub async fn event_paging_never_skips_an_event(store: Arc<dyn Store>) {
    const WRITERS: usize = 4;
    const TXS: usize = 8;
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let card_id = c.card.id;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for k in 0..TXS {
                    let mut tx = store.begin().await.unwrap();
                    if (w + k) % 2 == 0 {
                        // Write something first, then wait: this transaction
                        // is older than ones that insert their event earlier.
                        tx.insert_audit(&audit(t.id, Some(card_id), "card.touch", 6))
                            .await
                            .unwrap();
                        // A read sends what a backend holds back, so the
                        // write is in the database while this one waits.
                        tx.otp_state(card_id, OtpPurpose::PinChange).await.unwrap();
                        tokio::time::sleep(Duration::from_millis((k % 3) as u64)).await;
                    }
                    for _ in 0..=(k % 2) {
                        let e = event(
                            t.id,
                            Some(card_id),
                            EventType::CardStatusChanged,
                            json!({"w": w, "k": k}),
                        );
                        tx.insert_event(&e).await.unwrap();
                        written.push(e.event.id);
                    }
                    tokio::time::sleep(Duration::from_millis(((w + k) % 4) as u64)).await;
                    tx.commit().await.unwrap();
                }
                written
            })
        })
        .collect();
    let total = WRITERS * TXS + WRITERS * TXS / 2;

    // The reader gives up a while after the last commit: by then anything
    // it has not seen was skipped, not late.
    let (done, mut writers_done) = tokio::sync::watch::channel(false);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut give_up: Option<Instant> = None;
            let mut seen = Vec::new();
            let mut after = None;
            while seen.len() < total && give_up.is_none_or(|g| Instant::now() < g) {
                if give_up.is_none() && *writers_done.borrow_and_update() {
                    give_up = Some(Instant::now() + Duration::from_secs(15));
                }
                let q = EventQuery {
                    after,
                    limit: 3,
                    ..EventQuery::default()
                };
                let got = store.events(t.id, &q).await.unwrap();
                match got.last() {
                    Some(last) => after = Some(last.event.id),
                    None => tokio::time::sleep(Duration::from_millis(2)).await,
                }
                seen.extend(ids(&got));
            }
            seen
        })
    };

    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    done.send_replace(true);
    let seen = reader.await.unwrap();
    assert_eq!(written.len(), total);
    let unique: HashSet<EventId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was listed twice");
    let skipped = written.difference(&unique).count();
    assert_eq!(skipped, 0, "{skipped} of {total} events were never listed");
    assert_eq!(unique, written);
}

// --- webhooks and idempotency keys -------------------------------------------

fn endpoint(tenant: TenantId, types: Option<Vec<EventType>>, secs: i64) -> WebhookEndpointRecord {
    WebhookEndpointRecord {
        id: WebhookEndpointId::new(),
        tenant_id: tenant,
        url: format!("https://hooks.example.com/{}?q=1", uuid::Uuid::new_v4().simple()),
        event_types: types,
        secret: SealedData {
            ciphertext: unique_bytes(60),
            key_version: 2,
        },
        format: EndpointFormat::Standard,
        created_at: at(secs),
    }
}

async fn insert_endpoints(store: &dyn Store, endpoints: &[&WebhookEndpointRecord]) {
    let mut tx = store.begin().await.unwrap();
    for e in endpoints {
        tx.insert_webhook_endpoint(e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// An event made at `at(secs)`, committed on its own.
async fn event_at(store: &dyn Store, tenant: TenantId, card: Option<CardId>, t: EventType, secs: i64) -> StoredEvent {
    let mut e = event(tenant, card, t, json!({"secs": secs}));
    e.event.created_at = at(secs);
    insert_events(store, &[&e]).await;
    e
}

/// Fans out until `n` events were consumed. Like `events_settled`: a
/// backend may see a committed event a moment late, never out of order.
async fn fan_out_settled(store: &dyn Store, n: u32, now: Timestamp) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut total = 0;
    while total < n && Instant::now() < deadline {
        let got = store.fan_out_events(100, now).await.unwrap();
        total += got;
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    total
}

fn attempt(secs: i64, status: Option<u16>, error: Option<&str>) -> DeliveryAttempt {
    DeliveryAttempt {
        at: at(secs),
        status,
        error: error.map(str::to_owned),
        duration_ms: 12,
    }
}

fn delivery_of(deliveries: &[WebhookDelivery], endpoint: WebhookEndpointId) -> &WebhookDelivery {
    deliveries.iter().find(|d| d.endpoint_id == endpoint).unwrap()
}

/// Endpoints round-trip every field, list oldest first per tenant, and a
/// delete is soft, once, and tenant-scoped.
pub async fn webhook_endpoints_are_per_tenant_and_deleted_softly(store: Arc<dyn Store>) {
    let (a, _) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    let newer = endpoint(
        a.id,
        Some(vec![EventType::CardStatusChanged, EventType::OtpCreated]),
        20,
    );
    let older = endpoint(a.id, None, 10);
    let theirs = endpoint(b.id, None, 5);
    insert_endpoints(&*store, &[&newer, &older, &theirs]).await;
    assert_eq!(
        store.webhook_endpoints(a.id).await.unwrap(),
        vec![older.clone(), newer.clone()]
    );
    assert_eq!(store.webhook_endpoints(b.id).await.unwrap(), vec![theirs.clone()]);
    assert_eq!(
        store.webhook_endpoint(a.id, newer.id).await.unwrap(),
        Some(newer.clone())
    );
    assert_eq!(store.webhook_endpoint(b.id, newer.id).await.unwrap(), None);

    // A foreign or unknown id deletes nothing.
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.delete_webhook_endpoint(b.id, newer.id, at(30)).await.unwrap());
    assert!(!tx
        .delete_webhook_endpoint(a.id, WebhookEndpointId::new(), at(30))
        .await
        .unwrap());
    assert!(tx.delete_webhook_endpoint(a.id, newer.id, at(30)).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.delete_webhook_endpoint(a.id, newer.id, at(31)).await.unwrap());
    drop(tx);
    assert_eq!(store.webhook_endpoints(a.id).await.unwrap(), vec![older]);
    assert_eq!(store.webhook_endpoint(a.id, newer.id).await.unwrap(), None);
    assert_eq!(store.webhook_endpoints(b.id).await.unwrap(), vec![theirs]);
}

/// Fan-out makes one pending delivery per (event, endpoint that wants it):
/// same tenant, a type it asked for, not older than the endpoint, not
/// deleted. Each event is consumed once.
pub async fn fan_out_gives_each_wanting_endpoint_one_delivery(store: Arc<dyn Store>) {
    let (a, h) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    let c = card(a.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let all = endpoint(a.id, None, 10);
    let status_only = endpoint(a.id, Some(vec![EventType::CardStatusChanged]), 10);
    let late = endpoint(a.id, None, 50);
    let gone = endpoint(a.id, None, 10);
    let theirs = endpoint(b.id, None, 10);
    insert_endpoints(&*store, &[&all, &status_only, &late, &gone, &theirs]).await;
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_webhook_endpoint(a.id, gone.id, at(11)).await.unwrap());
    tx.commit().await.unwrap();

    let before_all = event_at(&*store, a.id, Some(c.card.id), EventType::CardCreated, 5).await;
    let created = event_at(&*store, a.id, Some(c.card.id), EventType::CardCreated, 20).await;
    let moved = event_at(&*store, a.id, Some(c.card.id), EventType::CardStatusChanged, 21).await;
    let cardless = event_at(&*store, a.id, None, EventType::CardLimitsUpdated, 60).await;
    assert_eq!(fan_out_settled(&*store, 4, at(70)).await, 4);
    assert_eq!(
        store.fan_out_events(100, at(71)).await.unwrap(),
        0,
        "each event is consumed once"
    );

    assert!(store
        .event_deliveries(a.id, before_all.event.id)
        .await
        .unwrap()
        .is_empty());
    let d = store.event_deliveries(a.id, created.event.id).await.unwrap();
    assert_eq!(d.len(), 1);
    let first = &d[0];
    assert_eq!(first.endpoint_id, all.id);
    assert_eq!(first.event_id, created.event.id);
    assert_eq!(first.tenant_id, a.id);
    assert_eq!(first.card_id, Some(c.card.id));
    assert_eq!(first.state, DeliveryState::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.next_attempt_at, Some(at(70)));
    assert_eq!(first.created_at, at(70));
    assert_eq!((first.last_status, first.last_error.clone()), (None, None));
    assert!(first.attempts_log.is_empty());
    let d = store.event_deliveries(a.id, moved.event.id).await.unwrap();
    let mut got: Vec<_> = d.iter().map(|d| d.endpoint_id).collect();
    got.sort();
    let mut want = vec![all.id, status_only.id];
    want.sort();
    assert_eq!(got, want);
    let d = store.event_deliveries(a.id, cardless.event.id).await.unwrap();
    let mut got: Vec<_> = d.iter().map(|d| (d.endpoint_id, d.card_id)).collect();
    got.sort();
    let mut want = vec![(all.id, None), (late.id, None)];
    want.sort();
    assert_eq!(got, want);
    // Tenant-scoped reads.
    assert!(store.event_deliveries(b.id, moved.event.id).await.unwrap().is_empty());
    assert_eq!(store.event(a.id, moved.event.id).await.unwrap(), Some(moved.clone()));
    assert_eq!(store.event(b.id, moved.event.id).await.unwrap(), None);
    assert_eq!(store.event(a.id, EventId::new()).await.unwrap(), None);
}

/// Several nodes fanning out while writers commit: every event gets
/// exactly one delivery, none is skipped or doubled.
pub async fn concurrent_fan_outs_deliver_every_event_once(store: Arc<dyn Store>) {
    const WRITERS: usize = 3;
    const EVENTS: usize = 12;
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let ep = endpoint(t.id, None, 0);
    insert_endpoints(&*store, &[&ep]).await;
    let card_id = c.card.id;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for k in 0..EVENTS {
                    let mut tx = store.begin().await.unwrap();
                    let e = event(
                        t.id,
                        Some(card_id),
                        EventType::CardStatusChanged,
                        json!({"w": w, "k": k}),
                    );
                    tx.insert_event(&e).await.unwrap();
                    tokio::time::sleep(Duration::from_millis((k % 3) as u64)).await;
                    tx.commit().await.unwrap();
                    ids.push(e.event.id);
                }
                ids
            })
        })
        .collect();
    let (done, writers_done) = tokio::sync::watch::channel(false);
    let fanners: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            let writers_done = writers_done.clone();
            tokio::spawn(async move {
                let mut consumed = 0u32;
                let mut give_up: Option<Instant> = None;
                while give_up.is_none_or(|g| Instant::now() < g) {
                    if give_up.is_none() && *writers_done.borrow() {
                        give_up = Some(Instant::now() + Duration::from_secs(3));
                    }
                    let n = store.fan_out_events(5, at(100)).await.unwrap();
                    consumed += n;
                    if n == 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
                consumed
            })
        })
        .collect();
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    done.send_replace(true);
    let mut consumed = 0;
    for f in fanners {
        consumed += f.await.unwrap();
    }
    let total = (WRITERS * EVENTS) as u32;
    consumed += fan_out_settled(&*store, total.saturating_sub(consumed), at(100)).await;
    assert_eq!(consumed as usize, WRITERS * EVENTS, "each event consumed exactly once");
    for id in written {
        let d = store.event_deliveries(t.id, id).await.unwrap();
        assert_eq!(d.len(), 1, "event {id} has {} deliveries", d.len());
    }
}

/// A claim passes over the tenants it is told to skip, and a released
/// delivery is claimable again at once, with its attempts untouched; the
/// old lease no longer records or releases it.
pub async fn claims_skip_tenants_and_released_deliveries_come_back(store: Arc<dyn Store>) {
    let (t1, _) = tenant_with_holder(&*store, "acme").await;
    let (t2, _) = tenant_with_holder(&*store, "globex").await;
    let (e1, e2) = (endpoint(t1.id, None, 0), endpoint(t2.id, None, 0));
    insert_endpoints(&*store, &[&e1, &e2]).await;
    let first = event_at(&*store, t1.id, None, EventType::CardLimitsUpdated, 1).await;
    let second = event_at(&*store, t2.id, None, EventType::CardLimitsUpdated, 2).await;
    assert_eq!(fan_out_settled(&*store, 2, at(10)).await, 2);

    let only_t2 = store
        .claim_deliveries_except(at(10), at(100), 50, &[t1.id])
        .await
        .unwrap();
    assert_eq!(only_t2.len(), 1);
    assert_eq!(only_t2[0].delivery.event_id, second.event.id);
    let t1_claim = store.claim_deliveries(at(10), at(100), 50).await.unwrap();
    assert_eq!(t1_claim.len(), 1);
    assert_eq!(t1_claim[0].delivery.event_id, first.event.id);

    let c = &t1_claim[0];
    assert!(store.release_delivery(c.delivery.id, c.lease).await.unwrap());
    assert!(
        !store.release_delivery(c.delivery.id, c.lease).await.unwrap(),
        "released once"
    );
    let again = store.claim_deliveries(at(10), at(100), 50).await.unwrap();
    assert_eq!(again.len(), 1, "claimable at once, lease or not");
    assert_eq!(again[0].delivery.id, c.delivery.id);
    assert_eq!(again[0].delivery.attempts, 0, "a release is not an attempt");
    let attempt = DeliveryAttempt {
        at: at(11),
        status: Some(200),
        error: None,
        duration_ms: 1,
    };
    assert!(!store
        .record_delivery_attempt(c.delivery.id, c.lease, &attempt, DeliveryOutcome::Succeeded)
        .await
        .unwrap());
    assert!(store
        .record_delivery_attempt(c.delivery.id, again[0].lease, &attempt, DeliveryOutcome::Succeeded)
        .await
        .unwrap());
}

/// Claims take only the oldest open delivery of each (endpoint, card) pair
/// (cardless ones freely), only when due and not leased; a retry holds the
/// card's later deliveries back until it succeeds or goes dead; a lapsed
/// lease makes a delivery claimable again and voids the old lease.
pub async fn claims_follow_card_order_retries_and_leases(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let ca = card(t.id, h.id);
    let cb = card(t.id, h.id);
    insert_cards(&*store, &[&ca, &cb]).await;
    let ep = endpoint(t.id, None, 0);
    let other_ep = endpoint(t.id, Some(vec![EventType::CardCreated]), 0);
    insert_endpoints(&*store, &[&ep, &other_ep]).await;
    let a1 = event_at(&*store, t.id, Some(ca.card.id), EventType::CardCreated, 1).await;
    let a2 = event_at(&*store, t.id, Some(ca.card.id), EventType::CardStatusChanged, 2).await;
    let a3 = event_at(&*store, t.id, Some(ca.card.id), EventType::CardStatusChanged, 3).await;
    let b1 = event_at(&*store, t.id, Some(cb.card.id), EventType::CardStatusChanged, 4).await;
    let n1 = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 5).await;
    let n2 = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 6).await;
    assert_eq!(fan_out_settled(&*store, 6, at(10)).await, 6);
    let id_of = |claimed: &[crate::ClaimedDelivery]| -> Vec<(EventId, WebhookEndpointId)> {
        claimed
            .iter()
            .map(|c| (c.delivery.event_id, c.delivery.endpoint_id))
            .collect()
    };

    // Nothing is due before its time.
    assert!(store.claim_deliveries(at(9), at(100), 50).await.unwrap().is_empty());
    // The limit holds; claims come oldest first.
    let first = store.claim_deliveries(at(10), at(100), 2).await.unwrap();
    assert_eq!(id_of(&first), vec![(a1.event.id, ep.id), (a1.event.id, other_ep.id)]);
    let rest = store.claim_deliveries(at(10), at(100), 50).await.unwrap();
    assert_eq!(
        id_of(&rest),
        vec![(b1.event.id, ep.id), (n1.event.id, ep.id), (n2.event.id, ep.id)],
        "a2 and a3 wait behind a1"
    );
    assert!(
        store.claim_deliveries(at(10), at(100), 50).await.unwrap().is_empty(),
        "leased"
    );
    for c in first.iter().chain(&rest) {
        assert_eq!(c.delivery.state, DeliveryState::Pending);
    }

    // a1 to ep fails: retrying at 20. a1 to the other endpoint succeeds.
    let a1_ep = &first[0];
    assert!(store
        .record_delivery_attempt(
            a1_ep.delivery.id,
            a1_ep.lease,
            &attempt(11, Some(500), Some("HTTP 500")),
            DeliveryOutcome::Retry(at(20))
        )
        .await
        .unwrap());
    // A second record with the same lease is refused: the lease is released.
    assert!(!store
        .record_delivery_attempt(
            a1_ep.delivery.id,
            a1_ep.lease,
            &attempt(11, Some(200), None),
            DeliveryOutcome::Succeeded
        )
        .await
        .unwrap());
    assert!(store
        .record_delivery_attempt(
            first[1].delivery.id,
            first[1].lease,
            &attempt(11, Some(204), None),
            DeliveryOutcome::Succeeded
        )
        .await
        .unwrap());
    // a2 still waits: a1 is retrying and not due.
    assert!(store.claim_deliveries(at(15), at(100), 50).await.unwrap().is_empty());
    let again = store.claim_deliveries(at(20), at(100), 50).await.unwrap();
    assert_eq!(id_of(&again), vec![(a1.event.id, ep.id)]);
    assert_eq!(again[0].delivery.state, DeliveryState::Retrying);
    assert_eq!(again[0].delivery.attempts, 1);
    assert!(store
        .record_delivery_attempt(
            again[0].delivery.id,
            again[0].lease,
            &attempt(21, Some(200), None),
            DeliveryOutcome::Succeeded
        )
        .await
        .unwrap());
    let d = store.event_deliveries(t.id, a1.event.id).await.unwrap();
    let done = delivery_of(&d, ep.id);
    assert_eq!(done.state, DeliveryState::Succeeded);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.next_attempt_at, None);
    assert_eq!((done.last_status, done.last_error.clone()), (Some(200), None));
    assert_eq!(
        done.attempts_log,
        vec![attempt(11, Some(500), Some("HTTP 500")), attempt(21, Some(200), None)]
    );

    // Now a2, and when it goes dead, a3.
    let a2c = store.claim_deliveries(at(21), at(100), 50).await.unwrap();
    assert_eq!(id_of(&a2c), vec![(a2.event.id, ep.id)]);
    assert!(store
        .record_delivery_attempt(
            a2c[0].delivery.id,
            a2c[0].lease,
            &attempt(22, None, Some("timed out")),
            DeliveryOutcome::Dead
        )
        .await
        .unwrap());
    let d = store.event_deliveries(t.id, a2.event.id).await.unwrap();
    assert_eq!(d[0].state, DeliveryState::Dead);
    assert_eq!(
        (d[0].last_status, d[0].last_error.as_deref()),
        (None, Some("timed out"))
    );
    assert_eq!(d[0].next_attempt_at, None);

    // a3 is claimed with a lease to 30; its node dies. Before 30 it is
    // nobody's to claim, from 30 on it is again, and the old lease is void.
    let a3c = store.claim_deliveries(at(22), at(30), 50).await.unwrap();
    assert_eq!(id_of(&a3c), vec![(a3.event.id, ep.id)]);
    assert!(store.claim_deliveries(at(29), at(200), 50).await.unwrap().is_empty());
    let retaken = store.claim_deliveries(at(30), at(200), 50).await.unwrap();
    assert_eq!(id_of(&retaken), vec![(a3.event.id, ep.id)]);
    assert_ne!(retaken[0].lease, a3c[0].lease);
    assert!(!store
        .record_delivery_attempt(
            a3c[0].delivery.id,
            a3c[0].lease,
            &attempt(31, Some(200), None),
            DeliveryOutcome::Succeeded
        )
        .await
        .unwrap());
    assert!(store
        .record_delivery_attempt(
            retaken[0].delivery.id,
            retaken[0].lease,
            &attempt(31, Some(200), None),
            DeliveryOutcome::Succeeded
        )
        .await
        .unwrap());
    let d = store.event_deliveries(t.id, a3.event.id).await.unwrap();
    assert_eq!((d[0].state, d[0].attempts), (DeliveryState::Succeeded, 1));
}

/// Claimers running at once never get the same delivery, and never two of
/// one card's queue.
pub async fn concurrent_claims_never_share_a_delivery(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let cards: Vec<CardRecord> = (0..4).map(|_| card(t.id, h.id)).collect();
    insert_cards(&*store, &cards.iter().collect::<Vec<_>>()).await;
    let ep = endpoint(t.id, None, 0);
    insert_endpoints(&*store, &[&ep]).await;
    let mut tx = store.begin().await.unwrap();
    for i in 0..24 {
        let card = (i % 2 == 0).then(|| cards[i % 4].card.id);
        let mut e = event(t.id, card, EventType::CardStatusChanged, json!({"i": i}));
        e.event.created_at = at(1);
        tx.insert_event(&e).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(fan_out_settled(&*store, 24, at(2)).await, 24);
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_deliveries(at(2), at(100), 3).await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_card: std::collections::HashMap<CardId, usize> = std::collections::HashMap::new();
    for c in claimers {
        for claimed in c.await.unwrap() {
            assert!(seen.insert(claimed.delivery.id), "claimed twice");
            if let Some(card) = claimed.delivery.card_id {
                *per_card.entry(card).or_default() += 1;
            }
        }
    }
    assert!(per_card.values().all(|n| *n == 1), "{per_card:?}");
    // Whatever is left, one more claim gets: the 12 cardless and one head
    // per card, all told.
    for claimed in store.claim_deliveries(at(2), at(100), 100).await.unwrap() {
        assert!(seen.insert(claimed.delivery.id), "claimed twice");
        if let Some(card) = claimed.delivery.card_id {
            *per_card.entry(card).or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        12 + 2,
        "12 cardless, and one head for each of the 2 cards with events"
    );
    assert!(per_card.values().all(|n| *n == 1), "{per_card:?}");
}

/// A redelivery goes to every live endpoint that receives the type
/// (whatever its age), queues behind the card's open deliveries, and is
/// refused for an event of another tenant. Deleting an endpoint kills its
/// open deliveries.
pub async fn redelivery_queues_behind_the_cards_open_deliveries(store: Arc<dyn Store>) {
    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let (other, _) = tenant_with_holder(&*store, "globex").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let ep = endpoint(t.id, None, 0);
    let filtered = endpoint(t.id, Some(vec![EventType::CardPinSet]), 0);
    insert_endpoints(&*store, &[&ep, &filtered]).await;
    let e1 = event_at(&*store, t.id, Some(c.card.id), EventType::CardStatusChanged, 1).await;
    let e2 = event_at(&*store, t.id, Some(c.card.id), EventType::CardStatusChanged, 2).await;
    assert_eq!(fan_out_settled(&*store, 2, at(3)).await, 2);
    // An endpoint made after the event gets the redelivery too.
    let newer = endpoint(t.id, None, 50);
    insert_endpoints(&*store, &[&newer]).await;
    assert_eq!(store.redeliver_event(t.id, e1.event.id, at(51)).await.unwrap(), Some(2));
    assert_eq!(
        store.redeliver_event(other.id, e1.event.id, at(51)).await.unwrap(),
        None
    );
    assert_eq!(store.redeliver_event(t.id, EventId::new(), at(51)).await.unwrap(), None);
    let d = store.event_deliveries(t.id, e1.event.id).await.unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0].endpoint_id, ep.id);
    assert_eq!(
        d[1..].iter().map(|d| d.endpoint_id).collect::<HashSet<_>>(),
        HashSet::from([ep.id, newer.id])
    );
    assert!(d
        .iter()
        .all(|d| d.state == DeliveryState::Pending && d.card_id == Some(c.card.id)));

    // To `ep`, the card's queue is e1, e2, then the redelivery of e1.
    let order = |claimed: Vec<crate::ClaimedDelivery>| -> Vec<(EventId, WebhookEndpointId)> {
        claimed
            .iter()
            .map(|c| (c.delivery.event_id, c.delivery.endpoint_id))
            .collect()
    };
    let mut sent = Vec::new();
    for round in 0..4 {
        let claimed = store.claim_deliveries(at(60 + round), at(1000), 50).await.unwrap();
        for cd in &claimed {
            assert!(store
                .record_delivery_attempt(
                    cd.delivery.id,
                    cd.lease,
                    &attempt(60 + round, Some(200), None),
                    DeliveryOutcome::Succeeded
                )
                .await
                .unwrap());
        }
        sent.extend(
            order(claimed)
                .into_iter()
                .filter(|(_, e)| *e == ep.id)
                .map(|(ev, _)| ev),
        );
    }
    assert_eq!(sent, vec![e1.event.id, e2.event.id, e1.event.id]);

    // Deleting an endpoint: its open deliveries die, and it gets no more.
    assert_eq!(store.redeliver_event(t.id, e2.event.id, at(70)).await.unwrap(), Some(2));
    let mut tx = store.begin().await.unwrap();
    assert!(tx.delete_webhook_endpoint(t.id, newer.id, at(71)).await.unwrap());
    tx.commit().await.unwrap();
    let d = store.event_deliveries(t.id, e2.event.id).await.unwrap();
    let killed = d.iter().find(|d| d.endpoint_id == newer.id).unwrap();
    assert_eq!(killed.state, DeliveryState::Dead);
    assert_eq!(killed.last_error.as_deref(), Some("endpoint deleted"));
    assert_eq!(killed.next_attempt_at, None);
    let claimed = store.claim_deliveries(at(72), at(1000), 50).await.unwrap();
    assert_eq!(order(claimed), vec![(e2.event.id, ep.id)]);
    assert_eq!(store.redeliver_event(t.id, e2.event.id, at(73)).await.unwrap(), Some(1));
}

fn start<'a>(tenant: TenantId, key: &'a str, fingerprint: &'a [u8], now: i64) -> IdempotencyStart<'a> {
    IdempotencyStart {
        tenant_id: tenant,
        key,
        fingerprint,
        now: at(now),
        takeover_before: at(now - 60),
        expired_before: at(now - 86_400),
    }
}

fn response(status: u16) -> IdempotentResponse {
    IdempotentResponse {
        status,
        content_type: Some("application/json".into()),
        body: SealedData {
            ciphertext: unique_bytes(40),
            key_version: 3,
        },
    }
}

/// An idempotency key: started once; in flight, the same request waits and
/// another is refused; a stale in-flight one is taken over (voiding the old
/// token); the answer is kept and replayed; abandoned keys start afresh;
/// expired keys count as absent and are purged; keys are per tenant.
pub async fn idempotency_keys_begin_finish_replay_and_refuse(store: Arc<dyn Store>) {
    let (t, _) = tenant_with_holder(&*store, "acme").await;
    let (other, _) = tenant_with_holder(&*store, "globex").await;
    let fp = unique_bytes(32);
    let other_fp = unique_bytes(32);
    let key = "order-42:retry";

    let IdempotencyBegin::Started { token: first } = store.begin_idempotent(&start(t.id, key, &fp, 100)).await.unwrap()
    else {
        panic!("a new key starts");
    };
    let rec = store.idempotency_record(t.id, key).await.unwrap().unwrap();
    assert_eq!(
        (rec.token, rec.fingerprint.clone(), rec.response.clone()),
        (first, fp.clone(), None)
    );
    assert_eq!(
        (rec.created_at, rec.started_at, rec.completed_at),
        (at(100), at(100), None)
    );
    assert_eq!(
        store.begin_idempotent(&start(t.id, key, &fp, 101)).await.unwrap(),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        store.begin_idempotent(&start(t.id, key, &other_fp, 101)).await.unwrap(),
        IdempotencyBegin::Mismatch
    );
    // Keys are per tenant.
    assert!(matches!(
        store
            .begin_idempotent(&start(other.id, key, &other_fp, 101))
            .await
            .unwrap(),
        IdempotencyBegin::Started { .. }
    ));

    // 61 s later the first request is presumed dead: taken over.
    let IdempotencyBegin::Started { token: second } =
        store.begin_idempotent(&start(t.id, key, &fp, 161)).await.unwrap()
    else {
        panic!("a stale in-flight key is taken over");
    };
    assert_ne!(first, second);
    let answer = response(201);
    assert!(
        !store
            .finish_idempotent(t.id, key, first, &answer, at(162))
            .await
            .unwrap(),
        "old token void"
    );
    assert!(
        !store.abandon_idempotent(t.id, key, first).await.unwrap(),
        "old token void"
    );
    assert!(store
        .finish_idempotent(t.id, key, second, &answer, at(162))
        .await
        .unwrap());
    assert!(
        !store
            .finish_idempotent(t.id, key, second, &response(200), at(163))
            .await
            .unwrap(),
        "once"
    );
    assert!(
        !store.abandon_idempotent(t.id, key, second).await.unwrap(),
        "a completed key stays"
    );
    let rec = store.idempotency_record(t.id, key).await.unwrap().unwrap();
    assert_eq!(rec.response, Some(answer.clone()));
    assert_eq!((rec.created_at, rec.completed_at), (at(100), Some(at(162))));
    assert_eq!(
        store.begin_idempotent(&start(t.id, key, &fp, 200)).await.unwrap(),
        IdempotencyBegin::Completed(answer.clone())
    );
    assert_eq!(
        store.begin_idempotent(&start(t.id, key, &other_fp, 200)).await.unwrap(),
        IdempotencyBegin::Mismatch
    );

    // Abandoned: the next request with the key runs afresh.
    let IdempotencyBegin::Started { token } = store.begin_idempotent(&start(t.id, "k2", &fp, 300)).await.unwrap()
    else {
        panic!("starts");
    };
    assert!(store.abandon_idempotent(t.id, "k2", token).await.unwrap());
    assert_eq!(store.idempotency_record(t.id, "k2").await.unwrap(), None);
    assert!(matches!(
        store
            .begin_idempotent(&start(t.id, "k2", &other_fp, 301))
            .await
            .unwrap(),
        IdempotencyBegin::Started { .. }
    ));

    // A day after its creation the key has expired: absent, whatever it held.
    let day = 86_400;
    let IdempotencyBegin::Started { token: reborn } = store
        .begin_idempotent(&start(t.id, key, &other_fp, 100 + day + 1))
        .await
        .unwrap()
    else {
        panic!("an expired key starts afresh");
    };
    let rec = store.idempotency_record(t.id, key).await.unwrap().unwrap();
    assert_eq!(
        (rec.token, rec.fingerprint, rec.response),
        (reborn, other_fp.clone(), None)
    );
    assert_eq!(rec.created_at, at(100 + day + 1));

    // Purge: keys made before the cut go, later ones stay.
    // (k2, and the other tenant's key; not the reborn key.)
    assert_eq!(store.purge_idempotency_keys(at(302)).await.unwrap(), 2);
    assert!(store.idempotency_record(t.id, key).await.unwrap().is_some());
    assert_eq!(store.idempotency_record(t.id, "k2").await.unwrap(), None);
    assert_eq!(store.idempotency_record(other.id, key).await.unwrap(), None);
    assert_eq!(store.purge_idempotency_keys(at(302)).await.unwrap(), 0);
}

/// Many requests with one key at once: exactly one runs.
pub async fn concurrent_idempotent_begins_start_once(store: Arc<dyn Store>) {
    let (t, _) = tenant_with_holder(&*store, "acme").await;
    let fp = unique_bytes(32);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let fp = fp.clone();
            tokio::spawn(async move { store.begin_idempotent(&start(t.id, "same", &fp, 100)).await.unwrap() })
        })
        .collect();
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            IdempotencyBegin::Started { .. } => started += 1,
            IdempotencyBegin::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
}

/// An endpoint keeps its format; a tenant's SMS settings are absent until
/// written, then replaced as a whole, per tenant.
pub async fn endpoint_formats_and_tenant_sms_settings_round_trip(store: Arc<dyn Store>) {
    let (a, _) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    let mut p100 = endpoint(a.id, Some(vec![EventType::CardActivationCode]), 10);
    p100.format = EndpointFormat::P100;
    let mut sms = endpoint(a.id, Some(vec![EventType::OtpCreated]), 11);
    sms.format = EndpointFormat::Sms;
    sms.url = String::new();
    insert_endpoints(&*store, &[&p100, &sms]).await;
    assert_eq!(
        store.webhook_endpoints(a.id).await.unwrap(),
        vec![p100.clone(), sms.clone()]
    );
    assert_eq!(store.webhook_endpoint(a.id, sms.id).await.unwrap(), Some(sms));

    assert_eq!(store.tenant_sms(a.id).await.unwrap(), None);
    let first = TenantSmsRecord {
        tenant_id: a.id,
        text: Some("Code {code}".into()),
        otp_in_events: false,
        updated_at: at(20),
    };
    store.put_tenant_sms(&first).await.unwrap();
    assert_eq!(store.tenant_sms(a.id).await.unwrap(), Some(first));
    let second = TenantSmsRecord {
        tenant_id: a.id,
        text: None,
        otp_in_events: true,
        updated_at: at(21),
    };
    store.put_tenant_sms(&second).await.unwrap();
    assert_eq!(store.tenant_sms(a.id).await.unwrap(), Some(second));
    assert_eq!(store.tenant_sms(b.id).await.unwrap(), None);
}

/// A cardholder's profile is rewritten; another tenant's id changes nothing.
pub async fn cardholders_are_updated_in_their_tenant_only(store: Arc<dyn Store>) {
    let (a, mut holder) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    holder.name = "Ana Maria Silva".into();
    holder.email = Some("ana.maria@example.com".into());
    holder.phone.number = "9600389471".into();
    let mut tx = store.begin().await.unwrap();
    assert!(tx.update_cardholder(&holder).await.unwrap());
    let mut foreign = holder.clone();
    foreign.tenant_id = b.id;
    foreign.name = "Mallory".into();
    assert!(!tx.update_cardholder(&foreign).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.cardholder(a.id, holder.id).await.unwrap(), Some(holder));
}

// --- authorizations ------------------------------------------------------------

fn authorization(tenant: TenantId, card: Option<CardId>, reference: &str, secs: i64) -> AuthorizationRecord {
    use cardcore_domain::authorization::*;
    AuthorizationRecord {
        id: cardcore_domain::AuthorizationId::new(),
        tenant_id: tenant,
        card_id: card,
        status: AuthorizationStatus::Approved,
        decline_reason: None,
        response_code: "00".into(),
        decided_by: DecidedBy::Cardcore,
        amount: 1_250,
        currency: "USD".into(),
        billing_amount: 1_180,
        billing_currency: "EUR".into(),
        amounts: Amounts {
            approved: 1_180,
            pending: 1_180,
            captured: 0,
            reversed: 0,
        },
        merchant: Merchant {
            mcc: "5411".into(),
            name: Some("Mercado “Central”".into()),
            city: None,
            country: "PT".into(),
            id: Some("M123".into()),
        },
        channel: PaymentChannel::Contactless,
        network_reference: reference.into(),
        windows: Windows {
            day: "2026-01-31".into(),
            month: "2026-01".into(),
        },
        expires_at: Some(at(secs + 7 * 86_400)),
        created_at: at(secs),
        updated_at: at(secs),
    }
}

/// Authorizations and captures/refunds: every field round-trips, a network
/// reference is unique per tenant (false, the transaction still usable),
/// pages are newest first with a status filter and a cursor, updates
/// persist, and only approved holds past their expiry are due.
pub async fn authorizations_and_transactions_round_trip_page_and_stay_unique(store: Arc<dyn Store>) {
    use cardcore_domain::authorization::{AuthorizationStatus, DeclineReason};
    let (t, h) = tenant_with_holder(&*store, "money").await;
    let (t2, h2) = tenant_with_holder(&*store, "money-2").await;
    let c = card(t.id, h.id);
    let c2 = card(t2.id, h2.id);
    insert_cards(&*store, &[&c]).await;
    insert_cards(&*store, &[&c2]).await;
    let card_id = c.card.id;

    let first = authorization(t.id, Some(card_id), "ref-1", 1);
    let mut declined = authorization(t.id, None, "ref-2", 2);
    declined.status = AuthorizationStatus::Declined;
    declined.decline_reason = Some(DeclineReason::CardNotFound);
    declined.response_code = "14".into();
    declined.amounts = cardcore_domain::authorization::Amounts {
        approved: 0,
        pending: 0,
        captured: 0,
        reversed: 0,
    };
    declined.expires_at = None;
    let second = authorization(t.id, Some(card_id), "ref-3", 3);
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_authorization(&first).await.unwrap());
    assert!(tx.insert_authorization(&declined).await.unwrap());
    // The same reference again: false, and the transaction goes on.
    assert!(!tx
        .insert_authorization(&authorization(t.id, Some(card_id), "ref-1", 4))
        .await
        .unwrap());
    assert!(tx.insert_authorization(&second).await.unwrap());
    tx.commit().await.unwrap();
    // Another tenant may use the same reference.
    let theirs = authorization(t2.id, Some(c2.card.id), "ref-1", 5);
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_authorization(&theirs).await.unwrap());
    tx.commit().await.unwrap();

    assert_eq!(store.authorization(t.id, first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.authorization(t2.id, first.id).await.unwrap(), None);
    assert_eq!(
        store.authorization(t.id, declined.id).await.unwrap(),
        Some(declined.clone())
    );
    assert_eq!(
        store.authorization_by_reference(t.id, "ref-1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.authorization_by_reference(t2.id, "ref-1").await.unwrap(),
        Some(theirs.clone())
    );
    let page = |status, before, limit| MoneyPage { status, before, limit };
    let all = store
        .authorizations(t.id, card_id, &page(None, None, 10))
        .await
        .unwrap();
    assert_eq!(all, [second.clone(), first.clone()]);
    let after = store
        .authorizations(t.id, card_id, &page(None, Some(second.id.0), 10))
        .await
        .unwrap();
    assert_eq!(after, std::slice::from_ref(&first));
    assert!(store
        .authorizations(t.id, card_id, &page(Some(AuthorizationStatus::Closed), None, 10))
        .await
        .unwrap()
        .is_empty());

    // Due: approved holds past their expiry, of every tenant.
    let due = store.due_authorizations(at(3 + 7 * 86_400), 10).await.unwrap();
    let ids: Vec<_> = due.iter().map(|d| d.id).collect();
    assert_eq!(ids, [first.id, second.id]);
    assert_eq!(due[0].card_id, card_id);

    // An update in a transaction, read back there and after.
    let mut tx = store.begin().await.unwrap();
    assert!(tx.lock_card(t.id, card_id).await.unwrap().is_some());
    let mut closed = tx.authorization_in_tx(t.id, first.id).await.unwrap().unwrap();
    closed.status = AuthorizationStatus::Closed;
    closed.amounts.pending = 0;
    closed.amounts.captured = 1_000;
    closed.amounts.reversed = 180;
    closed.updated_at = at(9);
    tx.update_authorization(&closed).await.unwrap();
    assert_eq!(
        tx.authorization_in_tx(t.id, first.id).await.unwrap(),
        Some(closed.clone())
    );
    let capture = TransactionRecord {
        id: cardcore_domain::TransactionId::new(),
        tenant_id: t.id,
        card_id,
        authorization_id: Some(first.id),
        kind: TransactionKind::Capture,
        amount: 1_000,
        currency: "EUR".into(),
        merchant: Some(first.merchant.clone()),
        network_reference: "cap-1".into(),
        created_at: at(9),
    };
    assert!(tx.insert_transaction(&capture).await.unwrap());
    let mut dup = capture.clone();
    dup.id = cardcore_domain::TransactionId::new();
    assert!(!tx.insert_transaction(&dup).await.unwrap());
    let refund = TransactionRecord {
        id: cardcore_domain::TransactionId::new(),
        authorization_id: None,
        kind: TransactionKind::Refund,
        merchant: None,
        network_reference: "refund-1".into(),
        created_at: at(10),
        ..capture.clone()
    };
    assert!(tx.insert_transaction(&refund).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.authorization(t.id, first.id).await.unwrap(), Some(closed));
    assert_eq!(
        store.transaction_by_reference(t.id, "cap-1").await.unwrap(),
        Some(capture.clone())
    );
    assert_eq!(store.transaction_by_reference(t2.id, "cap-1").await.unwrap(), None);
    let txns = store.transactions(t.id, card_id, &page(None, None, 10)).await.unwrap();
    assert_eq!(txns, [refund.clone(), capture.clone()]);
    assert_eq!(
        store
            .transactions(t.id, card_id, &page(None, Some(refund.id.0), 1))
            .await
            .unwrap(),
        [capture]
    );
    let due = store.due_authorizations(at(3 + 7 * 86_400), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [second.id]);
}

/// A tenant has at most one authorization endpoint: absent until put, then
/// replaced as a whole (keeping its creation time), deleted once; a rolled
/// back put leaves nothing; tenants never see each other's.
pub async fn authorization_endpoints_are_one_per_tenant(store: Arc<dyn Store>) {
    let (a, _) = tenant_with_holder(&*store, "acme").await;
    let (b, _) = tenant_with_holder(&*store, "globex").await;
    assert_eq!(store.authorization_endpoint(a.id).await.unwrap(), None);
    let first = AuthorizationEndpointRecord {
        tenant_id: a.id,
        url: "https://decide.acme.example/authorize".into(),
        timeout_ms: 800,
        on_timeout: OnTimeout::Decline,
        secret: SealedData {
            ciphertext: vec![1, 2, 3, 4],
            key_version: 1,
        },
        created_at: at(30),
        updated_at: at(30),
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx.put_authorization_endpoint(&first, None).await.unwrap());
    drop(tx);
    assert_eq!(store.authorization_endpoint(a.id).await.unwrap(), None, "rolled back");

    let mut tx = store.begin().await.unwrap();
    assert!(tx.put_authorization_endpoint(&first, None).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.authorization_endpoint(a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.authorization_endpoint(b.id).await.unwrap(), None);
    // A create that finds one, or a change of one it did not read, writes nothing.
    let mut tx = store.begin().await.unwrap();
    let racer = AuthorizationEndpointRecord {
        url: "http://10.0.0.9/racer".into(),
        ..first.clone()
    };
    assert!(!tx.put_authorization_endpoint(&racer, None).await.unwrap());
    assert!(!tx.put_authorization_endpoint(&racer, Some(at(29))).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.authorization_endpoint(a.id).await.unwrap(), Some(first.clone()));

    let second = AuthorizationEndpointRecord {
        url: "http://10.0.0.7:8080/decide".into(),
        timeout_ms: 1500,
        on_timeout: OnTimeout::Approve,
        secret: SealedData {
            ciphertext: vec![9; 40],
            key_version: 2,
        },
        created_at: at(31),
        updated_at: at(31),
        ..first.clone()
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .put_authorization_endpoint(&second, Some(first.updated_at))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let stored = store.authorization_endpoint(a.id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, first.created_at, "the first creation time is kept");
    assert_eq!(
        stored,
        AuthorizationEndpointRecord {
            created_at: first.created_at,
            ..second
        }
    );

    let mut tx = store.begin().await.unwrap();
    assert!(!tx.delete_authorization_endpoint(b.id).await.unwrap());
    assert!(tx.delete_authorization_endpoint(a.id).await.unwrap());
    assert!(!tx.delete_authorization_endpoint(a.id).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.authorization_endpoint(a.id).await.unwrap(), None);
}

/// The console's search: cards by last four digits (and expiry) and
/// cardholders by phone, each in its tenant only.
pub async fn console_search_finds_cards_by_last_four_and_expiry_and_holders_by_phone(store: Arc<dyn Store>) {
    let (t, ana) = tenant_with_holder(&*store, "acme").await;
    let (other, other_holder) = tenant_with_holder(&*store, "globex").await;
    let mut a = card(t.id, ana.id);
    a.card.last_four = "1111".into();
    let mut b = card(t.id, ana.id);
    b.card.last_four = "1111".into();
    b.card.expiry = Expiry::new(4, 2030).unwrap();
    let mut c = card(other.id, other_holder.id);
    c.card.last_four = "1111".into();
    insert_cards(&*store, &[&a, &b]).await;
    insert_cards(&*store, &[&c]).await;
    let found = store
        .cards(
            t.id,
            &CardFilter {
                last_four: Some("1111".into()),
                limit: 10,
                ..CardFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    let found = store
        .cards(
            t.id,
            &CardFilter {
                last_four: Some("1111".into()),
                expiry: Some(Expiry::new(4, 2030).unwrap()),
                limit: 10,
                ..CardFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), vec![b.card.id]);

    assert_eq!(
        store.cardholders_by_phone(t.id, "912345678", 10).await.unwrap(),
        vec![ana.clone()]
    );
    assert_eq!(
        store.cardholders_by_phone(t.id, "351912345678", 10).await.unwrap(),
        vec![ana]
    );
    assert!(store.cardholders_by_phone(t.id, "000", 10).await.unwrap().is_empty());
    assert_eq!(
        store.cardholders_by_phone(other.id, "912345678", 10).await.unwrap(),
        vec![other_holder]
    );
}

/// The newest events first, of one card or of the tenant.
pub async fn recent_events_are_newest_first(store: Arc<dyn Store>) {
    let (t, ana) = tenant_with_holder(&*store, "acme").await;
    let a = card(t.id, ana.id);
    let b = card(t.id, ana.id);
    insert_cards(&*store, &[&a, &b]).await;
    let e1 = event(t.id, Some(a.card.id), EventType::CardStatusChanged, json!({"n": 1}));
    let e2 = event(t.id, Some(b.card.id), EventType::CardStatusChanged, json!({"n": 2}));
    let e3 = event(t.id, Some(a.card.id), EventType::CardPinSet, json!({"n": 3}));
    for e in [&e1, &e2, &e3] {
        insert_events(&*store, &[e]).await;
    }
    let ids = |v: Vec<StoredEvent>| v.into_iter().map(|e| e.event.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.recent_events(t.id, Some(a.card.id), 10).await.unwrap()),
        vec![e3.event.id, e1.event.id]
    );
    assert_eq!(
        ids(store.recent_events(t.id, None, 2).await.unwrap()),
        vec![e3.event.id, e2.event.id]
    );
}

/// A console session is found until it expires, and not after sign-out.
pub async fn console_sessions_expire_and_end(store: Arc<dyn Store>) {
    let t = tenant("acme");
    let key = api_key(t.id, false);
    assert!(store.create_tenant(&t, &key).await.unwrap());
    let session = ConsoleSessionRecord {
        token_hash: unique_bytes(32),
        tenant_id: t.id,
        api_key_id: key.id,
        created_at: at(10),
        expires_at: at(100),
    };
    store.insert_console_session(&session).await.unwrap();
    assert_eq!(
        store.console_session(&session.token_hash, at(50)).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.console_session(&session.token_hash, at(100)).await.unwrap(), None);
    assert_eq!(store.console_session(&unique_bytes(32), at(50)).await.unwrap(), None);
    store.delete_console_session(&session.token_hash).await.unwrap();
    assert_eq!(store.console_session(&session.token_hash, at(50)).await.unwrap(), None);
}

/// A PIN session is spent by one caller only, never after it expires, and
/// comes back only when given back with the instant it was spent at.
pub async fn pin_sessions_are_spent_once_before_they_expire(store: Arc<dyn Store>) {
    let t = tenant("acme");
    let key = api_key(t.id, false);
    assert!(store.create_tenant(&t, &key).await.unwrap());
    let h = cardholder(t.id, "holder-1");
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_cardholder(&h).await.unwrap());
    tx.commit().await.unwrap();
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let session = PinSessionRecord {
        token_hash: unique_bytes(32),
        tenant_id: t.id,
        card_id: c.card.id,
        api_key_id: key.id,
        purpose: "set".into(),
        allowed_origin: "https://app.example.com".into(),
        created_at: at(10),
        expires_at: at(310),
        used_at: None,
    };
    store.insert_pin_session(&session).await.unwrap();
    assert_eq!(
        store.pin_session(&session.token_hash).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        store.claim_pin_session(&session.token_hash, at(310)).await.unwrap(),
        None,
        "expired"
    );

    let claims = (0..8).map(|_| {
        let store = store.clone();
        let hash = session.token_hash.clone();
        tokio::spawn(async move { store.claim_pin_session(&hash, at(20)).await.unwrap() })
    });
    let mut won = 0;
    for claim in claims {
        if let Some(got) = claim.await.unwrap() {
            assert_eq!(got.used_at, Some(at(20)));
            won += 1;
        }
    }
    assert_eq!(won, 1, "one claim wins");
    store.release_pin_session(&session.token_hash, at(21)).await.unwrap();
    assert_eq!(
        store.claim_pin_session(&session.token_hash, at(22)).await.unwrap(),
        None,
        "still spent"
    );
    store.release_pin_session(&session.token_hash, at(20)).await.unwrap();
    assert!(store
        .claim_pin_session(&session.token_hash, at(22))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.claim_pin_session(&session.token_hash, at(23)).await.unwrap(),
        None
    );
}

/// Retention counts and deletes only what it may: old events that were
/// fanned out and have no open delivery (with all their deliveries), dead
/// deliveries past their own cut-off, old audit entries oldest first; the
/// job lease has one holder at a time.
pub async fn retention_deletes_only_what_it_may(store: Arc<dyn Store>) {
    use crate::{EventPosition, PurgedEvents, RetentionCounts, RetentionCutoffs};

    let (t, h) = tenant_with_holder(&*store, "acme").await;
    let c = card(t.id, h.id);
    insert_cards(&*store, &[&c]).await;
    let ep = endpoint(t.id, None, 0);
    insert_endpoints(&*store, &[&ep]).await;
    // Cardless events: their deliveries are unordered, so each can be
    // brought to its own state.
    let done = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 1).await;
    let dead = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 2).await;
    let open = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 3).await;
    let young = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 600).await;
    let young_dead = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 601).await;
    // Delivered three times (two redeliveries): more rows than a batch of 2.
    let multi = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 5).await;
    assert_eq!(fan_out_settled(&*store, 6, at(10)).await, 6);
    for _ in 0..2 {
        assert_eq!(
            store.redeliver_event(t.id, multi.event.id, at(10)).await.unwrap(),
            Some(1)
        );
    }
    let claimed = store.claim_deliveries(at(10), at(100), 50).await.unwrap();
    assert_eq!(claimed.len(), 8);
    for cl in &claimed {
        let e = cl.delivery.event_id;
        let (status, outcome) = if e == dead.event.id || e == young_dead.event.id {
            (500, DeliveryOutcome::Dead)
        } else if e == open.event.id {
            (500, DeliveryOutcome::Retry(at(10_000)))
        } else {
            (200, DeliveryOutcome::Succeeded)
        };
        assert!(store
            .record_delivery_attempt(cl.delivery.id, cl.lease, &attempt(11, Some(status), None), outcome)
            .await
            .unwrap());
    }
    // Old, but not fanned out yet.
    let unfanned = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 4).await;
    let mut audits = Vec::new();
    for secs in [5, 6, 700] {
        let a = audit(t.id, Some(c.card.id), "card.lock", secs);
        let mut tx = store.begin().await.unwrap();
        tx.insert_audit(&a).await.unwrap();
        tx.commit().await.unwrap();
        audits.push(a);
    }

    let cut = RetentionCutoffs {
        events_before: Some(at(100)),
        dead_deliveries_before: Some(at(100)),
        audit_before: Some(at(100)),
    };
    assert_eq!(
        store.retention_counts(&cut).await.unwrap(),
        RetentionCounts {
            events: 3,
            event_deliveries: 5,
            events_held: 2,
            dead_deliveries: 1,
            audit_entries: 2,
        },
        "done, dead and multi go with their deliveries; open and unfanned stay; young_dead's delivery goes alone"
    );
    let only_dead = RetentionCutoffs {
        dead_deliveries_before: Some(at(100)),
        ..RetentionCutoffs::default()
    };
    assert_eq!(store.retention_counts(&only_dead).await.unwrap().dead_deliveries, 2);
    assert_eq!(
        store.retention_counts(&RetentionCutoffs::default()).await.unwrap(),
        RetentionCounts::default()
    );
    // Counting deleted nothing; nothing is younger than the cut-off at 1.
    let start = EventPosition::start();
    assert_eq!(
        store.purge_events(at(1), start, 10).await.unwrap(),
        PurgedEvents::default(),
        "made before, not at"
    );

    // Oldest first, at most `limit` rows (an event and its deliveries).
    let b1 = store.purge_events(at(100), start, 2).await.unwrap();
    assert_eq!((b1.events, b1.deliveries), (1, 1), "done fits; dead would make 4 rows");
    assert_eq!(store.event(t.id, done.event.id).await.unwrap(), None);
    assert!(store.event_deliveries(t.id, done.event.id).await.unwrap().is_empty());
    assert!(store.event(t.id, dead.event.id).await.unwrap().is_some());
    let b2 = store.purge_events(at(100), b1.next.unwrap(), 2).await.unwrap();
    assert_eq!((b2.events, b2.deliveries), (1, 1), "dead, with its dead delivery");
    // multi alone is 4 rows: two of its deliveries now, the event again next time.
    let b3 = store.purge_events(at(100), b2.next.unwrap(), 2).await.unwrap();
    assert_eq!((b3.events, b3.deliveries), (0, 2));
    assert_eq!(b3.next, b2.next);
    assert_eq!(store.event_deliveries(t.id, multi.event.id).await.unwrap().len(), 1);
    let b4 = store.purge_events(at(100), b3.next.unwrap(), 2).await.unwrap();
    assert_eq!(
        b4,
        PurgedEvents {
            events: 1,
            deliveries: 1,
            next: None
        },
        "fewer candidates than asked: done"
    );
    assert_eq!(
        store.purge_events(at(100), start, 10).await.unwrap(),
        PurgedEvents::default()
    );
    for kept in [&open, &unfanned, &young, &young_dead] {
        assert!(store.event(t.id, kept.event.id).await.unwrap().is_some());
    }
    assert_eq!(store.event_deliveries(t.id, open.event.id).await.unwrap().len(), 1);
    assert_eq!(
        store.purge_dead_deliveries(at(10), 10).await.unwrap(),
        0,
        "made before, not at"
    );
    assert_eq!(store.purge_dead_deliveries(at(100), 10).await.unwrap(), 1);
    assert!(store
        .event_deliveries(t.id, young_dead.event.id)
        .await
        .unwrap()
        .is_empty());
    assert!(
        store.event(t.id, young_dead.event.id).await.unwrap().is_some(),
        "the event stays"
    );
    assert_eq!(store.purge_dead_deliveries(at(100), 10).await.unwrap(), 0);
    assert_eq!(
        store.retention_counts(&cut).await.unwrap(),
        RetentionCounts {
            events_held: 2,
            audit_entries: 2,
            ..RetentionCounts::default()
        }
    );

    // Audit: read oldest first, then deleted by position.
    let first = store.expired_audit(at(100), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].entry, audits[0]);
    let both = store.expired_audit(at(100), 10).await.unwrap();
    assert_eq!(
        both.iter().map(|a| a.entry.clone()).collect::<Vec<_>>(),
        audits[..2].to_vec()
    );
    assert!(both[0].seq < both[1].seq);
    let seqs: Vec<i64> = both.iter().map(|a| a.seq).collect();
    assert_eq!(store.delete_audit(&seqs).await.unwrap(), 2);
    assert_eq!(store.delete_audit(&seqs).await.unwrap(), 0);
    assert_eq!(store.delete_audit(&[]).await.unwrap(), 0);
    assert!(store.expired_audit(at(100), 10).await.unwrap().is_empty());
    let left = store
        .audit_entries(
            t.id,
            c.card.id,
            &AuditPage {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(left, vec![audits[2].clone()]);

    // The lease: one holder until it runs out or is given back.
    let (h1, h2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert!(store.lease_job("retention", h1, at(0), at(60)).await.unwrap());
    assert!(!store.lease_job("retention", h2, at(30), at(90)).await.unwrap());
    assert!(
        store.lease_job("retention", h1, at(30), at(90)).await.unwrap(),
        "renewed"
    );
    assert!(!store.lease_job("retention", h2, at(89), at(150)).await.unwrap());
    assert!(store.lease_job("other-job", h2, at(89), at(150)).await.unwrap());
    assert!(
        store.lease_job("retention", h2, at(91), at(150)).await.unwrap(),
        "ran out"
    );
    assert!(!store.lease_job("retention", h1, at(92), at(150)).await.unwrap());
    store.release_job("retention", h1).await.unwrap();
    assert!(
        !store.lease_job("retention", h1, at(93), at(150)).await.unwrap(),
        "not h1's to give"
    );
    store.release_job("retention", h2).await.unwrap();
    assert!(store.lease_job("retention", h1, at(94), at(150)).await.unwrap());
    // Many at once: exactly one gets it.
    let tries = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lease_job("contended", uuid::Uuid::new_v4(), at(0), at(60))
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for t in tries {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

/// A redelivery racing the purge of its event: either the event stays with
/// the new (open) delivery, or it is gone and the redelivery found nothing;
/// never a delivery of a deleted event.
pub async fn a_redelivery_racing_the_purge_never_outlives_its_event(store: Arc<dyn Store>) {
    use crate::{EventPosition, PurgedEvents};

    let (t, _) = tenant_with_holder(&*store, "acme").await;
    let ep = endpoint(t.id, None, 0);
    insert_endpoints(&*store, &[&ep]).await;
    let (mut kept, mut gone) = (0, 0);
    for round in 0..40 {
        let e = event_at(&*store, t.id, None, EventType::CardLimitsUpdated, 1 + round).await;
        assert_eq!(fan_out_settled(&*store, 1, at(10)).await, 1);
        let claimed = store.claim_deliveries(at(10), at(100), 50).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(store
            .record_delivery_attempt(
                claimed[0].delivery.id,
                claimed[0].lease,
                &attempt(11, Some(200), None),
                DeliveryOutcome::Succeeded
            )
            .await
            .unwrap());
        let (s1, s2) = (store.clone(), store.clone());
        // One side or the other starts 0 to 2 ms late, so both orders and
        // the overlaps in between happen.
        let late = Duration::from_millis(u64::try_from(round / 2 % 3).unwrap());
        let (redelivery_late, purge_late) = if round % 2 == 0 {
            (late, Duration::ZERO)
        } else {
            (Duration::ZERO, late)
        };
        let redelivery = tokio::spawn(async move {
            tokio::time::sleep(redelivery_late).await;
            s1.redeliver_event(t.id, e.event.id, at(20)).await.unwrap()
        });
        let purge = tokio::spawn(async move {
            tokio::time::sleep(purge_late).await;
            let mut purged = PurgedEvents::default();
            let mut after = EventPosition::start();
            loop {
                let b = s2.purge_events(at(1_000), after, 10).await.unwrap();
                purged.events += b.events;
                match b.next {
                    Some(next) => after = next,
                    None => return purged,
                }
            }
        });
        let (redelivered, purged) = (redelivery.await.unwrap(), purge.await.unwrap());
        let deliveries = store.event_deliveries(t.id, e.event.id).await.unwrap();
        match store.event(t.id, e.event.id).await.unwrap() {
            Some(_) => {
                kept += 1;
                assert_eq!(redelivered, Some(1), "kept: the redelivery came first");
                assert_eq!(purged.events, 0);
                assert_eq!(deliveries.len(), 2);
                // Leave nothing open for the next round.
                let claimed = store.claim_deliveries(at(20), at(100), 50).await.unwrap();
                for c in claimed {
                    assert!(store
                        .record_delivery_attempt(
                            c.delivery.id,
                            c.lease,
                            &attempt(21, Some(200), None),
                            DeliveryOutcome::Succeeded
                        )
                        .await
                        .unwrap());
                }
                assert_eq!(
                    store
                        .purge_events(at(1_000), EventPosition::start(), 10)
                        .await
                        .unwrap()
                        .events,
                    1
                );
            }
            None => {
                gone += 1;
                assert_eq!(redelivered, None, "gone: the redelivery found no event");
            }
        }
        assert!(
            store.event_deliveries(t.id, e.event.id).await.unwrap().is_empty()
                || store.event(t.id, e.event.id).await.unwrap().is_some(),
            "a delivery outlived its event"
        );
    }
    // Both outcomes are allowed; the test is that nothing else happens.
    assert_eq!(kept + gone, 40);
}
