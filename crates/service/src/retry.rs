//! Units of work the database aborted run again.
//!
//! On PostgreSQL at SERIALIZABLE (and on CockroachDB or YugabyteDB, where
//! contention always ends this way) a transaction may be rolled back with
//! SQLSTATE 40001 (serialization failure) or 40P01 (deadlock). Re-sending
//! COMMIT would not help: what the transaction read may have changed, so
//! its decision may be different. The unit that runs again is therefore the
//! whole use case from its first read in the transaction: a fresh `Tx`, the
//! card read and locked again, the domain asked again, the writes made
//! again. Nothing is answered before a commit succeeded: an attempt that
//! failed has written nothing and returned nothing to the caller. Each
//! attempt is a new transaction, so a card's events still follow the order
//! of the commits that made them (see the store's ordering promise).
//!
//! Checks that count in memory (the per-card rate limit) and the card's turn
//! in this process stay outside the unit, so a retry neither counts twice
//! nor lets another decision on the card in between. Every card write takes
//! the card's turn: in one process, writers of a card queue in memory
//! instead of aborting each other in the database, so at SERIALIZABLE the
//! only writers that can collide are one per node, and retries converge.

use std::future::Future;
use std::time::Instant;

use crate::{Service, ServiceError, ServiceResult};

impl Service {
    /// Runs `unit` (one use case's transaction, from `begin` to `commit`)
    /// and, while it fails with [`ServiceError::Retryable`], again after a
    /// jittered wait, within the configured bounds; when they run out the
    /// answer is `Unavailable` (503: nothing was written).
    pub(crate) async fn unit_of_work<T, F, Fut>(&self, mut unit: F) -> ServiceResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ServiceResult<T>>,
    {
        let policy = self.config.retry;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match unit().await {
                Err(ServiceError::Retryable(cause)) => {
                    match policy.next_wait(attempt, started.elapsed(), cardcore_store::retry::jitter()) {
                        Some(wait) => {
                            metrics::counter!("cardcore_db_retries_total").increment(1);
                            tracing::debug!(%cause, attempt, "the database aborted the transaction; running it again");
                            tokio::time::sleep(wait).await;
                        }
                        None => {
                            metrics::counter!("cardcore_db_retries_exhausted_total").increment(1);
                            return Err(ServiceError::Unavailable(format!(
                                "the database aborted the transaction {attempt} times in {:?}: {cause}",
                                started.elapsed()
                            )));
                        }
                    }
                }
                other => return other,
            }
        }
    }
}
