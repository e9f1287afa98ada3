//! Group commit on the single SQLite writer.
//!
//! With `synchronous=FULL` every COMMIT waits for an fsync of the WAL, and
//! SQLite has one writer, so under concurrent writes the fsync, not the SQL,
//! is the limit. Write transactions therefore share commits: each
//! [`Store::begin`](cardcore_store::Store::begin) runs as a `SAVEPOINT` inside
//! one outer `BEGIN IMMEDIATE` transaction on the writer connection. When a
//! transaction commits, its savepoint is released; if other transactions are
//! queued for the writer, it leaves the outer transaction open for them and
//! waits; the last of the queue (or the [`MAX_GROUP`]th) commits once for the
//! whole group and tells every member the outcome. With no queue this is one
//! commit per transaction, as before.
//!
//! Every statement is a round trip to the connection's worker thread, and
//! the writer is held for all of them, so a member sends as few as it can:
//! its `SAVEPOINT` and its writes wait in a [`Batch`] and go with its next
//! read (one round trip: the queued writes, then the read) or with its
//! `RELEASE`. A write whose outcome the caller needs (an insert that may
//! conflict) is a read too: it ends with `RETURNING`. A queued write that
//! fails surfaces at the next round trip, and fails the transaction like any
//! other error there.
//!
//! **Invariant:** a member learns that its transaction committed only after
//! the COMMIT that contains it returned, so a 2xx still means the write is on
//! disk.
//!
//! Failure is all or nothing per group. A member that gives up (the service
//! returned an error, or its request was cancelled) rolls back to its own
//! savepoint and the others go on. But if the outer transaction is damaged
//! (SQLite rolls a whole transaction back on some I/O, full-disk and busy
//! errors, which shows as a failed `RELEASE` or `ROLLBACK TO`) or the COMMIT
//! fails, the outer transaction is rolled back and every member still waiting
//! gets [`StoreError::Unavailable`]. None of them had been answered, so
//! nothing acknowledged is lost; a member that read another's uncommitted
//! change fails with it. Waits are bounded by the pool's acquire timeout
//! (`--db-timeout-seconds`): a transaction that cannot get the writer, or
//! whose group is held open past it by a stuck member, is answered
//! `Unavailable` like any stuck database (for the second, the outcome is
//! unknown: the group may still commit it).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cardcore_store::{StoreError, StoreResult};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Executor, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use crate::map_err;

/// Most transactions in one commit; bounds the wait of the first member.
pub(crate) const MAX_GROUP: usize = 64;

/// How long a member that left its commit to a queued transaction waits
/// before committing the group itself (the queued one may have been
/// cancelled before it got the writer).
const SETTLE_AFTER: Duration = Duration::from_millis(20);

/// The writer's group-commit state, shared by clones of the store.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    pool: SqlitePool,
    /// How long `begin` waits for the writer before the database counts as
    /// unavailable (the pool's acquire timeout).
    acquire_timeout: Duration,
    group: Arc<Mutex<Group>>,
    /// Tasks waiting for `group`: a releasing member leaves the commit to them.
    queued: Arc<AtomicUsize>,
    commits: Arc<AtomicU64>,
}

/// The open outer transaction, if any, and who waits for its commit.
#[derive(Default)]
struct Group {
    /// The writer connection while an outer transaction is open.
    conn: Option<PoolConnection<Sqlite>>,
    /// Counts outer transactions, so a waiting member knows whether its
    /// group is still open.
    generation: u64,
    /// A member's savepoint is open without a member running: it was dropped
    /// where no task could be spawned to roll it back.
    savepoint_open: bool,
    /// Members whose savepoint is released, waiting for the commit.
    waiting: Vec<oneshot::Sender<StoreResult<()>>>,
    commits: Option<Arc<AtomicU64>>,
}

/// One write transaction: holds the writer until it commits or is dropped.
pub(crate) struct Member {
    guard: Option<OwnedMutexGuard<Group>>,
    queued: Arc<AtomicUsize>,
    acquire_timeout: Duration,
    /// Statements not sent yet; starts with the member's `SAVEPOINT`.
    batch: Batch,
    /// The `SAVEPOINT` has been sent (so giving up must roll back to it).
    savepoint_sent: bool,
}

