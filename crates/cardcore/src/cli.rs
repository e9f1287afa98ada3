//! The command line. Every option has an environment variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use cardcore_domain::pin_policy::PinRules;
use cardcore_http::dialects::m2p::settings::M2pRequired;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// cardcore: card management and PIN service.
#[derive(Debug, Parser)]
#[command(name = "cardcore", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrations are applied at start).
    Serve(ServeArgs),
    /// Apply database migrations and exit (`--check`: only say whether this
    /// binary can run on the database as it is).
    Migrate(MigrateArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage service keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Master key helpers.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    /// Back up the SQLite database while the server serves (`--to FILE`),
    /// or check a backup or a restored database (`backup verify`).
    Backup(BackupArgs),
    /// Restore a SQLite backup into a new database file (never over one).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete what is past its retention period (delivered events and their
    /// webhook deliveries, dead deliveries, audit entries), as `serve` does
    /// in the background; `--dry-run` only counts.
    Retention(RetentionCommandArgs),
    /// Development/benchmark only: a new tenant with N cards whose PIN is set, and a CSV of them.
    Seed(crate::seed::SeedArgs),
    /// Import a vendor's cardholders and cards (JSON Lines; PINs as encrypted blocks or Visa PVVs).
    Import(crate::import::ImportArgs),
}

