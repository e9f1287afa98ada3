//! Portfolio import: a vendor's cardholders and cards, one JSON line each,
//! with the PIN as an ISO 9564 block under a tenant zone key or as a Visa
//! PVV under an imported PVK. Each line is one transaction (cardholder if
//! new, card, PIN, audit entry, event); a card whose PAN the tenant already
//! has with the same data is left alone (a re-run changes nothing).
//!
//! The line format is in docs/native-api.md ("Portfolio import"). Every
//! refusal names the line's field and the reason and never quotes a value:
//! a line holds a PAN and a PIN block.

use std::hash::BuildHasher;

use cardcore_crypto::pvv::{self, Pvv};
use cardcore_crypto::{Pan, Pin};
use cardcore_domain::cardholder::NewCardholder;
use cardcore_domain::{
    AccountId, Brand, Card, CardId, CardStatus, CardType, Cardholder, CardholderId, EventType, Expiry, KitNumber,
    Limits, PinStatus, StatusReason, ZoneKeyId,
};
use cardcore_store::{CardRecord, Verifier};
use serde_json::{Map, Value};

use crate::cards::ReasonInput;
use crate::keyring::PVK;
use crate::pins::BlockFormat;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Longest line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a line was not imported: the field (dotted path in the line) and the
/// reason, never a value. `fatal` errors are the system's (the database),
/// not the line's: the import stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub field: String,
    pub message: String,
    pub fatal: bool,
}

impl LineError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            fatal: false,
        }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Service failures inside a line: the line's own field problems keep their
/// field (prefixed), anything else stops the import.
fn from_service(prefix: &str, e: ServiceError) -> LineError {
    match e {
        ServiceError::Invalid { errors, .. } => match errors.0.into_iter().next() {
            Some(first) => LineError::new(format!("{prefix}{}", first.field), first.message),
            None => LineError::new(prefix.trim_end_matches('.'), "is invalid"),
        },
        ServiceError::Rule(rule) => LineError::new(prefix.trim_end_matches('.'), rule.to_string()),
        other => LineError {
            field: String::new(),
            message: other.to_string(),
            fatal: true,
        },
    }
}

/// What happened to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// Written (or, in a dry run, would be).
    Imported,
    /// The tenant already has this card with the same data: nothing written.
    Unchanged,
}

/// The PIN of an imported card.
enum ImportPin {
    /// Decoded from a PIN block; lives only in memory.
    Clear { pin: Pin, source: &'static str },
    /// A Visa PVV kept as the card's verifier until the PIN's next write.
    Pvv(ImportedPvv),
}

/// A Visa PVV as the card's PIN verifier: made by the vendor under its PVK
/// (imported as the tenant's `pvk` key), kept until the PIN is next written
/// or verified right, then replaced by the keyed HMAC verifier.
///
/// Stored in the card's verifier column as `PVV1` ‖ PVK id (16 bytes) ‖ the
/// four PVV digits, with the PVKI as the key version; an HMAC verifier is
/// always 32 bytes, so the two never mix.
#[derive(Clone, Copy)]
pub(crate) struct ImportedPvv {
    pub(crate) pvk: ZoneKeyId,
    pub(crate) pvki: u8,
    pub(crate) pvv: Pvv,
}

const PVV_TAG: &[u8; 4] = b"PVV1";
const PVV_LEN: usize = 4 + 16 + 4;

impl ImportedPvv {
    fn to_verifier(self) -> Verifier {
        let mut value = Vec::with_capacity(PVV_LEN);
        value.extend_from_slice(PVV_TAG);
        value.extend_from_slice(self.pvk.as_uuid().as_bytes());
        value.extend_from_slice(self.pvv.as_str().as_bytes());
        Verifier {
            value,
            key_version: i32::from(self.pvki),
        }
    }

