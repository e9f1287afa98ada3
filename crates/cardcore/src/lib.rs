//! The cardcore binary as a library: configuration, startup, commands.
//! `main` only parses the command line and calls [`run`]; tests call
//! [`Server::start`] to run a real server on a free port.

pub mod backup;
pub mod cli;
pub mod import;
mod listener;
mod master_key;
pub mod retention;
pub mod seed;
pub mod serve_lock;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use cardcore_http::dialects::m2p::settings::M2pRequired;
use cardcore_service::{Keyring, Service, ServiceConfig};
use cardcore_store::Store;
use cardcore_store_sqlite::{SqliteOptions, SqliteStore};
use cli::{Cli, Command, DbArgs, KeysCommand, LogFormat, MasterKeyCommand, MigrateArgs, ServeArgs, TenantCommand};
use tokio::net::TcpListener;

pub use master_key::resolve_master_key;

/// Prints a line for the operator; a closed stdout must not stop a server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The database URL used when none is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./cardcore-data/cardcore.db";

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            // Handlers first: a SIGTERM that arrives while the server starts
            // must stop it gracefully, not kill it with the default action.
            let signal = ShutdownSignal::install()?;
            let server = Server::start(&args, None).await?;
            let mut fatal = server.fatal.clone();
            let stopped_for = tokio::select! {
                () = signal.wait() => None,
                why = fatal.wait_for(Option::is_some) => why.ok().and_then(|w| w.clone()),
            };
            server.service.start_draining();
            if args.drain_seconds > 0 {
                tracing::info!(
                    drain_seconds = args.drain_seconds,
                    "stopping: /readyz answers 503; serving on while the balancer takes the node out"
                );
                tokio::time::sleep(Duration::from_secs(args.drain_seconds)).await;
            }
            tracing::info!("shutting down: finishing requests in flight");
            server.stop().await?;
            match stopped_for {
                Some(why) => bail!(why),
                None => Ok(()),
            }
        }
        Command::Migrate(MigrateArgs { check: true, db }) => migrate_check(&db).await,
        Command::Migrate(MigrateArgs { check: false, db }) => {
            let store = open_store(&db).await?;
            store.migrate().await?;
            println!("migrations applied to {}", display_url(&database_url(&db)));
            Ok(())
        }
        Command::Tenant(TenantCommand::Create {
            name,
            json,
            pin_rules,
            db,
        }) => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let (tenant, key) = service.create_tenant(&name).await.map_err(anyhow::Error::msg)?;
            if let Some(rules) = pin_rules {
                service
                    .update_tenant_settings(tenant.id, |s| s.pin_rules = rules)
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "tenant_id": tenant.id, "name": tenant.name, "api_key": key.secret.as_str() })
                );
            } else {
                println!("tenant created: {} ({})", tenant.name, tenant.id);
                println!("API key (shown once, store it now): {}", key.secret.as_str());
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::Update {
            tenant,
            pin_rules,
            m2p_required,
            otp_in_events,
            time_zone,
            authorization_expiry_days,
            default_controls,
            program,
            cvv_rotation_interval_hours,
            json,
            db,
        }) => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let tenant = parse_tenant(&tenant)?;
            let default_controls = default_controls
                .map(|c| serde_json::from_str::<cardcore_domain::authorization::SpendingControls>(&c))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--default-controls: {e}"))?;
            // Checked before anything is written.
            let mut auth = service
                .tenant_settings(tenant)
                .await
                .map_err(anyhow::Error::msg)?
                .authorizations;
            if let Some(tz) = time_zone {
                auth.time_zone = tz;
            }
            if let Some(days) = authorization_expiry_days {
                auth.expiry_days = days;
            }
            if let Some(c) = default_controls {
                auth.default_controls = c;
            }
            auth.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            let program = match program {
                Some(p) => p
                    .parse::<cardcore_domain::ProgramId>()
                    .map_err(|_| anyhow::anyhow!("--program must be a program id (a UUID)"))?,
                None => {
                    service
                        .tenant(tenant)
                        .await
                        .map_err(anyhow::Error::msg)?
                        .default_program_id
                }
            };
            if otp_in_events.is_some() {
                let change = cardcore_service::sms::SmsSettingsChange {
                    otp_in_events,
                    ..Default::default()
                };
                service
                    .update_sms_settings(tenant, change)
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
            let settings = service
                .update_tenant_settings(tenant, |s| {
                    if let Some(rules) = pin_rules {
                        s.pin_rules = rules;
                    }
                    if let Some(required) = m2p_required {
                        required.store(s);
                    }
                    s.authorizations = auth;
                    if let Some(interval) = cvv_rotation_interval_hours {
                        let entry = s.programs.entry(program).or_default();
                        entry.cvv_rotation_interval_hours = match interval {
                            cli::CvvInterval::Default => None,
                            cli::CvvInterval::Hours(h) => Some(h),
                        };
                        if *entry == cardcore_domain::ProgramSettings::default() {
                            s.programs.remove(&program);
                        }
                    }
                })
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tenant_id": tenant,
                        "pin_rules": settings.pin_rules,
                        "m2p_required": M2pRequired::of(&settings),
                        "authorizations": settings.authorizations,
                        "programs": settings.programs,
                    })
                );
            } else {
                println!("tenant {tenant} updated (running servers apply it within 5 s)");
                println!("PIN rules: {}", settings.pin_rules);
                println!("M2P required fields: {}", M2pRequired::of(&settings));
                for (id, p) in &settings.programs {
                    if let Some(hours) = p.cvv_rotation_interval_hours {
                        println!("program {id}: CVV2 rotates every {hours} h (0: never)");
                    }
                }
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::ApiKey(args)) => api_key_command(args).await,
        Command::Tenant(TenantCommand::Sms {
            tenant,
            enabled,
            text,
            otp_in_events,
            json,
            db,
        }) => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let change = cardcore_service::sms::SmsSettingsChange {
                enabled,
                text: text.map(|t| (t != "default").then_some(t)),
                otp_in_events,
            };
            let settings = service
                .update_sms_settings(parse_tenant(&tenant)?, change)
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "enabled": settings.enabled, "text": settings.text, "otp_in_events": settings.otp_in_events })
                );
            } else {
                println!(
                    "SMS {}; text: {}; code in otp.created: {}",
                    if settings.enabled { "on" } else { "off" },
                    settings.text,
                    if settings.otp_in_events { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::ZoneKey {
            tenant,
            algorithm,
            key_file,
            json,
            db,
        }) => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let tenant = service
                .tenant(parse_tenant(&tenant)?)
                .await
                .map_err(anyhow::Error::msg)?;
            let Some(path) = key_file else {
                let key = service
                    .keys()
                    .create_zone_key(tenant.id, algorithm.as_str())
                    .await
                    .map_err(anyhow::Error::msg)
                    .context("--algorithm pvk needs --key-file")?;
                let key_hex = zeroize::Zeroizing::new(hex::encode_upper(key.key.expose()));
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "key_id": key.id, "algorithm": key.algorithm, "key_hex": key_hex.as_str(), "kcv": key.kcv })
                    );
                } else {
                    println!("zone PIN key {} ({}) for {}", key.id, key.algorithm, tenant.name);
                    println!("key (shown once): {}  KCV {}", key_hex.as_str(), key.kcv);
                }
                return Ok(());
            };
            // The key is read from a file, never from the command line (which `ps` shows).
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?,
            );
            let raw = cardcore_crypto::SecretBytes::from_hex(text.trim())
                .map_err(|_| anyhow::anyhow!("{} must hold the key as 32 hex characters", path.display()))?;
            let key = service
                .keys()
                .import_zone_key(tenant.id, algorithm.as_str(), raw)
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "key_id": key.id, "algorithm": key.algorithm, "kcv": key.kcv })
                );
            } else {
                println!(
                    "imported {} key {} for {}: KCV {} (compare it with the one you were given)",
                    key.algorithm, key.id, tenant.name, key.kcv
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate {
            transport_grace_seconds,
            db,
        }) => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            for (purpose, version) in service.keys().rotate().await.map_err(anyhow::Error::msg)? {
                println!("{} key: now version {version}", purpose.as_str());
            }
            let grace = chrono::Duration::seconds(i64::from(transport_grace_seconds));
            let tenants = service
                .keys()
                .rotate_transport_keys(grace)
                .await
                .map_err(anyhow::Error::msg)?;
            println!(
                "transport keys: a new version for {tenants} tenant(s); the versions replaced decrypt for {transport_grace_seconds} more seconds"
            );
            Ok(())
        }
        Command::Backup(args) => match args.command {
            Some(cli::BackupCommand::Verify { file, db }) => backup::verify(file.as_deref(), &db).await,
            None => {
                let Some(to) = args.to else {
                    bail!("`cardcore backup` needs --to FILE (or `backup verify`); see --help");
                };
                backup::backup(&to, &args.db).await
            }
        },
        Command::Restore { from, db } => backup::restore(&from, &db).await,
        Command::Retention(args) => retention::command(args).await,
        Command::Seed(args) => seed::run(args).await,
        Command::Import(args) => import::run(args).await,
        Command::MasterKey(MasterKeyCommand::Rotate { new_key_file, db }) => {
            rotate_master_key(&new_key_file, &db).await
        }
        Command::MasterKey(MasterKeyCommand::Generate) => {
            println!(
                "{}",
                cardcore_crypto::keys::MasterKey::generate_hex(&mut rand::rngs::OsRng).as_str()
            );
            Ok(())
        }
    }
}

