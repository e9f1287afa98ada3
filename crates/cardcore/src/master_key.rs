//! Where the master key comes from. In order: `CARDCORE_MASTER_KEY`, the
//! `--master-key-file`, and, on SQLite only, `master.key` beside the
//! database, made on first start with mode 0600. A database that already
//! holds keys never gets a new master key: without the old one the server
//! refuses to start and says why.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context as _};
use cardcore_crypto::keys::MasterKey;
use cardcore_store::Store;

use crate::cli::DbArgs;
use crate::sqlite_path;

/// Name of the key file on the SQLite default.
pub const KEY_FILE: &str = "master.key";

pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read the master key file {}", path.display()))?,
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the master key file is readable by other users; chmod 600 it");
            }
        }
    }
    MasterKey::parse(&text).with_context(|| format!("the master key file {} does not hold a valid key", path.display()))
}

/// Finds (or, on a new SQLite database, creates) the master key.
pub async fn resolve_master_key(db: &DbArgs, url: &str, store: &dyn Store) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("CARDCORE_MASTER_KEY") {
        let text = zeroize::Zeroizing::new(text);
        return MasterKey::parse(&text).context("CARDCORE_MASTER_KEY is not a valid master key");
    }
    if let Some(path) = &db.master_key_file {
        return read_key_file(path);
    }
    let Some(db_path) = sqlite_path(url) else {
        bail!(
            "no master key: set CARDCORE_MASTER_KEY or --master-key-file (make one with `cardcore master-key generate`; \
             every node on this database needs the same one)"
        );
    };
    let path = db_path.parent().unwrap_or(Path::new(".")).join(KEY_FILE);
    if path.exists() {
        return read_key_file(&path);
    }
    let has_keys = cardcore_service::keyring::database_has_keys(store)
        .await
        .map_err(anyhow::Error::msg)?;
    if has_keys {
        bail!(
            "the database {} holds keys but its master key file {} is missing: restore the file or set \
             CARDCORE_MASTER_KEY; a new key would make every stored PAN, CVV and PIN unreadable",
            db_path.display(),
            path.display()
        );
    }
    let key = MasterKey::generate_hex(&mut rand::rngs::OsRng);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create the master key file {}", path.display()))?;
    file.write_all(key.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "created a new master key file (back it up: without it the data is unreadable)");
    MasterKey::parse(&key).context("generated master key")
}

/// Where the master key came from: the SQLite default's `master.key`, or
/// somewhere the operator manages (the environment, a file they named).
pub(crate) fn default_key_file(db: &DbArgs, url: &str) -> Option<std::path::PathBuf> {
    if std::env::var_os("CARDCORE_MASTER_KEY").is_some() || db.master_key_file.is_some() {
        return None;
    }
    let db_path = sqlite_path(url)?;
    Some(db_path.parent().unwrap_or(Path::new(".")).join(KEY_FILE))
}

/// Replaces a key file with `key` (hex): a 0600 temporary beside it, synced, renamed.
pub(crate) fn replace_key_file(path: &Path, key_hex: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(key_hex.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
