//! The storage contract on PostgreSQL: every test in a schema of its own,
//! dropped afterwards. Skipped (failed under CI) when no server answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use cardcore_store::contract::FreshStore;
use cardcore_store::Store;

struct Fresh(common::TestSchema);

#[async_trait]
impl FreshStore for Fresh {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.0.store.clone())
    }

    async fn remove(self: Box<Self>) {
        self.0.drop_schema().await;
    }
}

async fn fresh(test: &str) -> Option<Box<dyn FreshStore>> {
    let schema = common::fresh_schema(test, common::options()).await?;
    Some(Box::new(Fresh(schema)))
}

cardcore_store::contract_tests!(fresh);