/// `cardcore master-key rotate --new-key-file F`.
async fn rotate_master_key(new_key_file: &Path, db: &DbArgs) -> anyhow::Result<()> {
    let url = database_url(db);
    let store = open_store(db).await?;
    if !cardcore_service::keyring::database_has_keys(store.as_ref())
        .await
        .map_err(anyhow::Error::msg)?
    {
        bail!(
            "the database at {} holds no keys yet: there is nothing to rotate",
            display_url(&url)
        );
    }
    let old = resolve_master_key(db, &url, store.as_ref()).await?;
    let new_text = zeroize::Zeroizing::new(
        std::fs::read_to_string(new_key_file)
            .with_context(|| format!("cannot read the new master key file {}", new_key_file.display()))?,
    );
    let new = master_key::read_key_file(new_key_file)?;
    let rotation = cardcore_service::keyring::rotate_master_key(store.as_ref(), &old, &new)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "master key rotated: {} key(s) rewrapped{} and the check value replaced, in one transaction",
        rotation.rewrapped,
        if rotation.already_new > 0 {
            format!(" ({} already under the new key)", rotation.already_new)
        } else {
            String::new()
        }
    );
    if let Some(path) = master_key::default_key_file(db, &url) {
        master_key::replace_key_file(&path, new_text.trim())?;
        println!("{} now holds the new key", path.display());
    }
    // A node that had not stopped yet may have wrapped a key with the old
    // key just before the commit; catch it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let swept = cardcore_service::keyring::sweep_old_master_key(store.as_ref(), &old, &new)
        .await
        .map_err(anyhow::Error::msg)?;
    if swept > 0 {
        println!("{swept} key(s) made under the old key meanwhile rewrapped too");
    }
    println!(
        "nodes still running with the old key stop at their next key refresh (--key-refresh-seconds, 60 by default), \
         saying so; restart every node and CLI with the new key, then retire the old one"
    );
    Ok(())
}

