//! The storage contract on SQLite: every test on a fresh database file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use async_trait::async_trait;
use cardcore_store::contract::FreshStore;
use cardcore_store::Store;
use cardcore_store_sqlite::{SqliteOptions, SqliteStore};

struct Fresh {
    store: SqliteStore,
    // Deletes the database file when the test is over.
    _dir: tempfile::TempDir,
}

#[async_trait]
impl FreshStore for Fresh {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn remove(self: Box<Self>) {}
}

async fn fresh(_test: &str) -> Option<Box<dyn FreshStore>> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cardcore.db"), &SqliteOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some(Box::new(Fresh { store, _dir: dir }))
}

cardcore_store::contract_tests!(fresh);
