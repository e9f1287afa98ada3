//! `cardcore seed`: a development and benchmark command. Creates a tenant
//! with an AES zone PIN key and N cardholders, each with one ACTIVE virtual
//! card whose PIN, limits and spending controls are set, through the
//! service's own card-making code (`cardcore_service::seed`), a batch per
//! transaction, and writes what a load generator needs to a CSV file.
//!
//! The file starts with `# key=value` lines (tenant id, name, API key, PIN,
//! zone key id, card count), then `card_id,external_id,kit_number,
//! phone_country_code,phone_number,expiry,pin_block` (the card's PIN as a
//! format-4 block under the zone key, as a terminal sends it). It holds an
//! API key: it is created with mode 0600.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use cardcore_crypto::Pin;
use cardcore_domain::Channel;
use cardcore_service::keyring::ZoneKey;
use cardcore_service::seed::{SeededCard, MAX_BATCH};
use cardcore_service::{cli_principal, Ctx, Service, ServiceConfig};
use clap::Args;

use crate::cli::DbArgs;

/// Arguments of `cardcore seed`.
#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Name of the NEW tenant the cards belong to (tenant names are unique).
    #[arg(long)]
    pub tenant_name: String,
    /// How many cardholders, each with one virtual card.
    #[arg(long, default_value_t = 10_000)]
    pub cards: u64,
    /// The PIN every seeded card gets (it must pass the PIN policy).
    #[arg(long, default_value = "4821")]
    pub pin: String,
    /// The CSV file to write (mode 0600: its header holds the tenant's API key).
    #[arg(long)]
    pub out: PathBuf,
    /// Cards per database transaction.
    #[arg(long, default_value_t = 1_000)]
    pub batch: u32,
    /// Transactions in flight at once. Keep 1 on SQLite (one writer); 2 to 4
    /// helps on PostgreSQL.
    #[arg(long, default_value_t = 1)]
    pub jobs: u32,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Runs `cardcore seed`.
pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.batch > MAX_BATCH {
        bail!("--batch must be 1 to {MAX_BATCH}");
    }
    if args.jobs == 0 || args.jobs > 16 {
        bail!("--jobs must be 1 to 16");
    }
    let pin = Pin::parse(&args.pin).map_err(|_| anyhow::anyhow!("--pin must be digits only, e.g. 4821"))?;
    let service = crate::open_service(&args.db, ServiceConfig::default()).await?;
    // Refuse a weak PIN before a tenant is made for nothing.
    service
        .config()
        .pin_policy
        .check(&pin, None, false)
        .map_err(|e| anyhow::anyhow!("--pin: {e}"))?;
    let mut file = create_private(&args.out)?;
    let (tenant, key) = service
        .create_tenant(&args.tenant_name)
        .await
        .map_err(anyhow::Error::msg)?;
    // The terminals' key: the PIN blocks of authorizations are under it.
    let zone_key = service
        .keys()
        .create_zone_key(tenant.id, "aes")
        .await
        .map_err(anyhow::Error::msg)?;
    writeln!(
        file,
        "# cardcore seed: development/benchmark data\n# tenant_id={}\n# tenant_name={}\n# api_key={}\n# pin={}\n# zone_key_id={}\n# cards={}",
        tenant.id,
        tenant.name,
        key.secret.as_str(),
        args.pin,
        zone_key.id,
        args.cards
    )?;
    writeln!(
        file,
        "card_id,external_id,kit_number,phone_country_code,phone_number,expiry,pin_block"
    )?;
    let zone_key = Arc::new(zone_key);
    let ctx = Arc::new(Ctx::new(
        cli_principal(tenant.clone()),
        Channel::CLI,
        Some("seed".into()),
    ));
    let pin = Arc::new(pin);
    let started = Instant::now();
    let mut done: u64 = 0;
    let mut next: u64 = 0;
    let mut last_report = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // Bounded: every turn either starts a batch (next grows to args.cards) or
    // finishes one (the set shrinks), and no batch starts twice.
    let turns = args.cards / u64::from(args.batch) * 2 + 4;
    for _ in 0..turns {
        while next < args.cards && tasks.len() < args.jobs as usize {
            let count = u32::try_from((args.cards - next).min(u64::from(args.batch))).unwrap_or(args.batch);
            tasks.spawn(seed_batch(
                service.clone(),
                ctx.clone(),
                next,
                count,
                pin.clone(),
                zone_key.clone(),
            ));
            next += u64::from(count);
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let cards = joined.context("a seeding task failed")??;
        write_rows(&mut file, &cards)?;
        done += cards.len() as u64;
        if last_report.elapsed().as_secs() >= 5 {
            last_report = Instant::now();
            eprintln!("seeded {done}/{} cards ({:.0}/s)", args.cards, rate(done, started));
        }
    }
    file.flush()?;
    if done != args.cards {
        bail!("seeded {done} of {} cards", args.cards);
    }
    println!(
        "seeded {done} cards for tenant {} ({}) in {:.1} s ({:.0} cards/s); card list and API key in {}",
        tenant.name,
        tenant.id,
        started.elapsed().as_secs_f64(),
        rate(done, started),
        args.out.display()
    );
    Ok(())
}

async fn seed_batch(
    service: Arc<Service>,
    ctx: Arc<Ctx>,
    first: u64,
    count: u32,
    pin: Arc<Pin>,
    zone_key: Arc<ZoneKey>,
) -> anyhow::Result<Vec<SeededCard>> {
    service
        .seed_cards(&ctx, first, count, &pin, Some(&zone_key))
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("seeding cards {first}..{}", first + u64::from(count)))
}

fn rate(done: u64, started: Instant) -> f64 {
    done as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

fn write_rows(file: &mut impl std::io::Write, cards: &[SeededCard]) -> std::io::Result<()> {
    for c in cards {
        writeln!(
            file,
            "{},{},{},{},{},{},{}",
            c.card_id,
            c.external_id,
            c.kit_number,
            c.phone_country_code,
            c.phone_number,
            c.expiry,
            c.pin_block.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

fn create_private(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, file))
}