/// `cardcore migrate --check`: can this binary run on the database as it is?
/// Exit 0: yes, nothing to apply. Exit 2 (printed): yes once its pending
/// migrations are applied (`serve` applies them at start). Exit 1: no.
async fn migrate_check(db: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(db).await?;
    let status = store.migration_status().await?;
    let url = display_url(&database_url(db));
    let last = status.applied.last().copied().unwrap_or(0);
    let mine = status.known.last().copied().unwrap_or(0);
    if !status.failed.is_empty() {
        bail!(
            "{url}: migrations {:?} started and did not finish; this binary cannot run on it",
            status.failed
        );
    }
    if !status.changed.is_empty() {
        bail!(
            "{url}: migrations {:?} were applied by a different build (checksums differ); this binary cannot run on it",
            status.changed
        );
    }
    let unknown = status.unknown();
    if !unknown.is_empty() {
        bail!(
            "{url}: the database is at migration {last:04}, newer than this binary ({mine:04}; it does not know {unknown:?}):              this binary does not start on it (nodes of this version already running keep running); roll forward"
        );
    }
    let pending = status.pending();
    if pending.is_empty() {
        println!("{url}: at migration {last:04}, as this binary expects: it can run on it as it is");
        return Ok(());
    }
    println!(
        "{url}: at migration {last:04}; this binary needs {pending:?} first (`cardcore migrate`, or `serve` applies them at start).          Nodes of the previous release keep running once they are applied (see docs/DEPLOYMENT.md, Migrations)"
    );
    std::process::exit(2);
}

