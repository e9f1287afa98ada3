//! Cards: issue, read, reveal, lifecycle, replacement, limits.

use cardcore_crypto::verifier::{label, MacKey};
use cardcore_crypto::{Cvv, Otp, Pan};
use cardcore_domain::activation::{ActivationState, Attempt};
use cardcore_domain::cvv_window::CvvWindow;
use cardcore_domain::lifecycle::{self, LifecycleAction, ReplaceReason, Transition};
use cardcore_domain::{
    AccountId, BlockFrom, Brand, Card, CardId, CardStatus, CardType, Cardholder, CardholderId, EventType, Expiry,
    KitNumber, Limits, PinStatus, ProgramId, ReasonCode, RuleViolation, StatusReason, Timestamp, ValidationErrors,
};
use cardcore_store::{CardFilter, CardRecord, CardSecrets, Tx, Verifier};
use rand::rngs::OsRng;
use rand::Rng;
use subtle::ConstantTimeEq;

use crate::keyring::Purpose;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Input for a new card.
#[derive(Debug, Clone)]
pub struct CreateCard {
    pub cardholder_id: CardholderId,
    pub card_type: CardType,
    pub account_id: Option<AccountId>,
    pub program_id: Option<ProgramId>,
    pub card_name: Option<String>,
    pub printed_name: Option<String>,
    /// The vendor's kit number (6 to 16 digits); None draws 10 digits.
    pub kit_number: Option<String>,
}

/// A lifecycle answer: the card, and whether anything changed.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub card: Card,
    pub changed: bool,
}

/// How a caller names a card: by id, or by a vendor's identifiers. Every
/// card operation a dialect uses takes one (`impl Into<CardRef>`), so a
/// dialect request is one service call: the core resolves the vendor's
/// identifiers, checks that they belong together (and the caller's
/// optional [`HolderProof`]) before the operation decides anything.
/// Identifiers that do not belong together, an unknown cardholder and an
/// unknown card all answer `NotFound("card")`: the answer never tells which
/// part was wrong. The identifiers resolved (a card's cardholder, account,
/// kit number and expiry) never change, so resolving them before the
/// operation's transaction answers as resolving them inside it would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRef<'a> {
    /// The card id.
    Id(CardId),
    /// The card with this id if it belongs to the cardholder with this
    /// external id (P100's `externalUserId` + `cardId`).
    OfHolder { external_id: &'a str, card_id: CardId },
    /// The card with this id if it draws on this account (QI's wallet key).
    InAccount { account_id: AccountId, card_id: CardId },
    /// The card with this kit number of the cardholder with this external
    /// id (M2P's `kit` and `entityId`), and what the caller claims to know
    /// about the two ([`HolderProof::NONE`]: nothing).
    KitOfHolder {
        external_id: &'a str,
        kit: &'a str,
        proof: HolderProof<'a>,
    },
}

impl From<CardId> for CardRef<'_> {
    fn from(id: CardId) -> Self {
        Self::Id(id)
    }
}

/// A phone number the caller says is the cardholder's, and the request
/// field that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneClaim<'a> {
    pub field: &'a str,
    pub number: &'a str,
    /// None: any country code.
    pub country_code: Option<&'a str>,
}

/// An expiry (`MM/YY`) the caller says is the card's, and its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryClaim<'a> {
    pub field: &'a str,
    pub mm_yy: &'a str,
}

/// What a caller repeats about the card and its cardholder (M2P's
/// `mobile`, `expiryDate`, ...). Every claim must hold; the ones that do
/// not are field errors (`Invalid contact`, `must be MM/YY`, `Invalid
/// expiry date`), all reported together, before the operation spends
/// anything (an OTP try, a PIN try).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HolderProof<'a> {
    pub phones: &'a [PhoneClaim<'a>],
    pub expiries: &'a [ExpiryClaim<'a>],
}

impl HolderProof<'_> {
    /// No claims.
    pub const NONE: HolderProof<'static> = HolderProof {
        phones: &[],
        expiries: &[],
    };

    fn is_empty(&self) -> bool {
        self.phones.is_empty() && self.expiries.is_empty()
    }

    fn check(&self, holder: &Cardholder, card: &Card) -> ServiceResult<()> {
        let mut errors = ValidationErrors::new();
        for p in self.phones {
            let same = p.number.trim() == holder.phone.number
                && p.country_code.is_none_or(|cc| cc == holder.phone.country_code);
            if !same {
                errors.add(p.field, "Invalid contact");
            }
        }
        for e in self.expiries {
            let e_trim = e.mm_yy.trim();
            if Expiry::parse_mm_yy(e_trim).is_none() {
                errors.add(e.field, "must be MM/YY");
            } else if e_trim != card.expiry.to_string() {
                errors.add(e.field, "Invalid expiry date");
            }
        }
        Ok(errors.into_result()?)
    }
}