/// `cardcore migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Change nothing: exit 0 if this binary can run on the database as it
    /// is, 2 if it needs its pending migrations applied first, 1 if it
    /// cannot run on it (a newer, changed or failed migration).
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `cardcore backup`: a copy, or `verify`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Where to write the backup (a new file; written under a temporary
    /// name, mode 0600, and renamed when complete).
    #[arg(long)]
    pub to: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a SQLite backup FILE (read-only), or with --database a live
    /// (restored) database: integrity, migrations, counts of tenants, cards
    /// and events, and that the master key opens its keys and a card's PAN.
    Verify {
        /// The backup file; without it, the database of --database.
        file: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Where the database is and how to open its keys.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `sqlite://PATH` or `postgres://...`. Default: SQLite in ./cardcore-data/.
    #[arg(long, env = "CARDCORE_DATABASE_URL")]
    pub database: Option<String>,
    /// File holding the master key (64 hex characters). On the SQLite default,
    /// `master.key` beside the database, created on first start.
    #[arg(long, env = "CARDCORE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Most database connections per node (PostgreSQL) or readers (SQLite).
    #[arg(long, env = "CARDCORE_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
    /// Seconds to wait for a database connection before answering 503.
    #[arg(long, env = "CARDCORE_DB_TIMEOUT_SECONDS", default_value_t = 3)]
    pub db_timeout_seconds: u64,
    /// Longest a single PostgreSQL statement may run (row-lock waits included).
    #[arg(long, env = "CARDCORE_DB_STATEMENT_TIMEOUT_SECONDS", default_value_t = 5)]
    pub db_statement_timeout_seconds: u64,
    /// PostgreSQL schema to use (created if missing); default: the server's search_path.
    #[arg(long, env = "CARDCORE_DB_SCHEMA")]
    pub db_schema: Option<String>,
    /// PostgreSQL transaction isolation. `read-committed` is what cardcore
    /// needs (the card lock orders writers); `serializable` is what
    /// CockroachDB runs: contended transactions then fail with 40001 and are
    /// run again (see DEPLOYMENT.md).
    #[arg(long, env = "CARDCORE_DB_ISOLATION", value_enum, default_value_t = DbIsolation::ReadCommitted)]
    pub db_isolation: DbIsolation,
}

/// `--db-isolation`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DbIsolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CARDCORE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// Log format.
    #[arg(long, env = "CARDCORE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Issuer BIN for new cards (6 to 11 digits). Default: a Visa test BIN.
    #[arg(long, env = "CARDCORE_BIN", default_value = "424242")]
    pub bin: String,
    /// Shortest PIN the program allows (4 to 12).
    #[arg(long, env = "CARDCORE_PIN_MIN_LENGTH", default_value_t = 4)]
    pub pin_min_length: usize,
    /// Longest PIN the program allows (4 to 12).
    #[arg(long, env = "CARDCORE_PIN_MAX_LENGTH", default_value_t = 4)]
    pub pin_max_length: usize,
    /// Consecutive wrong PINs that block the PIN.
    #[arg(long, env = "CARDCORE_PIN_MAX_TRIES", default_value_t = 3)]
    pub pin_max_tries: u32,
    /// How long an OTP is valid, in seconds (at most 600).
    #[arg(long, env = "CARDCORE_OTP_TTL_SECONDS", default_value_t = 300)]
    pub otp_ttl_seconds: u32,
    /// How long 3 wrong OTPs lock the operation, in seconds.
    #[arg(long, env = "CARDCORE_OTP_LOCK_SECONDS", default_value_t = 600)]
    pub otp_lock_seconds: u32,
    /// How long 3 wrong activation codes lock a card's activation, in seconds.
    #[arg(long, env = "CARDCORE_ACTIVATION_LOCK_SECONDS", default_value_t = 600)]
    pub activation_lock_seconds: u32,
    /// The program's dynamic-CVV interval for virtual cards, in hours (QI's
    /// `cvv_rotation_interval_hours`; 0: no rotation, shown as null).
    #[arg(long, env = "CARDCORE_CVV_ROTATION_INTERVAL_HOURS", default_value_t = 72)]
    pub cvv_rotation_interval_hours: u32,
    /// Currency of new cards' limits (ISO 4217).
    #[arg(long, env = "CARDCORE_CURRENCY", default_value = "EUR")]
    pub currency: String,
    /// Requests per second allowed per API key, per node (0 turns the limit off).
    #[arg(long, env = "CARDCORE_RATE_LIMIT_PER_SECOND", default_value_t = 100)]
    pub rate_limit_per_second: u32,
    /// PIN and OTP calls allowed per card per minute, per node (0 turns the limit off).
    #[arg(long, env = "CARDCORE_CARD_PIN_CALLS_PER_MINUTE", default_value_t = 20)]
    pub card_pin_calls_per_minute: u32,
    /// Burst allowed per API key above the steady rate.
    #[arg(long, env = "CARDCORE_RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,
    /// Failed authentications allowed per client address per minute once its
    /// burst is spent, per node (0 turns the limit off).
    #[arg(long, env = "CARDCORE_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
    /// Failed authentications a client address may make in a row before it
    /// is limited (answered 429 without a database read).
    #[arg(long, env = "CARDCORE_AUTH_FAILURES_BURST", default_value_t = 20)]
    pub auth_failures_burst: u32,
    /// Create a tenant named "demo" at first start and print its API key.
    #[arg(long, env = "CARDCORE_DEMO_TENANT")]
    pub demo_tenant: bool,
    /// Waits between webhook attempts (±20% jitter); after the last, the delivery is dead.
    #[arg(long, env = "CARDCORE_WEBHOOK_RETRY_SCHEDULE", default_value = cardcore_webhooks::DEFAULT_SCHEDULE)]
    pub webhook_retry_schedule: String,
    /// Longest one webhook attempt may take, in milliseconds.
    #[arg(long, env = "CARDCORE_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// How often an idle node looks for new events and due webhook retries, in milliseconds.
    #[arg(long, env = "CARDCORE_WEBHOOK_POLL_INTERVAL_MS", default_value_t = 500)]
    pub webhook_poll_interval_ms: u64,
    /// How long a node's claim on a delivery lasts (a crashed node's claims lapse after it), in seconds.
    #[arg(long, env = "CARDCORE_WEBHOOK_LEASE_SECONDS", default_value_t = 60)]
    pub webhook_lease_seconds: u64,
    /// How long an Idempotency-Key is kept, in seconds.
    #[arg(long, env = "CARDCORE_IDEMPOTENCY_TTL_SECONDS", default_value_t = 86_400)]
    pub idempotency_ttl_seconds: u64,
    /// Networks webhooks may reach besides public addresses (CIDR[,CIDR...]); plain http is allowed only to these.
    #[arg(long, env = "CARDCORE_WEBHOOK_ALLOW_NETWORKS", default_value = "")]
    pub webhook_allow_networks: String,
    /// Redeliveries a tenant may ask for per minute, per node (0 turns the limit off).
    #[arg(long, env = "CARDCORE_WEBHOOK_REDELIVERIES_PER_MINUTE", default_value_t = 60)]
    pub webhook_redeliveries_per_minute: u32,
    /// Most webhook attempts of one tenant in flight at once, per node.
    #[arg(long, env = "CARDCORE_WEBHOOK_TENANT_IN_FLIGHT", default_value_t = 8)]
    pub webhook_tenant_in_flight: usize,
    /// A connection that has not sent a whole request head within this many milliseconds (idle keep-alive included) is closed.
    #[arg(long, env = "CARDCORE_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Longest wait for the next piece of a request body, in milliseconds (the request fails with 408).
    #[arg(long, env = "CARDCORE_BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,
    /// Most open client connections; one more is answered 503 and closed.
    #[arg(long, env = "CARDCORE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Serve /metrics on this address only (and not on --listen); keep it off the public network.
    #[arg(long, env = "CARDCORE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM, /readyz answers 503 at once and the node keeps serving
    /// this many seconds (so the balancer sees it and stops sending), then
    /// stops accepting, finishes the requests in flight and exits.
    #[arg(long, env = "CARDCORE_DRAIN_SECONDS", default_value_t = 0)]
    pub drain_seconds: u64,
    /// How often the node re-reads the stored keys (new versions, and a
    /// rotated master key, which stops the node), in seconds.
    #[arg(long, env = "CARDCORE_KEY_REFRESH_SECONDS", default_value_t = 60)]
    pub key_refresh_seconds: u64,
    /// Seconds between background retention runs (one node at a time runs
    /// it); 0 turns the background job off (run `cardcore retention` instead).
    #[arg(long, env = "CARDCORE_RETENTION_INTERVAL_SECONDS", default_value_t = 3600)]
    pub retention_interval_seconds: u64,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Boxed: the SMS flags would make `Command::Serve` much larger than the other commands.
    #[command(flatten)]
    pub sms: Box<SmsArgs>,
}

