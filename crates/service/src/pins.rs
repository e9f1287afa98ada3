//! PINs and OTPs: set, change, verify with the try counter, unblock, issue
//! OTPs. The clear PIN lives only in memory inside a zeroizing `Pin`; what is
//! stored is HMAC-SHA256(card id, PIN) under the versioned PIN key.

use cardcore_crypto::pinblock::{self, Format4Key, Format4PanField, TdesFormat};
use cardcore_crypto::verifier::label;
use cardcore_crypto::{Otp, Pan, Pin};
use cardcore_domain::otp::{IssuedOtp, OtpPurpose, OtpState};
use cardcore_domain::pin_policy::PinRules;
use cardcore_domain::{Card, CardId, EventType, PinDecision, PinTries, RuleViolation, Timestamp, ZoneKeyId};
use cardcore_store::{CardRecord, Tx, Verifier};

use crate::cards::{random_code, StatusChange};
use crate::import::ImportedPvv;
use crate::keyring::Purpose;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// ISO 9564-1 formats accepted as encrypted PIN input. Format 1 is refused:
/// it carries no PAN binding, and an issuer always knows the PAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// Format 0 under a double-length TDES zone key.
    Iso0,
    /// Format 3 under a double-length TDES zone key.
    Iso3,
    /// Format 4 under an AES zone key.
    Iso4,
}

impl BlockFormat {
    /// The zone key algorithm this format needs.
    pub fn algorithm(self) -> &'static str {
        match self {
            Self::Iso0 | Self::Iso3 => "tdes",
            Self::Iso4 => "aes",
        }
    }

    /// Block length in bytes.
    pub fn block_len(self) -> usize {
        match self {
            Self::Iso0 | Self::Iso3 => 8,
            Self::Iso4 => 16,
        }
    }
}

/// A PIN as a caller sent it, in one of three forms.
pub enum PinInput {
    /// Digits in clear (over TLS).
    Plain(Pin),
    /// Base64 RSA-OAEP-SHA256 ciphertext of the digits under the tenant's
    /// transport key: the version `key_id` names, or (M2P, which sends no
    /// key id) any version that still decrypts, newest first.
    Encrypted { ciphertext: String, key_id: Option<String> },
    /// An ISO 9564 block under one of the tenant's zone PIN keys.
    Block {
        block: Vec<u8>,
        format: BlockFormat,
        key_id: Option<ZoneKeyId>,
    },
}

impl std::fmt::Debug for PinInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("PinInput::Plain([redacted])"),
            Self::Encrypted { key_id, .. } => write!(f, "PinInput::Encrypted({key_id:?}, [redacted])"),
            Self::Block { format, key_id, .. } => write!(f, "PinInput::Block({format:?}, {key_id:?}, [redacted])"),
        }
    }
}

/// A PIN with where it sat in the request, for error messages: `prefix` is
/// `None` when the PIN's fields are the body's own (`pin`, `encrypted_pin`,
/// `key_id`, ...), or the enclosing field (`old_pin`, `new_pin`).
#[derive(Debug)]
pub struct NamedPin {
    pub prefix: Option<&'static str>,
    pub input: PinInput,
}

impl NamedPin {
    /// The request field name of one of the PIN's parts.
    pub fn field(prefix: Option<&str>, key: &str) -> String {
        match prefix {
            Some(p) => format!("{p}.{key}"),
            None => key.to_owned(),
        }
    }
}

/// The OTP a cardholder received, as the caller passes it on.
#[derive(Debug)]
pub struct OtpProof {
    pub trace_number: String,
    pub code: String,
}

/// The answer to a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub valid: bool,
    pub remaining_attempts: u32,
}

/// A new OTP's handle: the code itself goes out only as an `otp.created` event.
#[derive(Debug, Clone)]
pub struct OtpIssued {
    pub trace_number: String,
    pub expires_at: Timestamp,
}

/// A right OTP, checked and left unspent: `message_hash` is a keyed hash
/// of the card and the trace number (never of the code), which the caller
/// may show as proof that the code was checked.
#[derive(Debug, Clone)]
pub struct OtpValidated {
    pub trace_number: String,
    pub message_hash: String,
}

/// The RSA key partners encrypt PINs under.
#[derive(Debug, Clone)]
pub struct PinEncryptionKey {
    pub key_id: String,
    pub algorithm: &'static str,
    pub public_key_pem: String,
}