/// A reason as the caller sent it, before validation.
#[derive(Debug, Clone, Default)]
pub struct ReasonInput {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Card data revealed to a key allowed to see it.
#[derive(Debug)]
pub struct SensitiveData {
    pub pan: Pan,
    /// The CVV2 valid now (the current window's, for a rotating one).
    pub cvv: Cvv,
    /// When a rotating CVV2 changes (the end of its window); None for a
    /// static one.
    pub cvv_expires_at: Option<Timestamp>,
    pub expiry: Expiry,
    /// The card revealed (a caller renders it without a second read).
    pub card: Card,
}

/// A card's CVV2 at a moment.
#[derive(Debug)]
pub struct Cvv2 {
    pub cvv: Cvv,
    /// The end of its window (None: a static CVV2, never changes).
    pub expires_at: Option<Timestamp>,
}

/// A page of cards.
#[derive(Debug, Clone)]
pub struct CardPage {
    pub data: Vec<Card>,
    pub next_cursor: Option<CardId>,
}

/// Which cards to list.
#[derive(Debug, Clone, Default)]
pub struct ListCards {
    pub cardholder_id: Option<CardholderId>,
    pub status: Option<CardStatus>,
    pub cursor: Option<CardId>,
    pub limit: Option<u32>,
}

/// Page sizes: default and maximum.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

pub(crate) fn page_limit(limit: Option<u32>) -> ServiceResult<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(_) => Err(ServiceError::invalid("limit", format!("must be 1 to {MAX_LIMIT}"))),
    }
}

/// The secrets of a freshly made card, for the caller to deliver.
pub(crate) struct Issued {
    pub(crate) record: CardRecord,
    pub(crate) activation_code: Option<Otp>,
}

fn pan_aad(card: &Card) -> String {
    format!("cardcore/pan/{}/{}", card.tenant_id, card.id)
}

/// The PAN lookup hash: a keyed hash of the PAN alone, unique across the
/// table (a PAN names one card, whatever the tenant).
pub(crate) fn pan_lookup_hash(lookup: &MacKey, pan: &[u8]) -> Vec<u8> {
    lookup.compute(label::PAN_LOOKUP_V2, &[pan]).to_vec()
}

/// The meta entry saying every PAN lookup hash is of the current form.
const PAN_LOOKUP_META: &str = "pan_lookup_hash";
const PAN_LOOKUP_CURRENT: &str = "v2";

fn random_digits<const N: usize>() -> [u8; N] {
    let mut d = [0u8; N];
    for x in d.iter_mut() {
        *x = OsRng.gen_range(0..10);
    }
    d
}

/// A new kit number drawn from the OS CSPRNG.
pub(crate) fn random_kit_number() -> KitNumber {
    KitNumber::from_digits(random_digits::<{ KitNumber::LEN }>())
}

/// A 6-digit code from the OS CSPRNG (activation codes, OTPs).
pub(crate) fn random_code() -> Otp {
    let digits = zeroize::Zeroizing::new(random_digits::<6>());
    // Six values 0..=9 always make a valid code.
    Otp::from_digit_values(digits.as_ref()).unwrap_or_else(|_| unreachable_code())
}

#[allow(clippy::panic)]
fn unreachable_code() -> Otp {
    panic!("six digits are always a valid code")
}

fn optional_text(errors: &mut ValidationErrors, field: &str, value: &Option<String>, max: usize) {
    if let Some(v) = value {
        cardcore_domain::validation::text(errors, field, v, 1, max);
    }
}

impl Service {
    pub(crate) fn parse_reason(&self, input: &ReasonInput, required: bool) -> ServiceResult<Option<StatusReason>> {
        let mut errors = ValidationErrors::new();
        optional_text(&mut errors, "reason_message", &input.message, 500);
        let code = match &input.code {
            Some(c) => match ReasonCode::parse(c, &self.config.extra_reason_codes) {
                Ok(code) => Some(code),
                Err(m) => {
                    errors.add("reason_code", m);
                    None
                }
            },
            None if required => {
                errors.add(
                    "reason_code",
                    "is required for this action; e.g. LOST_CARD or FRAUD_CONFIRMED",
                );
                None
            }
            None => None,
        };
        errors.into_result()?;
        Ok(code.map(|code| StatusReason {
            code,
            message: input.message.clone(),
        }))
    }

