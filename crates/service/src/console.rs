//! The operator console's and the PIN widget's use cases: sign-in sessions,
//! PIN widget sessions, and the reads only the console needs (search, a
//! card's events with their deliveries). Every change the console makes goes
//! through the same functions as the API (`cards.rs`, `pins.rs`,
//! `webhooks.rs`); what is here holds no rule of its own beyond sessions.
//!
//! Sessions are kept in the database, so any node behind a load balancer
//! answers any request; a token is 32 random bytes shown once (in a cookie
//! or to the tenant's backend) and only its SHA-256 is stored: a token has
//! 256 bits of entropy, so a fast hash is the right tool.

use std::time::Duration;

use base64::Engine as _;
use cardcore_domain::{Card, CardId, CardStatus, EventId, EventType, Expiry, ExternalId, KitNumber, Timestamp};
use cardcore_store::{CardFilter, ConsoleSessionRecord, PinSessionRecord, WebhookDelivery};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{Ctx, Principal, Service, ServiceError, ServiceResult};

/// How long a console sign-in lasts.
pub const CONSOLE_SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
/// How long a PIN widget session may wait for its one use.
pub const PIN_SESSION_TTL: Duration = Duration::from_secs(5 * 60);
/// At most this many cards answer one search.
pub const SEARCH_LIMIT: u32 = 50;

/// A new session token: shown once, never stored.
pub struct NewSessionToken {
    pub token: Zeroizing<String>,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for NewSessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewSessionToken([redacted], {})", self.expires_at)
    }
}

/// A console request's signed-in operator.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// The API key that signed in, as checked now (a revoked key ends its sessions).
    pub principal: Principal,
    /// The token forms must carry (derived from the session token).
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// What a PIN widget session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinPurpose {
    Set,
    Change,
    Verify,
}

impl PinPurpose {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "set" => Some(Self::Set),
            "change" => Some(Self::Change),
            "verify" => Some(Self::Verify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Change => "change",
            Self::Verify => "verify",
        }
    }
}

/// A live PIN widget session, as the widget page shows it.
#[derive(Debug, Clone)]
pub struct PinSession {
    pub card_id: CardId,
    pub purpose: PinPurpose,
    pub allowed_origin: String,
    pub expires_at: Timestamp,
    /// The context the widget acts in: the key that made the session,
    /// through the widget channel.
    pub ctx: Ctx,
    pub(crate) token_hash: Vec<u8>,
    pub(crate) used_at: Option<Timestamp>,
}

/// An event of the tenant (its type and time, never its data: some carry
/// codes) and its webhook deliveries with their attempts.
#[derive(Debug, Clone)]
pub struct EventDeliveries {
    pub id: EventId,
    pub event_type: EventType,
    pub card_id: Option<CardId>,
    pub created_at: Timestamp,
    pub deliveries: Vec<WebhookDelivery>,
}

fn new_token() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref()))
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Could `token` be one cardcore made (43 base64url characters)?
fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"cardcore/console/csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

fn after(now: Timestamp, d: Duration) -> Timestamp {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero())
}

/// `scheme://host[:port]` as the browser sends it in `Origin`: `https`
/// anywhere, `http` only for `localhost` and `127.0.0.1` (development).
pub fn normalize_origin(origin: &str) -> ServiceResult<String> {
    const RULE: &str = "must be an origin: https://host[:port], or http://localhost[:port] or \
                        http://127.0.0.1[:port] for development; no path, query or credentials";
    let refuse = || ServiceError::invalid("allowed_origin", RULE);
    let trimmed = origin.strip_suffix('/').unwrap_or(origin);
    if trimmed.is_empty() || trimmed.len() > 200 || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse());
    }
    let url = url::Url::parse(trimmed).map_err(|_| refuse())?;
    let host = url.host_str().ok_or_else(refuse)?;
    let allowed = match url.scheme() {
        "https" => true,
        "http" => host == "localhost" || host == "127.0.0.1",
        _ => false,
    };
    let normalized = url.origin().ascii_serialization();
    if !allowed
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || normalized == "null"
    {
        return Err(refuse());
    }
    Ok(normalized)
}

