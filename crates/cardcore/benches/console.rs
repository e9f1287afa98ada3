//! The console's card page for a card with 1,000 audit entries: the server
//! time of `GET /console/cards/{id}` (first page, and a page deep in the
//! trail by cursor), from the request entering the router to the last byte
//! of the HTML, on SQLite. No network: the router is called directly
//! (`tower::ServiceExt::oneshot`), session check, key check, card, PIN
//! tries, cardholder, 20 audit entries, 10 events with their deliveries
//! and rendering included.
//!
//! `cargo bench -p cardcore --bench console` (figures in docs/BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cardcore::cli::{Cli, Command};
use cardcore::Server;
use cardcore_domain::lifecycle::LifecycleAction;
use cardcore_service::cardholders::CreateCardholder;
use cardcore_service::cards::{CreateCard, ReasonInput};
use cardcore_service::{Ctx, Service};
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    _server: Server,
    router: axum::Router,
    cookie: String,
    first: String,
    deep: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cardcore.db").display());
    let argv = [
        "cardcore",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &db,
        "--rate-limit-per-second",
        "0",
        "--card-pin-calls-per-minute",
        "0",
    ];
    let Command::Serve(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(&args, Some(listener)).await.unwrap();
    let service: Arc<Service> = server.service.clone();
    let (_, key) = service.create_tenant("bench").await.unwrap();
    let principal = service.authenticate(&key.secret).await.unwrap();
    let ctx = Ctx::new(principal, cardcore_domain::Channel::NATIVE, None);
    let holder = service
        .create_cardholder(
            &ctx,
            CreateCardholder {
                external_id: "bench-1".into(),
                name: "Ana Silva".into(),
                phone: cardcore_domain::Phone {
                    country_code: "351".into(),
                    number: "912345678".into(),
                },
                email: None,
                date_of_birth: None,
            },
        )
        .await
        .unwrap();
    let card = service
        .create_card(
            &ctx,
            CreateCard {
                cardholder_id: holder.id,
                card_type: cardcore_domain::CardType::Virtual,
                account_id: None,
                program_id: None,
                card_name: None,
                printed_name: None,
                kit_number: None,
            },
        )
        .await
        .unwrap();
    // 1 (created) + 999 lifecycle moves = 1,000 audit entries.
    for i in 0..999 {
        let action = if i % 2 == 0 {
            LifecycleAction::Lock
        } else {
            LifecycleAction::Unlock
        };
        service
            .change_status(&ctx, card.id, action, ReasonInput::default())
            .await
            .unwrap();
    }
    let audit = service.card_audit(&ctx, card.id, None, Some(100)).await.unwrap();
    assert_eq!(audit.data.len(), 100);
    let mut cursor = audit.next_cursor;
    for _ in 0..4 {
        cursor = service
            .card_audit(&ctx, card.id, cursor, Some(100))
            .await
            .unwrap()
            .next_cursor;
    }
    let (_, session) = service.console_sign_in(&key.secret).await.unwrap();
    let router = cardcore_http::app(service.clone(), cardcore_http::HttpOptions::default());
    Fixture {
        _dir: dir,
        _server: server,
        router,
        cookie: format!("cardcore_console={}", session.token.as_str()),
        first: format!("/console/cards/{}", card.id),
        deep: format!("/console/cards/{}?before={}", card.id, cursor.unwrap()),
    }
}

async fn get(f: &Fixture, path: &str) -> usize {
    let req = Request::get(path)
        .header(header::COOKIE, &f.cookie)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    let res = f.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().len()
}

fn card_page(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(fixture());
    let size = rt.block_on(get(&f, &f.first));
    assert!(size > 10_000, "a full page ({size} bytes)");
    let mut group = c.benchmark_group("console");
    group.bench_function("card_page_1000_audit_rows_first_page", |b| {
        b.iter(|| rt.block_on(get(&f, &f.first)))
    });
    group.bench_function("card_page_1000_audit_rows_page_26", |b| {
        b.iter(|| rt.block_on(get(&f, &f.deep)))
    });
    group.finish();
}

criterion_group!(benches, card_page);
criterion_main!(benches);
