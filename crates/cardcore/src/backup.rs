//! `cardcore backup`, `cardcore backup verify` and `cardcore restore`.
//!
//! SQLite: `backup` copies the database while the server keeps serving,
//! with `VACUUM INTO` on a connection of its own: the copy is one read
//! transaction's snapshot, so it holds every transaction committed (every
//! change acknowledged) before the copy began and nothing of any
//! transaction that had not committed by then; writers go on meanwhile (WAL).
//! It is written to a hidden temporary name beside the target with mode
//! 0600, synced, and renamed only once complete, so a file at the target
//! name is always a whole backup. `restore` refuses any existing database
//! file and links the copy in place (a link never replaces a file).
//! `verify` checks a backup file (read-only, never modifying it) or a live
//! database (a restored PostgreSQL one): integrity, migrations, counts,
//! and that the master key opens its keys and one card's sealed PAN.
//!
//! The master key is never in a backup: keep it apart, and give it to
//! `verify` and to the restored server.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use cardcore_crypto::keys::MasterKey;
use cardcore_store::{PanRow, RowCounts, StoredKey};

use crate::cli::DbArgs;
use crate::{database_url, display_url, sqlite_path};

/// A sibling of `path` for the copy in progress: hidden, and named by the
/// process so that two runs never share one.
fn temporary_beside(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    Ok(path.with_file_name(format!(".{name}.partial-{}", std::process::id())))
}

/// Creates an empty file only its owner may read (fails if it exists).
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Flushes a directory's entries (a rename is durable once its directory is).
fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn database_files_exist(path: &Path) -> Option<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        })
        .find(|p| p.exists())
}

/// `cardcore backup --to FILE`: an online, consistent copy of the SQLite database.
pub async fn backup(to: &Path, db: &DbArgs) -> anyhow::Result<()> {
    let url = database_url(db);
    let Some(source) = sqlite_path(&url) else {
        bail!(
            "`cardcore backup` copies a SQLite database; {} is PostgreSQL: use pg_basebackup or pgBackRest \
             (docs/DEPLOYMENT.md, Backups) and check the restored database with `cardcore backup verify --database URL`",
            display_url(&url)
        );
    };
    if !source.exists() {
        bail!("there is no SQLite database at {}", source.display());
    }
    if to.exists() {
        bail!(
            "{} exists: choose a new file name (a backup never replaces a file)",
            to.display()
        );
    }
    let to = to.to_owned();
    let started = std::time::Instant::now();
    let counts = tokio::task::spawn_blocking(move || copy_online(&source, &to).map(|c| (c, to)))
        .await
        .context("the backup task stopped")??;
    let (counts, to) = counts;
    let size = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written to {} ({size} bytes, {} ms): {} tenant(s), {} card(s), {} event(s)",
        to.display(),
        started.elapsed().as_millis(),
        counts.tenants,
        counts.cards,
        counts.events
    );
    println!(
        "the master key is not in it: keep the key apart, and check the pair with `cardcore backup verify {} --master-key-file KEY`",
        to.display()
    );
    Ok(())
}

