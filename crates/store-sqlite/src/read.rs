//! Point reads on the calling thread.
//!
//! sqlx runs every SQLite connection on a worker thread of its own, so each
//! query is a round trip between threads: a channel send, a futex wake-up
//! and two context switches, which on the request path cost more CPU than
//! the read itself (the profiles in docs/BENCHMARKS.md). The reads every
//! card request starts with (a card, a cardholder, by primary key or kit
//! number) therefore run here instead: on read-only rusqlite connections to
//! the same file, on the calling thread, without an `.await`.
//!
//! A read by key from a WAL database takes microseconds of CPU when its
//! pages are cached; it blocks the runtime thread meanwhile, like any short
//! computation. A cold page is a read from the OS page cache or the disk,
//! the same wait sqlx's thread would have had. Readers never wait for the
//! writer (WAL); a checkpoint or recovery that does hold readers back is
//! bounded by the busy timeout (`--db-timeout-seconds`) and then answered
//! `Unavailable`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use cardcore_store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, Params, Row};

use crate::rows::Columns;

/// Idle read-only connections, opened on demand. As reads never await,
/// at most one per thread is in use at a time.
pub(crate) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Most idle connections kept.
    keep: usize,
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::caused("SQLite statement", e),
    }
}

impl Readers {
    pub(crate) fn new(path: &Path, busy_timeout: Duration, keep: usize) -> Self {
        Self {
            path: path.to_owned(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        Ok(conn)
    }

    /// The first row `sql` returns, mapped; `None` if it returns none.
    pub(crate) fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Named<'_, '_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(map_err)?,
        };
        let out = (|| {
            let mut stmt = conn.prepare_cached(sql)?;
            // Names once per query: rusqlite looks a name up by asking
            // SQLite for every column's name in turn.
            let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let mut rows = stmt.query(params)?;
            Ok(rows.next()?.map(|row| map(&Named { row, names: &names })))
        })()
        .map_err(map_err);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.keep {
            idle.push(conn);
        }
        out?.transpose()
    }
}

/// A row and its column names.
pub(crate) struct Named<'a, 'r> {
    row: &'a Row<'r>,
    names: &'a [String],
}

fn column<T: rusqlite::types::FromSql>(named: &Named<'_, '_>, col: &str) -> StoreResult<T> {
    let i = named
        .names
        .iter()
        .position(|n| n == col)
        .ok_or_else(|| StoreError::internal(format!("column {col}: not in the result")))?;
    named
        .row
        .get(i)
        .map_err(|e| StoreError::caused(format!("column {col}"), e))
}

impl Columns for Named<'_, '_> {
    fn text(&self, col: &str) -> StoreResult<String> {
        column(self, col)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        column(self, col)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        column(self, col)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        column(self, col)
    }
    fn blob(&self, col: &str) -> StoreResult<Vec<u8>> {
        column(self, col)
    }
    fn opt_blob(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        column(self, col)
    }
}
