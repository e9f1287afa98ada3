//! The CSV `cardcore seed` writes: `# key=value` header lines (tenant id,
//! API key, PIN, zone key id), a column line, then one line per card. Files
//! of an older `cardcore seed`, without the zone key and the PIN blocks,
//! still load; the `authorize-pin` scenario is then not available.

use std::path::Path;

use anyhow::{bail, Context as _};

/// The columns, in order.
pub const COLUMNS: &str = "card_id,external_id,kit_number,phone_country_code,phone_number,expiry,pin_block";
/// The columns of an older seed file (no PIN blocks).
pub const COLUMNS_WITHOUT_PIN_BLOCK: &str = "card_id,external_id,kit_number,phone_country_code,phone_number,expiry";

/// One seeded card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedCard {
    pub card_id: Box<str>,
    pub external_id: Box<str>,
    pub kit_number: Box<str>,
    pub phone_country_code: Box<str>,
    pub phone_number: Box<str>,
    pub expiry: Box<str>,
    /// The card's PIN as a format-4 block under the seed's zone key (hex).
    pub pin_block: Option<Box<str>>,
}

/// A whole seed file.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub tenant_id: String,
    pub api_key: String,
    pub pin: String,
    /// The tenant's AES zone PIN key the blocks are under.
    pub zone_key_id: Option<String>,
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
    let (mut tenant_id, mut api_key, mut pin, mut zone_key_id) = (None, None, None, None);
    let mut cards = Vec::new();
    let mut columns = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(meta) = line.strip_prefix('#') {
            if let Some((k, v)) = meta.trim().split_once('=') {
                match k.trim() {
                    "tenant_id" => tenant_id = Some(v.trim().to_owned()),
                    "api_key" => api_key = Some(v.trim().to_owned()),
                    "pin" => pin = Some(v.trim().to_owned()),
                    "zone_key_id" => zone_key_id = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if columns == 0 {
            columns = match line {
                COLUMNS => 7,
                COLUMNS_WITHOUT_PIN_BLOCK => 6,
                _ => bail!("line {}: expected the column line {COLUMNS:?}", n + 1),
            };
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != columns {
            bail!("line {}: expected {columns} fields, got {}", n + 1, f.len());
        }
        let [card_id, external_id, kit_number, cc, number, expiry, ..] = f.as_slice() else {
            bail!("line {}: expected {columns} fields, got {}", n + 1, f.len());
        };
        let pin_block = f.get(6).filter(|b| !b.is_empty()).map(|b| (*b).into());
        cards.push(SeedCard {
            card_id: (*card_id).into(),
            external_id: (*external_id).into(),
            kit_number: (*kit_number).into(),
            phone_country_code: (*cc).into(),
            phone_number: (*number).into(),
            expiry: (*expiry).into(),
            pin_block,
        });
    }
    if cards.is_empty() {
        bail!("no cards");
    }
    Ok(SeedFile {
        tenant_id: tenant_id.context("no `# tenant_id=` line")?,
        api_key: api_key.context("no `# api_key=` line")?,
        pin: pin.context("no `# pin=` line")?,
        zone_key_id,
        cards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_cardcore_seed_writes() {
        let text = "# cardcore seed: development/benchmark data\n# tenant_id=t1\n# tenant_name=bench\n\
                    # api_key=ck_x\n# pin=4821\n# zone_key_id=zk1\n# cards=2\n\
                    card_id,external_id,kit_number,phone_country_code,phone_number,expiry,pin_block\n\
                    0190,seed-00000000,1234567890,351,900000000,11/29,00112233445566778899AABBCCDDEEFF\n\
                    0191,seed-00000001,1234567891,351,900000001,11/29,\n";
        let f = parse(text).unwrap();
        assert_eq!(
            (f.tenant_id.as_str(), f.api_key.as_str(), f.pin.as_str()),
            ("t1", "ck_x", "4821")
        );
        assert_eq!(f.zone_key_id.as_deref(), Some("zk1"));
        assert_eq!(f.cards.len(), 2);
        assert_eq!(&*f.cards[0].kit_number, "1234567890");
        assert_eq!(&*f.cards[0].expiry, "11/29");
        assert_eq!(
            f.cards[0].pin_block.as_deref(),
            Some("00112233445566778899AABBCCDDEEFF")
        );
        assert_eq!(f.cards[1].pin_block, None);
    }

    #[test]
    fn reads_an_older_file_without_pin_blocks() {
        let text = "# tenant_id=t1\n# api_key=ck_x\n# pin=4821\n\
                    card_id,external_id,kit_number,phone_country_code,phone_number,expiry\n\
                    0190,seed-00000000,1234567890,351,900000000,11/29\n";
        let f = parse(text).unwrap();
        assert_eq!(f.zone_key_id, None);
        assert_eq!(f.cards[0].pin_block, None);
        assert!(parse(&text.replace("11/29", "11/29,AB")).is_err());
    }

    #[test]
    fn refuses_a_file_without_key_or_cards() {
        assert!(parse("# pin=1\ncard_id,external_id,kit_number,phone_country_code,phone_number,expiry\n").is_err());
        assert!(parse("# tenant_id=t\n# pin=1\nc,d\n").is_err());
    }
}