fn copy_online(source: &Path, to: &Path) -> anyhow::Result<RowCounts> {
    use rusqlite::OpenFlags;
    let partial = temporary_beside(to)?;
    drop(create_private(&partial)?);
    let copied = (|| -> anyhow::Result<RowCounts> {
        // Read-write (the WAL index may need it) but never created: a
        // missing file is an error, not a new database.
        let conn = rusqlite::Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {}", source.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let target = partial.to_str().context("the backup path is not UTF-8")?;
        conn.execute("VACUUM INTO ?1", [target]).context("VACUUM INTO failed")?;
        drop(conn);
        let file = std::fs::File::open(&partial)?;
        file.sync_all()?;
        let check = open_read_only(&partial)?;
        counts(&check)
    })();
    match copied {
        Ok(counts) => {
            // A hard link never replaces an existing file: two backups racing
            // for one name cannot overwrite each other.
            std::fs::hard_link(&partial, to)
                .with_context(|| format!("cannot move the backup into place at {}", to.display()))?;
            let _ = std::fs::remove_file(&partial);
            sync_dir(to);
            Ok(counts)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// A backup file opened so that nothing can change it (no WAL, no journal).
fn open_read_only(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let uri = format!("file:{}?immutable=1", path.display());
    rusqlite::Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn counts(conn: &rusqlite::Connection) -> anyhow::Result<RowCounts> {
    let (tenants, cards, events): (i64, i64, i64) = conn.query_row(
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM cards), (SELECT count(*) FROM events)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(RowCounts {
        tenants: tenants.max(0) as u64,
        cards: cards.max(0) as u64,
        events: events.max(0) as u64,
    })
}

fn integrity(conn: &rusqlite::Connection) -> anyhow::Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if problems != ["ok"] {
        bail!(
            "PRAGMA integrity_check found problems: {}",
            problems.into_iter().take(10).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

/// The master key a command line names: CARDCORE_MASTER_KEY or --master-key-file.
fn given_master_key(db: &DbArgs) -> anyhow::Result<Option<MasterKey>> {
    if let Ok(text) = std::env::var("CARDCORE_MASTER_KEY") {
        let text = zeroize::Zeroizing::new(text);
        return MasterKey::parse(&text)
            .map(Some)
            .context("CARDCORE_MASTER_KEY is not a valid master key");
    }
    match &db.master_key_file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
            );
            MasterKey::parse(&text)
                .map(Some)
                .with_context(|| format!("{} does not hold a valid master key", path.display()))
        }
        None => Ok(None),
    }
}

/// What a verification found.
struct Verified {
    integrity: String,
    counts: RowCounts,
    migrations: String,
    keys: cardcore_service::keyring::KeyCheck,
}

/// `cardcore backup verify FILE` or `cardcore backup verify --database URL`.
pub async fn verify(file: Option<&Path>, db: &DbArgs) -> anyhow::Result<()> {
    let master = given_master_key(db)?.context(
        "verify needs the master key (CARDCORE_MASTER_KEY or --master-key-file): it checks that the backup \
         and the key belong together",
    )?;
    let (what, found) = match file {
        Some(path) => {
            let path = path.to_owned();
            let shown = path.display().to_string();
            let found = tokio::task::spawn_blocking(move || verify_file(&path, &master))
                .await
                .context("the verification task stopped")??;
            (shown, found)
        }
        None => {
            let url = database_url(db);
            let integrity_line = match sqlite_path(&url) {
                Some(path) => {
                    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                        let conn = rusqlite::Connection::open_with_flags(
                            &path,
                            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )?;
                        integrity(&conn)
                    })
                    .await
                    .context("the integrity check stopped")??;
                    "ok (PRAGMA integrity_check)".to_owned()
                }
                None => "not checked here: PostgreSQL checks its pages itself; run pg_amcheck for more".to_owned(),
            };
            let store = crate::open_store(db).await?;
            let status = store.migration_status().await?;
            let counts = store.row_counts().await?;
            let check = store.meta("master_key_check").await?;
            let keys = store.service_keys().await?;
            let pan = store.pan_rows(None, 1).await?;
            let keys = cardcore_service::keyring::verify_master_key(&master, check.as_deref(), &keys, pan.first())
                .map_err(anyhow::Error::msg)?;
            (
                display_url(&url),
                Verified {
                    integrity: integrity_line,
                    counts,
                    migrations: describe_migrations(&status)?,
                    keys,
                },
            )
        }
    };
    println!("{what}: OK");
    println!("  integrity: {}", found.integrity);
    println!("  migrations: {}", found.migrations);
    println!(
        "  rows: {} tenant(s), {} card(s), {} event(s)",
        found.counts.tenants, found.counts.cards, found.counts.events
    );
    println!(
        "  master key: opens the check value, {} service key(s){}",
        found.keys.service_keys,
        if found.keys.pan_opened {
            " and a card's sealed PAN"
        } else {
            " (no card to open)"
        }
    );
    Ok(())
}

/// A one-line account of the migrations; an error when this binary cannot run on them.
fn describe_migrations(status: &cardcore_store::MigrationStatus) -> anyhow::Result<String> {
    if !status.failed.is_empty() {
        bail!("migrations {:?} started and did not finish", status.failed);
    }
    if !status.changed.is_empty() {
        bail!(
            "migrations {:?} differ from this binary's (a different build applied them)",
            status.changed
        );
    }
    let last = status.applied.last().copied().unwrap_or(0);
    let pending = status.pending();
    let unknown = status.unknown();
    Ok(match (pending.is_empty(), unknown.is_empty()) {
        (true, true) => format!(
            "{} applied, up to {last:04}, as this binary expects",
            status.applied.len()
        ),
        (false, _) => format!("up to {last:04}; this binary would apply {pending:?} at start"),
        (true, false) => format!("up to {last:04}, newer than this binary (it does not know {unknown:?})"),
    })
}

fn verify_file(path: &Path, master: &MasterKey) -> anyhow::Result<Verified> {
    if !path.is_file() {
        bail!("{} is not a file", path.display());
    }
    let conn = open_read_only(path)?;
    integrity(&conn)?;
    let applied: Vec<(i64, bool, Vec<u8>)> = conn
        .prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
        .context("no migration table: this is not a cardcore database")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let status = cardcore_store_sqlite::migration_status(&applied);
    let counts = counts(&conn)?;
    let check: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'master_key_check'", [], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let keys: Vec<StoredKey> = conn
        .prepare("SELECT purpose, version, wrapped, created_at FROM service_keys ORDER BY purpose, version")?
        .query_map([], |r| {
            Ok(StoredKey {
                purpose: r.get(0)?,
                version: r.get(1)?,
                wrapped: r.get(2)?,
                created_at: chrono::Utc::now(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let pan: Option<(String, String, Vec<u8>, i32)> = conn
        .query_row(
            "SELECT id, tenant_id, pan_sealed, data_key_version FROM cards ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let pan = pan
        .map(|(id, tenant, sealed, version)| -> anyhow::Result<PanRow> {
            Ok(PanRow {
                id: id.parse().context("a card id is not a UUID")?,
                tenant_id: tenant.parse().context("a tenant id is not a UUID")?,
                pan_sealed: sealed,
                data_key_version: version,
            })
        })
        .transpose()?;
    let keys = cardcore_service::keyring::verify_master_key(master, check.as_deref(), &keys, pan.as_ref())
        .map_err(anyhow::Error::msg)?;
    Ok(Verified {
        integrity: "ok (PRAGMA integrity_check)".to_owned(),
        counts,
        migrations: describe_migrations(&status)?,
        keys,
    })
}

/// `cardcore restore --from FILE --database sqlite://NEW_PATH`.
pub async fn restore(from: &Path, db: &DbArgs) -> anyhow::Result<()> {
    let url = database_url(db);
    let Some(target) = sqlite_path(&url) else {
        bail!(
            "`cardcore restore` restores a SQLite backup into a new SQLite file (--database sqlite://NEW_PATH); \
             PostgreSQL is restored with its own tools (docs/DEPLOYMENT.md, Backups)"
        );
    };
    if db.database.is_none() {
        bail!("restore needs --database sqlite://NEW_PATH (it never restores over the default database)");
    }
    if let Some(existing) = database_files_exist(&target) {
        bail!(
            "{} exists: restore never overwrites a database; choose a new path (and point the server at it)",
            existing.display()
        );
    }
    let master = given_master_key(db)?;
    let (from_owned, target_owned) = (from.to_owned(), target.clone());
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Verified>> {
        let conn = open_read_only(&from_owned)?;
        integrity(&conn)?;
        drop(conn);
        let verified = match &master {
            Some(key) => Some(verify_file(&from_owned, key)?),
            None => None,
        };
        if let Some(dir) = target_owned.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::create_private_dir(dir)?;
        }
        let partial = temporary_beside(&target_owned)?;
        let copied = (|| -> anyhow::Result<()> {
            let mut out = create_private(&partial)?;
            let mut input =
                std::fs::File::open(&from_owned).with_context(|| format!("cannot open {}", from_owned.display()))?;
            std::io::copy(&mut input, &mut out)?;
            out.flush()?;
            out.sync_all()?;
            std::fs::hard_link(&partial, &target_owned)
                .with_context(|| format!("cannot put the database in place at {}", target_owned.display()))?;
            Ok(())
        })();
        let _ = std::fs::remove_file(&partial);
        copied?;
        sync_dir(&target_owned);
        Ok(verified)
    })
    .await
    .context("the restore task stopped")??;
    println!("restored {} into {}", from.display(), target.display());
    match found {
        Some(v) => println!(
            "  {} tenant(s), {} card(s), {} event(s); migrations {}; the master key opens it",
            v.counts.tenants, v.counts.cards, v.counts.events, v.migrations
        ),
        None => {
            println!("  integrity: ok; the master key was not checked (give --master-key-file or CARDCORE_MASTER_KEY)")
        }
    }
    println!(
        "  start the server with the same master key (CARDCORE_MASTER_KEY, --master-key-file, or {} beside the database)",
        crate::master_key::KEY_FILE
    );
    Ok(())
}