/// Statements to send in one round trip, and their arguments (`?`
/// placeholders, numbered through the whole batch in order).
pub(crate) struct Batch {
    sql: String,
    args: SqliteArguments<'static>,
    /// The first argument that could not be encoded.
    error: Option<String>,
}

impl Batch {
    fn empty() -> Self {
        Self {
            sql: String::new(),
            args: SqliteArguments::default(),
            error: None,
        }
    }

    /// Appends one statement.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self
    }

    /// Appends the next argument.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Send + sqlx::Encode<'static, Sqlite> + sqlx::Type<Sqlite>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert_with(|| e.to_string());
        }
        self
    }

    fn take(&mut self) -> Self {
        std::mem::replace(self, Batch::empty())
    }
}

/// Decrements the queue count even if the waiting future is cancelled.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GroupCommit {
    pub(crate) fn new(pool: SqlitePool, acquire_timeout: Duration) -> Self {
        let commits = Arc::new(AtomicU64::new(0));
        let group = Group {
            commits: Some(commits.clone()),
            ..Group::default()
        };
        Self {
            pool,
            acquire_timeout,
            group: Arc::new(Mutex::new(group)),
            queued: Arc::new(AtomicUsize::new(0)),
            commits,
        }
    }

    /// Outer transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Starts a write transaction: joins the open group or opens one.
    pub(crate) async fn begin(&self) -> StoreResult<Member> {
        let mut guard = {
            self.queued.fetch_add(1, Ordering::SeqCst);
            let _queued = Queued(&self.queued);
            tokio::time::timeout(self.acquire_timeout, self.group.clone().lock_owned())
                .await
                .map_err(|_| StoreError::Unavailable("timed out waiting for the SQLite writer".into()))?
        };
        guard.roll_back_abandoned().await;
        if guard.conn.is_none() {
            let mut conn = self.pool.acquire().await.map_err(map_err)?;
            conn.execute("BEGIN IMMEDIATE").await.map_err(map_err)?;
            guard.conn = Some(conn);
            guard.generation += 1;
        }
        Ok(Member {
            guard: Some(guard),
            queued: self.queued.clone(),
            acquire_timeout: self.acquire_timeout,
            batch: {
                let mut batch = Batch::empty();
                batch.push("SAVEPOINT member");
                batch
            },
            savepoint_sent: false,
        })
    }
}

impl Group {
    fn conn(&mut self) -> StoreResult<&mut SqliteConnection> {
        self.conn
            .as_deref_mut()
            .ok_or_else(|| StoreError::internal("no open write transaction"))
    }

    /// Rolls back a savepoint left by a member dropped without a runtime.
    async fn roll_back_abandoned(&mut self) {
        if self.savepoint_open {
            self.savepoint_open = false;
            let _ = self.roll_back_savepoint().await;
        }
    }

    /// Undoes one member's work; if that fails, the outer transaction is
    /// damaged and the whole group fails (the error says so).
    async fn roll_back_savepoint(&mut self) -> StoreResult<()> {
        let Ok(conn) = self.conn() else { return Ok(()) };
        if let Err(e) = conn.execute("ROLLBACK TO member; RELEASE member").await {
            let e = map_err(e);
            tracing::warn!(error = %e, "SQLite write group aborted: rollback to savepoint failed");
            return self.finish(Err(e), false).await;
        }
        Ok(())
    }

