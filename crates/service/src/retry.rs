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
//!
//! What a unit counts (a wrong PIN, an OTP or activation lock) goes through
//! [`count`], which holds it until the attempt is known not to run again:
//! an aborted attempt wrote nothing, so it counts nothing, and `/metrics`
//! agrees with the audit trail.

use std::cell::RefCell;
use std::future::Future;
use std::time::Instant;

use crate::{Service, ServiceError, ServiceResult};

/// What an attempt counts once it is known not to run again.
type Counts = RefCell<Vec<Box<dyn FnOnce() + Send>>>;

tokio::task_local! {
    /// The counts of the attempt running in this task, if any.
    static PENDING: Counts;
}

/// Counts `count` (a metrics increment) for what the current unit of work
/// did, once: an attempt the database aborts counted nothing, because it
/// wrote nothing. Outside a unit it counts at once.
pub(crate) fn count(count: impl FnOnce() + Send + 'static) {
    let mut count: Option<Box<dyn FnOnce() + Send>> = Some(Box::new(count));
    let _ = PENDING.try_with(|pending| {
        if let Some(c) = count.take() {
            pending.borrow_mut().push(c);
        }
    });
    if let Some(c) = count {
        c();
    }
}

impl Service {
    /// Runs `unit` (one use case's transaction, from `begin` to `commit`)
    /// and, while it fails with [`ServiceError::Retryable`], again after a
    /// jittered wait, within the configured bounds; when they run out the
    /// answer is `Unavailable` (503: nothing was written).
    pub(crate) async fn unit_of_work<T, F, Fut>(&self, unit: F) -> ServiceResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ServiceResult<T>>,
    {
        retrying(self.config.retry, unit).await
    }
}

/// [`Service::unit_of_work`] under `policy`.
async fn retrying<T, F, Fut>(policy: cardcore_store::retry::RetryPolicy, mut unit: F) -> ServiceResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ServiceResult<T>>,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let counts = Counts::default();
        let (outcome, counts) = PENDING
            .scope(counts, async {
                let outcome = unit().await;
                (outcome, PENDING.with(|c| c.take()))
            })
            .await;
        // An aborted attempt wrote nothing: what it counted did not happen.
        if !matches!(outcome, Err(ServiceError::Retryable(_))) {
            for count in counts {
                count();
            }
        }
        match outcome {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// An attempt the database aborted counts nothing; the one that
    /// finished counts once; outside a unit a count is at once.
    #[tokio::test]
    async fn only_the_attempt_that_finished_is_counted() {
        let counted = Arc::new(AtomicUsize::new(0));
        let mut attempts = 0;
        let out = retrying(cardcore_store::retry::RetryPolicy::default(), || {
            attempts += 1;
            let (counted, aborted) = (counted.clone(), attempts < 3);
            async move {
                count(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                });
                if aborted {
                    Err(ServiceError::Retryable("40001".into()))
                } else {
                    Ok(attempts)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 3);
        assert_eq!(counted.load(Ordering::SeqCst), 1);

        // A refusal after a commit (not an abort) is counted too.
        let refused: ServiceResult<()> = retrying(cardcore_store::retry::RetryPolicy::default(), || {
            let counted = counted.clone();
            async move {
                count(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                });
                Err(ServiceError::invalid("pin", "wrong"))
            }
        })
        .await;
        assert!(refused.is_err());
        assert_eq!(counted.load(Ordering::SeqCst), 2);

        let outside = counted.clone();
        count(move || {
            outside.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(counted.load(Ordering::SeqCst), 3);
    }
}