fn transport_key_id(version: i32) -> String {
    format!("rsa-oaep-v{version}")
}

fn transport_key_version(key_id: &str) -> Option<i32> {
    key_id.strip_prefix("rsa-oaep-v")?.parse().ok().filter(|v| *v > 0)
}

impl Service {
    /// The tenant's public key for `encrypted_pin` (its newest version,
    /// made on the tenant's first ask).
    pub async fn pin_encryption_key(&self, ctx: &Ctx) -> ServiceResult<PinEncryptionKey> {
        let key = self.keys.transport_key(ctx.tenant_id()).await?;
        Ok(PinEncryptionKey {
            key_id: transport_key_id(key.version),
            algorithm: cardcore_crypto::transport::ALGORITHM,
            public_key_pem: key.key.public_key_pem().to_owned(),
        })
    }

    /// Turns any PIN input into a `Pin`. Every failure of a ciphertext or a
    /// block is one generic answer: which check failed would be an oracle.
    async fn decode_pin(&self, ctx: &Ctx, rec: &CardRecord, pin: NamedPin) -> ServiceResult<Pin> {
        let field = |key: &str| NamedPin::field(pin.prefix, key);
        match pin.input {
            PinInput::Plain(p) => Ok(p),
            PinInput::Encrypted { ciphertext, key_id } => {
                // Only this tenant's keys: a ciphertext made for another
                // tenant does not decrypt here.
                let version = match &key_id {
                    Some(id) => Some(transport_key_version(id).ok_or_else(|| {
                        ServiceError::invalid(
                            &field("key_id"),
                            "is not a PIN encryption key id; fetch the key from GET /v1/pin-encryption-key",
                        )
                    })?),
                    None => None,
                };
                let keys = self
                    .keys
                    .live_transport_keys(ctx.tenant_id(), version, crate::now())
                    .await?;
                if keys.is_empty() && key_id.is_some() {
                    return Err(ServiceError::invalid(
                        &field("key_id"),
                        "is not the current PIN encryption key; fetch it from GET /v1/pin-encryption-key",
                    ));
                }
                keys.iter()
                    .find_map(|k| k.key.decrypt_pin(&ciphertext).ok())
                    .ok_or_else(|| {
                        ServiceError::invalid_with(
                            "encrypted_pin_invalid",
                            &field("encrypted_pin"),
                            "could not be decrypted: encrypt the PIN digits with RSA-OAEP (SHA-256, MGF1-SHA-256) \
                             under the key from GET /v1/pin-encryption-key and send it base64-encoded",
                        )
                    })
            }
            PinInput::Block { block, format, key_id } => {
                let pan = self.open_pan(rec).await?;
                self.decode_zone_block(
                    ctx.tenant_id(),
                    &block,
                    format,
                    key_id,
                    &pan,
                    &field("key_id"),
                    &field("pin_block"),
                )
                .await
            }
        }
    }