    /// The PVV a stored verifier holds, if it is one.
    pub(crate) fn from_verifier(v: &Verifier) -> Option<Self> {
        if v.value.len() != PVV_LEN || !v.value.starts_with(PVV_TAG) {
            return None;
        }
        let pvk = uuid::Uuid::from_slice(&v.value[4..20]).ok()?;
        let digits = std::str::from_utf8(&v.value[20..]).ok()?;
        Some(Self {
            pvk: ZoneKeyId::from(pvk),
            pvki: u8::try_from(v.key_version).ok().filter(|k| *k <= 9)?,
            pvv: Pvv::parse(digits).ok()?,
        })
    }
}

impl Service {
    /// Whether `pin` matches an imported PVV of `rec`'s card.
    pub(crate) async fn pvv_matches(
        &self,
        ctx_tenant: cardcore_domain::TenantId,
        rec: &CardRecord,
        stored: &ImportedPvv,
        pin: &Pin,
    ) -> Result<bool, ServiceError> {
        if pin.len() != 4 {
            return Ok(false);
        }
        let pvk = self
            .keys
            .zone_key(ctx_tenant, Some(stored.pvk), PVK)
            .await?
            .filter(|k| k.algorithm == PVK)
            .ok_or_else(|| ServiceError::internal(format!("card {} has a PVV under a missing PVK", rec.card.id)))?;
        let key: [u8; 16] = pvk
            .key
            .expose()
            .try_into()
            .map_err(|_| ServiceError::internal("a PVK must be 16 bytes"))?;
        let key = zeroize::Zeroizing::new(key);
        let pan = self.open_pan(rec).await?;
        pvv::verify_visa_pvv(&key, stored.pvki, pin, &pan, &stored.pvv)
            .map_err(|e| ServiceError::caused("PVV verification", e))
    }
}

/// One line, checked against everything but the tenant's existing data.
pub struct ImportCard {
    holder: NewCardholder,
    pan: Pan,
    expiry: Expiry,
    brand: Brand,
    kit: Option<KitNumber>,
    card_type: CardType,
    status: CardStatus,
    reason: Option<StatusReason>,
    card_name: Option<String>,
    printed_name: Option<String>,
    limits: Option<Limits>,
    pin: Option<ImportPin>,
}

/// Stripes that put one cardholder's lines one after another.
const STRIPES: usize = 256;

/// Imports lines for one tenant. Lines may run concurrently (one
/// transaction each); lines of one cardholder take turns.
pub struct Importer {
    service: std::sync::Arc<Service>,
    ctx: Ctx,
    dry_run: bool,
    turns: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Importer {
    /// An importer acting as `ctx` (the CLI's principal); `dry_run` checks
    /// every line, the tenant's data and keys included, and writes nothing.
    pub fn new(service: std::sync::Arc<Service>, ctx: Ctx, dry_run: bool) -> Self {
        Self {
            service,
            ctx,
            dry_run,
            turns: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Imports one line of the file.
    pub async fn line(&self, text: &str) -> Result<LineOutcome, LineError> {
        let card = self.parse(text).await?;
        let stripe = self.hasher.hash_one(card.holder.external_id.as_str()) as usize % STRIPES;
        let _turn = self.turns[stripe].lock().await;
        self.write(card).await
    }

    async fn parse(&self, text: &str) -> Result<ImportCard, LineError> {
        if text.len() > MAX_LINE {
            return Err(LineError::new("", format!("is longer than {MAX_LINE} bytes")));
        }
        // A syntax error names a column, never the text around it.
        let value: Value = serde_json::from_str(text).map_err(|e| {
            LineError::new(
                "",
                format!("is not a JSON object: {} at column {}", syntax_kind(&e), e.column()),
            )
        })?;
        let top = object(&value, "")?;
        allow(
            top,
            "",
            &["external_id", "name", "phone", "email", "date_of_birth", "card"],
        )?;
        let phone_obj = object(required(top, "", "phone")?, "phone")?;
        allow(phone_obj, "phone.", &["country_code", "number"])?;
        let phone = cardcore_domain::Phone {
            country_code: req_str(phone_obj, "phone.", "country_code")?.to_owned(),
            number: req_str(phone_obj, "phone.", "number")?.to_owned(),
        };
        let dob = match opt_str(top, "", "date_of_birth")? {
            Some(d) => Some(
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| LineError::new("date_of_birth", "must be a date YYYY-MM-DD"))?,
            ),
            None => None,
        };
        let holder = NewCardholder::validate(
            req_str(top, "", "external_id")?,
            req_str(top, "", "name")?,
            &phone,
            opt_str(top, "", "email")?,
            dob,
            self.service.now().date_naive(),
        )
        .map_err(|e| from_service("", e.into()))?;

        let card = object(required(top, "", "card")?, "card")?;
        allow(
            card,
            "card.",
            &[
                "pan",
                "expiry",
                "kit_number",
                "type",
                "status",
                "reason_code",
                "reason_message",
                "card_name",
                "printed_name",
                "limits",
                "pin",
            ],
        )?;
        let pan = Pan::parse_checked(req_str(card, "card.", "pan")?).map_err(|e| {
            LineError::new(
                "card.pan",
                match e {
                    cardcore_crypto::SecretFormatError::Luhn => "fails the Luhn check".to_owned(),
                    other => other.to_string(),
                },
            )
        })?;
        let brand = Brand::of_bin(pan.bin())
            .ok_or_else(|| LineError::new("card.pan", "is neither a Visa nor a Mastercard number"))?;
        let expiry = Expiry::parse_mm_yy(req_str(card, "card.", "expiry")?)
            .ok_or_else(|| LineError::new("card.expiry", "must be MM/YY"))?;
        let kit = match opt_str(card, "card.", "kit_number")? {
            Some(k) => {
                Some(KitNumber::parse(k).ok_or_else(|| LineError::new("card.kit_number", "must be 6 to 16 digits"))?)
            }
            None => None,
        };
        let card_type = CardType::parse(req_str(card, "card.", "type")?)
            .ok_or_else(|| LineError::new("card.type", "must be virtual or physical"))?;
        let status = match opt_str(card, "card.", "status")? {
            Some(s) => CardStatus::parse(s)
                .ok_or_else(|| LineError::new("card.status", "must be INACTIVE, ACTIVE, LOCKED, BLOCKED or CLOSED"))?,
            None if card_type == CardType::Physical => CardStatus::Inactive,
            None => CardStatus::Active,
        };
        if status == CardStatus::Inactive && card_type == CardType::Virtual {
            return Err(LineError::new(
                "card.status",
                "INACTIVE is for physical cards (a virtual card is issued ACTIVE)",
            ));
        }
        let reason = self
            .service
            .parse_reason(
                &ReasonInput {
                    code: opt_str(card, "card.", "reason_code")?.map(str::to_owned),
                    message: opt_str(card, "card.", "reason_message")?.map(str::to_owned),
                },
                status == CardStatus::Blocked,
            )
            .map_err(|e| from_service("card.", e))?;
        let card_name = opt_str(card, "card.", "card_name")?.map(str::to_owned);
        let printed_name = opt_str(card, "card.", "printed_name")?.map(str::to_owned);
        let mut errors = cardcore_domain::ValidationErrors::new();
        for (field, value, max) in [
            ("card.card_name", &card_name, 50),
            ("card.printed_name", &printed_name, 26),
        ] {
            if let Some(v) = value {
                cardcore_domain::validation::text(&mut errors, field, v, 1, max);
            }
        }
        errors.into_result().map_err(|e| from_service("", e.into()))?;
        let limits = match card.get("limits") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let limits: Limits = serde_json::from_value(v.clone()).map_err(|e| {
                    LineError::new(
                        "card.limits",
                        format!("must be a limits object as PUT /v1/cards/{{id}}/limits takes ({e})"),
                    )
                })?;
                limits.validate().map_err(|e| from_service("card.limits.", e.into()))?;
                Some(limits)
            }
        };
        let pin = match card.get("pin") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.parse_pin(object(v, "card.pin")?, &pan).await?),
        };
        Ok(ImportCard {
            holder,
            pan,
            expiry,
            brand,
            kit,
            card_type,
            status,
            reason,
            card_name,
            printed_name,
            limits,
            pin,
        })
    }

    async fn parse_pin(&self, pin: &Map<String, Value>, pan: &Pan) -> Result<ImportPin, LineError> {
        let service = &self.service;
        let tenant = self.ctx.tenant_id();
        if pin.contains_key("pvv") {
            allow(pin, "card.pin.", &["format", "pvv", "pvk_key_id", "pvki"])?;
            if opt_str(pin, "card.pin.", "format")?.is_some_and(|f| f != "VISA-PVV") {
                return Err(LineError::new(
                    "card.pin.format",
                    "must be VISA-PVV (or left out) with a pvv",
                ));
            }
            let pvv = Pvv::parse(req_str(pin, "card.pin.", "pvv")?)
                .map_err(|_| LineError::new("card.pin.pvv", "must be 4 digits"))?;
            let pvki = match required(pin, "card.pin.", "pvki")? {
                Value::Number(n) => n.as_u64().filter(|k| *k <= 9),
                Value::String(s) if s.len() == 1 => s.parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| LineError::new("card.pin.pvki", "must be one digit, 0 to 9"))?;
            let id = zone_key_id(req_str(pin, "card.pin.", "pvk_key_id")?, "card.pin.pvk_key_id")?;
            let key = service
                .keys
                .zone_key(tenant, Some(id), PVK)
                .await
                .map_err(|e| from_service("card.pin.", e))?;
            match key {
                Some(k) if k.algorithm == PVK => {}
                Some(_) => {
                    return Err(LineError::new(
                        "card.pin.pvk_key_id",
                        "is a zone PIN key, not a PIN verification key; import the PVK with \
                         `cardcore tenant zone-key --algorithm pvk --key-file FILE`",
                    ))
                }
                None => {
                    return Err(LineError::new(
                        "card.pin.pvk_key_id",
                        "is not a key of this tenant; import the PVK with \
                         `cardcore tenant zone-key --algorithm pvk --key-file FILE`",
                    ))
                }
            }
            return Ok(ImportPin::Pvv(ImportedPvv {
                pvk: id,
                pvki: pvki as u8,
                pvv,
            }));
        }
        allow(pin, "card.pin.", &["format", "key_id", "block"])?;
        let format = match req_str(pin, "card.pin.", "format")? {
            "ISO-0" | "0" => BlockFormat::Iso0,
            "ISO-3" | "3" => BlockFormat::Iso3,
            "ISO-4" | "4" => BlockFormat::Iso4,
            _ => {
                return Err(LineError::new(
                    "card.pin.format",
                    "must be ISO-0, ISO-3 or ISO-4 for a block (ISO-1 has no PAN binding), or a pvv with \
                     pvk_key_id and pvki",
                ))
            }
        };
        let key_id = match opt_str(pin, "card.pin.", "key_id")? {
            Some(k) => Some(zone_key_id(k, "card.pin.key_id")?),
            None => None,
        };
        let block = hex::decode(req_str(pin, "card.pin.", "block")?)
            .map_err(|_| LineError::new("card.pin.block", "must be hexadecimal"))?;
        let block = zeroize::Zeroizing::new(block);
        let clear = service
            .decode_zone_block(tenant, &block, format, key_id, pan, "card.pin.key_id", "card.pin.block")
            .await
            .map_err(|e| from_service("", e))?;
        let policy = service.config.pin_policy;
        if clear.len() < policy.min_len || clear.len() > policy.max_len {
            return Err(LineError::new(
                "card.pin.block",
                format!(
                    "holds a PIN whose length the program does not allow ({} to {} digits)",
                    policy.min_len, policy.max_len
                ),
            ));
        }
        let source = match format {
            BlockFormat::Iso0 => "ISO-0",
            BlockFormat::Iso3 => "ISO-3",
            BlockFormat::Iso4 => "ISO-4",
        };
        Ok(ImportPin::Clear { pin: clear, source })
    }

    async fn write(&self, line: ImportCard) -> Result<LineOutcome, LineError> {
        let pan_hash = self
            .service
            .pan_hash(&line.pan)
            .await
            .map_err(|e| from_service("", e))?;
        let (line, pan_hash) = (&line, &pan_hash);
        // The line's reads and its transaction run again whole when the
        // database aborts it: a holder or card committed meanwhile is then
        // seen as the tenant's existing data.
        self.service
            .unit_of_work(|| self.write_once(line, pan_hash))
            .await
            .unwrap_or_else(|e| Err(from_service("", e)))
    }

    /// One attempt of [`Self::write`]: `Err` is the system's (the database
    /// aborted it: [`ServiceError::Retryable`] runs it again), `Ok(Err)`
    /// the line's.
    async fn write_once(&self, line: &ImportCard, pan_hash: &[u8]) -> ServiceResult<Result<LineOutcome, LineError>> {
        let service = &*self.service;
        let ctx = &self.ctx;
        let tenant = ctx.tenant_id();
        let existing_holder = service
            .store
            .cardholder_by_external_id(tenant, &line.holder.external_id)
            .await?;
        if let Some(holder) = &existing_holder {
            if let Err(e) = same_holder(holder, &line.holder) {
                return Ok(Err(e));
            }
        }
        if let Some(existing) = service.store.card_by_pan_hash(tenant, pan_hash).await? {
            return Ok(same_card(&existing, existing_holder.as_ref(), line).map(|()| LineOutcome::Unchanged));
        }
        if let Some(kit) = &line.kit {
            if service.store.card_by_kit(tenant, kit).await?.is_some() {
                return Ok(Err(LineError::new("card.kit_number", "is another card's kit number")));
            }
        }
        if self.dry_run {
            return Ok(Ok(LineOutcome::Imported));
        }
        let now = service.now();
        let holder = existing_holder.clone().unwrap_or_else(|| Cardholder {
            id: CardholderId::new(),
            tenant_id: tenant,
            external_id: line.holder.external_id.clone(),
            name: line.holder.name.clone(),
            phone: line.holder.phone.clone(),
            email: line.holder.email.clone(),
            date_of_birth: line.holder.date_of_birth,
            default_account_id: AccountId::new(),
            created_at: now,
        });
        let mut tx = service.store.begin().await?;
        if existing_holder.is_none() {
            if !tx.insert_cardholder(&holder).await? {
                return Ok(Err(LineError::new(
                    "external_id",
                    "was taken by another import or request meanwhile",
                )));
            }
            let after = serde_json::json!({ "cardholder_id": holder.id, "external_id": holder.external_id });
            tx.insert_audit(&service.audit(ctx, None, "cardholder.created", None, None, Some(after)))
                .await?;
        }
        let mut inserted = None;
        for _ in 0..8 {
            let rec = match self.record(line, &holder).await {
                Ok(rec) => rec,
                Err(e) => return Ok(Err(e)),
            };
            if tx.insert_card(&rec.0).await? {
                inserted = Some(rec);
                break;
            }
            // The PAN is no card of this tenant: it may be another tenant's
            // (a PAN is unique across tenants), or the kit was taken meanwhile.
            let kit_taken = service
                .store
                .card_by_kit(tenant, &rec.0.card.kit_number)
                .await?
                .is_some();
            if !kit_taken {
                return Ok(Err(LineError::new(
                    "card.pan",
                    "is already another card's PAN (a PAN is unique across all tenants)",
                )));
            }
            if line.kit.is_some() {
                return Ok(Err(LineError::new(
                    "card.kit_number",
                    "was taken by another line or request meanwhile",
                )));
            }
        }
        let Some((rec, activation)) = inserted else {
            return Ok(Err(LineError::new("card.pan", "was taken meanwhile")));
        };
        let card = &rec.card;
        let pin_source = match &line.pin {
            Some(ImportPin::Clear { source, .. }) => Some(*source),
            Some(ImportPin::Pvv(_)) => Some("VISA-PVV"),
            None => None,
        };
        let mut after = card.snapshot();
        after["pin_source"] = serde_json::json!(pin_source);
        tx.insert_audit(&service.audit(
            ctx,
            Some(card.id),
            "card.imported",
            card.status_reason.clone(),
            None,
            Some(after),
        ))
        .await?;
        let event = service
            .event(
                tenant,
                Some(card.id),
                EventType::CardCreated,
                serde_json::json!({ "card": card, "imported": true }),
            )
            .await?;
        tx.insert_event(&event).await?;
        if let Some(code) = activation {
            let data = serde_json::json!({ "card_id": card.id, "activation_code": code.expose() });
            let event = service
                .event(tenant, Some(card.id), EventType::CardActivationCode, data)
                .await?;
            tx.insert_event(&event).await?;
        }
        tx.commit().await?;
        Ok(Ok(LineOutcome::Imported))
    }

    /// The card record a line makes: its PAN, kit (given, or drawn), status,
    /// limits and PIN verifier; an activation code for an INACTIVE card.
    async fn record(
        &self,
        line: &ImportCard,
        holder: &Cardholder,
    ) -> Result<(CardRecord, Option<cardcore_crypto::Otp>), LineError> {
        let service = &*self.service;
        let fatal = |e: ServiceError| from_service("", e);
        let now = service.now();
        let card = Card {
            id: CardId::new(),
            tenant_id: self.ctx.tenant_id(),
            cardholder_id: holder.id,
            account_id: holder.default_account_id,
            program_id: self.ctx.tenant().default_program_id,
            card_type: line.card_type,
            status: line.status,
            status_reason: line.reason.clone(),
            pin_status: PinStatus::NotSet,
            brand: line.brand,
            last_four: line.pan.last_four().to_owned(),
            expiry: line.expiry,
            // Without a name the card is called by its type, as at creation.
            card_name: Some(
                line.card_name
                    .clone()
                    .unwrap_or_else(|| line.card_type.as_str().to_owned()),
            ),
            printed_name: Some(
                line.printed_name
                    .clone()
                    .unwrap_or_else(|| holder.name.to_uppercase().chars().take(26).collect()),
            ),
            kit_number: line.kit.clone().unwrap_or_else(crate::cards::random_kit_number),
            replacement_for: None,
            limits: line
                .limits
                .clone()
                .unwrap_or_else(|| Limits::unlimited(&service.config.currency)),
            created_at: now,
            updated_at: now,
        };
        let secrets = service.seal_card(&card, &line.pan).await.map_err(fatal)?;
        let mut rec = CardRecord {
            card,
            secrets,
            usage: Default::default(),
        };
        let mut activation = None;
        if rec.card.status == CardStatus::Inactive {
            let (code, verifier) = service.new_activation_code(rec.card.id).await.map_err(fatal)?;
            rec.secrets.activation_code = Some(verifier);
            activation = Some(code);
        }
        match &line.pin {
            Some(ImportPin::Clear { pin, .. }) => service.put_new_pin(&mut rec, pin).await.map_err(fatal)?,
            Some(ImportPin::Pvv(pvv)) => {
                rec.secrets.pin = Some(pvv.to_verifier());
                rec.secrets.pin_failures = 0;
                rec.card.pin_status = PinStatus::Set;
            }
            None => {}
        }
        Ok((rec, activation))
    }
}

