//! Authorizations (docs/authorizations.md): the decision on a payment, its
//! hold, and the money after it (captures, reversals, expiry, refunds).
//!
//! A decision is taken in card order, like a PIN verification: the card's
//! turn in this process, then its lock in the store (on PostgreSQL the
//! advisory lock every node queues on), so one card's authorizations are
//! decided one after another against committed totals. The checks are the
//! domain's [`decide`]; the PIN counts on the card's own try counter.
//!
//! Hook points for the tenant's decision service (item 5): [`Service::authorize`]
//! prepares outside card order ([`Service::prepare_authorization`]), may
//! pre-decide on a plain read ([`Service::precheck_authorization`]) and ask
//! the tenant without holding the card, then calls
//! [`Service::decide_and_write`] with the tenant's [`Verdict`], which
//! re-runs every check of cardcore in card order before writing.

use cardcore_crypto::{Cvv, Pan, Pin};
use cardcore_domain::authorization::{
    self, decide, Amounts, Authorization, AuthorizationStatus, CardState, DecidedBy, DeclineReason, Merchant,
    MovementRefused, Payment, PaymentChannel, SpendingControls, Transaction, Windows,
};
use cardcore_domain::{
    AuthorizationId, CardId, EventType, Expiry, PinDecision, PinTries, Timestamp, TransactionId, ValidationErrors,
};
use cardcore_store::{AuthorizationRecord, CardRecord, MoneyPage, TransactionKind, TransactionRecord, Tx};

use crate::pins::BlockFormat;
use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Which card a payment names.
#[derive(Debug)]
pub enum CardRef {
    Id(CardId),
    Pan(Pan),
}

/// A terminal's PIN: an ISO 9564 block under a zone key.
#[derive(Debug)]
pub struct TerminalPin {
    pub block: Vec<u8>,
    pub format: BlockFormat,
    pub key_id: Option<cardcore_domain::ZoneKeyId>,
}

/// `POST /v1/authorizations`, parsed.
#[derive(Debug)]
pub struct AuthorizationRequest {
    pub card: CardRef,
    pub expiry: Option<Expiry>,
    pub cvv2: Option<Cvv>,
    pub amount: u64,
    pub currency: String,
    pub billing_amount: Option<u64>,
    pub merchant: Merchant,
    pub channel: PaymentChannel,
    pub pin: Option<TerminalPin>,
    pub network_reference: String,
}

/// Who else decided, after cardcore's own checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// cardcore alone (no decision service).
    Cardcore,
    /// The tenant's decision service answered.
    Tenant { approved: bool },
    /// The decision service did not answer in time: `on_timeout` decided.
    StandIn { approved: bool },
}

/// What the request carries, checked against the card found (outside card order).
pub struct Prepared {
    /// The authorization's id, made before the tenant is asked so that the
    /// request and the authorization written carry the same one.
    id: AuthorizationId,
    req: AuthorizationRequest,
    card_id: Option<CardId>,
    /// Whether the CVV2 sent is the card's.
    cvv2_matches: Option<bool>,
    /// The PIN decoded from the block; `Err` when it did not decode for this card.
    pin: Option<Result<Pin, ()>>,
}

/// A decision and whether it is a replay of an earlier one.
#[derive(Debug, Clone)]
pub struct Decided {
    pub authorization: Authorization,
    /// True when `network_reference` named an earlier authorization.
    pub replayed: bool,
}

/// A card's spend in one channel and window.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowSpend {
    /// The window: `YYYY-MM-DD` or `YYYY-MM` in the program's time zone.
    pub window: String,
    pub used: u64,
    pub count: u32,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

/// `GET /v1/cards/{id}/spend`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardSpend {
    pub card_id: CardId,
    pub currency: String,
    pub time_zone: String,
    /// By limits channel (`pos`, `contactless`, `ecommerce`, `atm`; `moto` counts as `ecommerce`).
    pub channels: std::collections::BTreeMap<&'static str, ChannelSpend>,
}

/// One channel's day and month.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelSpend {
    pub daily: WindowSpend,
    pub monthly: WindowSpend,
    pub daily_count_limit: Option<u32>,
}

/// A card's effective controls and where they come from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EffectiveControls {
    #[serde(flatten)]
    pub controls: SpendingControls,
    /// `card` (its own) or `program` (the tenant's defaults).
    pub source: &'static str,
}

/// A page of authorizations.
#[derive(Debug, Clone)]
pub struct AuthorizationPage {
    pub data: Vec<Authorization>,
    pub next_cursor: Option<AuthorizationId>,
}

/// A page of transactions.
#[derive(Debug, Clone)]
pub struct TransactionPage {
    pub data: Vec<Transaction>,
    pub next_cursor: Option<TransactionId>,
}

/// `POST /v1/cards/{id}/refunds`, parsed.
#[derive(Debug)]
pub struct RefundRequest {
    pub amount: u64,
    pub currency: String,
    pub merchant: Option<Merchant>,
    pub network_reference: String,
}