    /// Decodes an ISO 9564 block under one of the tenant's zone PIN keys
    /// (by id, or else the newest of the format's algorithm) for `pan`.
    /// `key_field` and `block_field` name the input in errors.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn decode_zone_block(
        &self,
        tenant: cardcore_domain::TenantId,
        block: &[u8],
        format: BlockFormat,
        key_id: Option<ZoneKeyId>,
        pan: &Pan,
        key_field: &str,
        block_field: &str,
    ) -> ServiceResult<Pin> {
        let zone = self
            .keys
            .zone_key(tenant, key_id, format.algorithm())
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    key_field,
                    format!(
                        "no {} zone PIN key of this tenant matches; make one with `cardcore tenant zone-key --algorithm {}`",
                        format.algorithm(),
                        format.algorithm()
                    ),
                )
            })?;
        if zone.algorithm != format.algorithm() {
            return Err(ServiceError::invalid(
                key_field,
                format!(
                    "is a {} key; {format:?} blocks need a {} key",
                    zone.algorithm,
                    format.algorithm()
                ),
            ));
        }
        if block.len() != format.block_len() {
            return Err(ServiceError::invalid(
                block_field,
                format!("must be {} hex characters for {format:?}", format.block_len() * 2),
            ));
        }
        decode_block(block, format, zone.key.expose(), pan).map_err(|reason| {
            // The reason is for the operator only: told to the caller, it
            // would say which PAN digits a chosen block matched. Never the
            // block itself.
            tracing::debug!(?format, %reason, "refused a PIN block");
            refused_pin_block(block_field)
        })
    }

    fn pin_verifier(key: &cardcore_crypto::verifier::MacKey, card: CardId, pin: &Pin) -> [u8; 32] {
        key.compute(label::PIN, &[card.as_uuid().as_bytes(), pin.expose_bytes()])
    }

    pub(crate) async fn pin_matches(&self, rec: &CardRecord, pin: &Pin) -> ServiceResult<bool> {
        let Some(stored) = &rec.secrets.pin else {
            return Ok(false);
        };
        if let Some(pvv) = ImportedPvv::from_verifier(stored) {
            return self.pvv_matches(rec.card.tenant_id, rec, &pvv, pin).await;
        }
        let (_, key) = self.keys.mac_key(Purpose::Pin, Some(stored.key_version)).await?;
        Ok(key.verify(
            label::PIN,
            &[rec.card.id.as_uuid().as_bytes(), pin.expose_bytes()],
            &stored.value,
        ))
    }

    /// A new PIN on the card (set, change, seeding): its verifier under the
    /// newest PIN key, and the try counter cleared.
    pub(crate) async fn put_new_pin(&self, rec: &mut CardRecord, pin: &Pin) -> ServiceResult<()> {
        rec.secrets.pin = Some(self.new_pin_verifier(rec.card.id, pin).await?);
        let mut tries = pin_tries(rec);
        tries.set_new();
        put_pin_tries(rec, tries);
        Ok(())
    }

    pub(crate) async fn new_pin_verifier(&self, card: CardId, pin: &Pin) -> ServiceResult<Verifier> {
        let (version, key) = self.keys.mac_key(Purpose::Pin, None).await?;
        Ok(Verifier {
            value: Self::pin_verifier(&key, card, pin).to_vec(),
            key_version: version,
        })
    }

    /// The cardholder's date of birth, for the birth-date rule.
    async fn date_of_birth(&self, ctx: &Ctx, card: &Card) -> ServiceResult<Option<chrono::NaiveDate>> {
        Ok(self
            .store
            .cardholder(ctx.tenant_id(), card.cardholder_id)
            .await?
            .and_then(|c| c.date_of_birth))
    }

    /// The program's length and the tenant's weak-PIN rules.
    fn check_new_pin(
        &self,
        rules: PinRules,
        pin: &Pin,
        dob: Option<chrono::NaiveDate>,
        same_as_current: bool,
    ) -> ServiceResult<()> {
        Ok(self.config.pin_policy.check_with(rules, pin, dob, same_as_current)?)
    }

    /// Sets or resets a PIN, partner-authorised (`otp` None) or with the
    /// cardholder's OTP. Clears the try counter and any PIN block.
    pub async fn set_pin(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
        pin: NamedPin,
        otp: Option<OtpProof>,
    ) -> ServiceResult<Card> {
        self.set_pin_with(ctx, card, pin, otp, PinSetTerms::default()).await
    }

    /// [`Service::set_pin`] under a vendor's narrower `terms` (a card type,
    /// a stricter status set), checked with the core's own rules, before
    /// and again under the card's lock.
    pub async fn set_pin_with(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
        pin: NamedPin,
        otp: Option<OtpProof>,
        terms: PinSetTerms,
    ) -> ServiceResult<Card> {
        let id = self.card_id_of(ctx, card.into()).await?;
        self.card_throttle.check(ctx.tenant_id(), id)?;
        let rec = self.card_record(ctx, id).await?;
        terms.check(&rec.card)?;
        require_pin_settable(&rec.card)?;
        let new = self.decode_pin(ctx, &rec, pin).await?;
        let dob = self.date_of_birth(ctx, &rec.card).await?;
        let rules = self.tenant_settings(ctx.tenant_id()).await?.pin_rules;
        self.check_new_pin(rules, &new, dob, false)?;
        let _turn = self.card_order.turn(id).await;
        let (new, otp, terms) = (&new, &otp, &terms);
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            terms.check(&rec.card)?;
            require_pin_settable(&rec.card)?;
            if let Some(proof) = otp {
                if let Err(e) = self.redeem_otp(&mut *tx, &rec, proof).await? {
                    tx.commit().await?;
                    return Err(e.into());
                }
            }
            let before = rec.card.snapshot();
            self.put_new_pin(&mut rec, new).await?;
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                "card.pin_set",
                None,
                Some(before),
                Some(rec.card.snapshot()),
            ))
            .await?;
            let data = serde_json::json!({ "card_id": id, "pin_status": rec.card.pin_status });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardPinSet, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(rec.card)
        })
        .await
    }

    /// Changes a PIN. Nothing is answered about the current PIN before the
    /// caller proved they know it: first the checks that depend on no
    /// secret (input, card status, OTP lock, PIN status, the new PIN's rules
    /// other than "same as current", so a typo does not spend the OTP), then
    /// the OTP (a wrong one counts toward its lock), then the current PIN in
    /// card order (a wrong one counts on the try counter, as a verification
    /// does), and only then "same as current".
    pub async fn change_pin(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
        old: NamedPin,
        new: NamedPin,
        otp: OtpProof,
    ) -> ServiceResult<Card> {
        let id = self.card_id_of(ctx, card.into()).await?;
        self.card_throttle.check(ctx.tenant_id(), id)?;
        let rec = self.card_record(ctx, id).await?;
        require_pin_settable(&rec.card)?;
        let old = self.decode_pin(ctx, &rec, old).await?;
        let new = self.decode_pin(ctx, &rec, new).await?;
        let dob = self.date_of_birth(ctx, &rec.card).await?;
        let rules = self.tenant_settings(ctx.tenant_id()).await?.pin_rules;
        self.check_new_pin(rules, &new, dob, false)?;
        let _turn = self.card_order.turn(id).await;
        let (old, new, otp, dob) = (&old, &new, &otp, &dob);
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            require_pin_settable(&rec.card)?;
            let now = self.now();
            tx.otp_state(id, OtpPurpose::PinChange).await?.check_lock(now)?;
            let mut tries = pin_tries(&rec);
            tries.check_verifiable()?;
            if let Err(e) = self.redeem_otp(&mut *tx, &rec, otp).await? {
                tx.commit().await?;
                return Err(e.into());
            }
            let before = rec.card.snapshot();
            let right = self.pin_matches(&rec, old).await?;
            let decision = match tries.verify(self.config.pin_max_failures, right) {
                Ok(d) => d,
                Err(e) => {
                    // The OTP is spent all the same: it authorised this attempt.
                    tx.commit().await?;
                    return Err(e.into());
                }
            };
            put_pin_tries(&mut rec, tries);
            if let PinDecision::Wrong { remaining_attempts } = decision {
                self.save_card(&mut *tx, &mut rec).await?;
                self.record_failure(ctx, &mut *tx, &rec, before, remaining_attempts)
                    .await?;
                tx.commit().await?;
                return Err(if remaining_attempts == 0 {
                    RuleViolation::PinBlocked
                } else {
                    RuleViolation::PinIncorrect { remaining_attempts }
                }
                .into());
            }
            // Both proofs passed: the caller knows the PIN, so "same as current"
            // tells them nothing new.
            let same = self.pin_matches(&rec, new).await?;
            if let Err(e) = self.check_new_pin(rules, new, *dob, same) {
                if decision.changed() {
                    self.save_card(&mut *tx, &mut rec).await?;
                }
                tx.commit().await?;
                return Err(e);
            }
            self.put_new_pin(&mut rec, new).await?;
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                "card.pin_changed",
                None,
                Some(before),
                Some(rec.card.snapshot()),
            ))
            .await?;
            let data = serde_json::json!({ "card_id": id, "pin_status": rec.card.pin_status });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardPinChanged, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(rec.card)
        })
        .await
    }

    /// Verifies a PIN. One card's verifications (and PIN changes) are
    /// decided one after another against the committed try counter: in
    /// this process by the card's turn, across nodes by the store's hold on
    /// the card. A right PIN with nothing to reset or re-derive writes and
    /// commits nothing; anything else is written before the answer. A
    /// blocked PIN answers `pin_blocked` without looking at the PIN.
    pub async fn verify_pin(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
        pin: NamedPin,
    ) -> ServiceResult<VerifyOutcome> {
        let id = self.card_id_of(ctx, card.into()).await?;
        self.card_throttle.check(ctx.tenant_id(), id)?;
        // Decoding needs no turn (and may read keys): done before taking one,
        // so a held card never waits for a second database connection.
        let rec = self.card_record(ctx, id).await?;
        require_pin_verifiable(&rec.card)?;
        let pin = self.decode_pin(ctx, &rec, pin).await?;
        let _turn = self.card_order.turn(id).await;
        let pin = &pin;
        self.unit_of_work(|| async move {
            let hold = self.store.hold_card(ctx.tenant_id(), id).await?;
            let decided = match hold.record.clone() {
                Some(mut held) => self.decide_verification(&mut held, pin).await,
                None => Err(ServiceError::NotFound("card")),
            };
            let (decision, write) = match decided {
                Ok(d) => d,
                Err(e) => {
                    // Released now rather than when the connection is next used.
                    hold.release().await?;
                    return Err(e);
                }
            };
            if !write {
                hold.release().await?;
                return Ok(self.outcome(decision));
            }
            // Decide again on the locked row: the turn and the hold kept PIN
            // decisions out, but another kind of change may have come between.
            let mut tx = hold.into_tx(&*self.store).await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            let before = rec.card.snapshot();
            let (decision, write) = self.decide_verification(&mut rec, pin).await?;
            if !write {
                tx.rollback().await?;
                return Ok(self.outcome(decision));
            }
            self.save_card(&mut *tx, &mut rec).await?;
            if let PinDecision::Wrong { remaining_attempts } = decision {
                self.record_failure(ctx, &mut *tx, &rec, before, remaining_attempts)
                    .await?;
            }
            tx.commit().await?;
            Ok(self.outcome(decision))
        })
        .await
    }

    /// One verification decided on `rec` (changed in place): the decision,
    /// and whether `rec` must be written (a count changed, or a right PIN's
    /// verifier is under an old key and is re-derived under the newest).
    async fn decide_verification(&self, rec: &mut CardRecord, pin: &Pin) -> ServiceResult<(PinDecision, bool)> {
        require_pin_verifiable(&rec.card)?;
        let right = self.pin_matches(rec, pin).await?;
        let mut tries = pin_tries(rec);
        let decision = tries.verify(self.config.pin_max_failures, right)?;
        put_pin_tries(rec, tries);
        let (newest, _) = self.keys.mac_key(Purpose::Pin, None).await?;
        // An imported PVV is replaced by the keyed verifier as a verifier
        // under an old key is: at the first right PIN.
        let stale = right
            && rec
                .secrets
                .pin
                .as_ref()
                .is_some_and(|v| v.key_version != newest || ImportedPvv::from_verifier(v).is_some());
        if stale {
            rec.secrets.pin = Some(self.new_pin_verifier(rec.card.id, pin).await?);
        }
        Ok((decision, decision.changed() || stale))
    }

    fn outcome(&self, decision: PinDecision) -> VerifyOutcome {
        match decision {
            PinDecision::Right { .. } => VerifyOutcome {
                valid: true,
                remaining_attempts: self.config.pin_max_failures,
            },
            PinDecision::Wrong { remaining_attempts } => VerifyOutcome {
                valid: false,
                remaining_attempts,
            },
        }
    }

    /// The audit entry, event and metrics of a wrong PIN already counted on
    /// `rec`; the last allowed one blocked the PIN.
    pub(crate) async fn record_failure(
        &self,
        ctx: &Ctx,
        tx: &mut dyn Tx,
        rec: &CardRecord,
        before: serde_json::Value,
        remaining: u32,
    ) -> ServiceResult<()> {
        let id = rec.card.id;
        let channel = channel_label(ctx);
        crate::retry::count(move || {
            metrics::counter!("cardcore_pin_verification_failures_total", "channel" => channel).increment(1);
        });
        if remaining == 0 {
            crate::retry::count(|| metrics::counter!("cardcore_pin_blocks_total").increment(1));
        }
        let after = serde_json::json!({ "pin_status": rec.card.pin_status, "pin_failures": rec.secrets.pin_failures });
        if remaining == 0 {
            tx.insert_audit(&self.audit(ctx, Some(id), "card.pin_blocked", None, Some(before), Some(after)))
                .await?;
            let data = serde_json::json!({ "card_id": id, "reason": "PIN_TRIES_EXCEEDED" });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardPinBlocked, data)
                    .await?,
            )
            .await?;
        } else {
            tx.insert_audit(&self.audit(ctx, Some(id), "card.pin_verification_failed", None, None, Some(after)))
                .await?;
        }
        Ok(())
    }

    /// Clears the try counter and a PIN block (back office).
    pub async fn unblock_pin(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
    ) -> ServiceResult<StatusChange> {
        let id = self.card_id_of(ctx, card.into()).await?;
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            require_pin_settable(&rec.card)?;
            let before = rec.card.snapshot();
            let was_blocked = rec.card.pin_status == cardcore_domain::PinStatus::Blocked;
            let mut tries = pin_tries(&rec);
            if !tries.unblock()? {
                return Ok(StatusChange {
                    card: rec.card,
                    changed: false,
                });
            }
            put_pin_tries(&mut rec, tries);
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                "card.pin_unblocked",
                None,
                Some(before),
                Some(rec.card.snapshot()),
            ))
            .await?;
            if was_blocked {
                let data = serde_json::json!({ "card_id": id });
                tx.insert_event(
                    &self
                        .event(ctx.tenant_id(), Some(id), EventType::CardPinUnblocked, data)
                        .await?,
                )
                .await?;
            }
            tx.commit().await?;
            Ok(StatusChange {
                card: rec.card,
                changed: true,
            })
        })
        .await
    }

    /// Issues an OTP for a card and purpose. The code goes to the tenant only,
    /// in the `otp.created` event; only its keyed hash is stored.
    pub async fn create_otp(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
        purpose: OtpPurpose,
    ) -> ServiceResult<OtpIssued> {
        let id = self.card_id_of(ctx, card.into()).await?;
        self.card_throttle.check(ctx.tenant_id(), id)?;
        // One writer of this card at a time in this process: at SERIALIZABLE,
        // writers racing for the card abort each other (40001) instead of queueing.
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let rec = self.lock_card(ctx, &mut *tx, id).await?;
            require_pin_settable(&rec.card)?;
            let now = self.now();
            let code: Otp = random_code();
            let trace_number = uuid::Uuid::new_v4().to_string();
            let (version, key) = self.keys.mac_key(Purpose::Otp, None).await?;
            let issued = IssuedOtp {
                trace_number: trace_number.clone(),
                verifier: otp_verifier(&key, id, purpose, &trace_number, &code).to_vec(),
                key_version: version,
                created_at: now,
                expires_at: now + self.config.otp_policy.ttl,
                used: false,
            };
            let mut state = tx.otp_state(id, purpose).await?;
            state.issue(&self.config.otp_policy, now, issued)?;
            tx.save_otp_state(id, purpose, &state).await?;
            let holder_phone = self
                .store
                .cardholder(ctx.tenant_id(), rec.card.cardholder_id)
                .await?
                .map(|c| c.phone);
            let expires_at = now + self.config.otp_policy.ttl;
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                "otp.created",
                None,
                None,
                Some(serde_json::json!({ "purpose": purpose, "trace_number": trace_number, "expires_at": expires_at })),
            ))
            .await?;
            // A tenant that has its OTPs sent by SMS may keep the code out of
            // its events; the event then holds it for the SMS alone.
            let otp_in_events = self
                .store
                .tenant_sms(ctx.tenant_id())
                .await?
                .is_none_or(|s| s.otp_in_events);
            let code_key = if otp_in_events { "otp" } else { crate::sms::HIDDEN_CODE };
            let mut data = serde_json::json!({
                "card_id": id,
                "purpose": purpose,
                "trace_number": trace_number,
                "expires_at": expires_at,
                "phone": holder_phone,
            });
            data[code_key] = serde_json::Value::String(code.expose().to_owned());
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::OtpCreated, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(OtpIssued {
                trace_number,
                expires_at,
            })
        })
        .await
    }

    /// Checks a PIN-change OTP without spending it (M2P's `validate-otp`):
    /// a wrong code counts toward the same lock as a wrong code in a PIN
    /// change, a right one resets the count and stays usable for the PIN
    /// change. One transaction: the OTP state and an audit entry.
    pub async fn validate_otp(
        &self,
        ctx: &Ctx,
        card: impl Into<crate::cards::CardRef<'_>>,
        proof: OtpProof,
    ) -> ServiceResult<OtpValidated> {
        let id = self.card_id_of(ctx, card.into()).await?;
        self.card_throttle.check(ctx.tenant_id(), id)?;
        let _turn = self.card_order.turn(id).await;
        let proof = &proof;
        // The rule's answer comes after the commit: the count is kept either way.
        let outcome = self
            .unit_of_work(|| async move {
                let mut tx = self.store.begin().await?;
                let rec = self.lock_card(ctx, &mut *tx, id).await?;
                let outcome = self.check_otp(&mut *tx, &rec, proof, false).await?;
                tx.insert_audit(&self.audit(
                    ctx,
                    Some(id),
                    "otp.validated",
                    None,
                    None,
                    Some(serde_json::json!({
                        "purpose": OtpPurpose::PinChange,
                        "trace_number": proof.trace_number,
                        "valid": outcome.is_ok(),
                    })),
                ))
                .await?;
                tx.commit().await?;
                Ok(outcome)
            })
            .await?;
        outcome?;
        let (_, key) = self.keys.mac_key(Purpose::Otp, None).await?;
        let hash = key.compute(
            label::OTP,
            &[id.as_uuid().as_bytes(), b"validated", proof.trace_number.as_bytes()],
        );
        Ok(OtpValidated {
            trace_number: proof.trace_number.clone(),
            message_hash: hash.iter().map(|b| format!("{b:02X}")).collect(),
        })
    }

    /// Checks an OTP inside the caller's transaction and saves the OTP state
    /// whatever the outcome (a failure counted, a lock set, a code used). The
    /// inner `Err` is the rule the caller must answer after committing.
    async fn redeem_otp(
        &self,
        tx: &mut dyn Tx,
        rec: &CardRecord,
        proof: &OtpProof,
    ) -> ServiceResult<Result<(), RuleViolation>> {
        self.check_otp(tx, rec, proof, true).await
    }

    /// [`Self::redeem_otp`], spending a right code only when `spend`.
    async fn check_otp(
        &self,
        tx: &mut dyn Tx,
        rec: &CardRecord,
        proof: &OtpProof,
        spend: bool,
    ) -> ServiceResult<Result<(), RuleViolation>> {
        let id = rec.card.id;
        let purpose = OtpPurpose::PinChange;
        let mut state: OtpState = tx.otp_state(id, purpose).await?;
        let now = self.now();
        if let Err(e) = state.check_lock(now) {
            return Ok(Err(e));
        }
        let code = Otp::parse(&proof.code);
        let mut keys = std::collections::HashMap::new();
        for c in &state.codes {
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(c.key_version) {
                slot.insert(self.keys.mac_key(Purpose::Otp, Some(c.key_version)).await?.1);
            }
        }
        let matches = |issued: &IssuedOtp| match (&code, keys.get(&issued.key_version)) {
            (Ok(code), Some(key)) => key.verify(
                label::OTP,
                &[
                    id.as_uuid().as_bytes(),
                    purpose.as_str().as_bytes(),
                    issued.trace_number.as_bytes(),
                    code.expose_bytes(),
                ],
                &issued.verifier,
            ),
            _ => false,
        };
        let policy = &self.config.otp_policy;
        let outcome = if spend {
            state.redeem(policy, now, &proof.trace_number, matches)
        } else {
            state.validate(policy, now, &proof.trace_number, matches)
        };
        tx.save_otp_state(id, purpose, &state).await?;
        match &outcome {
            Err(RuleViolation::OtpLocked { .. }) => {
                crate::retry::count(|| metrics::counter!("cardcore_otp_locks_total").increment(1));
            }
            Err(RuleViolation::OtpInvalid { .. }) => {
                crate::retry::count(|| metrics::counter!("cardcore_otp_failures_total").increment(1));
            }
            _ => {}
        }
        Ok(outcome)
    }
}

