//! Seeding for development and benchmarks: many cardholders, each with one
//! virtual card whose PIN is set, written straight through the store in one
//! transaction per batch.
//!
//! The records are made by the code the service itself uses: cardholders
//! are validated like `create_cardholder`, cards come from `new_card` (PAN,
//! CVV, sealing, kit number), the PIN verifier from `new_pin_verifier`, and
//! the audit entries and outbox events are the ones `create_cardholder`,
//! `create_card` and `set_pin` write (`cardholder.created`, `card.created`,
//! `card.pin_set`). Only the transaction boundary differs: a whole batch
//! commits at once, so a million cards seed in minutes.

use cardcore_crypto::Pin;
use cardcore_domain::cardholder::NewCardholder;
use cardcore_domain::{AccountId, CardId, CardType, Cardholder, CardholderId, EventType, Phone};

use crate::cards::CreateCard;
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
    /// `first`, each with one ACTIVE virtual card whose PIN is `pin`, in ONE
    /// transaction. A development and benchmark tool: the CLI's `seed`
    /// command calls it; no API exposes it.
    pub async fn seed_cards(&self, ctx: &Ctx, first: u64, count: u32, pin: &Pin) -> ServiceResult<Vec<SeededCard>> {
        if count > MAX_BATCH {
            return Err(ServiceError::invalid("count", format!("must be at most {MAX_BATCH}")));
        }
        self.config.pin_policy.check(pin, None, false)?;
        let input = |holder: &Cardholder| CreateCard {
            cardholder_id: holder.id,
            card_type: CardType::Virtual,
            account_id: None,
            program_id: None,
            card_name: None,
            printed_name: None,
            kit_number: None,
        };
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
                if tx.insert_card(&candidate).await? {
                    inserted = Some(candidate.card);
                    break;
                }
            }
            let card = inserted.ok_or_else(|| ServiceError::internal("could not draw a unique PAN and kit number"))?;
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
            out.push(SeededCard {
                card_id: card.id,
                external_id: holder.external_id.as_str().to_owned(),
                kit_number: card.kit_number.as_str().to_owned(),
                phone_country_code: holder.phone.country_code.clone(),
                phone_number: holder.phone.number.clone(),
                expiry: card.expiry.to_string(),
            });
        }
        tx.commit().await?;
        Ok(out)
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
}