    /// Ends the outer transaction: commits it if `outcome` is `Ok` (and the
    /// COMMIT succeeds), rolls it back otherwise, and tells every waiting
    /// member. Returns the outcome.
    async fn finish(&mut self, outcome: StoreResult<()>, committer: bool) -> StoreResult<()> {
        let Some(mut conn) = self.conn.take() else {
            return outcome;
        };
        self.savepoint_open = false;
        let waiting = std::mem::take(&mut self.waiting);
        let outcome = match outcome {
            Ok(()) => match conn.execute("COMMIT").await {
                Ok(_) => {
                    if let Some(c) = &self.commits {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    metrics::counter!("cardcore_sqlite_commits_total").increment(1);
                    // The waiting members plus the committing one, if any.
                    metrics::counter!("cardcore_sqlite_committed_transactions_total")
                        .increment(waiting.len() as u64 + u64::from(committer));
                    Ok(())
                }
                Err(e) => Err(map_err(e)),
            },
            Err(e) => Err(e),
        };
        if outcome.is_err() && conn.execute("ROLLBACK").await.is_err() {
            // Closing the connection rolls back whatever is left of the
            // transaction; the pool opens a new one.
            conn.close_on_drop();
        }
        drop(conn);
        let outcome = outcome.map_err(|e| match e {
            StoreError::Unavailable(_) => e,
            other => StoreError::Unavailable(format!("the write group failed: {other}")),
        });
        for member in waiting {
            let _ = member.send(outcome.clone());
        }
        outcome
    }

    /// After a member gave up: commits the group for the members waiting on
    /// it (or closes it if none) unless a queued transaction will.
    async fn settle(&mut self, queued: usize) {
        if self.conn.is_none() || (queued > 0 && self.waiting.len() < MAX_GROUP) {
            return;
        }
        let outcome = if self.waiting.is_empty() {
            Err(StoreError::internal("nothing to commit"))
        } else {
            Ok(())
        };
        let _ = self.finish(outcome, false).await;
    }
}

impl Member {
    /// Queues statements; they are sent with the next [`Member::fetch`] or
    /// the commit.
    pub(crate) fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// Sends the queued statements in one round trip; returns the rows they
    /// produced (in practice, those of the last one).
    pub(crate) async fn fetch(&mut self) -> StoreResult<Vec<SqliteRow>> {
        let batch = self.batch.take();
        if let Some(e) = batch.error {
            return Err(StoreError::caused("cannot encode an argument", e));
        }
        let conn = match self.guard.as_mut() {
            Some(g) => g.conn()?,
            None => return Err(StoreError::internal("write transaction already finished")),
        };
        self.savepoint_sent = true;
        sqlx::query_with(&batch.sql, batch.args)
            .fetch_all(conn)
            .await
            .map_err(map_err)
    }

    /// The writer connection, inside this member's savepoint, with every
    /// queued statement sent.
    pub(crate) async fn conn(&mut self) -> StoreResult<&mut SqliteConnection> {
        if !self.batch.sql.is_empty() {
            self.fetch().await?;
        }
        match self.guard.as_mut() {
            Some(g) => g.conn(),
            None => Err(StoreError::internal("write transaction already finished")),
        }
    }

    /// Commits this member's work, alone or with the group; returns once the
    /// COMMIT that contains it returned.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        self.batch.push("RELEASE member");
        if let Err(e) = self.fetch().await {
            // The member's own statements failed (its savepoint rolls back
            // and the group goes on), or the release did (the rollback
            // fails too, and so does the group).
            let sent = std::mem::replace(&mut self.savepoint_sent, false);
            let Some(mut guard) = self.guard.take() else {
                return Err(e);
            };
            if sent {
                guard.roll_back_savepoint().await?;
            }
            guard.settle(self.queued.load(Ordering::SeqCst)).await;
            return Err(e);
        }
        let Some(mut guard) = self.guard.take() else {
            return Err(StoreError::internal("write transaction already finished"));
        };
        let queued = self.queued.load(Ordering::SeqCst);
        if queued == 0 || guard.waiting.len() + 1 >= MAX_GROUP {
            return guard.finish(Ok(()), true).await;
        }
        // A queued transaction joins the group and commits it (or a later one
        // does); wait for the outcome.
        let (tx, mut rx) = oneshot::channel();
        guard.waiting.push(tx);
        let generation = guard.generation;
        let group = OwnedMutexGuard::mutex(&guard).clone();
        drop(guard);
        loop {
            match tokio::time::timeout(SETTLE_AFTER, &mut rx).await {
                Ok(Ok(outcome)) => return outcome,
                Ok(Err(_)) => return Err(StoreError::Unavailable("the write group was dropped".into())),
                Err(_) => {
                    // The queued transaction may have been cancelled before
                    // it got the writer: commit the group here. If another
                    // member holds the writer past the timeout, answer like
                    // any stuck database: unavailable, outcome unknown (the
                    // group may still commit this write).
                    let Ok(mut g) = tokio::time::timeout(self.acquire_timeout, group.lock()).await else {
                        return Err(StoreError::Unavailable(
                            "the write group did not commit in time; the outcome is unknown".into(),
                        ));
                    };
                    if g.generation == generation && g.conn.is_some() {
                        g.roll_back_abandoned().await;
                        let _ = g.finish(Ok(()), false).await;
                    }
                }
            }
        }
    }
}