fn otp_verifier(
    key: &cardcore_crypto::verifier::MacKey,
    card: CardId,
    purpose: OtpPurpose,
    trace: &str,
    code: &Otp,
) -> [u8; 32] {
    key.compute(
        label::OTP,
        &[
            card.as_uuid().as_bytes(),
            purpose.as_str().as_bytes(),
            trace.as_bytes(),
            code.expose_bytes(),
        ],
    )
}

fn channel_label(ctx: &Ctx) -> String {
    ctx.channel.as_str().to_owned()
}

/// The card's try counter as stored.
fn pin_tries(rec: &CardRecord) -> PinTries {
    PinTries::new(rec.card.pin_status, rec.secrets.pin_failures)
}

fn put_pin_tries(rec: &mut CardRecord, tries: PinTries) {
    rec.card.pin_status = tries.status;
    rec.secrets.pin_failures = tries.failures;
}

/// What an API adds to the PIN-set rules for its own operation (QI Tech's
/// password: plastic cards, ACTIVE or LOCKED only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinSetTerms {
    /// The operation's name in refusals (default: "setting or changing a PIN").
    pub operation: Option<&'static str>,
    /// Only cards of this type.
    pub card_type: Option<cardcore_domain::CardType>,
    /// Only cards whose PIN can be verified now (ACTIVE or LOCKED), not
    /// INACTIVE ones as PIN set alone allows.
    pub verifiable_status: bool,
}

