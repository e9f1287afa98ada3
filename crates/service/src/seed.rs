//! Seeding for development and benchmarks: many cardholders, each with one
//! virtual card whose PIN is set, written straight through the store in one
//! transaction per batch.
//!
//! The records are made by the code the service itself uses: cardholders
//! are validated like `create_cardholder`, cards come from `new_card` (PAN,
//! CVV, sealing, kit number), the PIN verifier from `new_pin_verifier`, and
//! the audit entries and outbox events are the ones `create_cardholder`,
//! `create_card` and `set_pin` write (`cardholder.created`, `card.created`,
//! `card.pin_set`), and `card.limits_updated` and `card.controls_updated`
//! as `set_limits` and `set_controls` write them. Only the transaction
//! boundary differs: a whole batch commits at once, so a million cards seed
//! in minutes.
//!
//! Every card gets the limits of [`seed_limits`] and the spending controls
//! of [`seed_controls`], so an authorization of the load harness is checked
//! against real limits and controls and approved (a purchase of up to
//! [`SEED_PER_TRANSACTION`] at a grocery in Portugal). Given a zone PIN key,
//! each card's PIN also comes back as a format-4 block under that key, what
//! a terminal would send.

use cardcore_crypto::{pinblock, Pin};
use cardcore_domain::authorization::SpendingControls;
use cardcore_domain::cardholder::NewCardholder;
use cardcore_domain::limits::{ChannelLimit, ChannelLimits, Limits, MAX_AMOUNT, MAX_DAILY_COUNT};
use cardcore_domain::{AccountId, CardId, CardType, Cardholder, CardholderId, EventType, Phone};
use rand::rngs::OsRng;

use crate::cards::CreateCard;
use crate::keyring::ZoneKey;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Most cards one [`Service::seed_cards`] call writes (one transaction).
pub const MAX_BATCH: u32 = 10_000;

/// What a load generator needs to address one seeded card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededCard {
    pub card_id: CardId,
    /// The cardholder's `external_id` (P100 `externalUserId`, M2P `entityId`).
    pub external_id: String,
    /// M2P `kitNo`.
    pub kit_number: String,
    /// The cardholder's phone, country code without `+`.
    pub phone_country_code: String,
    pub phone_number: String,
    /// `MM/YY`.
    pub expiry: String,
    /// The card's PIN as a format-4 block under the zone key given to
    /// [`Service::seed_cards`], hexadecimal; None without a zone key.
    pub pin_block: Option<String>,
}

/// Largest single purchase the seeded limits allow (1,000.00).
pub const SEED_PER_TRANSACTION: u64 = 100_000;

/// The limits of every seeded card: every channel enabled, with a
/// per-transaction, daily, monthly and daily-count limit that a benchmark
/// run does not reach (a million purchases of 1,000.00 a day, the largest
/// monthly total accepted), so the
/// checks run and approve.
pub fn seed_limits(currency: &str) -> Limits {
    let limit = ChannelLimit {
        enabled: true,
        per_transaction: Some(SEED_PER_TRANSACTION),
        daily: Some(SEED_PER_TRANSACTION * u64::from(MAX_DAILY_COUNT)),
        monthly: Some(MAX_AMOUNT),
        daily_count: Some(MAX_DAILY_COUNT),
    };
    Limits {
        currency: currency.to_owned(),
        channels: ChannelLimits {
            pos: limit,
            ecommerce: limit,
            atm: limit,
            contactless: limit,
        },
    }
}

/// The spending controls of every seeded card: groceries, restaurants and
/// miscellaneous retail (5411, 5812, 5999) in four countries (PT, ES, FR,
/// DE); gambling (7995) and two countries blocked.
pub fn seed_controls() -> SpendingControls {
    let list = |codes: &[&str]| codes.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    SpendingControls {
        allowed_mccs: Some(list(&["5411", "5812", "5999"])),
        blocked_mccs: list(&["7995"]),
        allowed_countries: Some(list(&["PT", "ES", "FR", "DE"])),
        blocked_countries: list(&["KP", "IR"]),
    }
}

/// The seeded cardholder number `index`'s external id: `seed-00000042`.
pub fn seed_external_id(index: u64) -> String {
    format!("seed-{index:08}")
}

/// A phone for seeded cardholder `index`: Portuguese mobile range, 9 digits.
fn seed_phone(index: u64) -> Phone {
    Phone {
        country_code: "351".into(),
        number: format!("9{:08}", index % 100_000_000),
    }
}