/// A syntax error's kind, without the text it was found in.
fn syntax_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "it ends early",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

fn zone_key_id(s: &str, field: &str) -> Result<ZoneKeyId, LineError> {
    uuid::Uuid::parse_str(s)
        .map(ZoneKeyId::from)
        .map_err(|_| LineError::new(field, "must be a key id (UUID) from `cardcore tenant zone-key`"))
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, LineError> {
    v.as_object().ok_or_else(|| {
        LineError::new(
            field,
            if field.is_empty() {
                "the line must be one JSON object"
            } else {
                "must be an object"
            },
        )
    })
}

/// Refuses fields the format does not have (a typo is never ignored). The
/// name is quoted only when it looks like a field name.
fn allow(map: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<(), LineError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if k.len() <= 40 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => Err(LineError::new(
            format!("{prefix}{k}"),
            format!("is not a field of the import format (known: {})", known.join(", ")),
        )),
        Some(_) => Err(LineError::new(
            prefix.trim_end_matches('.'),
            format!(
                "has a field the import format does not have (known: {})",
                known.join(", ")
            ),
        )),
    }
}

fn required<'a>(map: &'a Map<String, Value>, prefix: &str, key: &str) -> Result<&'a Value, LineError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(LineError::new(format!("{prefix}{key}"), "is required")),
        Some(v) => Ok(v),
    }
}