/// The API object of a stored authorization.
pub fn authorization_view(r: &AuthorizationRecord) -> Authorization {
    Authorization {
        id: r.id,
        card_id: r.card_id,
        status: r.status,
        response_code: r.response_code.clone(),
        decline_reason: r.decline_reason,
        decided_by: r.decided_by,
        amount: r.amount,
        currency: r.currency.clone(),
        billing_amount: r.billing_amount,
        billing_currency: r.billing_currency.clone(),
        approved_amount: r.amounts.approved,
        pending_amount: r.amounts.pending,
        captured_amount: r.amounts.captured,
        reversed_amount: r.amounts.reversed,
        merchant: r.merchant.clone(),
        channel: r.channel,
        network_reference: r.network_reference.clone(),
        expires_at: r.expires_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// The API object of a stored transaction.
pub fn transaction_view(r: &TransactionRecord) -> Transaction {
    Transaction {
        id: r.id,
        card_id: r.card_id,
        authorization_id: r.authorization_id,
        kind: r.kind.as_str(),
        amount: r.amount,
        currency: r.currency.clone(),
        merchant: r.merchant.clone(),
        network_reference: r.network_reference.clone(),
        created_at: r.created_at,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A `network_reference` that names another transaction of the tenant.
fn reference_reused() -> ServiceError {
    ServiceError::Conflict {
        code: "network_reference_reused",
        message: "network_reference names another transaction of your tenant".into(),
    }
}

fn refused(e: MovementRefused) -> ServiceError {
    ServiceError::Conflict {
        code: e.code(),
        message: e.to_string(),
    }
}

/// A payment in another currency than the card's must say what it costs
/// in the card's currency: a `400` naming `billing_amount` otherwise.
fn check_billing_amount(req: &AuthorizationRequest, rec: &CardRecord) -> ServiceResult<()> {
    if req.billing_amount.is_none() && req.currency != rec.card.limits.currency {
        return Err(ServiceError::invalid(
            "billing_amount",
            "is required when currency is not the card's currency",
        ));
    }
    Ok(())
}

/// Longest `network_reference` accepted.
pub const MAX_REFERENCE_LEN: usize = 100;

/// Checks a network reference's shape.
pub fn validate_reference(field: &str, r: &str, errors: &mut ValidationErrors) {
    if r.is_empty() || r.len() > MAX_REFERENCE_LEN || !r.bytes().all(|b| b.is_ascii_graphic()) {
        errors.add(
            field,
            format!("must be 1 to {MAX_REFERENCE_LEN} printable ASCII characters without spaces"),
        );
    }
}

impl Service {
    /// Decides on a payment and holds what is approved. Always a decision
    /// for a well-formed request (also for an unknown card); a repeated
    /// `network_reference` answers the first decision and holds nothing more.
    ///
    /// A retry is found when its authorization is inserted (the reference
    /// is unique per tenant): its transaction is rolled back before it
    /// wrote anything, and the first decision is answered. No lookup comes
    /// first, so a first request (the usual one) costs no extra statement.
    pub async fn authorize(&self, ctx: &Ctx, req: AuthorizationRequest) -> ServiceResult<Decided> {
        let prepared = self.prepare_authorization(ctx, req).await?;
        let verdict = self.tenant_verdict(ctx, &prepared).await?;
        // cardcore's checks run again in card order, on the committed totals
        // of the moment the answer came.
        self.decide_and_write(ctx, prepared, verdict).await
    }

    /// The tenant's say (docs/authorizations.md, "Asking the tenant"):
    /// none without an endpoint or for a payment cardcore's own checks
    /// decline (on a plain read: nothing held, nothing counted); otherwise
    /// its answer, or the stand-in. The card is not held while waiting.
    async fn tenant_verdict(&self, ctx: &Ctx, p: &Prepared) -> ServiceResult<Verdict> {
        let Some(card_id) = p.card_id else {
            return Ok(Verdict::Cardcore);
        };
        if !self.has_authorization_endpoint(ctx.tenant_id()).await? {
            return Ok(Verdict::Cardcore);
        }
        // A retry is answered the first decision (at the insert): the
        // tenant is not asked twice about one payment.
        if self
            .store
            .authorization_by_reference(ctx.tenant_id(), &p.req.network_reference)
            .await?
            .is_some()
        {
            return Ok(Verdict::Cardcore);
        }
        if self.precheck_authorization(ctx, p).await?.is_some() {
            return Ok(Verdict::Cardcore);
        }
        let Some(rec) = self.store.card(ctx.tenant_id(), card_id).await? else {
            return Ok(Verdict::Cardcore);
        };
        let pending = self.pending_view(p, &rec);
        use crate::authorization_endpoint::TenantDecision;
        Ok(match self.ask_tenant(ctx.tenant_id(), &pending).await? {
            None => Verdict::Cardcore,
            Some(TenantDecision::Approved) => Verdict::Tenant { approved: true },
            Some(TenantDecision::Declined { .. }) => Verdict::Tenant { approved: false },
            Some(TenantDecision::StandIn { approved }) => Verdict::StandIn { approved },
        })
    }

    /// The authorization as the tenant is asked about it: status `PENDING`,
    /// no decision yet, the amounts cardcore would hold.
    fn pending_view(&self, p: &Prepared, rec: &CardRecord) -> serde_json::Value {
        let billing = p.req.billing_amount.unwrap_or(p.req.amount);
        serde_json::json!({
            "id": p.id,
            "card_id": rec.card.id,
            "status": "PENDING",
            "response_code": null,
            "decline_reason": null,
            "decided_by": null,
            "amount": p.req.amount,
            "currency": p.req.currency,
            "billing_amount": billing,
            "billing_currency": rec.card.limits.currency,
            "approved_amount": billing,
            "pending_amount": billing,
            "captured_amount": 0,
            "reversed_amount": 0,
            "merchant": p.req.merchant,
            "channel": p.req.channel,
            "network_reference": p.req.network_reference,
            "created_at": self.now(),
        })
    }

    /// Finds the card and checks what needs no card order: the CVV2, the
    /// PIN block's decoding (a block that does not decode for this card
    /// counts as a wrong PIN: any other answer would be an oracle), the
    /// billing amount.
    ///
    /// A payment that names its card by id and carries neither CVV2 nor PIN
    /// needs nothing of the card before card order: the card is not read
    /// here (a read saved per authorization), and [`Self::decide_and_write`]
    /// checks the billing amount on the locked card and declines an unknown
    /// one exactly as this would have.
    pub async fn prepare_authorization(&self, ctx: &Ctx, req: AuthorizationRequest) -> ServiceResult<Prepared> {
        if let Some(pin) = &req.pin {
            // The key and the block's length depend on no card: refused the
            // same way whatever card is named.
            self.check_zone_key(ctx, pin).await?;
        }
        if let (CardRef::Id(id), None, None) = (&req.card, &req.cvv2, &req.pin) {
            return Ok(Prepared {
                id: AuthorizationId::new(),
                card_id: Some(*id),
                req,
                cvv2_matches: None,
                pin: None,
            });
        }
        let rec = match &req.card {
            CardRef::Id(id) => self.store.card(ctx.tenant_id(), *id).await?,
            CardRef::Pan(pan) => {
                let hash = self.pan_hash(pan).await?;
                self.store.card_by_pan_hash(ctx.tenant_id(), &hash).await?
            }
        };
        let Some(rec) = rec else {
            return Ok(Prepared {
                id: AuthorizationId::new(),
                req,
                card_id: None,
                cvv2_matches: None,
                pin: None,
            });
        };
        check_billing_amount(&req, &rec)?;
        let now = self.now();
        let cvv2_matches = match &req.cvv2 {
            Some(c) => Some(self.cvv2_matches(&rec, c, now).await?),
            None => None,
        };
        let pin = match &req.pin {
            Some(p) => {
                let pan = self.open_pan(&rec).await?;
                Some(
                    self.decode_zone_block(
                        ctx.tenant_id(),
                        &p.block,
                        p.format,
                        p.key_id,
                        &pan,
                        "key_id",
                        "pin_block",
                    )
                    .await
                    .map_err(|_| ()),
                )
            }
            None => None,
        };
        Ok(Prepared {
            id: AuthorizationId::new(),
            card_id: Some(rec.card.id),
            req,
            cvv2_matches,
            pin,
        })
    }

    async fn check_zone_key(&self, ctx: &Ctx, pin: &TerminalPin) -> ServiceResult<()> {
        let zone = self
            .keys
            .zone_key(ctx.tenant_id(), pin.key_id, pin.format.algorithm())
            .await?;
        match zone {
            Some(z) if z.algorithm == pin.format.algorithm() => {}
            _ => {
                return Err(ServiceError::invalid(
                    "key_id",
                    format!(
                        "no {} zone PIN key of this tenant matches; make one with `cardcore tenant zone-key`",
                        pin.format.algorithm()
                    ),
                ))
            }
        }
        if pin.block.len() != pin.format.block_len() {
            return Err(ServiceError::invalid(
                "pin_block",
                format!(
                    "must be {} hex characters for {:?}",
                    pin.format.block_len() * 2,
                    pin.format
                ),
            ));
        }
        Ok(())
    }

    async fn pin_right(&self, rec: &CardRecord, pin: &Option<Result<Pin, ()>>) -> ServiceResult<Option<bool>> {
        Ok(match pin {
            None => None,
            Some(Err(())) => Some(false),
            Some(Ok(p)) => Some(self.pin_matches(rec, p).await?),
        })
    }

    /// cardcore's checks on a plain read of the card, writing nothing: what
    /// the tenant's decision service is asked about (None: unknown card).
    pub async fn precheck_authorization(&self, ctx: &Ctx, p: &Prepared) -> ServiceResult<Option<DeclineReason>> {
        let Some(id) = p.card_id else {
            return Ok(Some(DeclineReason::CardNotFound));
        };
        let Some(rec) = self.store.card(ctx.tenant_id(), id).await? else {
            return Ok(Some(DeclineReason::CardNotFound));
        };
        // `prepare_authorization` may not have read the card: a request
        // refused for its billing amount is refused before the tenant is asked.
        check_billing_amount(&p.req, &rec)?;
        let settings = self.tenant_settings(ctx.tenant_id()).await?.authorizations;
        let now = self.now();
        let windows = Windows::at(now, settings.tz());
        let pin_right = self.pin_right(&rec, &p.pin).await?;
        let controls = rec.usage.controls.clone().unwrap_or(settings.default_controls);
        let payment = self.payment(p, pin_right);
        let state = CardState {
            card: &rec.card,
            tries: PinTries::new(rec.card.pin_status, rec.secrets.pin_failures),
            controls: &controls,
            totals: &rec.usage.totals,
        };
        Ok(decide(&state, &payment, &windows, now, self.config.pin_max_failures).declined)
    }

    fn payment<'a>(&self, p: &'a Prepared, pin_right: Option<bool>) -> Payment<'a> {
        Payment {
            billing_amount: p.req.billing_amount.unwrap_or(p.req.amount),
            channel: p.req.channel,
            merchant: &p.req.merchant,
            expiry: p.req.expiry,
            cvv2_matches: p.cvv2_matches,
            pin_right,
        }
    }

    /// Decides in card order and writes the authorization, its hold, the
    /// card's totals and try counter, the audit entries and the events in
    /// one transaction. cardcore's checks run here on the locked card
    /// whatever `verdict` says; the verdict only decides a payment they
    /// approve.
    pub async fn decide_and_write(&self, ctx: &Ctx, p: Prepared, verdict: Verdict) -> ServiceResult<Decided> {
        let settings = self.tenant_settings(ctx.tenant_id()).await?.authorizations;
        let Some(id) = p.card_id else {
            return self.write_unknown_card(ctx, &p).await;
        };
        let _turn = self.card_order.turn(id).await;
        // The unit runs again whole when the database aborts it: the card is
        // locked and decided again on what is committed then. The tenant was
        // asked once, before it; `p.id` names the authorization in every attempt.
        let (p, verdict, settings) = (&p, &verdict, &settings);
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let Some(mut rec) = tx.lock_card(ctx.tenant_id(), id).await? else {
                drop(tx);
                return self.write_unknown_card_once(ctx, p).await;
            };
            // Checked again here: `prepare_authorization` may not have read the card.
            check_billing_amount(&p.req, &rec)?;
            let now = self.now();
            let windows = Windows::at(now, settings.tz());
            let pin_right = self.pin_right(&rec, &p.pin).await?;
            let controls = rec
                .usage
                .controls
                .clone()
                .unwrap_or_else(|| settings.default_controls.clone());
            let before = rec.card.snapshot();
            let decision = {
                let state = CardState {
                    card: &rec.card,
                    tries: PinTries::new(rec.card.pin_status, rec.secrets.pin_failures),
                    controls: &controls,
                    totals: &rec.usage.totals,
                };
                decide(
                    &state,
                    &self.payment(p, pin_right),
                    &windows,
                    now,
                    self.config.pin_max_failures,
                )
            };
            let (declined, decided_by) = match (decision.declined, verdict) {
                (Some(r), _) => (Some(r), DecidedBy::Cardcore),
                (None, Verdict::Cardcore) => (None, DecidedBy::Cardcore),
                (None, Verdict::Tenant { approved }) => (
                    if *approved {
                        None
                    } else {
                        Some(DeclineReason::DeclinedByTenant)
                    },
                    DecidedBy::Tenant,
                ),
                (None, Verdict::StandIn { approved }) => (
                    if *approved {
                        None
                    } else {
                        Some(DeclineReason::TenantUnavailable)
                    },
                    DecidedBy::StandIn,
                ),
            };
            let billing = p.req.billing_amount.unwrap_or(p.req.amount);
            let approved = declined.is_none();
            let rec_auth = AuthorizationRecord {
                id: p.id,
                tenant_id: ctx.tenant_id(),
                card_id: Some(id),
                status: if approved {
                    AuthorizationStatus::Approved
                } else {
                    AuthorizationStatus::Declined
                },
                decline_reason: declined,
                response_code: declined
                    .map_or(authorization::APPROVED_CODE, DeclineReason::response_code)
                    .to_owned(),
                decided_by,
                amount: p.req.amount,
                currency: p.req.currency.clone(),
                billing_amount: billing,
                billing_currency: rec.card.limits.currency.clone(),
                amounts: Amounts {
                    approved: if approved { billing } else { 0 },
                    pending: if approved { billing } else { 0 },
                    captured: 0,
                    reversed: 0,
                },
                merchant: p.req.merchant.clone(),
                channel: p.req.channel,
                network_reference: p.req.network_reference.clone(),
                windows: windows.clone(),
                expires_at: approved.then(|| now + chrono::Duration::days(i64::from(settings.expiry_days))),
                created_at: now,
                updated_at: now,
            };
            if !tx.insert_authorization(&rec_auth).await? {
                // A concurrent retry with the same reference won: its answer is the answer.
                tx.rollback().await?;
                return self.replay(ctx, &p.req.network_reference).await;
            }
            let tries_changed = decision.pin.is_some_and(PinDecision::changed);
            if tries_changed {
                rec.card.pin_status = decision.tries.status;
                rec.secrets.pin_failures = decision.tries.failures;
            }
            if approved {
                rec.usage.totals.add(p.req.channel, &windows, billing);
            }
            if approved || tries_changed {
                self.save_card(&mut *tx, &mut rec).await?;
            }
            if let Some(PinDecision::Wrong { remaining_attempts }) = decision.pin {
                self.record_failure(ctx, &mut *tx, &rec, before, remaining_attempts)
                    .await?;
            }
            let view = authorization_view(&rec_auth);
            let (entry, event) = if approved {
                ("authorization.approved", EventType::AuthorizationApproved)
            } else {
                ("authorization.declined", EventType::AuthorizationDeclined)
            };
            tx.insert_audit(&self.audit(ctx, Some(id), entry, None, None, Some(audit_after(&rec_auth))))
                .await?;
            tx.insert_event(&self.event(ctx.tenant_id(), Some(id), event, to_json(&view)).await?)
                .await?;
            tx.commit().await?;
            metrics::counter!("cardcore_authorizations_total", "status" => rec_auth.status.as_str()).increment(1);
            Ok(Decided {
                authorization: view,
                replayed: false,
            })
        })
        .await
    }

    /// The decline of a card the tenant does not have: the same answer,
    /// shape and writes whether the card is another tenant's or nobody's.
    async fn write_unknown_card(&self, ctx: &Ctx, p: &Prepared) -> ServiceResult<Decided> {
        self.unit_of_work(|| self.write_unknown_card_once(ctx, p)).await
    }

    /// One attempt of [`Self::write_unknown_card`] (also the end of an
    /// attempt of [`Self::decide_and_write`] that found no card).
    async fn write_unknown_card_once(&self, ctx: &Ctx, p: &Prepared) -> ServiceResult<Decided> {
        let now = self.now();
        let settings = self.tenant_settings(ctx.tenant_id()).await?.authorizations;
        let reason = DeclineReason::CardNotFound;
        let rec = AuthorizationRecord {
            id: AuthorizationId::new(),
            tenant_id: ctx.tenant_id(),
            card_id: None,
            status: AuthorizationStatus::Declined,
            decline_reason: Some(reason),
            response_code: reason.response_code().to_owned(),
            decided_by: DecidedBy::Cardcore,
            amount: p.req.amount,
            currency: p.req.currency.clone(),
            billing_amount: p.req.billing_amount.unwrap_or(p.req.amount),
            billing_currency: p.req.currency.clone(),
            amounts: Amounts {
                approved: 0,
                pending: 0,
                captured: 0,
                reversed: 0,
            },
            merchant: p.req.merchant.clone(),
            channel: p.req.channel,
            network_reference: p.req.network_reference.clone(),
            windows: Windows::at(now, settings.tz()),
            expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        if !tx.insert_authorization(&rec).await? {
            tx.rollback().await?;
            return self.replay(ctx, &p.req.network_reference).await;
        }
        let view = authorization_view(&rec);
        tx.insert_audit(&self.audit(ctx, None, "authorization.declined", None, None, Some(audit_after(&rec))))
            .await?;
        tx.insert_event(
            &self
                .event(ctx.tenant_id(), None, EventType::AuthorizationDeclined, to_json(&view))
                .await?,
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("cardcore_authorizations_total", "status" => "DECLINED").increment(1);
        Ok(Decided {
            authorization: view,
            replayed: false,
        })
    }

    async fn replay(&self, ctx: &Ctx, reference: &str) -> ServiceResult<Decided> {
        let first = self
            .store
            .authorization_by_reference(ctx.tenant_id(), reference)
            .await?
            .ok_or_else(|| ServiceError::internal("a network reference conflicted with no row"))?;
        Ok(Decided {
            authorization: authorization_view(&first),
            replayed: true,
        })
    }

    /// One authorization of the tenant.
    pub async fn authorization(&self, ctx: &Ctx, id: AuthorizationId) -> ServiceResult<Authorization> {
        self.store
            .authorization(ctx.tenant_id(), id)
            .await?
            .map(|r| authorization_view(&r))
            .ok_or(ServiceError::NotFound("authorization"))
    }

    /// A card's authorizations, newest first.
    pub async fn card_authorizations(
        &self,
        ctx: &Ctx,
        card: CardId,
        status: Option<AuthorizationStatus>,
        cursor: Option<AuthorizationId>,
        limit: u32,
    ) -> ServiceResult<AuthorizationPage> {
        self.card_record(ctx, card).await?;
        let mut rows = self
            .store
            .authorizations(
                ctx.tenant_id(),
                card,
                &MoneyPage {
                    status,
                    before: cursor.map(|c| c.0),
                    limit: limit + 1,
                },
            )
            .await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(AuthorizationPage {
            data: rows.iter().map(authorization_view).collect(),
            next_cursor,
        })
    }

    /// A card's captures and refunds, newest first.
    pub async fn card_transactions(
        &self,
        ctx: &Ctx,
        card: CardId,
        cursor: Option<TransactionId>,
        limit: u32,
    ) -> ServiceResult<TransactionPage> {
        self.card_record(ctx, card).await?;
        let mut rows = self
            .store
            .transactions(
                ctx.tenant_id(),
                card,
                &MoneyPage {
                    status: None,
                    before: cursor.map(|c| c.0),
                    limit: limit + 1,
                },
            )
            .await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(TransactionPage {
            data: rows.iter().map(transaction_view).collect(),
            next_cursor,
        })
    }

    /// The card an authorization holds money on, on a plain read: its turn
    /// is taken before the unit of work, which locks it.
    async fn authorization_card(&self, ctx: &Ctx, id: AuthorizationId) -> ServiceResult<CardId> {
        let auth = self
            .store
            .authorization(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("authorization"))?;
        // A decline of an unknown card holds nothing on any card.
        auth.card_id.ok_or_else(|| refused(MovementRefused::Declined))
    }

    /// Locks the authorization's card and reads the authorization in the
    /// same transaction: the card's lock orders every change of its money.
    async fn lock_authorization(
        &self,
        ctx: &Ctx,
        card: CardId,
        id: AuthorizationId,
    ) -> ServiceResult<(Box<dyn Tx>, CardRecord, AuthorizationRecord)> {
        let mut tx = self.store.begin().await?;
        let rec = self.lock_card(ctx, &mut *tx, card).await?;
        let auth = tx
            .authorization_in_tx(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("authorization"))?;
        Ok((tx, rec, auth))
    }

    /// What an earlier capture with `reference` answers: the authorization
    /// as it is when it was this capture of `id`, a `409` when the reference
    /// names another transaction, None when no transaction has it.
    async fn earlier_capture(
        &self,
        ctx: &Ctx,
        id: AuthorizationId,
        reference: &str,
    ) -> ServiceResult<Option<Authorization>> {
        let Some(t) = self.store.transaction_by_reference(ctx.tenant_id(), reference).await? else {
            return Ok(None);
        };
        if t.authorization_id == Some(id) && t.kind == TransactionKind::Capture {
            return self.authorization(ctx, id).await.map(Some);
        }
        Err(reference_reused())
    }

    /// Clearing: moves `amount` from pending to captured. A retry with the
    /// same `network_reference` answers the authorization as it is.
    pub async fn capture(
        &self,
        ctx: &Ctx,
        id: AuthorizationId,
        amount: u64,
        network_reference: &str,
    ) -> ServiceResult<Authorization> {
        if let Some(answer) = self.earlier_capture(ctx, id, network_reference).await? {
            return Ok(answer);
        }
        let card = self.authorization_card(ctx, id).await?;
        let _turn = self.card_order.turn(card).await;
        self.unit_of_work(|| async move {
            let (mut tx, rec, mut auth) = self.lock_authorization(ctx, card, id).await?;
            let mv = match authorization::capture(auth.status, auth.amounts, amount) {
                Ok(mv) => mv,
                Err(e) => {
                    tx.rollback().await?;
                    // A copy of this capture committed since the check above
                    // (another node) may be what closed it: its answer then.
                    return match self.earlier_capture(ctx, id, network_reference).await? {
                        Some(answer) => Ok(answer),
                        None => Err(refused(e)),
                    };
                }
            };
            let now = self.now();
            auth.amounts = mv.amounts;
            auth.status = mv.status;
            auth.updated_at = now;
            let txn = TransactionRecord {
                id: TransactionId::new(),
                tenant_id: ctx.tenant_id(),
                card_id: rec.card.id,
                authorization_id: Some(id),
                kind: TransactionKind::Capture,
                amount,
                currency: auth.billing_currency.clone(),
                merchant: Some(auth.merchant.clone()),
                network_reference: network_reference.to_owned(),
                created_at: now,
            };
            if !tx.insert_transaction(&txn).await? {
                tx.rollback().await?;
                // The same capture, committed since the check above (another
                // node, or a concurrent retry): its answer is the answer.
                return self
                    .earlier_capture(ctx, id, network_reference)
                    .await?
                    .ok_or_else(reference_reused);
            }
            tx.update_authorization(&auth).await?;
            let view = authorization_view(&auth);
            tx.insert_audit(&self.audit(
                ctx,
                Some(rec.card.id),
                "transaction.captured",
                None,
                None,
                Some(serde_json::json!({ "authorization_id": id, "transaction_id": txn.id, "amount": amount })),
            ))
            .await?;
            let data = serde_json::json!({ "transaction": transaction_view(&txn), "authorization": view });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(rec.card.id), EventType::TransactionCaptured, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// Releases `amount` (None: all) of what is held; spendable again.
    pub async fn reverse(&self, ctx: &Ctx, id: AuthorizationId, amount: Option<u64>) -> ServiceResult<Authorization> {
        let card = self.authorization_card(ctx, id).await?;
        let _turn = self.card_order.turn(card).await;
        self.unit_of_work(|| async move {
            let (mut tx, mut rec, mut auth) = self.lock_authorization(ctx, card, id).await?;
            let mv = authorization::reverse(auth.status, auth.amounts, amount).map_err(refused)?;
            self.release(
                ctx,
                &mut *tx,
                &mut rec,
                &mut auth,
                mv,
                "authorization.reversed",
                EventType::AuthorizationReversed,
            )
            .await?;
            tx.commit().await?;
            Ok(authorization_view(&auth))
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn release(
        &self,
        ctx: &Ctx,
        tx: &mut dyn Tx,
        rec: &mut CardRecord,
        auth: &mut AuthorizationRecord,
        mv: authorization::Movement,
        entry: &str,
        event: EventType,
    ) -> ServiceResult<()> {
        auth.amounts = mv.amounts;
        auth.status = mv.status;
        auth.updated_at = self.now();
        tx.update_authorization(auth).await?;
        rec.usage
            .totals
            .release(auth.channel, &auth.windows, mv.released, mv.uncount);
        self.save_card(tx, rec).await?;
        tx.insert_audit(&self.audit(
            ctx,
            Some(rec.card.id),
            entry,
            None,
            None,
            Some(serde_json::json!({ "authorization_id": auth.id, "amount": mv.released })),
        ))
        .await?;
        let data = serde_json::json!({ "authorization": authorization_view(auth), "amount": mv.released });
        tx.insert_event(&self.event(ctx.tenant_id(), Some(rec.card.id), event, data).await?)
            .await?;
        Ok(())
    }

    /// Expires what is still held on authorizations due at `now`, on any
    /// node: each is decided again on its locked card, so however many
    /// nodes run this at once, each hold is released exactly once.
    /// Returns how many it expired.
    pub async fn expire_authorizations(&self, now: Timestamp, limit: u32) -> ServiceResult<u32> {
        let due = self.store.due_authorizations(now, limit).await?;
        let mut done = 0;
        for d in due {
            let Some(tenant) = self.store.tenant(d.tenant_id).await? else {
                continue;
            };
            let ctx = Ctx::new(
                crate::Principal {
                    tenant,
                    api_key_id: None,
                    can_reveal: false,
                },
                cardcore_domain::Channel::SYSTEM,
                None,
            );
            let _turn = self.card_order.turn(d.card_id).await;
            let (ctx, d) = (&ctx, &d);
            // One hold, one unit of work: an aborted one runs again alone.
            let expired = self
                .unit_of_work(|| async move {
                    let mut tx = self.store.begin().await?;
                    let Some(mut rec) = tx.lock_card(d.tenant_id, d.card_id).await? else {
                        return Ok(false);
                    };
                    let Some(mut auth) = tx.authorization_in_tx(d.tenant_id, d.id).await? else {
                        return Ok(false);
                    };
                    let Some(mv) = authorization::expire(auth.status, auth.amounts, auth.expires_at, now) else {
                        // Another node expired it (or it was settled) since it was listed.
                        tx.rollback().await?;
                        return Ok(false);
                    };
                    self.release(
                        ctx,
                        &mut *tx,
                        &mut rec,
                        &mut auth,
                        mv,
                        "authorization.expired",
                        EventType::AuthorizationExpired,
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await;
            match expired {
                Ok(true) => done += 1,
                Ok(false) => {}
                // The database is away: the next tick tries again.
                Err(e @ ServiceError::Unavailable(_)) => return Err(e),
                // One hold that cannot be expired must not hold up the
                // others (the list is oldest first: it would come first
                // every time).
                Err(e) => {
                    tracing::warn!(authorization = %d.id, cause = %e, "could not expire this hold; going on with the others");
                }
            }
        }
        Ok(done)
    }

    /// A credit to the card. Refunds give no room back on the limits.
    pub async fn refund(&self, ctx: &Ctx, card: CardId, req: RefundRequest) -> ServiceResult<(Transaction, bool)> {
        if let Some(earlier) = self.earlier_refund(ctx, card, &req.network_reference).await? {
            return Ok((earlier, true));
        }
        let _turn = self.card_order.turn(card).await;
        let req = &req;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let rec = self.lock_card(ctx, &mut *tx, card).await?;
            if req.currency != rec.card.limits.currency {
                return Err(ServiceError::invalid(
                    "currency",
                    format!("must be the card's currency, {}", rec.card.limits.currency),
                ));
            }
            let txn = TransactionRecord {
                id: TransactionId::new(),
                tenant_id: ctx.tenant_id(),
                card_id: card,
                authorization_id: None,
                kind: TransactionKind::Refund,
                amount: req.amount,
                currency: req.currency.clone(),
                merchant: req.merchant.clone(),
                network_reference: req.network_reference.clone(),
                created_at: self.now(),
            };
            if !tx.insert_transaction(&txn).await? {
                tx.rollback().await?;
                // The same refund, committed since the check above: its answer.
                return self
                    .earlier_refund(ctx, card, &req.network_reference)
                    .await?
                    .map(|earlier| (earlier, true))
                    .ok_or_else(reference_reused);
            }
            let view = transaction_view(&txn);
            tx.insert_audit(&self.audit(
                ctx,
                Some(card),
                "transaction.refunded",
                None,
                None,
                Some(serde_json::json!({ "transaction_id": txn.id, "amount": txn.amount })),
            ))
            .await?;
            tx.insert_event(
                &self
                    .event(
                        ctx.tenant_id(),
                        Some(card),
                        EventType::TransactionRefunded,
                        serde_json::json!({ "transaction": view }),
                    )
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok((view, false))
        })
        .await
    }

    /// The refund of `card` a `reference` already names (a retry), a `409`
    /// when it names another transaction, None when no transaction has it.
    async fn earlier_refund(&self, ctx: &Ctx, card: CardId, reference: &str) -> ServiceResult<Option<Transaction>> {
        let Some(t) = self.store.transaction_by_reference(ctx.tenant_id(), reference).await? else {
            return Ok(None);
        };
        if t.card_id == card && t.kind == TransactionKind::Refund {
            return Ok(Some(transaction_view(&t)));
        }
        Err(reference_reused())
    }

    /// A card's effective spending controls.
    pub async fn controls(&self, ctx: &Ctx, card: CardId) -> ServiceResult<EffectiveControls> {
        let rec = self.card_record(ctx, card).await?;
        Ok(match rec.usage.controls {
            Some(c) => EffectiveControls {
                controls: c,
                source: "card",
            },
            None => EffectiveControls {
                controls: self
                    .tenant_settings(ctx.tenant_id())
                    .await?
                    .authorizations
                    .default_controls,
                source: "program",
            },
        })
    }

    /// Replaces a card's own spending controls (they override the program's).
    pub async fn set_controls(
        &self,
        ctx: &Ctx,
        card: CardId,
        controls: SpendingControls,
    ) -> ServiceResult<EffectiveControls> {
        controls.validate()?;
        let _turn = self.card_order.turn(card).await;
        let controls = &controls;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, card).await?;
            if rec.usage.controls.as_ref() == Some(controls) {
                return Ok(());
            }
            let before = rec.usage.controls.as_ref().map(to_json);
            rec.usage.controls = Some(controls.clone());
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(
                ctx,
                Some(card),
                "card.controls_updated",
                None,
                before,
                Some(to_json(controls)),
            ))
            .await?;
            let data = serde_json::json!({ "card_id": card, "controls": controls });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(card), EventType::CardControlsUpdated, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        Ok(EffectiveControls {
            controls: controls.clone(),
            source: "card",
        })
    }

    /// A card's spend in the current day and month, per channel.
    pub async fn spend(&self, ctx: &Ctx, card: CardId) -> ServiceResult<CardSpend> {
        let rec = self.card_record(ctx, card).await?;
        let settings = self.tenant_settings(ctx.tenant_id()).await?.authorizations;
        let windows = Windows::at(self.now(), settings.tz());
        let mut channels = std::collections::BTreeMap::new();
        for ch in [
            PaymentChannel::Pos,
            PaymentChannel::Contactless,
            PaymentChannel::Ecommerce,
            PaymentChannel::Atm,
        ] {
            let used = rec.usage.totals.usage(ch, &windows);
            let limit = ch.limit(&rec.card.limits);
            let window = |key: &str, used: u64, count: u32, limit: Option<u64>| WindowSpend {
                window: key.to_owned(),
                used,
                count,
                limit,
                remaining: limit.map(|l| l.saturating_sub(used)),
            };
            channels.insert(
                ch.limit_channel(),
                ChannelSpend {
                    daily: window(&windows.day, used.day_amount, used.day_count, limit.daily),
                    monthly: window(&windows.month, used.month_amount, used.month_count, limit.monthly),
                    daily_count_limit: limit.daily_count,
                },
            );
        }
        Ok(CardSpend {
            card_id: card,
            currency: rec.card.limits.currency.clone(),
            time_zone: settings.time_zone,
            channels,
        })
    }
}

/// What an authorization's audit entry records: the decision and amounts,
/// never card data.
fn audit_after(r: &AuthorizationRecord) -> serde_json::Value {
    serde_json::json!({
        "authorization_id": r.id,
        "status": r.status,
        "response_code": r.response_code,
        "decline_reason": r.decline_reason,
        "billing_amount": r.billing_amount,
        "approved_amount": r.amounts.approved,
        "channel": r.channel,
        "network_reference": r.network_reference,
    })
}