/// `cardcore tenant api-key ...`.
async fn api_key_command(args: cli::ApiKeyArgs) -> anyhow::Result<()> {
    use cli::ApiKeyCommand;
    let Some(command) = args.command else {
        // The older spelling: `tenant api-key --tenant ID [--can-reveal] [--json]`.
        let Some(tenant) = args.tenant else {
            bail!("`cardcore tenant api-key` needs a subcommand (create, list, revoke); see --help");
        };
        let service = open_service(&args.db, ServiceConfig::default()).await?;
        let tenant = service
            .tenant(parse_tenant(&tenant)?)
            .await
            .map_err(anyhow::Error::msg)?;
        let key = service
            .create_api_key(tenant.id, None, args.can_reveal)
            .await
            .map_err(anyhow::Error::msg)?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "tenant_id": tenant.id, "api_key_id": key.id, "key_id": key.id, "api_key": key.secret.as_str() })
            );
        } else {
            println!("API key for {} (shown once): {}", tenant.name, key.secret.as_str());
        }
        return Ok(());
    };
    match command {
        ApiKeyCommand::Create {
            tenant,
            name,
            can_reveal,
            json,
            db,
        } => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let tenant = service
                .tenant(parse_tenant(&tenant)?)
                .await
                .map_err(anyhow::Error::msg)?;
            let key = service
                .create_api_key(tenant.id, name.as_deref(), can_reveal)
                .await
                .map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "key_id": key.id, "api_key": key.secret.as_str() })
                );
            } else {
                println!(
                    "API key {} for {} (shown once, store it now): {}",
                    key.id,
                    tenant.name,
                    key.secret.as_str()
                );
            }
        }
        ApiKeyCommand::List { tenant, json, db } => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let tenant = service
                .tenant(parse_tenant(&tenant)?)
                .await
                .map_err(anyhow::Error::msg)?;
            let keys = service.api_keys(tenant.id).await.map_err(anyhow::Error::msg)?;
            let ts = |t: &Option<cardcore_domain::Timestamp>| t.map(|t| rfc3339(&t));
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "key_id": k.id,
                            "name": k.name,
                            "prefix": k.prefix,
                            "can_reveal": k.can_reveal,
                            "created_at": k.created_at,
                            "last_used_at": k.last_used_at,
                            "revoked_at": k.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("API keys of {} ({}):", tenant.name, tenant.id);
                for k in &keys {
                    println!(
                        "{}  {}…  {}  reveal={}  created {}  last used {}  {}",
                        k.id,
                        k.prefix,
                        k.name.as_deref().unwrap_or("-"),
                        k.can_reveal,
                        rfc3339(&k.created_at),
                        ts(&k.last_used_at).unwrap_or_else(|| "never".into()),
                        ts(&k.revoked_at).map_or_else(|| "active".into(), |t| format!("revoked {t}")),
                    );
                }
            }
        }
        ApiKeyCommand::Revoke {
            tenant,
            key_id,
            json,
            db,
        } => {
            let service = open_service(&db, ServiceConfig::default()).await?;
            let tenant = service
                .tenant(parse_tenant(&tenant)?)
                .await
                .map_err(anyhow::Error::msg)?;
            let id: cardcore_domain::ApiKeyId = key_id
                .parse()
                .with_context(|| format!("--key-id {key_id:?} is not an API key id (a UUID)"))?;
            let key = match service.revoke_api_key(tenant.id, id).await {
                Err(cardcore_service::ServiceError::NotFound(_)) => {
                    bail!("tenant {} has no API key {id}", tenant.id)
                }
                other => other.map_err(anyhow::Error::msg)?,
            };
            let at = key.revoked_at.map(|t| rfc3339(&t)).unwrap_or_default();
            if json {
                println!("{}", serde_json::json!({ "key_id": key.id, "revoked_at": at }));
            } else {
                println!(
                    "API key {} revoked at {at}; every node refuses it, and the M2P tokens made with it, within {} seconds",
                    key.id,
                    cardcore_service::auth::AUTH_CACHE_TTL.as_secs()
                );
            }
        }
    }
    Ok(())
}