fn req_str<'a>(map: &'a Map<String, Value>, prefix: &str, key: &str) -> Result<&'a str, LineError> {
    required(map, prefix, key)?
        .as_str()
        .ok_or_else(|| LineError::new(format!("{prefix}{key}"), "must be a string"))
}

fn opt_str<'a>(map: &'a Map<String, Value>, prefix: &str, key: &str) -> Result<Option<&'a str>, LineError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(LineError::new(format!("{prefix}{key}"), "must be a string")),
    }
}

/// The import never changes a cardholder: one that exists must match.
fn same_holder(stored: &Cardholder, line: &NewCardholder) -> Result<(), LineError> {
    let differs = if stored.name != line.name {
        Some("name")
    } else if stored.phone != line.phone {
        Some("phone")
    } else if stored.email != line.email {
        Some("email")
    } else if stored.date_of_birth != line.date_of_birth {
        Some("date_of_birth")
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some(field) => Err(LineError::new(
            field,
            "differs from the existing cardholder with this external_id; the import does not change \
             cardholders (use the API)",
        )),
    }
}

/// A PAN the tenant already has: unchanged when it is the same card of the
/// same cardholder (what the import sets once: expiry, type, kit if given);
/// its status, limits and PIN may have moved on since and are left alone.
fn same_card(existing: &CardRecord, holder: Option<&Cardholder>, line: &ImportCard) -> Result<(), LineError> {
    let card = &existing.card;
    if holder.is_none_or(|h| h.id != card.cardholder_id) {
        return Err(LineError::new(
            "card.pan",
            "belongs to a card of another cardholder of this tenant",
        ));
    }
    let differs = if card.expiry != line.expiry {
        Some("card.expiry")
    } else if card.card_type != line.card_type {
        Some("card.type")
    } else if line.kit.as_ref().is_some_and(|k| *k != card.kit_number) {
        Some("card.kit_number")
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some(field) => Err(LineError::new(
            field,
            "differs from the card already imported with this PAN; the import does not change cards \
             (use the API)",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pvv_verifier_round_trips_and_never_reads_as_an_hmac() {
        let pvv = ImportedPvv {
            pvk: ZoneKeyId::new(),
            pvki: 7,
            pvv: Pvv::parse("8523").unwrap(),
        };
        let stored = pvv.to_verifier();
        assert_eq!(stored.key_version, 7);
        let back = ImportedPvv::from_verifier(&stored).unwrap();
        assert_eq!((back.pvk, back.pvki, back.pvv), (pvv.pvk, 7, pvv.pvv));
        let hmac = Verifier {
            value: vec![0x50; 32],
            key_version: 1,
        };
        assert!(ImportedPvv::from_verifier(&hmac).is_none());
        let mut bad_pvki = stored.clone();
        bad_pvki.key_version = 10;
        assert!(ImportedPvv::from_verifier(&bad_pvki).is_none());
    }

    #[test]
    fn unknown_fields_are_named_only_when_they_look_like_names() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"pan": "1", "pna": "2"}"#).unwrap();
        let e = allow(&map, "card.", &["pan"]).unwrap_err();
        assert_eq!(e.field, "card.pna");
        let map: Map<String, Value> = serde_json::from_str(r#"{"pan": "1", "4242424242424242": 1}"#).unwrap();
        let e = allow(&map, "card.", &["pan"]).unwrap_err();
        assert_eq!(e.field, "card");
        assert!(!e.to_string().contains("4242"), "{e}");
    }
}
