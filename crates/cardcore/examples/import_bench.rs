//! The portfolio-import benchmark's tool (docs/BENCHMARKS.md), not part of
//! the product:
//!
//! - `gen` writes N import lines to stdout: a third each with the PIN as an
//!   ISO-4 block, an ISO-0 block and a Visa PVV, under the keys given (from
//!   `cardcore tenant zone-key --json`; the PVK is the one imported). Card i
//!   has kit `9` + i (9 digits), a PAN from BIN 400000 and a PIN derived from i.
//! - `check` verifies every card's PIN through the service (found by kit
//!   number): the right PIN must verify, and every 1000th card first refuses
//!   a wrong one.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use cardcore::cli::DbArgs;
use cardcore_crypto::pinblock::{self, TdesFormat};
use cardcore_crypto::{Pan, Pin};
use cardcore_domain::Channel;
use cardcore_service::pins::{NamedPin, PinInput};
use cardcore_service::{cli_principal, Ctx, ServiceConfig};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Gen {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        aes_key_id: String,
        #[arg(long)]
        aes_key: String,
        #[arg(long)]
        tdes_key_id: String,
        #[arg(long)]
        tdes_key: String,
        #[arg(long)]
        pvk_key_id: String,
        #[arg(long)]
        pvk: String,
    },
    Check {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        count: u64,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn pan(i: u64) -> anyhow::Result<Pan> {
    let body = format!("400000{i:09}");
    let check = cardcore_crypto::luhn::check_digit(body.as_bytes()).context("check digit")?;
    Ok(Pan::parse(&format!("{body}{}", char::from(check)))?)
}

fn pin(i: u64) -> anyhow::Result<Pin> {
    Ok(Pin::parse(&format!("{:04}", (i * 7919 + 1234) % 10_000))?)
}

fn kit(i: u64) -> String {
    format!("9{i:09}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Gen {
            count,
            aes_key_id,
            aes_key,
            tdes_key_id,
            tdes_key,
            pvk_key_id,
            pvk,
        } => {
            let aes = hex::decode(aes_key)?;
            let tdes = hex::decode(tdes_key)?;
            let pvk: [u8; 16] = hex::decode(pvk)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("PVK: 16 bytes"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut rng = rand::rngs::OsRng;
            for i in 0..count {
                let (pan, pin) = (pan(i)?, pin(i)?);
                let pin_json = match i % 3 {
                    0 => json!({"format": "ISO-4", "key_id": aes_key_id,
                                "block": hex::encode_upper(pinblock::encrypt_format4(&aes, &pin, &pan, &mut rng)?)}),
                    1 => json!({"format": "ISO-0", "key_id": tdes_key_id,
                                "block": hex::encode_upper(pinblock::encrypt_tdes(&tdes, TdesFormat::Format0, &pin, &pan, &mut rng)?)}),
                    _ => json!({"pvv": cardcore_crypto::pvv::generate_visa_pvv(&pvk, 1, &pin, &pan)?.as_str(),
                                "pvk_key_id": pvk_key_id, "pvki": 1}),
                };
                let line = json!({
                    "external_id": format!("bench-{i:09}"),
                    "name": format!("Bench Holder {i}"),
                    "phone": {"country_code": "351", "number": format!("9{:08}", i % 100_000_000)},
                    "card": {"pan": pan.expose(), "expiry": "12/29", "kit_number": kit(i),
                             "type": "virtual", "status": "ACTIVE", "pin": pin_json},
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
        Cmd::Check { tenant, count, db } => {
            let service = cardcore::open_service(&db, ServiceConfig::default()).await?;
            let tenant = service.tenant(tenant.parse()?).await.map_err(anyhow::Error::msg)?;
            let ctx = Arc::new(Ctx::new(
                cli_principal(tenant),
                Channel::CLI,
                Some("import-check".into()),
            ));
            let started = std::time::Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            let mut failed = 0u64;
            for i in 0..count {
                let (service, ctx) = (service.clone(), ctx.clone());
                tasks.spawn(async move {
                    let card = service.card_by_kit(&ctx, &kit(i)).await.map_err(anyhow::Error::msg)?;
                    let plain = |p: Pin| NamedPin {
                        prefix: None,
                        input: PinInput::Plain(p),
                    };
                    if i % 1000 == 0 {
                        let wrong = Pin::parse(&format!("{:04}", (i * 7919 + 1235) % 10_000))?;
                        let v = service
                            .verify_pin(&ctx, card.id, plain(wrong))
                            .await
                            .map_err(anyhow::Error::msg)?;
                        if v.valid {
                            bail!("card {i}: a wrong PIN verified");
                        }
                    }
                    let v = service
                        .verify_pin(&ctx, card.id, plain(pin(i)?))
                        .await
                        .map_err(anyhow::Error::msg)?;
                    if !v.valid {
                        bail!("card {i}: its PIN does not verify");
                    }
                    Ok(())
                });
                while tasks.len() >= 32 {
                    if let Some(r) = tasks.join_next().await {
                        if let Err(e) = r? {
                            eprintln!("{e:#}");
                            failed += 1;
                        }
                    }
                }
            }
            while let Some(r) = tasks.join_next().await {
                if let Err(e) = r? {
                    eprintln!("{e:#}");
                    failed += 1;
                }
            }
            println!(
                "checked {count} cards in {:.1} s: {} verified, {failed} failed",
                started.elapsed().as_secs_f64(),
                count - failed
            );
            if failed > 0 {
                bail!("{failed} cards failed");
            }
        }
    }
    Ok(())
}
