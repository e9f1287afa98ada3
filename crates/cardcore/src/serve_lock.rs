//! One `cardcore serve` per SQLite database. A server orders one card's PIN
//! decisions in its own memory, which is only the card's order if no other
//! server decides on the same file; so `serve` holds an exclusive OS lock
//! (flock) on a file beside the database, `cardcore.db.lock`, holding its
//! pid, for as long as it runs. A second `serve` refuses to start and names
//! the first. Other commands (tenant, keys, migrate, ...) do not take it and
//! keep working beside a running server. The OS drops the lock when the
//! process ends, however it ends, so a stale file never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// The lock file of a SQLite database file.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl ServeLock {
    /// Takes the lock of the database at `db`, or says who holds it.
    pub fn acquire(db: &Path) -> anyhow::Result<Self> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let who = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "another process".to_owned(),
                };
                bail!(
                    "another cardcore server ({who}) is serving the SQLite database {} (lock file {}). \
                     A SQLite database has one server: stop that one first, or run several nodes \
                     on PostgreSQL (--database postgres://...)",
                    db.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cardcore.db");
        let first = ServeLock::acquire(&db).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock_path(&db)).unwrap().trim(),
            std::process::id().to_string()
        );
        let refused = ServeLock::acquire(&db).unwrap_err().to_string();
        assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
        assert!(refused.contains("PostgreSQL"), "{refused}");
        drop(first);
        drop(ServeLock::acquire(&db).unwrap());
    }
}