fn rfc3339(t: &cardcore_domain::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_tenant(s: &str) -> anyhow::Result<cardcore_domain::TenantId> {
    s.parse()
        .with_context(|| format!("--tenant {s:?} is not a tenant id (a UUID)"))
}

/// The database URL: the flag, the environment, or the embedded default.
pub fn database_url(db: &DbArgs) -> String {
    db.database.clone().unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

pub(crate) fn display_url(url: &str) -> String {
    // Never print a password from a postgres:// URL.
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The SQLite file of a `sqlite://` URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// Opens the store a URL names, creating the SQLite directory if needed.
pub async fn open_store(db: &DbArgs) -> anyhow::Result<Arc<dyn Store>> {
    let url = database_url(db);
    let timeout = Duration::from_secs(db.db_timeout_seconds.max(1));
    if let Some(path) = sqlite_path(&url) {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let store = SqliteStore::open(
            &path,
            &SqliteOptions {
                readers: db.db_pool_size.max(1),
                acquire_timeout: timeout,
            },
        )
        .await
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = cardcore_store_postgres::PostgresOptions {
            max_connections: db.db_pool_size.max(1),
            acquire_timeout: timeout,
            statement_timeout: Duration::from_secs(db.db_statement_timeout_seconds),
            schema: db.db_schema.clone(),
            isolation: match db.db_isolation {
                cli::DbIsolation::ReadCommitted => cardcore_store_postgres::Isolation::ReadCommitted,
                cli::DbIsolation::RepeatableRead => cardcore_store_postgres::Isolation::RepeatableRead,
                cli::DbIsolation::Serializable => cardcore_store_postgres::Isolation::Serializable,
            },
            ..Default::default()
        };
        let store = cardcore_store_postgres::PostgresStore::connect(&url, &options)
            .await
            .with_context(|| format!("cannot connect to {}", display_url(&url)))?;
        return Ok(Arc::new(store));
    }
    bail!(
        "--database must be sqlite://PATH or postgres://...; got {}",
        display_url(&url)
    )
}

pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Opens store, migrations, master key and keyring: a ready service.
pub async fn open_service(db: &DbArgs, config: ServiceConfig) -> anyhow::Result<Arc<Service>> {
    let store = open_store(db).await?;
    store.migrate().await.context("cannot apply database migrations")?;
    let master = resolve_master_key(db, &database_url(db), store.as_ref()).await?;
    let keys = Keyring::open(master, store.clone()).await.map_err(anyhow::Error::msg)?;
    let service = Service::new(store, keys, config).map_err(anyhow::Error::msg)?;
    // Needs the key ring, so it runs here rather than in a SQL migration.
    service
        .upgrade_pan_lookup()
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot upgrade the PAN lookup hashes")?;
    Ok(Arc::new(service))
}

/// The service settings a `serve` command line asks for.
pub fn service_config(args: &ServeArgs) -> anyhow::Result<ServiceConfig> {
    use cardcore_domain::activation::ActivationPolicy;
    use cardcore_domain::otp::OtpPolicy;
    use cardcore_domain::pin_policy::PinPolicy;
    let pin_policy = PinPolicy::new(args.pin_min_length, args.pin_max_length)
        .context("PIN lengths must satisfy 4 <= --pin-min-length <= --pin-max-length <= 12")?;
    if args.otp_ttl_seconds == 0 || args.otp_ttl_seconds > 600 {
        bail!("--otp-ttl-seconds must be 1 to 600 (NIST SP 800-63B: at most 10 minutes)");
    }
    if args.pin_max_tries == 0 || args.pin_max_tries > 10 {
        bail!("--pin-max-tries must be 1 to 10");
    }
    Ok(ServiceConfig {
        bin: args.bin.clone(),
        currency: args.currency.clone(),
        pin_policy,
        pin_max_failures: args.pin_max_tries,
        otp_policy: OtpPolicy {
            ttl: chrono::Duration::seconds(i64::from(args.otp_ttl_seconds)),
            lock_for: chrono::Duration::seconds(i64::from(args.otp_lock_seconds.max(1))),
            ..OtpPolicy::default()
        },
        activation_policy: ActivationPolicy {
            lock_for: chrono::Duration::seconds(i64::from(args.activation_lock_seconds.max(1))),
            ..ActivationPolicy::default()
        },
        idempotency_ttl: Duration::from_secs(args.idempotency_ttl_seconds.max(1)),
        card_pin_calls_per_minute: args.card_pin_calls_per_minute,
        webhook_networks: cardcore_service::egress::WebhookNetworks::parse(&args.webhook_allow_networks)
            .map_err(|e| anyhow::anyhow!("--webhook-allow-networks: {e}"))?,
        webhook_redeliveries_per_minute: args.webhook_redeliveries_per_minute,
        cvv_rotation_interval_hours: (args.cvv_rotation_interval_hours > 0).then_some(args.cvv_rotation_interval_hours),
        ..ServiceConfig::default()
    })
}

/// The webhook dispatcher settings a `serve` command line asks for.
pub fn dispatcher_config(args: &ServeArgs) -> anyhow::Result<cardcore_webhooks::DispatcherConfig> {
    let schedule = cardcore_webhooks::RetrySchedule::parse(&args.webhook_retry_schedule)
        .map_err(|e| anyhow::anyhow!("--webhook-retry-schedule: {e}"))?;
    if !(1..=60_000).contains(&args.webhook_timeout_ms) {
        bail!("--webhook-timeout-ms must be 1 to 60000");
    }
    let timeout = Duration::from_millis(args.webhook_timeout_ms);
    let lease = Duration::from_secs(args.webhook_lease_seconds);
    if lease <= timeout {
        bail!("--webhook-lease-seconds must be longer than --webhook-timeout-ms");
    }
    Ok(cardcore_webhooks::DispatcherConfig {
        schedule,
        poll_interval: Duration::from_millis(args.webhook_poll_interval_ms.max(10)),
        timeout,
        lease,
        tenant_in_flight: args.webhook_tenant_in_flight.max(1),
        p100_schedule: cardcore_webhooks::RetrySchedule::parse(&args.sms.p100_webhook_retry_schedule)
            .map_err(|e| anyhow::anyhow!("--p100-webhook-retry-schedule: {e}"))?,
        sms_schedule: cardcore_webhooks::RetrySchedule::parse(&args.sms.sms_retry_schedule)
            .map_err(|e| anyhow::anyhow!("--sms-retry-schedule: {e}"))?,
        sms: sms_provider(&args.sms)?,
        ..Default::default()
    })
}

/// The HTTP limits a `serve` command line asks for.
fn http_limits(args: &ServeArgs) -> anyhow::Result<listener::Limits> {
    if args.header_read_timeout_ms == 0 || args.body_read_timeout_ms == 0 {
        bail!("--header-read-timeout-ms and --body-read-timeout-ms must be at least 1");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    Ok(listener::Limits {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
        max_connections: args.max_connections,
    })
}

/// The SMS provider a `serve` command line asks for; errors name the flag.
fn sms_provider(args: &crate::cli::SmsArgs) -> anyhow::Result<cardcore_webhooks::SmsProvider> {
    use crate::cli::SmsProviderKind;
    use cardcore_webhooks::sms;
    let http_url = |flag: &str, url: &str| -> anyhow::Result<()> {
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
            _ => bail!("{flag}: must be an absolute http or https URL"),
        }
    };
    Ok(match args.sms_provider {
        SmsProviderKind::None => cardcore_webhooks::SmsProvider::None,
        SmsProviderKind::Http => {
            let url = args
                .sms_http_url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--sms-provider http needs --sms-http-url"))?;
            http_url("--sms-http-url", &url)?;
            sms::validate_body_template(&args.sms_http_body)?;
            let headers = args
                .sms_http_header
                .iter()
                .filter(|h| !h.trim().is_empty())
                .map(|h| sms::parse_header(h))
                .collect::<Result<Vec<_>, _>>()?;
            cardcore_webhooks::SmsProvider::Http {
                url,
                body_template: args.sms_http_body.clone(),
                headers,
            }
        }
        SmsProviderKind::Twilio => {
            let account_sid = args
                .twilio_account_sid
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--sms-provider twilio needs --twilio-account-sid"))?;
            let auth_token = match (&args.twilio_auth_token_file, &args.twilio_auth_token) {
                (Some(path), _) => zeroize::Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("--twilio-auth-token-file {}: {e}", path.display()))?
                        .trim()
                        .to_owned(),
                ),
                (None, Some(token)) => zeroize::Zeroizing::new(token.trim().to_owned()),
                (None, None) => {
                    bail!("--sms-provider twilio needs --twilio-auth-token-file (or CARDCORE_TWILIO_AUTH_TOKEN)")
                }
            };
            if auth_token.is_empty() {
                bail!("the Twilio auth token is empty");
            }
            let from = args
                .sms_from
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--sms-provider twilio needs --sms-from"))?;
            http_url("--twilio-base-url", &args.twilio_base_url)?;
            cardcore_webhooks::SmsProvider::Twilio {
                base_url: args.twilio_base_url.clone(),
                account_sid,
                auth_token,
                from,
            }
        }
    })
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// Where `/metrics` is served apart (`--metrics-listen`).
    pub metrics_addr: Option<SocketAddr>,
    pub service: Arc<Service>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The webhook dispatcher and the idempotency-key cleanup.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// On SQLite, the database's one-server lock (see `serve_lock.rs`).
    _db_lock: Option<serve_lock::ServeLock>,
    /// Set (with why) when the node must stop by itself: the master key was
    /// rotated under it.
    pub fatal: tokio::sync::watch::Receiver<Option<String>>,
}

impl Server {
    /// Opens everything and starts serving. `listener` overrides `--listen`
    /// (tests bind port 0 themselves).
    pub async fn start(args: &ServeArgs, listener: Option<TcpListener>) -> anyhow::Result<Self> {
        Self::start_with(args, listener, cardcore_http::dialects::all()).await
    }

    /// [`Server::start`] serving `dialects` beside the native API (the
    /// built-in ones are `cardcore_http::dialects::all()`; a test or an
    /// embedding program may add its own).
    pub async fn start_with(
        args: &ServeArgs,
        listener: Option<TcpListener>,
        dialects: Vec<cardcore_http::dialects::Dialect>,
    ) -> anyhow::Result<Self> {
        let webhooks = dispatcher_config(args)?;
        let retention_policy = retention::policy(&args.retention)?;
        if let (Some(dir), true) = (&args.retention.export_dir, args.retention_interval_seconds > 0) {
            cardcore_service::retention::check_export_dir(dir)
                .map_err(anyhow::Error::msg)
                .context("--retention-export-dir")?;
        }
        let db_lock = match sqlite_path(&database_url(&args.db)) {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir)?;
                }
                Some(serve_lock::ServeLock::acquire(&path)?)
            }
            None => None,
        };
        let service = open_service(&args.db, service_config(args)?).await?;
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?,
        };
        let addr = listener.local_addr()?;
        let metrics_listener = match args.metrics_listen {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} (--metrics-listen)"))?,
            ),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let url = database_url(&args.db);
        tracing::info!(%addr, database = %display_url(&url), "cardcore listening");
        say!("cardcore listening on http://{addr} (database: {})", display_url(&url));
        if service.tenant_count().await.map_err(anyhow::Error::msg)? == 0 {
            if args.demo_tenant {
                let (tenant, key) = service.create_tenant("demo").await.map_err(anyhow::Error::msg)?;
                say!(
                    "created demo tenant {} with API key (shown once): {}",
                    tenant.id,
                    key.secret.as_str()
                );
            } else {
                say!("no tenant yet: create one with `cardcore tenant create --name acme` (add --json for a script)");
            }
        }
        service.set_decision_transport(Arc::new(cardcore_webhooks::decision::DecisionClient::new(
            &service.config().webhook_networks,
        )?));
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        let (fatal_tx, fatal) = tokio::sync::watch::channel(None);
        spawn_key_refresh(
            service.clone(),
            Duration::from_secs(args.key_refresh_seconds.max(1)),
            fatal_tx,
            rx.clone(),
        );
        let mut background = vec![
            cardcore_webhooks::spawn(service.clone(), webhooks, rx.clone())?,
            spawn_idempotency_cleanup(service.clone(), rx.clone()),
            spawn_authorization_expiry(service.clone(), rx.clone()),
        ];
        if args.retention_interval_seconds > 0 {
            background.push(retention::spawn(
                service.clone(),
                retention_policy,
                args.retention.export_dir.clone(),
                Duration::from_secs(args.retention_interval_seconds),
                rx.clone(),
            ));
        }
        let limits = http_limits(args)?;
        // With its own listener, /metrics is served there only.
        let (main_metrics, metrics_task) = match (metrics_listener, prometheus()) {
            (Some(l), Some(handle)) => {
                let app = cardcore_http::metrics_app(service.clone(), handle);
                say!("metrics on http://{}/metrics", l.local_addr()?);
                (None, Some(tokio::spawn(listener::serve(l, app, limits, rx.clone()))))
            }
            (_, handle) => (handle, None),
        };
        let app = cardcore_http::app(
            service.clone(),
            cardcore_http::HttpOptions {
                metrics: main_metrics,
                rate_limits: cardcore_http::ratelimit::RateLimits::with(cardcore_http::ratelimit::RateLimitConfig {
                    per_second: args.rate_limit_per_second,
                    burst: args.rate_limit_burst,
                    auth_failures_per_minute: args.auth_failures_per_minute,
                    auth_failures_burst: args.auth_failures_burst,
                }),
                dialects,
            },
        );
        let main_task = tokio::spawn(listener::serve(listener, app, limits, rx.clone()));
        let task = tokio::spawn(async move {
            // The listener hands handlers the peer as ConnectInfo<SocketAddr>
            // (the per-address limit on failed authentications reads it).
            let _ = rx.wait_for(|stop| *stop).await;
            let served = main_task.await.map_err(std::io::Error::other)?;
            if let Some(t) = metrics_task {
                t.await.map_err(std::io::Error::other)??;
            }
            served
        });
        Ok(Self {
            addr,
            metrics_addr,
            service,
            shutdown,
            task,
            background,
            _db_lock: db_lock,
            fatal,
        })
    }

    /// Stops accepting, lets requests and webhook attempts in flight
    /// finish (no new attempt starts), and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.start_draining();
        let _ = self.shutdown.send(true);
        let served = self.task.await;
        for task in self.background {
            let _ = task.await;
        }
        served??;
        Ok(())
    }
}