impl PinSetTerms {
    fn check(self, card: &Card) -> Result<(), RuleViolation> {
        let operation = self.operation.unwrap_or("setting or changing a PIN");
        if self.card_type.is_some_and(|t| t != card.card_type) {
            return Err(RuleViolation::CardTypeNotAllowed {
                card_type: card.card_type,
                operation,
            });
        }
        if self.verifiable_status && !card.status.allows_pin_verify() {
            return Err(RuleViolation::InvalidCardStatus {
                status: card.status,
                operation,
            });
        }
        Ok(())
    }
}

fn require_pin_settable(card: &Card) -> Result<(), RuleViolation> {
    if card.status.allows_pin_set() {
        Ok(())
    } else {
        Err(RuleViolation::InvalidCardStatus {
            status: card.status,
            operation: "setting or changing a PIN",
        })
    }
}

fn require_pin_verifiable(card: &Card) -> Result<(), RuleViolation> {
    if !card.status.allows_pin_verify() {
        return Err(RuleViolation::InvalidCardStatus {
            status: card.status,
            operation: "verifying a PIN",
        });
    }
    PinTries::new(card.pin_status, 0).check_verifiable()
}

/// The one answer for every PIN block that does not decode, whatever the
/// reason (clear, wrong key, another card's PAN, garbage, a bad field after
/// decryption): any difference would be an oracle for PAN or PIN digits.
pub(crate) fn refused_pin_block(field: &str) -> ServiceError {
    ServiceError::invalid_with(
        "pin_block_invalid",
        field,
        "could not be decoded: send an ISO 9564 PIN block of this format, encrypted under your zone PIN key, \
         for this card's PAN",
    )
}