/// How long rows are kept: per deployment, the same for `serve` and
/// `cardcore retention`.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Days delivered events (no pending or retrying delivery) and their
    /// webhook deliveries are kept (`GET /v1/events` and redelivery reach
    /// back this far); 0 keeps them forever.
    #[arg(long, env = "CARDCORE_RETENTION_EVENTS_DAYS", default_value_t = 90)]
    pub retention_events_days: u32,
    /// Days dead webhook deliveries are kept; 0 keeps them forever.
    #[arg(long, env = "CARDCORE_RETENTION_DEAD_DELIVERIES_DAYS", default_value_t = 30)]
    pub retention_dead_deliveries_days: u32,
    /// Days audit entries are kept: at least 365 (PCI DSS 10.5.1 keeps a
    /// year); 0 keeps them forever.
    #[arg(long, env = "CARDCORE_RETENTION_AUDIT_DAYS", default_value_t = 400)]
    pub retention_audit_days: u32,
    /// Rows deleted per transaction (1 to 10000; an event counts with its
    /// deliveries): each batch holds the database's writer for one short
    /// transaction.
    #[arg(long, env = "CARDCORE_RETENTION_BATCH_SIZE", default_value_t = 500)]
    pub retention_batch_size: u32,
    /// Before deleting audit entries, append them to a new JSON Lines file
    /// (mode 0600) in this directory and flush it to disk.
    #[arg(
        long = "export-dir",
        visible_alias = "retention-export-dir",
        env = "CARDCORE_RETENTION_EXPORT_DIR"
    )]
    pub export_dir: Option<PathBuf>,
}

