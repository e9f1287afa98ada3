//! The CSV `cardcore seed` writes: `# key=value` header lines (tenant id,
//! API key, PIN), a column line, then one line per card.

use std::path::Path;

use anyhow::{bail, Context as _};

/// The columns, in order.
pub const COLUMNS: &str = "card_id,external_id,kit_number,phone_country_code,phone_number,expiry";

/// One seeded card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedCard {
    pub card_id: Box<str>,
    pub external_id: Box<str>,
    pub kit_number: Box<str>,
    pub phone_country_code: Box<str>,
    pub phone_number: Box<str>,
    pub expiry: Box<str>,
}

/// A whole seed file.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub tenant_id: String,
    pub api_key: String,
    pub pin: String,
    pub cards: Vec<SeedCard>,
}

/// Reads a seed file.
pub fn load(path: &Path) -> anyhow::Result<SeedFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the seed file {}", path.display()))?;
    parse(&text).with_context(|| format!("seed file {}", path.display()))
}

/// Parses a seed file's text.
pub fn parse(text: &str) -> anyhow::Result<SeedFile> {
    let (mut tenant_id, mut api_key, mut pin) = (None, None, None);
    let mut cards = Vec::new();
    let mut seen_columns = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(meta) = line.strip_prefix('#') {
            if let Some((k, v)) = meta.trim().split_once('=') {
                match k.trim() {
                    "tenant_id" => tenant_id = Some(v.trim().to_owned()),
                    "api_key" => api_key = Some(v.trim().to_owned()),
                    "pin" => pin = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !seen_columns {
            if line != COLUMNS {
                bail!("line {}: expected the column line {COLUMNS:?}", n + 1);
            }
            seen_columns = true;
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let [card_id, external_id, kit_number, cc, number, expiry] = f.as_slice() else {
            bail!("line {}: expected 6 fields, got {}", n + 1, f.len());
        };
        cards.push(SeedCard {
            card_id: (*card_id).into(),
            external_id: (*external_id).into(),
            kit_number: (*kit_number).into(),
            phone_country_code: (*cc).into(),
            phone_number: (*number).into(),
            expiry: (*expiry).into(),
        });
    }
    if cards.is_empty() {
        bail!("no cards");
    }
    Ok(SeedFile {
        tenant_id: tenant_id.context("no `# tenant_id=` line")?,
        api_key: api_key.context("no `# api_key=` line")?,
        pin: pin.context("no `# pin=` line")?,
        cards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_cardcore_seed_writes() {
        let text = "# cardcore seed: development/benchmark data\n# tenant_id=t1\n# tenant_name=bench\n\
                    # api_key=ck_x\n# pin=4821\n# cards=1\n\
                    card_id,external_id,kit_number,phone_country_code,phone_number,expiry\n\
                    0190,seed-00000000,1234567890,351,900000000,11/29\n";
        let f = parse(text).unwrap();
        assert_eq!(
            (f.tenant_id.as_str(), f.api_key.as_str(), f.pin.as_str()),
            ("t1", "ck_x", "4821")
        );
        assert_eq!(f.cards.len(), 1);
        assert_eq!(&*f.cards[0].kit_number, "1234567890");
        assert_eq!(&*f.cards[0].expiry, "11/29");
    }

    #[test]
    fn refuses_a_file_without_key_or_cards() {
        assert!(parse("# pin=1\ncard_id,external_id,kit_number,phone_country_code,phone_number,expiry\n").is_err());
        assert!(parse("# tenant_id=t\n# pin=1\nc,d\n").is_err());
    }
}