/// The process-wide Prometheus recorder (the `metrics` facade has one global
/// recorder; every server in the process shares it).
fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("cardcore_http_request_duration_seconds".into()),
                    cardcore_http::metrics::LATENCY_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    spawn_metrics_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(cause = %e, "metrics are off: could not install the Prometheus recorder");
                    None
                }
            }
        })
        .clone()
}

/// How often the recorder's histogram samples are folded into their buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// `install_recorder` keeps every histogram sample until something drains
/// it (a render or an upkeep) and, unlike the exporter's own HTTP listener,
/// starts no upkeep: without a scrape, memory would grow with every request.
/// One thread per process (the recorder is process-wide) drains it.
fn spawn_metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(cause = %e, "could not start the metrics upkeep thread; memory grows until /metrics is scraped");
    }
}

fn spawn_key_refresh(
    service: Arc<Service>,
    every: Duration,
    fatal: tokio::sync::watch::Sender<Option<String>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Another node may rotate keys; pick new versions up within `every`
    // (an unknown version is also fetched on first sight). A master key
    // rotated under this node stops it: its cached keys still serve until
    // then, and it never wraps a key with the old master key.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match service.keys().reload().await {
                        Ok(()) => {}
                        Err(cardcore_service::ServiceError::Startup(why))
                            if why == cardcore_service::keyring::MASTER_KEY_ROTATED =>
                        {
                            tracing::error!("{why}");
                            let _ = fatal.send(Some(why));
                            return;
                        }
                        Err(e) => tracing::warn!(cause = %e, "key refresh failed"),
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// Releases the holds of authorizations whose expiry has come, every 30
/// seconds on every node. Each is decided again on its locked card, so
/// nodes running this at once release each hold exactly once.
fn spawn_authorization_expiry(
    service: Arc<Service>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match service.expire_authorizations(service.now(), 500).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(expired = n, "authorization holds expired"),
                        Err(e) => tracing::warn!(cause = %e, "authorization expiry failed"),
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    })
}

/// Deletes expired idempotency keys: hourly (or every 24th of a shorter
/// TTL), on every node; two nodes doing it at once is harmless.
fn spawn_idempotency_cleanup(
    service: Arc<Service>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let every = (service.config().idempotency_ttl / 24).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match service.purge_idempotency_keys().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(purged = n, "expired idempotency keys deleted"),
                        Err(e) => tracing::warn!(cause = %e, "idempotency key cleanup failed"),
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    })
}

/// SIGTERM and Ctrl-C, registered with the OS as soon as this is made.
struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
            #[cfg(unix)]
            int: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot install the SIGINT handler")?,
        })
    }

    /// Resolves on the first SIGTERM or Ctrl-C.
    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to stderr, text or JSON; `RUST_LOG` sets the level (default info).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}