/// `cardcore retention`.
#[derive(Debug, Clone, Args)]
pub struct RetentionCommandArgs {
    /// Only count what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

/// OTPs by SMS: the node's provider (tenants turn SMS on with `tenant sms`).
/// Its `Debug` leaves out the token and the extra headers (they may hold keys).
#[derive(Clone, Args)]
pub struct SmsArgs {
    /// Who sends the tenants' OTPs by SMS: `none`, `twilio` or `http`.
    #[arg(long, env = "CARDCORE_SMS_PROVIDER", value_enum, default_value_t = SmsProviderKind::None)]
    pub sms_provider: SmsProviderKind,
    /// `http`: the provider's URL (POSTed the JSON body).
    #[arg(long, env = "CARDCORE_SMS_HTTP_URL")]
    pub sms_http_url: Option<String>,
    /// `http`: the JSON body, `{to}` (E.164), `{text}` and `{otp_id}` filled in, JSON-escaped.
    #[arg(long, env = "CARDCORE_SMS_HTTP_BODY", default_value = cardcore_webhooks::sms::DEFAULT_HTTP_BODY)]
    pub sms_http_body: String,
    /// `http`: an extra request header, `Name: value` (repeatable; env: one per line).
    #[arg(
        long,
        env = "CARDCORE_SMS_HTTP_HEADER",
        value_delimiter = '\n',
        hide_env_values = true
    )]
    pub sms_http_header: Vec<String>,
    /// `twilio`: the account SID.
    #[arg(long, env = "CARDCORE_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// `twilio`: a file holding the auth token (or set CARDCORE_TWILIO_AUTH_TOKEN).
    #[arg(long, env = "CARDCORE_TWILIO_AUTH_TOKEN_FILE")]
    pub twilio_auth_token_file: Option<PathBuf>,
    /// `twilio`: the auth token itself; prefer the file (a flag shows in `ps`).
    #[arg(long, env = "CARDCORE_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// `twilio`: the API's base URL (tests point it at a local fake).
    #[arg(long, env = "CARDCORE_TWILIO_BASE_URL", default_value = cardcore_webhooks::sms::TWILIO_BASE_URL)]
    pub twilio_base_url: String,
    /// `twilio`: the sender number (E.164) or sender id.
    #[arg(long, env = "CARDCORE_SMS_FROM")]
    pub sms_from: Option<String>,
    /// Waits between SMS attempts (±20% jitter); keep them within the OTP's life.
    #[arg(long, env = "CARDCORE_SMS_RETRY_SCHEDULE", default_value = cardcore_webhooks::SMS_SCHEDULE)]
    pub sms_retry_schedule: String,
    /// Waits between attempts of P100-format webhooks (P100: about 8, 16, 32 and 64 s).
    #[arg(long, env = "CARDCORE_P100_WEBHOOK_RETRY_SCHEDULE", default_value = cardcore_webhooks::P100_SCHEDULE)]
    pub p100_webhook_retry_schedule: String,
}