    /// Issues a card: virtual cards start ACTIVE, physical ones INACTIVE with
    /// an activation code delivered through the `card.activation_code` event.
    pub async fn create_card(&self, ctx: &Ctx, input: CreateCard) -> ServiceResult<Card> {
        let mut errors = ValidationErrors::new();
        optional_text(&mut errors, "card_name", &input.card_name, 50);
        optional_text(&mut errors, "printed_name", &input.printed_name, 26);
        let kit = input.kit_number.as_deref().and_then(|k| {
            let kit = KitNumber::parse(k);
            if kit.is_none() {
                errors.add("kit_number", KitNumber::RULE);
            }
            kit
        });
        errors.into_result()?;
        let holder = self.cardholder(ctx, input.cardholder_id).await?;
        if let Some(kit) = &kit {
            self.require_free_kit(ctx, kit).await?;
        }
        let (holder, input) = (&holder, &input);
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let card = self.issue_in(ctx, &mut *tx, holder, input, None).await?;
            tx.commit().await?;
            Ok(card)
        })
        .await
    }

    /// Makes and inserts a card with its events, inside `tx`.
    async fn issue_in(
        &self,
        ctx: &Ctx,
        tx: &mut dyn Tx,
        holder: &Cardholder,
        input: &CreateCard,
        replacement_for: Option<CardId>,
    ) -> ServiceResult<Card> {
        let mut issued = None;
        for _ in 0..8 {
            let candidate = self.new_card(ctx, holder, input, replacement_for).await?;
            if tx.insert_card(&candidate.record).await? {
                issued = Some(candidate);
                break;
            }
            if input.kit_number.is_some() {
                // A given kit cannot be drawn again: taken since the check
                // (or the PAN collided, which another draw mends).
                self.require_free_kit(ctx, &candidate.record.card.kit_number).await?;
            }
        }
        let issued = issued.ok_or_else(|| ServiceError::internal("could not draw a unique PAN and kit number"))?;
        let card = issued.record.card.clone();
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
        if let Some(code) = &issued.activation_code {
            let data = serde_json::json!({ "card_id": card.id, "activation_code": code.expose() });
            tx.insert_event(
                &self
                    .event(card.tenant_id, Some(card.id), EventType::CardActivationCode, data)
                    .await?,
            )
            .await?;
        }
        Ok(card)
    }

    /// Refuses a kit number another card of the tenant has.
    async fn require_free_kit(&self, ctx: &Ctx, kit: &KitNumber) -> ServiceResult<()> {
        if self.store.card_by_kit(ctx.tenant_id(), kit).await?.is_some() {
            return Err(ServiceError::Conflict {
                code: "kit_number_taken",
                message: "another card of this tenant has this kit_number; kit numbers are unique per tenant".into(),
            });
        }
        Ok(())
    }

    pub(crate) async fn new_card(
        &self,
        ctx: &Ctx,
        holder: &Cardholder,
        input: &CreateCard,
        replacement_for: Option<CardId>,
    ) -> ServiceResult<Issued> {
        let now = self.now();
        let pan = cardcore_crypto::luhn::generate_pan(&self.config.bin, self.config.pan_length, &mut OsRng)
            .map_err(|e| ServiceError::caused("PAN generation", e))?;
        let expiry = Expiry::years_after(now, self.config.card_validity_years);
        let brand = Brand::of_bin(&self.config.bin).ok_or_else(|| ServiceError::internal("BIN has no brand"))?;
        let card = Card {
            id: CardId::new(),
            tenant_id: ctx.tenant_id(),
            cardholder_id: holder.id,
            account_id: input.account_id.unwrap_or(holder.default_account_id),
            program_id: input.program_id.unwrap_or(ctx.tenant().default_program_id),
            card_type: input.card_type,
            status: match input.card_type {
                CardType::Virtual => CardStatus::Active,
                CardType::Physical => CardStatus::Inactive,
            },
            status_reason: None,
            pin_status: PinStatus::NotSet,
            brand,
            last_four: pan.last_four().to_owned(),
            expiry,
            // Without a name the card is called by its type (QI shows one always).
            card_name: Some(
                input
                    .card_name
                    .clone()
                    .unwrap_or_else(|| input.card_type.as_str().to_owned()),
            ),
            printed_name: Some(
                input
                    .printed_name
                    .clone()
                    .unwrap_or_else(|| holder.name.to_uppercase().chars().take(26).collect()),
            ),
            kit_number: match input.kit_number.as_deref().and_then(KitNumber::parse) {
                Some(kit) => kit,
                None => random_kit_number(),
            },
            replacement_for,
            limits: Limits::unlimited(&self.config.currency),
            created_at: now,
            updated_at: now,
        };
        let mut secrets = self.seal_card(&card, &pan).await?;
        let mut activation_code = None;
        if input.card_type == CardType::Physical {
            let (code, verifier) = self.new_activation_code(card.id).await?;
            activation_code = Some(code);
            secrets.activation_code = Some(verifier);
        }
        Ok(Issued {
            record: CardRecord {
                card,
                secrets,
                usage: Default::default(),
            },
            activation_code,
        })
    }

    /// The card's dynamic-CVV2 interval in hours, for virtual cards: its
    /// program's (`programs.<id>.cvv_rotation_interval_hours` in the
    /// tenant's settings), else the node's `--cvv-rotation-interval-hours`;
    /// None when it does not rotate, and always for physical cards (their
    /// CVV2 is printed).
    pub async fn cvv_rotation_interval_hours(&self, card: &Card) -> ServiceResult<Option<u32>> {
        if card.card_type == CardType::Physical {
            return Ok(None);
        }
        let program = self
            .tenant_settings(card.tenant_id)
            .await?
            .program(card.program_id)
            .cvv_rotation_interval_hours;
        Ok(match program {
            Some(hours) => Some(hours),
            None => self.config.cvv_rotation_interval_hours,
        }
        .filter(|h| cardcore_domain::cvv_window::valid_interval(*h)))
    }

    /// A new activation code for a physical card, and its verifier.
    pub(crate) async fn new_activation_code(&self, card: CardId) -> ServiceResult<(Otp, Verifier)> {
        let code = random_code();
        let (version, otp_key) = self.keys.mac_key(Purpose::Otp, None).await?;
        let verifier = Verifier {
            value: activation_verifier(&otp_key, card, &code).to_vec(),
            key_version: version,
        };
        Ok((code, verifier))
    }

    /// The keyed hash a card is found by from its PAN (unique across tenants).
    pub(crate) async fn pan_hash(&self, pan: &Pan) -> ServiceResult<Vec<u8>> {
        let (_, lookup) = self.keys.mac_key(Purpose::PanLookup, None).await?;
        Ok(pan_lookup_hash(&lookup, pan.expose_bytes()))
    }

    /// A new card's protected data (issued or imported): the PAN hash, and
    /// the PAN sealed under the newest data key. No PIN, no activation code.
    pub(crate) async fn seal_card(&self, card: &Card, pan: &Pan) -> ServiceResult<CardSecrets> {
        let (data_version, data_key) = self.keys.data_key(None).await?;
        Ok(CardSecrets {
            pan_hash: self.pan_hash(pan).await?,
            pan_sealed: data_key.seal(pan_aad(card).as_bytes(), pan.expose_bytes(), &mut OsRng),
            data_key_version: data_version,
            activation_code: None,
            pin: None,
            pin_failures: 0,
        })
    }

    /// A card of the caller's tenant.
    pub async fn card(&self, ctx: &Ctx, card: impl Into<CardRef<'_>>) -> ServiceResult<Card> {
        let id = self.card_id_of(ctx, card.into()).await?;
        Ok(self.card_record(ctx, id).await?.card)
    }

    pub(crate) async fn card_record(&self, ctx: &Ctx, id: CardId) -> ServiceResult<CardRecord> {
        self.store
            .card(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("card"))
    }

    /// A card by its kit number.
    pub async fn card_by_kit(&self, ctx: &Ctx, kit: &str) -> ServiceResult<Card> {
        let kit = KitNumber::parse(kit).ok_or(ServiceError::NotFound("card"))?;
        Ok(self
            .store
            .card_by_kit(ctx.tenant_id(), &kit)
            .await?
            .ok_or(ServiceError::NotFound("card"))?
            .card)
    }

    /// The id of the card a caller names (see [`CardRef`]): identifiers
    /// that do not belong together, an unknown cardholder and an unknown
    /// card all answer `NotFound("card")`; a claim of the caller's
    /// [`HolderProof`] that does not hold is a field error.
    pub async fn card_id_of(&self, ctx: &Ctx, card: CardRef<'_>) -> ServiceResult<CardId> {
        let tenant = ctx.tenant_id();
        let not_found = || ServiceError::NotFound("card");
        match card {
            CardRef::Id(id) => Ok(id),
            CardRef::OfHolder { external_id, card_id } => {
                let ext = cardcore_domain::ExternalId::parse(external_id).map_err(|_| not_found())?;
                let holder = self
                    .store
                    .cardholder_by_external_id(tenant, &ext)
                    .await?
                    .ok_or_else(not_found)?;
                let card = self.store.card(tenant, card_id).await?.ok_or_else(not_found)?;
                if card.card.cardholder_id != holder.id {
                    return Err(not_found());
                }
                Ok(card_id)
            }
            CardRef::InAccount { account_id, card_id } => {
                let card = self.store.card(tenant, card_id).await?.ok_or_else(not_found)?;
                if card.card.account_id != account_id {
                    return Err(not_found());
                }
                Ok(card_id)
            }
            CardRef::KitOfHolder {
                external_id,
                kit,
                proof,
            } => {
                let (Ok(ext), Some(kit)) = (cardcore_domain::ExternalId::parse(external_id), KitNumber::parse(kit))
                else {
                    return Err(not_found());
                };
                if proof.is_empty() {
                    return self
                        .store
                        .card_id_by_kit_of_holder(tenant, &ext, &kit)
                        .await?
                        .ok_or_else(not_found);
                }
                let holder = self
                    .store
                    .cardholder_by_external_id(tenant, &ext)
                    .await?
                    .ok_or_else(not_found)?;
                let card = self.store.card_by_kit(tenant, &kit).await?.ok_or_else(not_found)?.card;
                if card.cardholder_id != holder.id {
                    return Err(not_found());
                }
                proof.check(&holder, &card)?;
                Ok(card.id)
            }
        }
    }

    /// Lists cards, oldest first, a page at a time.
    pub async fn cards(&self, ctx: &Ctx, query: ListCards) -> ServiceResult<CardPage> {
        let limit = page_limit(query.limit)?;
        let mut data = self
            .store
            .cards(
                ctx.tenant_id(),
                &CardFilter {
                    cardholder_id: query.cardholder_id,
                    status: query.status,
                    after: query.cursor,
                    limit: limit + 1,
                    ..CardFilter::default()
                },
            )
            .await?;
        let next_cursor = if data.len() > limit as usize {
            data.truncate(limit as usize);
            data.last().map(|c| c.id)
        } else {
            None
        };
        Ok(CardPage { data, next_cursor })
    }

    /// Reveals PAN, CVV and expiry to a key allowed to; the reveal is audited.
    pub async fn reveal(&self, ctx: &Ctx, card: impl Into<CardRef<'_>>) -> ServiceResult<SensitiveData> {
        if !ctx.principal.can_reveal {
            return Err(ServiceError::Forbidden("this API key may not reveal card data"));
        }
        let id = self.card_id_of(ctx, card.into()).await?;
        let rec = self.card_record(ctx, id).await?;
        let (_, key) = self.keys.data_key(Some(rec.secrets.data_key_version)).await?;
        let pan = key
            .open(pan_aad(&rec.card).as_bytes(), &rec.secrets.pan_sealed)
            .map_err(|_| ServiceError::internal(format!("PAN of card {id} does not open")))?;
        let text =
            |b: &cardcore_crypto::SecretBytes| std::str::from_utf8(b.expose()).map(str::to_owned).unwrap_or_default();
        let pan = Pan::parse(&zeroize::Zeroizing::new(text(&pan)))
            .map_err(|_| ServiceError::internal("stored PAN is malformed"))?;
        let cvv2 = self.cvv2_at(&rec.card, &pan, self.now()).await?;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            tx.insert_audit(&self.audit(ctx, Some(id), "card.sensitive_revealed", None, None, None))
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        Ok(SensitiveData {
            pan,
            cvv: cvv2.cvv,
            cvv_expires_at: cvv2.expires_at,
            expiry: rec.card.expiry,
            card: rec.card,
        })
    }

    /// The card's static CVV2: the Visa CVV algorithm under the CVK (which
    /// never rotates) with service code `000`; computed, never stored.
    pub(crate) async fn cvv2(&self, pan: &Pan, expiry: Expiry) -> ServiceResult<Cvv> {
        let cvk = zeroize::Zeroizing::new(self.keys.cvk().await?);
        cardcore_crypto::cvv::generate_cvv(&cvk, pan, &expiry.yymm(), cardcore_crypto::cvv::SERVICE_CODE_CVV2)
            .map_err(|e| ServiceError::caused("CVV2 computation", e))
    }

    /// The card's CVV2 at `now`: for a virtual card of a program that
    /// rotates it, the dynamic CVV2 of `now`'s window (see
    /// `cardcore_crypto::cvv::generate_dynamic_cvv2`) and when it changes;
    /// otherwise the static CVV2.
    pub async fn cvv2_at(&self, card: &Card, pan: &Pan, now: Timestamp) -> ServiceResult<Cvv2> {
        match self.cvv_rotation_interval_hours(card).await? {
            Some(hours) => {
                let window = CvvWindow::at(hours, now);
                let cvk = zeroize::Zeroizing::new(self.keys.cvk().await?);
                Ok(Cvv2 {
                    cvv: cardcore_crypto::cvv::generate_dynamic_cvv2(&cvk, pan, window.number),
                    expires_at: Some(window.ends_at),
                })
            }
            None => Ok(Cvv2 {
                cvv: self.cvv2(pan, card.expiry).await?,
                expires_at: None,
            }),
        }
    }

    /// True when `cvv2` is the card's CVV2 at `now`: for a rotating CVV2,
    /// the current window's or the previous one's (a CVV2 read just before
    /// the change still pays); otherwise the static one. Compared in
    /// constant time, both windows always computed and compared.
    pub async fn cvv2_matches(&self, card: &CardRecord, cvv2: &Cvv, now: Timestamp) -> ServiceResult<bool> {
        let pan = self.open_pan(card).await?;
        self.cvv2_matches_pan(&card.card, &pan, cvv2, now).await
    }

    /// [`Service::cvv2_matches`] with the card's PAN already opened.
    pub async fn cvv2_matches_pan(&self, card: &Card, pan: &Pan, cvv2: &Cvv, now: Timestamp) -> ServiceResult<bool> {
        match self.cvv_rotation_interval_hours(card).await? {
            Some(hours) => {
                let window = CvvWindow::at(hours, now);
                let cvk = zeroize::Zeroizing::new(self.keys.cvk().await?);
                let current = cardcore_crypto::cvv::generate_dynamic_cvv2(&cvk, pan, window.number);
                // Window 0 has no previous one: compare against the current twice.
                let previous = cardcore_crypto::cvv::generate_dynamic_cvv2(
                    &cvk,
                    pan,
                    window.previous().map_or(window.number, |p| p.number),
                );
                Ok((current.ct_eq(cvv2) | previous.ct_eq(cvv2)).into())
            }
            None => Ok(self.cvv2(pan, card.expiry).await?.ct_eq(cvv2).into()),
        }
    }

    /// Once per database: re-hashes every card's PAN into the lookup hash
    /// of the PAN alone (databases made before migration 0004 hold hashes
    /// bound to the tenant). Safe to repeat and to run on several nodes at
    /// once (the same PAN gives the same hash). Two cards with one PAN stop
    /// it with an error naming both cards, never the PAN. Answers how many
    /// cards it re-hashed.
    pub async fn upgrade_pan_lookup(&self) -> ServiceResult<u64> {
        if self.store.meta(PAN_LOOKUP_META).await?.as_deref() == Some(PAN_LOOKUP_CURRENT) {
            return Ok(0);
        }
        let (_, lookup) = self.keys.mac_key(Purpose::PanLookup, None).await?;
        let mut after = None;
        let mut done = 0u64;
        loop {
            let rows = self.store.pan_rows(after, 500).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id);
            let mut hashes = Vec::with_capacity(rows.len());
            for row in &rows {
                let (_, key) = self.keys.data_key(Some(row.data_key_version)).await?;
                let aad = format!("cardcore/pan/{}/{}", row.tenant_id, row.id);
                let pan = key
                    .open(aad.as_bytes(), &row.pan_sealed)
                    .map_err(|_| ServiceError::Startup(format!("the PAN of card {} does not open", row.id)))?;
                hashes.push((row.id, pan_lookup_hash(&lookup, pan.expose())));
            }
            if let Some((card, other)) = self.store.set_pan_hashes(&hashes).await? {
                return Err(ServiceError::Startup(format!(
                    "cards {other} and {card} have the same PAN, and a PAN must name one card across all \
                     tenants: close one of them and issue a replacement with a cardcore older than migration \
                     0004, then start again"
                )));
            }
            done += hashes.len() as u64;
        }
        self.store
            .put_meta_if_absent(PAN_LOOKUP_META, PAN_LOOKUP_CURRENT)
            .await?;
        if done > 0 {
            tracing::info!(cards = done, "PAN lookup hashes upgraded to the PAN-only form");
        }
        Ok(done)
    }

    /// Opens a card's PAN (for PIN blocks bound to it).
    pub(crate) async fn open_pan(&self, rec: &CardRecord) -> ServiceResult<Pan> {
        let (_, key) = self.keys.data_key(Some(rec.secrets.data_key_version)).await?;
        let pan = key
            .open(pan_aad(&rec.card).as_bytes(), &rec.secrets.pan_sealed)
            .map_err(|_| ServiceError::internal(format!("PAN of card {} does not open", rec.card.id)))?;
        let text = zeroize::Zeroizing::new(std::str::from_utf8(pan.expose()).map(str::to_owned).unwrap_or_default());
        Pan::parse(&text).map_err(|_| ServiceError::internal("stored PAN is malformed"))
    }

    /// Re-seals PAN and CVV under the newest data key when an older one made
    /// them: rotation reaches every row on its next write.
    pub(crate) async fn reseal_if_old(&self, rec: &mut CardRecord) -> ServiceResult<()> {
        let (newest, new_key) = self.keys.data_key(None).await?;
        if rec.secrets.data_key_version >= newest {
            return Ok(());
        }
        let (_, old_key) = self.keys.data_key(Some(rec.secrets.data_key_version)).await?;
        let pan = old_key
            .open(pan_aad(&rec.card).as_bytes(), &rec.secrets.pan_sealed)
            .map_err(|_| ServiceError::internal("PAN does not open"))?;
        rec.secrets.pan_sealed = new_key.seal(pan_aad(&rec.card).as_bytes(), pan.expose(), &mut OsRng);
        rec.secrets.data_key_version = newest;
        Ok(())
    }

    /// Writes a changed card after re-sealing its data if needed.
    pub(crate) async fn save_card(&self, tx: &mut dyn Tx, rec: &mut CardRecord) -> ServiceResult<()> {
        rec.card.updated_at = self.now();
        self.reseal_if_old(rec).await?;
        tx.update_card(rec).await?;
        Ok(())
    }

    pub(crate) async fn lock_card(&self, ctx: &Ctx, tx: &mut dyn Tx, id: CardId) -> ServiceResult<CardRecord> {
        tx.lock_card(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("card"))
    }

    /// Lock, unlock, block or close. Same status: success, nothing written.
    pub async fn change_status(
        &self,
        ctx: &Ctx,
        card: impl Into<CardRef<'_>>,
        action: LifecycleAction,
        reason: ReasonInput,
    ) -> ServiceResult<StatusChange> {
        self.change_status_with(ctx, card, action, reason, BlockFrom::ActiveOrLocked)
            .await
    }

    /// [`Service::change_status`], with the statuses a block may start from
    /// (M2P blocks ACTIVE cards only).
    pub async fn change_status_with(
        &self,
        ctx: &Ctx,
        card: impl Into<CardRef<'_>>,
        action: LifecycleAction,
        reason: ReasonInput,
        block_from: BlockFrom,
    ) -> ServiceResult<StatusChange> {
        if action == LifecycleAction::Activate {
            return Err(ServiceError::invalid("action", "activation needs the activation code"));
        }
        let reason = self.parse_reason(&reason, action == LifecycleAction::Block)?;
        let id = self.card_id_of(ctx, card.into()).await?;
        let reason = &reason;
        // One writer of this card at a time in this process: at SERIALIZABLE,
        // writers racing for the card abort each other (40001) instead of queueing.
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            let Transition::Changed { from, to } = lifecycle::transition_with(rec.card.status, action, block_from)?
            else {
                return Ok(StatusChange {
                    card: rec.card,
                    changed: false,
                });
            };
            let before = rec.card.snapshot();
            rec.card.status = to;
            rec.card.status_reason = reason.clone();
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                &format!("card.{}", action.as_str()),
                reason.clone(),
                Some(before),
                Some(rec.card.snapshot()),
            ))
            .await?;
            let data = serde_json::json!({ "card": rec.card, "previous_status": from });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardStatusChanged, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(StatusChange {
                card: rec.card,
                changed: true,
            })
        })
        .await
    }

    /// Activates a physical card with the code issued at creation. Wrong
    /// codes are counted in the database under the card's row lock; the
    /// last allowed one locks activation (see `cardcore_domain::activation`).
    pub async fn activate(
        &self,
        ctx: &Ctx,
        card: impl Into<CardRef<'_>>,
        activation_code: &str,
    ) -> ServiceResult<StatusChange> {
        let id = self.card_id_of(ctx, card.into()).await?;
        self.card_throttle.check(ctx.tenant_id(), id)?;
        let code =
            Otp::parse(activation_code).map_err(|_| ServiceError::invalid("activation_code", "must be 6 digits"))?;
        let code = &code;
        // One writer of this card at a time in this process: at SERIALIZABLE,
        // writers racing for the card abort each other (40001) instead of queueing.
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            let Transition::Changed { .. } = lifecycle::transition(rec.card.status, LifecycleAction::Activate)? else {
                return Ok(StatusChange {
                    card: rec.card,
                    changed: false,
                });
            };
            let right = match &rec.secrets.activation_code {
                Some(verifier) => {
                    let (_, key) = self.keys.mac_key(Purpose::Otp, Some(verifier.key_version)).await?;
                    key.verify(
                        label::ACTIVATION,
                        &[rec.card.id.as_uuid().as_bytes(), code.expose_bytes()],
                        &verifier.value,
                    )
                }
                None => false,
            };
            let now = self.now();
            let mut attempts = tx.activation_state(id).await?;
            let (decided, answer) = attempts.attempt(&self.config.activation_policy, now, right);
            if let Err(refusal) = answer {
                if decided != Attempt::Refused {
                    tx.save_activation_state(id, &attempts).await?;
                    let remaining = match refusal {
                        RuleViolation::ActivationCodeInvalid { remaining_attempts } => remaining_attempts,
                        _ => 0,
                    };
                    tx.insert_audit(&self.audit(
                        ctx,
                        Some(id),
                        "card.activation_failed",
                        None,
                        None,
                        Some(serde_json::json!({ "remaining_attempts": remaining })),
                    ))
                    .await?;
                    crate::retry::count(|| metrics::counter!("cardcore_activation_failures_total").increment(1));
                    if decided == Attempt::FailedAndLocked {
                        tx.insert_audit(&self.audit(
                            ctx,
                            Some(id),
                            "card.activation_locked",
                            None,
                            None,
                            Some(serde_json::json!({ "locked_until": attempts.locked_until })),
                        ))
                        .await?;
                        crate::retry::count(|| metrics::counter!("cardcore_activation_locks_total").increment(1));
                    }
                    tx.commit().await?;
                }
                return Err(refusal.into());
            }
            if attempts != ActivationState::default() {
                tx.save_activation_state(id, &ActivationState::default()).await?;
            }
            let before = rec.card.snapshot();
            rec.card.status = CardStatus::Active;
            rec.card.status_reason = None;
            rec.secrets.activation_code = None;
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                "card.activate",
                None,
                Some(before),
                Some(rec.card.snapshot()),
            ))
            .await?;
            tx.insert_event(
                &self
                    .event(
                        ctx.tenant_id(),
                        Some(id),
                        EventType::CardActivated,
                        serde_json::json!({ "card": rec.card }),
                    )
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(StatusChange {
                card: rec.card,
                changed: true,
            })
        })
        .await
    }

    /// Replaces a card: a new card (new PAN, same cardholder, account,
    /// program, type and limits); the old one ends BLOCKED (lost, stolen) or
    /// CLOSED (damaged, expired).
    pub async fn replace(&self, ctx: &Ctx, card: impl Into<CardRef<'_>>, why: ReplaceReason) -> ServiceResult<Card> {
        let id = self.card_id_of(ctx, card.into()).await?;
        // One writer of this card at a time in this process: at SERIALIZABLE,
        // writers racing for the card abort each other (40001) instead of queueing.
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut old = self.lock_card(ctx, &mut *tx, id).await?;
            let outcome = lifecycle::replace(old.card.status, old.card.status_reason.as_ref(), why)?;
            if let Some(by) = tx.replacement_of(ctx.tenant_id(), id).await? {
                return Err(ServiceError::Conflict {
                    code: "card_already_replaced",
                    message: format!("card {id} was already replaced by card {by}"),
                });
            }
            let holder = self
                .store
                .cardholder(ctx.tenant_id(), old.card.cardholder_id)
                .await?
                .ok_or_else(|| ServiceError::internal("card without cardholder"))?;
            let input = CreateCard {
                cardholder_id: holder.id,
                card_type: old.card.card_type,
                account_id: Some(old.card.account_id),
                program_id: Some(old.card.program_id),
                card_name: old.card.card_name.clone(),
                printed_name: old.card.printed_name.clone(),
                kit_number: None,
            };
            let mut new_card = self.issue_in(ctx, &mut *tx, &holder, &input, Some(id)).await?;
            if new_card.limits != old.card.limits {
                // Carry the old card's limits over.
                let mut rec = self.lock_card(ctx, &mut *tx, new_card.id).await?;
                rec.card.limits = old.card.limits.clone();
                self.save_card(&mut *tx, &mut rec).await?;
                new_card = rec.card;
            }
            let before = old.card.snapshot();
            let previous = old.card.status;
            if old.card.status != outcome.old_status {
                old.card.status = outcome.old_status;
                old.card.status_reason = outcome.old_reason.clone();
                self.save_card(&mut *tx, &mut old).await?;
                let data = serde_json::json!({ "card": old.card, "previous_status": previous });
                tx.insert_event(
                    &self
                        .event(ctx.tenant_id(), Some(id), EventType::CardStatusChanged, data)
                        .await?,
                )
                .await?;
            }
            tx.insert_audit(&self.audit(
                ctx,
                Some(id),
                "card.replace",
                outcome.old_reason,
                Some(before),
                Some(serde_json::json!({ "status": old.card.status, "replaced_by": new_card.id, "reason": why })),
            ))
            .await?;
            let data = serde_json::json!({ "card": old.card, "replacement": new_card, "reason": why });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardReplaced, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(new_card)
        })
        .await
    }

    /// A card's limits.
    pub async fn limits(&self, ctx: &Ctx, card: impl Into<CardRef<'_>>) -> ServiceResult<Limits> {
        let id = self.card_id_of(ctx, card.into()).await?;
        Ok(self.card(ctx, id).await?.limits)
    }

    /// Replaces a card's limits.
    pub async fn set_limits(&self, ctx: &Ctx, card: impl Into<CardRef<'_>>, limits: Limits) -> ServiceResult<Limits> {
        limits.validate()?;
        self.update_limits(ctx, card, move |_| limits.clone()).await
    }

    /// Changes a card's limits: `change` gets the current ones and gives
    /// the new ones (a vendor's PATCH-style call), under the card's lock
    /// (again on a retry), so two concurrent changes of different channels
    /// both hold. The core validates the result.
    pub async fn update_limits(
        &self,
        ctx: &Ctx,
        card: impl Into<CardRef<'_>>,
        change: impl Fn(&Limits) -> Limits + Send + Sync,
    ) -> ServiceResult<Limits> {
        let id = self.card_id_of(ctx, card.into()).await?;
        let change = &change;
        // One writer of this card at a time in this process: at SERIALIZABLE,
        // writers racing for the card abort each other (40001) instead of queueing.
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            let limits = &change(&rec.card.limits);
            limits.validate()?;
            if rec.card.status == CardStatus::Closed {
                return Err(RuleViolation::InvalidCardStatus {
                    status: CardStatus::Closed,
                    operation: "changing limits",
                }
                .into());
            }
            if rec.card.limits == *limits {
                return Ok(limits.clone());
            }
            let before = serde_json::to_value(&rec.card.limits).ok();
            rec.card.limits = limits.clone();
            self.save_card(&mut *tx, &mut rec).await?;
            let after = serde_json::to_value(limits).ok();
            tx.insert_audit(&self.audit(ctx, Some(id), "card.limits_updated", None, before, after))
                .await?;
            let data = serde_json::json!({ "card_id": id, "limits": limits });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardLimitsUpdated, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(limits.clone())
        })
        .await
    }
}

/// The verifier of an activation code for a card.
pub(crate) fn activation_verifier(key: &MacKey, card: CardId, code: &Otp) -> [u8; 32] {
    key.compute(label::ACTIVATION, &[card.as_uuid().as_bytes(), code.expose_bytes()])
}
