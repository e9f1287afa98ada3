//! The scenarios: what one connection sends, card after card.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;

use crate::seedfile::{SeedCard, SeedFile};

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /healthz`: the HTTP ceiling of this binary on this machine.
    Healthz,
    /// `POST /v1/cards/{id}/pin/verify`, right PIN (a read).
    Verify,
    /// The same on a few cards shared by every connection (`BURST_CARDS`):
    /// concurrent verifications of one card wait for each other, since
    /// every PIN decision of a card is taken in card order.
    VerifyBurst,
    /// The same, a wrong PIN then the right one on the same card: two
    /// counter writes (failure counted, counter reset); never blocks.
    VerifyWrong,
    /// `PUT /v1/cards/{id}/pin`: a durable write (state + audit + outbox).
    PinSet,
    /// `POST /v1/cards/{id}/lock` then `/unlock` on a card the connection owns.
    LockUnlock,
    /// P100 `PATCH /p100/v1/card/pin` (sets the PIN: a durable write).
    P100Pin,
    /// M2P `POST /m2p/prepaid/customer/v1/cards/v2/validate-pin`, right PIN (a read).
    M2pValidate,
    /// `POST /v1/authorizations`: a 12.50 purchase at a grocery in Lisbon
    /// on a card with limits and spending controls set (`cardcore seed`),
    /// each with a fresh `network_reference`. Approved: a hold written
    /// (authorization, card totals, audit entry, event in one transaction).
    Authorize,
    /// The same with the card's PIN as a format-4 block under the tenant's
    /// zone key (`cardcore seed` writes one per card), verified in the
    /// decision on the card's try counter.
    AuthorizePin,
}

/// What a scenario's throughput is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// It is the HTTP ceiling.
    Ceiling,
    /// A read: compared with the `/healthz` ceiling.
    Read,
    /// A durable write: compared with the bare durable-commit baseline.
    Write,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// What a 2xx answer's body must say, beyond the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Success,
    ValidTrue,
    ValidFalse,
    /// An authorization answered `APPROVED`.
    Approved,
}

impl Expect {
    /// Whether a 2xx body is the expected one (compact JSON, as cardcore writes it).
    pub fn body_ok(self, body: &[u8]) -> bool {
        let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        match self {
            Self::Success => true,
            Self::ValidTrue => find(b"\"valid\":true"),
            Self::ValidFalse => find(b"\"valid\":false"),
            Self::Approved => find(b"\"status\":\"APPROVED\""),
        }
    }
}

/// The `decline_reason` of an authorization answered `DECLINED`, if it is one.
/// Declines are counted apart from errors: a benchmark of declines is not
/// what `authorize` measures.
pub fn decline_reason(body: &[u8]) -> Option<String> {
    let find = |needle: &[u8]| body.windows(needle.len()).position(|w| w == needle);
    find(b"\"status\":\"DECLINED\"")?;
    let key = b"\"decline_reason\":\"";
    let start = find(key)? + key.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&body[start..start + len]).into_owned())
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Step {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub expect: Expect,
}

impl Scenario {
    /// Every scenario, in the order bench/run.sh runs them.
    #[cfg(test)]
    pub const ALL: [Scenario; 10] = [
        Self::Healthz,
        Self::Verify,
        Self::VerifyBurst,
        Self::VerifyWrong,
        Self::PinSet,
        Self::LockUnlock,
        Self::P100Pin,
        Self::M2pValidate,
        Self::Authorize,
        Self::AuthorizePin,
    ];

    /// The name on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Verify => "verify",
            Self::VerifyBurst => "verify-burst",
            Self::VerifyWrong => "verify-wrong",
            Self::PinSet => "pin-set",
            Self::LockUnlock => "lock-unlock",
            Self::P100Pin => "p100-pin",
            Self::M2pValidate => "m2p-validate",
            Self::Authorize => "authorize",
            Self::AuthorizePin => "authorize-pin",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Self::Healthz => Kind::Ceiling,
            Self::Verify | Self::VerifyBurst | Self::M2pValidate => Kind::Read,
            Self::VerifyWrong
            | Self::PinSet
            | Self::LockUnlock
            | Self::P100Pin
            | Self::Authorize
            | Self::AuthorizePin => Kind::Write,
        }
    }

    /// Names of the requests of one iteration (a pair, or one request).
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Self::VerifyWrong => &["wrong", "right-reset"],
            Self::LockUnlock => &["lock", "unlock"],
            _ => &["request"],
        }
    }

    /// Whether each connection works only on its own cards (card index
    /// modulo connections), so that pairs never interleave on one card.
    pub fn partitioned(self) -> bool {
        matches!(self, Self::VerifyWrong | Self::LockUnlock)
    }

    /// How many of the seed's cards it uses (all of them but for the burst).
    pub fn card_count(self, seeded: usize) -> usize {
        match self {
            Self::VerifyBurst => seeded.min(BURST_CARDS),
            _ => seeded,
        }
    }

    /// Whether it needs an M2P access token.
    pub fn needs_m2p_token(self) -> bool {
        self == Self::M2pValidate
    }

    /// Whether it sends authorizations (whose declines are counted apart).
    pub fn authorizes(self) -> bool {
        matches!(self, Self::Authorize | Self::AuthorizePin)
    }

    /// Whether it needs the seed's PIN blocks (`cardcore seed` of this version).
    pub fn needs_pin_blocks(self) -> bool {
        self == Self::AuthorizePin
    }
}

/// What `authorize` buys: 12.50 (minor units) of the card's currency.
pub const AUTHORIZE_AMOUNT: u64 = 1250;
/// The card currency of `cardcore seed` (the server's default).
pub const AUTHORIZE_CURRENCY: &str = "EUR";

/// The cards `verify-burst` shares among all its connections.
pub const BURST_CARDS: usize = 8;

/// What every request of a run shares: credentials and PINs.
pub struct Material {
    pub host: HeaderValue,
    pub native_auth: HeaderValue,
    pub p100_key: HeaderValue,
    /// `Authorization: Bearer <token>` and `X-TENANT-ID` for M2P.
    pub m2p_auth: Option<(HeaderValue, HeaderValue)>,
    pub pin: String,
    pub wrong_pin: String,
    pub seed: SeedFile,
    /// Makes this run's network references unique (random per run, so a
    /// second run against the same database never replays the first).
    pub run_nonce: u64,
    /// The next network reference's number.
    pub next_reference: AtomicU64,
}

pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");

/// A PIN of the same length that is not `pin`: the last digit moved by one.
pub fn wrong_pin_for(pin: &str) -> String {
    let mut digits: Vec<u8> = pin.bytes().collect();
    if let Some(last) = digits.last_mut() {
        *last = if *last == b'9' { b'0' } else { last.saturating_add(1) };
    }
    String::from_utf8(digits).unwrap_or_else(|_| "0000".into())
}

fn json(v: serde_json::Value) -> Option<Bytes> {
    Some(Bytes::from(v.to_string()))
}

impl Material {
    /// A network reference no other request of this run (or an earlier run) used.
    pub fn fresh_reference(&self) -> String {
        let n = self.next_reference.fetch_add(1, Ordering::Relaxed);
        format!("load-{:016x}-{n}", self.run_nonce)
    }

    fn authorization(&self, card: &SeedCard, with_pin: bool) -> Step {
        let mut body = serde_json::json!({
            "card_id": &*card.card_id,
            "amount": AUTHORIZE_AMOUNT,
            "currency": AUTHORIZE_CURRENCY,
            "merchant": {"mcc": "5411", "name": "Mercado", "city": "Lisboa", "country": "PT", "id": "M123"},
            "channel": "pos",
            "network_reference": self.fresh_reference(),
        });
        if with_pin {
            body["pin_block"] = card.pin_block.as_deref().unwrap_or("").into();
            body["format"] = "ISO-4".into();
            if let Some(key) = &self.seed.zone_key_id {
                body["key_id"] = key.as_str().into();
            }
        }
        Step {
            method: Method::POST,
            path: "/v1/authorizations".into(),
            body: json(body),
            expect: Expect::Approved,
        }
    }

    /// Request `part` of one iteration of `scenario` on `card`.
    pub fn step(&self, scenario: Scenario, card: &SeedCard, part: usize) -> Step {
        let id = &card.card_id;
        match (scenario, part) {
            (Scenario::Healthz, _) => Step {
                method: Method::GET,
                path: "/healthz".into(),
                body: None,
                expect: Expect::Success,
            },
            (Scenario::Verify | Scenario::VerifyBurst, _) | (Scenario::VerifyWrong, 1..) => Step {
                method: Method::POST,
                path: format!("/v1/cards/{id}/pin/verify"),
                body: json(serde_json::json!({ "pin": self.pin })),
                expect: Expect::ValidTrue,
            },
            (Scenario::VerifyWrong, 0) => Step {
                method: Method::POST,
                path: format!("/v1/cards/{id}/pin/verify"),
                body: json(serde_json::json!({ "pin": self.wrong_pin })),
                expect: Expect::ValidFalse,
            },
            (Scenario::PinSet, _) => Step {
                method: Method::PUT,
                path: format!("/v1/cards/{id}/pin"),
                body: json(serde_json::json!({ "pin": self.pin })),
                expect: Expect::Success,
            },
            (Scenario::LockUnlock, 0) => Step {
                method: Method::POST,
                path: format!("/v1/cards/{id}/lock"),
                body: None,
                expect: Expect::Success,
            },
            (Scenario::LockUnlock, _) => Step {
                method: Method::POST,
                path: format!("/v1/cards/{id}/unlock"),
                body: None,
                expect: Expect::Success,
            },
            (Scenario::P100Pin, _) => Step {
                method: Method::PATCH,
                path: "/p100/v1/card/pin".into(),
                body: json(serde_json::json!({
                    "externalUserId": &*card.external_id,
                    "cardId": &*card.card_id,
                    "pin": self.pin,
                })),
                expect: Expect::Success,
            },
            (Scenario::M2pValidate, _) => Step {
                method: Method::POST,
                path: "/m2p/prepaid/customer/v1/cards/v2/validate-pin".into(),
                body: json(serde_json::json!({
                    "entityId": &*card.external_id,
                    "kitNo": &*card.kit_number,
                    "oldPin": self.pin,
                })),
                expect: Expect::ValidTrue,
            },
            (Scenario::Authorize, _) => self.authorization(card, false),
            (Scenario::AuthorizePin, _) => self.authorization(card, true),
        }
    }

    /// The back-office unblock of a card whose PIN got blocked (never in a
    /// clean run: the wrong/right pairs keep the counter below the limit).
    pub fn unblock(&self, card: &SeedCard) -> Step {
        Step {
            method: Method::POST,
            path: format!("/v1/cards/{}/pin/unblock", card.card_id),
            body: None,
            expect: Expect::Success,
        }
    }

    /// A request for `step`, with the scenario's credentials.
    pub fn request(
        &self,
        scenario: Scenario,
        step: &Step,
    ) -> Result<hyper::Request<http_body_util::Full<Bytes>>, hyper::http::Error> {
        let mut b = hyper::Request::builder()
            .method(step.method.clone())
            .uri(step.path.as_str())
            .header(hyper::header::HOST, self.host.clone());
        // An unblock is a native call whatever the scenario.
        let native = step.path.starts_with("/v1/");
        b = match scenario {
            Scenario::Healthz => b,
            _ if native => b.header(AUTHORIZATION, self.native_auth.clone()),
            Scenario::M2pValidate => match &self.m2p_auth {
                Some((bearer, tenant)) => b
                    .header(AUTHORIZATION, bearer.clone())
                    .header(&X_TENANT_ID, tenant.clone()),
                None => b,
            },
            _ => b.header(&X_API_KEY, self.p100_key.clone()),
        };
        match &step.body {
            Some(body) => b
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(http_body_util::Full::new(body.clone())),
            None => b.body(http_body_util::Full::new(Bytes::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_pins_differ_and_keep_length() {
        assert_eq!(wrong_pin_for("4821"), "4822");
        assert_eq!(wrong_pin_for("1239"), "1230");
        assert_eq!(wrong_pin_for("123456").len(), 6);
    }

    #[test]
    fn bodies_are_checked_for_the_verdict() {
        assert!(Expect::ValidTrue.body_ok(br#"{"valid":true,"remaining_attempts":3}"#));
        assert!(!Expect::ValidTrue.body_ok(br#"{"valid":false,"remaining_attempts":2}"#));
        assert!(Expect::ValidFalse.body_ok(br#"{"valid":false}"#));
        assert!(Expect::Success.body_ok(b""));
        assert!(Expect::Approved.body_ok(br#"{"id":"a","status":"APPROVED","response_code":"00"}"#));
        assert!(!Expect::Approved.body_ok(br#"{"id":"a","status":"DECLINED","response_code":"51"}"#));
    }

    fn material(seed: SeedFile) -> Material {
        Material {
            host: HeaderValue::from_static("127.0.0.1:1"),
            native_auth: HeaderValue::from_static("Bearer k"),
            p100_key: HeaderValue::from_static("k"),
            m2p_auth: None,
            pin: "4821".into(),
            wrong_pin: "4822".into(),
            seed,
            run_nonce: 0xabc,
            next_reference: AtomicU64::new(0),
        }
    }

    #[test]
    fn authorizations_carry_a_fresh_reference_and_the_pin_block() {
        let seed = crate::seedfile::parse(
            "# tenant_id=t\n# api_key=k\n# pin=4821\n# zone_key_id=zk\n\
             card_id,external_id,kit_number,phone_country_code,phone_number,expiry,pin_block\n\
             c1,e,1,351,9,11/29,00112233445566778899AABBCCDDEEFF\n",
        )
        .unwrap();
        let m = material(seed);
        let card = m.seed.cards[0].clone();
        let body = |s: &Step| -> serde_json::Value { serde_json::from_slice(s.body.as_ref().unwrap()).unwrap() };
        let a = body(&m.step(Scenario::Authorize, &card, 0));
        let b = body(&m.step(Scenario::Authorize, &card, 0));
        assert_ne!(a["network_reference"], b["network_reference"]);
        assert_eq!(a["card_id"], "c1");
        assert_eq!(a.get("pin_block"), None);
        let p = m.step(Scenario::AuthorizePin, &card, 0);
        assert_eq!((p.path.as_str(), p.expect), ("/v1/authorizations", Expect::Approved));
        let p = body(&p);
        assert_eq!(p["pin_block"], "00112233445566778899AABBCCDDEEFF");
        assert_eq!(
            (p["format"].as_str(), p["key_id"].as_str()),
            (Some("ISO-4"), Some("zk"))
        );
    }

    #[test]
    fn declines_are_told_apart_by_reason() {
        assert_eq!(
            decline_reason(br#"{"status":"DECLINED","decline_reason":"LIMIT_EXCEEDED","response_code":"61"}"#)
                .as_deref(),
            Some("LIMIT_EXCEEDED")
        );
        assert_eq!(decline_reason(br#"{"status":"APPROVED","decline_reason":null}"#), None);
        assert_eq!(decline_reason(br#"{"valid":true}"#), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Scenario::ALL.len());
    }
}