/// Why a PIN block was refused (logged at debug level, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BlockRefusal {
    #[error("a clear (unencrypted) PIN block")]
    Clear,
    #[error("does not decode: {0}")]
    Decode(pinblock::PinBlockError),
}

/// Decodes an encrypted block bound to `pan`. Both checks always run, so a
/// clear block takes the time a decryption takes.
fn decode_block(block: &[u8], format: BlockFormat, key: &[u8], pan: &Pan) -> Result<Pin, BlockRefusal> {
    let clear = is_clear_block(block, format, pan);
    let decoded = decrypt_block(block, format, key, pan);
    // A block that decrypts is taken: a random ciphertext also reads as a
    // valid clear format 0/3 block about once in 200,000 (a 100,000-card
    // import met one), so "clear" only explains a block that does not.
    match decoded {
        Ok(pin) => Ok(pin),
        Err(_) if clear => Err(BlockRefusal::Clear),
        Err(e) => Err(BlockRefusal::Decode(e)),
    }
}

/// True when `block` already reads as a valid clear block of `format` for this PAN.
fn is_clear_block(block: &[u8], format: BlockFormat, pan: &Pan) -> bool {
    match format {
        BlockFormat::Iso0 | BlockFormat::Iso3 => {
            let Ok(b) = <[u8; 8]>::try_from(block) else {
                return false;
            };
            let b = zeroize::Zeroizing::new(b);
            pinblock::decode_format0(&b, pan).is_ok() || pinblock::decode_format3(&b, pan).is_ok()
        }
        BlockFormat::Iso4 => {
            let Ok(b) = <[u8; 16]>::try_from(block) else {
                return false;
            };
            pinblock::decode_format4_pin_field(&zeroize::Zeroizing::new(b)).is_ok()
        }
    }
}

fn decrypt_block(block: &[u8], format: BlockFormat, key: &[u8], pan: &Pan) -> Result<Pin, pinblock::PinBlockError> {
    let bad = pinblock::PinBlockError::Format { expected: 0 };
    match format {
        BlockFormat::Iso0 | BlockFormat::Iso3 => {
            let b: [u8; 8] = block.try_into().map_err(|_| bad)?;
            let f = if format == BlockFormat::Iso0 {
                TdesFormat::Format0
            } else {
                TdesFormat::Format3
            };
            pinblock::decrypt_tdes(key, f, &b, pan)
        }
        BlockFormat::Iso4 => {
            let b: [u8; 16] = block.try_into().map_err(|_| bad)?;
            Format4Key::new(key)?.decrypt(&b, &Format4PanField::new(pan))
        }
    }
}
