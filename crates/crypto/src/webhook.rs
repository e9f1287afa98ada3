//! Webhook signatures per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>).
//!
//! A secret is `whsec_` followed by the base64 (standard alphabet, padded)
//! of random bytes; the HMAC key is those bytes. A message is signed as
//! `v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`
//! and sent with the headers `webhook-id`, `webhook-timestamp` (unix seconds)
//! and `webhook-signature`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// The prefix of every webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a new secret (the spec asks for 24 to 64).
pub const SECRET_LEN: usize = 32;

/// Why a secret could not be read. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    #[error("a webhook secret is `whsec_` followed by base64 of 24 to 64 bytes")]
    Format,
}

/// A webhook signing secret: the HMAC key. Zeroized on drop, redacted in
/// `Debug`, no `Display`.
#[derive(Clone)]
pub struct WebhookSecret {
    key: SecretBytes,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// A fresh random secret.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut raw = Zeroizing::new([0u8; SECRET_LEN]);
        rng.fill_bytes(raw.as_mut());
        Self {
            key: SecretBytes::from_slice(raw.as_ref()),
        }
    }

    /// Reads `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, WebhookSecretError> {
        let b64 = text.strip_prefix(SECRET_PREFIX).ok_or(WebhookSecretError::Format)?;
        let raw = Zeroizing::new(STANDARD.decode(b64).map_err(|_| WebhookSecretError::Format)?);
        Self::from_bytes(&raw)
    }

    /// The secret from its raw key bytes (24 to 64 of them).
    pub fn from_bytes(raw: &[u8]) -> Result<Self, WebhookSecretError> {
        if !(24..=64).contains(&raw.len()) {
            return Err(WebhookSecretError::Format);
        }
        Ok(Self {
            key: SecretBytes::from_slice(raw),
        })
    }

    /// The raw key bytes (what is stored, sealed).
    pub fn expose_bytes(&self) -> &[u8] {
        self.key.expose()
    }

    /// The secret as shown to the tenant once: `whsec_<base64>`.
    pub fn to_whsec(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(self.key.expose())))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        // Any key length is valid for HMAC: new_from_slice cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.key.expose()) {
            Ok(m) => m,
            Err(_) => return [0u8; 32],
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    /// True when one of the space-separated signatures of a
    /// `webhook-signature` header is a valid `v1` signature of the message
    /// (compared in constant time). The timestamp's freshness is the
    /// caller's to check.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.mac(id, timestamp, body);
        header.split(' ').any(|sig| {
            sig.strip_prefix("v1,")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .is_some_and(|got| bool::from(got.as_slice().ct_eq(&expected)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specs_published_vector() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        assert!(secret.verify(ID, TIMESTAMP, BODY, SIGNATURE));
        // Several signatures, space separated (key rotation): one match is enough.
        assert!(secret.verify(ID, TIMESTAMP, BODY, &format!("v1,bm90IGl0 {SIGNATURE}")));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert!(!secret.verify("msg_other", TIMESTAMP, BODY, SIGNATURE));
        assert!(!secret.verify(ID, TIMESTAMP + 1, BODY, SIGNATURE));
        assert!(!secret.verify(ID, TIMESTAMP, br#"{"test": 2432232315}"#, SIGNATURE));
        assert!(!secret.verify(ID, TIMESTAMP, BODY, &SIGNATURE.replace("v1,", "v2,")));
        assert!(!secret.verify(ID, TIMESTAMP, BODY, "v1,"));
        let other = WebhookSecret::generate(&mut rand::rngs::OsRng);
        assert!(!other.verify(ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn secrets_round_trip_and_are_redacted() {
        let secret = WebhookSecret::generate(&mut rand::rngs::OsRng);
        let text = secret.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(text.len(), "whsec_".len() + 44);
        let again = WebhookSecret::parse(&text).unwrap();
        assert_eq!(again.expose_bytes(), secret.expose_bytes());
        assert_eq!(format!("{secret:?}"), "WebhookSecret([redacted])");
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
        assert_eq!(SECRET.len() - 6, 32);
        assert_eq!(WebhookSecret::parse(SECRET).unwrap().to_whsec().as_str(), SECRET);
    }
}