impl Service {
    /// Seeds `count` (at most [`MAX_BATCH`]) cardholders numbered from
    /// `first`, each with one ACTIVE virtual card whose PIN is `pin`, the
    /// limits of [`seed_limits`] and the controls of [`seed_controls`], in
    /// ONE transaction. With `zone_key` (an `aes` zone PIN key of the
    /// tenant), each card's PIN is also returned as a format-4 block under
    /// it. A development and benchmark tool: the CLI's `seed` command calls
    /// it; no API exposes it.
    pub async fn seed_cards(
        &self,
        ctx: &Ctx,
        first: u64,
        count: u32,
        pin: &Pin,
        zone_key: Option<&ZoneKey>,
    ) -> ServiceResult<Vec<SeededCard>> {
        if count > MAX_BATCH {
            return Err(ServiceError::invalid("count", format!("must be at most {MAX_BATCH}")));
        }
        if zone_key.is_some_and(|k| k.algorithm != "aes") {
            return Err(ServiceError::invalid(
                "zone_key",
                "format-4 PIN blocks need an aes zone key",
            ));
        }
        self.config.pin_policy.check(pin, None, false)?;
        let limits = seed_limits(&self.config.currency);
        limits.validate()?;
        let controls = seed_controls();
        controls.validate()?;
        let limits_json = serde_json::to_value(&limits).ok();
        let unlimited_json = serde_json::to_value(Limits::unlimited(&self.config.currency)).ok();
        let controls_json = serde_json::to_value(&controls).ok();
        let input = |holder: &Cardholder| CreateCard {
            cardholder_id: holder.id,
            card_type: CardType::Virtual,
            account_id: None,
            program_id: None,
            card_name: None,
            printed_name: None,
            kit_number: None,
        };
        let (input, limits, controls) = (&input, &limits, &controls);
        let (limits_json, unlimited_json, controls_json) = (&limits_json, &unlimited_json, &controls_json);
        // The batch is one transaction: when the database aborts it, the
        // whole batch is drawn and written again (nothing was answered).
        self.unit_of_work(|| async move {
            let mut out = Vec::with_capacity(count as usize);
            let mut tx = self.store.begin().await?;
            for index in first..first.saturating_add(u64::from(count)) {
                let now = self.now();
                let valid = NewCardholder::validate(
                    &seed_external_id(index),
                    &format!("Seed Holder {index}"),
                    &seed_phone(index),
                    None,
                    None,
                    now.date_naive(),
                )?;
                let holder = Cardholder {
                    id: CardholderId::new(),
                    tenant_id: ctx.tenant_id(),
                    external_id: valid.external_id,
                    name: valid.name,
                    phone: valid.phone,
                    email: valid.email,
                    date_of_birth: valid.date_of_birth,
                    default_account_id: AccountId::new(),
                    created_at: now,
                };
                if !tx.insert_cardholder(&holder).await? {
                    return Err(ServiceError::Conflict {
                        code: "cardholder_exists",
                        message: format!(
                            "a cardholder with external_id {:?} already exists: seed into a new tenant",
                            holder.external_id.as_str()
                        ),
                    });
                }
                let after = serde_json::json!({ "cardholder_id": holder.id, "external_id": holder.external_id });
                tx.insert_audit(&self.audit(ctx, None, "cardholder.created", None, None, Some(after)))
                    .await?;

                // As `issue_in`: draw again on a PAN or kit number collision.
                let mut inserted = None;
                for _ in 0..8 {
                    let mut candidate = self.new_card(ctx, &holder, &input(&holder), None).await?.record;
                    self.put_new_pin(&mut candidate, pin).await?;
                    candidate.card.limits = limits.clone();
                    candidate.usage.controls = Some(controls.clone());
                    if tx.insert_card(&candidate).await? {
                        inserted = Some(candidate);
                        break;
                    }
                }
                let record =
                    inserted.ok_or_else(|| ServiceError::internal("could not draw a unique PAN and kit number"))?;
                let pin_block = match zone_key {
                    Some(key) => {
                        let pan = self.open_pan(&record).await?;
                        let block = pinblock::encrypt_format4(key.key.expose(), pin, &pan, &mut OsRng)
                            .map_err(|e| ServiceError::caused("a format-4 PIN block for a seeded card", e))?;
                        Some(hex::encode_upper(block))
                    }
                    None => None,
                };
                let card = record.card;
                tx.insert_audit(&self.audit(ctx, Some(card.id), "card.created", None, None, Some(card.snapshot())))
                    .await?;
                tx.insert_event(
                    &self
                        .event(
                            card.tenant_id,
                            Some(card.id),
                            EventType::CardCreated,
                            serde_json::json!({ "card": card }),
                        )
                        .await?,
                )
                .await?;
                tx.insert_audit(&self.audit(ctx, Some(card.id), "card.pin_set", None, None, Some(card.snapshot())))
                    .await?;
                let data = serde_json::json!({ "card_id": card.id, "pin_status": card.pin_status });
                tx.insert_event(
                    &self
                        .event(card.tenant_id, Some(card.id), EventType::CardPinSet, data)
                        .await?,
                )
                .await?;
                // As `set_limits` and `set_controls` record them.
                tx.insert_audit(&self.audit(
                    ctx,
                    Some(card.id),
                    "card.limits_updated",
                    None,
                    unlimited_json.clone(),
                    limits_json.clone(),
                ))
                .await?;
                let data = serde_json::json!({ "card_id": card.id, "limits": limits });
                tx.insert_event(
                    &self
                        .event(card.tenant_id, Some(card.id), EventType::CardLimitsUpdated, data)
                        .await?,
                )
                .await?;
                tx.insert_audit(&self.audit(
                    ctx,
                    Some(card.id),
                    "card.controls_updated",
                    None,
                    None,
                    controls_json.clone(),
                ))
                .await?;
                let data = serde_json::json!({ "card_id": card.id, "controls": controls });
                tx.insert_event(
                    &self
                        .event(card.tenant_id, Some(card.id), EventType::CardControlsUpdated, data)
                        .await?,
                )
                .await?;
                out.push(SeededCard {
                    card_id: card.id,
                    external_id: holder.external_id.as_str().to_owned(),
                    kit_number: card.kit_number.as_str().to_owned(),
                    phone_country_code: holder.phone.country_code.clone(),
                    phone_number: holder.phone.number.clone(),
                    expiry: card.expiry.to_string(),
                    pin_block,
                });
            }
            tx.commit().await?;
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_identifiers_are_valid() {
        assert_eq!(seed_external_id(42), "seed-00000042");
        let mut errors = cardcore_domain::ValidationErrors::new();
        seed_phone(1_234_567).validate("phone", &mut errors);
        assert!(errors.into_result().is_ok());
        assert_eq!(seed_phone(7).number, "900000007");
    }

    #[test]
    fn seeded_limits_and_controls_are_valid() {
        assert!(seed_limits("EUR").validate().is_ok());
        assert!(seed_controls().validate().is_ok());
    }
}
