//! The scenarios: what one connection sends, card after card.

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
}

impl Expect {
    /// Whether a 2xx body is the expected one (compact JSON, as cardcore writes it).
    pub fn body_ok(self, body: &[u8]) -> bool {
        let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        match self {
            Self::Success => true,
            Self::ValidTrue => find(b"\"valid\":true"),
            Self::ValidFalse => find(b"\"valid\":false"),
        }
    }
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
    pub const ALL: [Scenario; 8] = [
        Self::Healthz,
        Self::Verify,
        Self::VerifyBurst,
        Self::VerifyWrong,
        Self::PinSet,
        Self::LockUnlock,
        Self::P100Pin,
        Self::M2pValidate,
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
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Self::Healthz => Kind::Ceiling,
            Self::Verify | Self::VerifyBurst | Self::M2pValidate => Kind::Read,
            Self::VerifyWrong | Self::PinSet | Self::LockUnlock | Self::P100Pin => Kind::Write,
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
}

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
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Scenario::ALL.len());
    }
}