impl Service {
    /// Signs an operator in with an API key: a new console session acting
    /// as that key. A wrong key is `Unauthorized` (the caller counts it
    /// against the client's address, like any failed authentication).
    pub async fn console_sign_in(&self, api_key: &str) -> ServiceResult<(Principal, NewSessionToken)> {
        let principal = self.authenticate(api_key.trim()).await?;
        let key_id = principal.api_key_id.ok_or(ServiceError::Unauthorized)?;
        let token = new_token();
        let now = self.now();
        let expires_at = after(now, CONSOLE_SESSION_TTL);
        self.store
            .insert_console_session(&ConsoleSessionRecord {
                token_hash: token_hash(&token),
                tenant_id: principal.tenant.id,
                api_key_id: key_id,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok((principal, NewSessionToken { token, expires_at }))
    }

    /// The operator behind a console session token: `Unauthorized` when the
    /// session is unknown, ended, expired, or its key was revoked.
    pub async fn console_user(&self, token: &str) -> ServiceResult<ConsoleUser> {
        if !well_formed(token) {
            return Err(ServiceError::Unauthorized);
        }
        let session = self
            .store
            .console_session(&token_hash(token), self.now())
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let principal = self.authenticate_key_id(session.tenant_id, session.api_key_id).await?;
        Ok(ConsoleUser {
            principal,
            csrf_token: csrf_of(token),
            expires_at: session.expires_at,
        })
    }

    /// Ends a console session, on every node.
    pub async fn console_sign_out(&self, token: &str) -> ServiceResult<()> {
        if well_formed(token) {
            self.store.delete_console_session(&token_hash(token)).await?;
        }
        Ok(())
    }

    /// A random token for the sign-in form (before there is a session): the
    /// same value goes in a cookie and in the form.
    pub fn new_login_csrf() -> String {
        new_token().to_string()
    }

    /// Whether the sign-in form's token matches its cookie (constant time).
    pub fn login_csrf_ok(cookie: &str, given: &str) -> bool {
        well_formed(cookie) && cookie.len() == given.len() && bool::from(cookie.as_bytes().ct_eq(given.as_bytes()))
    }

    /// Whether `given` is the CSRF token of the session `token` (constant time).
    pub fn console_csrf_ok(token: &str, given: &str) -> bool {
        let want = csrf_of(token);
        want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
    }

    /// Finds cards by card id, kit number, last four digits with or without
    /// the expiry (`4242 12/29`), cardholder external id, or cardholder
    /// phone. Never by PAN: a PAN typed into a search would land in URLs
    /// and browser histories.
    pub async fn search_cards(&self, ctx: &Ctx, query: &str) -> ServiceResult<Vec<Card>> {
        let q = query.trim();
        let mut found: Vec<Card> = Vec::new();
        let mut add = |cards: Vec<Card>| {
            for c in cards {
                if !found.iter().any(|f| f.id == c.id) && found.len() < SEARCH_LIMIT as usize {
                    found.push(c);
                }
            }
        };
        if q.is_empty() || q.len() > 100 {
            return Err(ServiceError::invalid("q", "must be 1 to 100 characters"));
        }
        let tenant = ctx.tenant_id();
        if let Ok(id) = q.parse::<CardId>() {
            if let Some(rec) = self.store.card(tenant, id).await? {
                add(vec![rec.card]);
            }
            return Ok(found);
        }
        let mut words = q.split_whitespace();
        if let (Some(last4), Some(exp), None) = (words.next(), words.next(), words.next()) {
            if last4.len() == 4 && last4.bytes().all(|b| b.is_ascii_digit()) {
                let expiry = Expiry::parse_mm_yy(exp)
                    .ok_or_else(|| ServiceError::invalid("q", "after the last four digits, the expiry is MM/YY"))?;
                let filter = CardFilter {
                    last_four: Some(last4.to_owned()),
                    expiry: Some(expiry),
                    limit: SEARCH_LIMIT,
                    ..CardFilter::default()
                };
                add(self.store.cards(tenant, &filter).await?);
                return Ok(found);
            }
        }
        if q.len() == 4 && q.bytes().all(|b| b.is_ascii_digit()) {
            let filter = CardFilter {
                last_four: Some(q.to_owned()),
                limit: SEARCH_LIMIT,
                ..CardFilter::default()
            };
            add(self.store.cards(tenant, &filter).await?);
        }
        if let Some(kit) = KitNumber::parse(q) {
            if let Some(rec) = self.store.card_by_kit(tenant, &kit).await? {
                add(vec![rec.card]);
            }
        }
        let phone: String = q
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect::<String>()
            .trim_start_matches('+')
            .to_owned();
        if (6..=16).contains(&phone.len()) && phone.bytes().all(|b| b.is_ascii_digit()) {
            for holder in self.store.cardholders_by_phone(tenant, &phone, 10).await? {
                add(self.holder_cards(ctx, holder.id).await?);
            }
        }
        if let Ok(ext) = ExternalId::parse(q) {
            if let Some(holder) = self.store.cardholder_by_external_id(tenant, &ext).await? {
                add(self.holder_cards(ctx, holder.id).await?);
            }
        }
        Ok(found)
    }

    async fn holder_cards(&self, ctx: &Ctx, holder: cardcore_domain::CardholderId) -> ServiceResult<Vec<Card>> {
        Ok(self
            .store
            .cards(
                ctx.tenant_id(),
                &CardFilter {
                    cardholder_id: Some(holder),
                    limit: SEARCH_LIMIT,
                    ..CardFilter::default()
                },
            )
            .await?)
    }

    /// The newest events (of a card, or of the tenant), newest first, each
    /// with its webhook deliveries and their attempts.
    pub async fn recent_events_with_deliveries(
        &self,
        ctx: &Ctx,
        card: Option<CardId>,
        limit: u32,
    ) -> ServiceResult<Vec<EventDeliveries>> {
        if let Some(id) = card {
            self.card_record(ctx, id).await?;
        }
        let events = self.store.recent_events(ctx.tenant_id(), card, limit.min(100)).await?;
        let mut out = Vec::with_capacity(events.len());
        for stored in events {
            let e = stored.event;
            let deliveries = self.store.event_deliveries(ctx.tenant_id(), e.id).await?;
            out.push(EventDeliveries {
                id: e.id,
                event_type: e.event_type,
                card_id: e.card_id,
                created_at: e.created_at,
                deliveries,
            });
        }
        Ok(out)
    }

    /// A card with the PIN tries it has left before its PIN blocks.
    pub async fn card_with_pin_tries(&self, ctx: &Ctx, id: CardId) -> ServiceResult<(Card, u32)> {
        let rec = self.card_record(ctx, id).await?;
        let left = match rec.card.pin_status {
            cardcore_domain::PinStatus::Set => self.config.pin_max_failures.saturating_sub(rec.secrets.pin_failures),
            _ => 0,
        };
        Ok((rec.card, left))
    }

    /// A new activation code for an INACTIVE card, sent as a
    /// `card.activation_code` event (the old code stops working). The
    /// attempt counter and its lock stay as they are.
    pub async fn resend_activation_code(&self, ctx: &Ctx, id: CardId) -> ServiceResult<Card> {
        self.card_throttle.check(ctx.tenant_id(), id)?;
        // A card write: it takes the card's turn, as every other does.
        let _turn = self.card_order.turn(id).await;
        self.unit_of_work(|| async move {
            let mut tx = self.store.begin().await?;
            let mut rec = self.lock_card(ctx, &mut *tx, id).await?;
            if rec.card.status != CardStatus::Inactive {
                return Err(ServiceError::Conflict {
                    code: "card_not_inactive",
                    message: "only an INACTIVE card waits for an activation code".into(),
                });
            }
            let (code, verifier) = self.new_activation_code(id).await?;
            rec.secrets.activation_code = Some(verifier);
            self.save_card(&mut *tx, &mut rec).await?;
            tx.insert_audit(&self.audit(ctx, Some(id), "card.activation_code_resent", None, None, None))
                .await?;
            let data = serde_json::json!({ "card_id": id, "activation_code": code.expose() });
            tx.insert_event(
                &self
                    .event(ctx.tenant_id(), Some(id), EventType::CardActivationCode, data)
                    .await?,
            )
            .await?;
            tx.commit().await?;
            Ok(rec.card)
        })
        .await
    }

    /// A PIN widget session for one of the tenant's cards: one use, within
    /// [`PIN_SESSION_TTL`], for `purpose`, from a page of `allowed_origin`.
    pub async fn create_pin_session(
        &self,
        ctx: &Ctx,
        id: CardId,
        purpose: PinPurpose,
        allowed_origin: &str,
    ) -> ServiceResult<NewSessionToken> {
        let origin = normalize_origin(allowed_origin)?;
        let key_id = ctx
            .principal
            .api_key_id
            .ok_or(ServiceError::Forbidden("a PIN widget session is made with an API key"))?;
        self.card_record(ctx, id).await?;
        let token = new_token();
        let now = self.now();
        let expires_at = after(now, PIN_SESSION_TTL);
        self.store
            .insert_pin_session(&PinSessionRecord {
                token_hash: token_hash(&token),
                tenant_id: ctx.tenant_id(),
                card_id: id,
                api_key_id: key_id,
                purpose: purpose.as_str().to_owned(),
                allowed_origin: origin,
                created_at: now,
                expires_at,
                used_at: None,
            })
            .await?;
        Ok(NewSessionToken { token, expires_at })
    }

    async fn pin_session_of(&self, record: PinSessionRecord) -> ServiceResult<PinSession> {
        let principal = self
            .authenticate_key_id(record.tenant_id, record.api_key_id)
            .await
            .map_err(|_| ServiceError::NotFound("pin session"))?;
        let purpose = PinPurpose::parse(&record.purpose)
            .ok_or_else(|| ServiceError::internal("a PIN session with an unknown purpose"))?;
        Ok(PinSession {
            card_id: record.card_id,
            purpose,
            allowed_origin: record.allowed_origin,
            expires_at: record.expires_at,
            ctx: Ctx::new(
                Principal {
                    can_reveal: false,
                    ..principal
                },
                cardcore_domain::Channel::WIDGET,
                None,
            ),
            token_hash: record.token_hash,
            used_at: record.used_at,
        })
    }

    /// A PIN widget session that can still be used (for the widget page).
    /// `NotFound("pin session")` when it is unknown, used, expired, or its
    /// key was revoked: the widget answers all of them `410 Gone`.
    pub async fn live_pin_session(&self, token: &str) -> ServiceResult<PinSession> {
        let gone = ServiceError::NotFound("pin session");
        if !well_formed(token) {
            return Err(gone);
        }
        let record = self.store.pin_session(&token_hash(token)).await?.ok_or(gone.clone())?;
        if record.used_at.is_some() || record.expires_at <= self.now() {
            return Err(gone);
        }
        self.pin_session_of(record).await
    }

    /// Spends a PIN widget session (once, across nodes); errors as
    /// [`Service::live_pin_session`].
    pub async fn claim_pin_session(&self, token: &str) -> ServiceResult<PinSession> {
        let gone = ServiceError::NotFound("pin session");
        if !well_formed(token) {
            return Err(gone);
        }
        let record = self
            .store
            .claim_pin_session(&token_hash(token), self.now())
            .await?
            .ok_or(gone)?;
        self.pin_session_of(record).await
    }

    /// Gives a spent session back when what it was spent on was refused as
    /// bad input before any secret was tried (a PIN too weak, a ciphertext
    /// that does not decrypt), so the cardholder can correct it.
    pub async fn release_pin_session(&self, session: &PinSession) -> ServiceResult<()> {
        if let Some(at) = session.used_at {
            self.store.release_pin_session(&session.token_hash, at).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_or_refused() {
        assert_eq!(
            normalize_origin("https://app.example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            normalize_origin("https://App.Example.com:443/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            normalize_origin("https://app.example.com:8443").unwrap(),
            "https://app.example.com:8443"
        );
        assert_eq!(
            normalize_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        for bad in [
            "",
            "http://app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "javascript:alert(1)",
            "null",
            "*",
            "https://app.example.com\n",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = new_token();
        let b = new_token();
        assert!(Service::console_csrf_ok(&a, &csrf_of(&a)));
        assert!(!Service::console_csrf_ok(&a, &csrf_of(&b)));
        assert!(!Service::console_csrf_ok(&a, ""));
        assert!(well_formed(&a));
    }
}