impl Drop for Member {
    /// A member dropped without committing: roll back to its savepoint, then
    /// commit the group if no queued transaction will. Spawned, because
    /// that takes statements; the task keeps the writer until it is done.
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else { return };
        // Nothing to undo if the savepoint never reached the database.
        guard.savepoint_open = self.savepoint_sent;
        let queued = self.queued.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                guard.roll_back_abandoned().await;
                guard.settle(queued.load(Ordering::SeqCst)).await;
            });
        }
        // Without a runtime the guard is released with the savepoint marked
        // open, and the next holder rolls it back.
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{SqliteOptions, SqliteStore};
    use sqlx::Row;

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("g.db"), &SqliteOptions::default())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&store.writer)
            .await
            .unwrap();
        (store, dir)
    }

    /// Queues an insert (sent with the commit, like the store's writes).
    fn insert(m: &mut Member, id: i64) {
        m.batch().push("INSERT INTO t (id, v) VALUES (?, 'x')").bind(id);
    }

    /// One transaction on its own: begin, insert, commit.
    async fn commit_one(g: &GroupCommit, id: i64) {
        let mut m = g.begin().await.unwrap();
        insert(&mut m, id);
        m.commit().await.unwrap();
    }

    /// Waits until a transaction is queued for the writer.
    async fn until_queued(g: &GroupCommit) {
        while g.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }

    /// A first transaction inserts 1; `second` runs as a transaction
    /// queued behind it, so the first leaves the commit to the group.
    /// Returns both outcomes (first, second).
    async fn behind_a_first<F, Fut>(g: &GroupCommit, second: F) -> (StoreResult<()>, StoreResult<()>)
    where
        F: FnOnce(Member) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = StoreResult<()>> + Send,
    {
        let mut first = g.begin().await.unwrap();
        insert(&mut first, 1);
        let g2 = g.clone();
        let second = tokio::spawn(async move { second(g2.begin().await?).await });
        until_queued(g).await;
        let first = tokio::spawn(first.commit());
        let second = second.await.unwrap();
        (first.await.unwrap(), second)
    }

    async fn ids(store: &SqliteStore) -> Vec<i64> {
        sqlx::query("SELECT id FROM t ORDER BY id")
            .fetch_all(&store.reader)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_share_commits_and_all_land() {
        let (store, _dir) = store().await;
        let n = 40;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let g = store.group.clone();
                tokio::spawn(async move {
                    let mut m = g.begin().await?;
                    insert(&mut m, i);
                    // Hold the writer so the others queue behind it.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    m.commit().await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(ids(&store).await, (0..n).collect::<Vec<_>>());
        let commits = store.group.commits();
        assert!(
            commits >= 1 && commits < n as u64 / 2,
            "{commits} commits for {n} transactions"
        );
        // The writer is free again: a plain pool transaction gets it.
        let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t (id, v) VALUES (1000, 'y')")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_writer_makes_others_unavailable_after_the_timeout() {
        let (store, _dir) = store().await;
        let g = GroupCommit::new(store.writer.clone(), Duration::from_millis(200));
        let held = g.begin().await.unwrap();
        assert!(matches!(g.begin().await, Err(StoreError::Unavailable(_))));
        drop(held);
        commit_one(&g, 1).await;
        assert_eq!(ids(&store).await, vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_waiting_on_a_stuck_group_is_answered_unavailable() {
        let (store, _dir) = store().await;
        let g = GroupCommit::new(store.writer.clone(), Duration::from_millis(200));
        let mut first = g.begin().await.unwrap();
        insert(&mut first, 1);
        let g2 = g.clone();
        let stuck = tokio::spawn(async move {
            let mut m = g2.begin().await.unwrap();
            insert(&mut m, 2);
            tokio::time::sleep(Duration::from_secs(1)).await;
            m.commit().await
        });
        until_queued(&g).await;
        assert!(matches!(first.commit().await, Err(StoreError::Unavailable(_))));
        // The outcome was unknown, not a failure: the group committed both.
        stuck.await.unwrap().unwrap();
        assert_eq!(ids(&store).await, vec![1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_member_rolls_back_alone() {
        let (store, _dir) = store().await;
        let g = store.group.clone();
        let (first, second) = behind_a_first(&g, |mut m| async move {
            insert(&mut m, 2);
            m.fetch().await?; // the insert reached the database
            drop(m); // gives up: its row must not land
            Ok(())
        })
        .await;
        first.unwrap();
        second.unwrap();
        assert_eq!(ids(&store).await, vec![1]);
        // And the group is closed: a new transaction commits on its own.
        commit_one(&g, 3).await;
        assert_eq!(ids(&store).await, vec![1, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_group_fails_every_waiting_member() {
        let (store, _dir) = store().await;
        let g = store.group.clone();
        let (first, second) = behind_a_first(&g, |mut m| async move {
            // What SQLite does on some I/O errors: the whole transaction is
            // rolled back under the savepoints.
            m.conn().await?.execute("ROLLBACK").await.map_err(map_err)?;
            m.commit().await
        })
        .await;
        assert!(matches!(second, Err(StoreError::Unavailable(_))));
        assert!(matches!(first, Err(StoreError::Unavailable(_))));
        assert_eq!(ids(&store).await, Vec::<i64>::new());
        commit_one(&g, 2).await;
        assert_eq!(ids(&store).await, vec![2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_queued_transaction_does_not_strand_the_group() {
        let (store, _dir) = store().await;
        let g = store.group.clone();
        let mut first = g.begin().await.unwrap();
        insert(&mut first, 1);
        // Queue a begin, then cancel it before it gets the writer.
        let g2 = g.clone();
        let queued = tokio::spawn(async move { g2.begin().await.map(drop) });
        until_queued(&g).await;
        let committed = tokio::spawn(first.commit());
        // `first` has released and waits for the queued one; cancel it.
        // (If it already got the writer, it joined and left: same result.)
        queued.abort();
        committed.await.unwrap().unwrap();
        assert_eq!(ids(&store).await, vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_write_that_fails_fails_only_its_member() {
        let (store, _dir) = store().await;
        let (first, second) = behind_a_first(&store.group, |mut m| async move {
            insert(&mut m, 2);
            insert(&mut m, 1); // the group already holds 1: fails at commit
            m.commit().await
        })
        .await;
        assert!(matches!(second, Err(StoreError::Internal(_))));
        first.unwrap();
        assert_eq!(ids(&store).await, vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_dropped_before_sending_anything_leaves_no_trace() {
        let (store, _dir) = store().await;
        let g = store.group.clone();
        let mut m = g.begin().await.unwrap();
        insert(&mut m, 1);
        drop(m);
        commit_one(&g, 2).await;
        assert_eq!(ids(&store).await, vec![2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_go_before_the_read_that_sends_them() {
        let (store, _dir) = store().await;
        let g = store.group.clone();
        let mut m = g.begin().await.unwrap();
        insert(&mut m, 7);
        m.batch().push("SELECT count(*) FROM t WHERE id = ?").bind(7_i64);
        let rows = m.fetch().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<i64, _>(0), 1);
        m.commit().await.unwrap();
        assert_eq!(ids(&store).await, vec![7]);
    }
}