impl std::fmt::Debug for SmsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsArgs")
            .field("sms_provider", &self.sms_provider)
            .field("twilio_base_url", &self.twilio_base_url)
            .field("sms_retry_schedule", &self.sms_retry_schedule)
            .field("p100_webhook_retry_schedule", &self.p100_webhook_retry_schedule)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SmsProviderKind {
    None,
    Twilio,
    Http,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first API key (printed once).
    Create {
        /// Unique tenant name.
        #[arg(long)]
        name: String,
        /// Print `{"tenant_id", "name", "api_key"}` and nothing else.
        #[arg(long)]
        json: bool,
        /// Weak-PIN rules: `repeated,sequential,birth_date,common,same_as_current` (default: all), or `none`.
        #[arg(long, value_parser = parse_pin_rules)]
        pin_rules: Option<PinRules>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Change a tenant's settings; running servers apply a change within 5 s.
    Update {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Weak-PIN rules: `repeated,sequential,birth_date,common,same_as_current`, `all` (the default) or `none`.
        #[arg(long, value_parser = parse_pin_rules)]
        pin_rules: Option<PinRules>,
        /// Fields M2P's update and set PIN require: `mobile,expiryDate,otpDetails` (the default, as the seed
        /// sends them), `all` or `none`. A field sent is checked either way.
        #[arg(long, value_parser = parse_m2p_required)]
        m2p_required: Option<M2pRequired>,
        /// Keep the OTP code in `otp.created` events (the same setting as `tenant sms --otp-in-events`).
        #[arg(long)]
        otp_in_events: Option<bool>,
        /// The program's time zone for daily and monthly limits (IANA, e.g. `Europe/Lisbon`; default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// Days after which what an authorization still holds expires (1 to 31; default 7).
        #[arg(long)]
        authorization_expiry_days: Option<u32>,
        /// The program's default spending controls, as the JSON of `PUT /v1/cards/{id}/controls`;
        /// a card's own controls replace them.
        #[arg(long)]
        default_controls: Option<String>,
        /// The program the program settings below change (default: the tenant's default program).
        #[arg(long)]
        program: Option<String>,
        /// Hours between CVV2 changes of the program's virtual cards (1 to 8760), 0 for a CVV2 that
        /// does not rotate, or `default` for the server's `--cvv-rotation-interval-hours`.
        #[arg(long, value_parser = parse_cvv_interval)]
        cvv_rotation_interval_hours: Option<CvvInterval>,
        /// Print the settings as `{"tenant_id", "pin_rules", "m2p_required", "authorizations", "programs"}` and
        /// nothing else.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Make a zone PIN key for PIN blocks the tenant sends (printed once).
    ZoneKey {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// `aes` (AES-128, format 4 blocks), `tdes` (double-length TDES, formats 0 and 3) or
        /// `pvk` (a Visa PIN verification key, double-length TDES; imported only).
        #[arg(long, value_enum, default_value_t = ZoneAlgorithm::Aes)]
        algorithm: ZoneAlgorithm,
        /// Import this key (a file holding 32 hex characters) instead of making one; the
        /// answer then carries its KCV to compare, never the key.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Print `{"key_id", "algorithm", "key_hex", "kcv"}` and nothing else.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The tenant's OTPs by SMS: on or off, the text, the code in `otp.created` or not.
    Sms {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Send the tenant's OTPs by SMS through the node's provider.
        #[arg(long)]
        enabled: Option<bool>,
        /// The message; `{code}` required, `{minutes}` and `{tenant}` allowed; `default` resets it.
        #[arg(long)]
        text: Option<String>,
        /// Keep the code in `otp.created` events (turn off when cardcore sends the SMS).
        #[arg(long)]
        otp_in_events: Option<bool>,
        /// Print the settings as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage a tenant's API keys: `create`, `list`, `revoke`. (The older
    /// `tenant api-key --tenant ID [--can-reveal]` still creates one.)
    ApiKey(ApiKeyArgs),
}

/// `tenant api-key`: a subcommand, or the older flags that create a key.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: Option<ApiKeyCommand>,
    /// The tenant id (older form of `create`).
    #[arg(long)]
    pub tenant: Option<String>,
    /// May this key reveal PAN and CVV? (older form of `create`)
    #[arg(long)]
    pub can_reveal: bool,
    /// Print `{"tenant_id", "api_key_id", "key_id", "api_key"}` (older form of `create`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make another API key for the tenant (printed once).
    Create {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// A label to tell keys apart (1 to 100 characters).
        #[arg(long)]
        name: Option<String>,
        /// May this key reveal PAN and CVV?
        #[arg(long)]
        can_reveal: bool,
        /// Print `{"key_id", "api_key"}` and nothing else.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The tenant's keys, revoked ones included (never a key itself).
    List {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Print a JSON array of `{"key_id", "name", "prefix", "can_reveal",
        /// "created_at", "last_used_at", "revoked_at"}` and nothing else.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key: every node refuses it, and the M2P tokens made with it,
    /// within 5 seconds.
    Revoke {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// The key's id (from `create` or `list`).
        #[arg(long)]
        key_id: String,
        /// Print `{"key_id", "revoked_at"}` and nothing else.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_pin_rules(s: &str) -> Result<PinRules, String> {
    PinRules::parse(s)
}

/// A program's CVV2 interval as `tenant update` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CvvInterval {
    /// Follow the server's `--cvv-rotation-interval-hours`.
    Default,
    /// Hours (0: no rotation).
    Hours(u32),
}

fn parse_cvv_interval(s: &str) -> Result<CvvInterval, String> {
    if s == "default" {
        return Ok(CvvInterval::Default);
    }
    match s.parse::<u32>() {
        Ok(0) => Ok(CvvInterval::Hours(0)),
        Ok(h) if cardcore_domain::cvv_window::valid_interval(h) => Ok(CvvInterval::Hours(h)),
        _ => Err(format!("{}; or `default`", cardcore_domain::cvv_window::INTERVAL_RULE)),
    }
}

fn parse_m2p_required(s: &str) -> Result<M2pRequired, String> {
    M2pRequired::parse(s)
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ZoneAlgorithm {
    Aes,
    Tdes,
    Pvk,
}

impl ZoneAlgorithm {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes => "aes",
            Self::Tdes => "tdes",
            Self::Pvk => cardcore_service::keyring::PVK,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new version of the PIN verification and data keys, and of every
    /// tenant's RSA PIN transport key. Old rows keep verifying and move to
    /// the new version on their next write; a replaced transport key keeps
    /// decrypting for the grace period, then is refused.
    Rotate {
        /// How long the replaced transport keys keep decrypting, in seconds
        /// (0: refuse them at once, e.g. after a suspected compromise).
        #[arg(long, default_value_t = 86_400)]
        transport_grace_seconds: u32,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Print a new random master key (64 hex characters).
    Generate,
    /// Rewrap every stored key under a new master key, in one transaction
    /// (the current key is given as usual). Nodes still running with the old
    /// key stop at their next key refresh, saying why; restart them with the
    /// new one. See docs/DEPLOYMENT.md, "Rotating the master key".
    Rotate {
        /// File holding the new master key (64 hex characters; make it with
        /// `cardcore master-key generate`).
        #[arg(long)]
        new_key_file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}
