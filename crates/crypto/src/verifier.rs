//! Keyed verification values: what cardcore keeps instead of a PIN, an OTP
//! or an activation code, and the keyed hash it looks PANs up by.
//!
//! A 4-digit PIN has 10,000 values, so any unkeyed hash (even a slow one) of
//! it falls to a table lookup once the table leaks. HMAC-SHA256 under a secret
//! key that lives outside the table (wrapped by the master key) is what
//! protects it. Every input is bound to its purpose (a label) and to its
//! owner (the card id), each part length-prefixed so that no two different
//! inputs can produce the same message.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::SecretBytes;

/// Domain-separation labels, one per kind of value.
pub mod label {
    /// PIN verification value: card id, PIN digits.
    pub const PIN: &[u8] = b"cardcore/pin-verification/v1";
    /// OTP: card id, purpose, trace number, code.
    pub const OTP: &[u8] = b"cardcore/otp/v1";
    /// Activation code: card id, code.
    pub const ACTIVATION: &[u8] = b"cardcore/activation-code/v1";
    /// PAN lookup hash, first form: tenant id, PAN (unique per tenant only;
    /// replaced by [`PAN_LOOKUP_V2`] at the first start after migration 0004).
    pub const PAN_LOOKUP: &[u8] = b"cardcore/pan-lookup/v1";
    /// PAN lookup hash: the PAN alone, so it is unique across tenants.
    pub const PAN_LOOKUP_V2: &[u8] = b"cardcore/pan-lookup/v2";
    /// Idempotency-Key request fingerprint: scope, method, path, body.
    pub const IDEMPOTENCY: &[u8] = b"cardcore/idempotency-fingerprint/v1";
}

/// Length of a verification value.
pub const VALUE_LEN: usize = 32;

/// An HMAC-SHA256 key, keyed once and cloned per use (the inner and outer
/// pads are computed at load time, which keeps verification cheap).
#[derive(Clone)]
pub struct MacKey {
    mac: Hmac<Sha256>,
}

impl MacKey {
    /// Minimum key length accepted.
    pub const MIN_LEN: usize = 32;

    /// Keys the MAC. Keys shorter than 32 bytes are refused.
    pub fn new(key: &SecretBytes) -> Result<Self, crate::keys::KeyError> {
        if key.len() < Self::MIN_LEN {
            return Err(crate::keys::KeyError::KeyLength {
                expected: Self::MIN_LEN,
                got: key.len(),
            });
        }
        Hmac::<Sha256>::new_from_slice(key.expose())
            .map(|mac| Self { mac })
            .map_err(|_| crate::keys::KeyError::KeyLength {
                expected: Self::MIN_LEN,
                got: key.len(),
            })
    }

    /// The verification value of `parts` under `label`.
    pub fn compute(&self, label: &[u8], parts: &[&[u8]]) -> [u8; VALUE_LEN] {
        let mut mac = self.mac.clone();
        mac.update(label);
        for part in parts {
            // u16 length prefix: every part is far shorter than 64 KiB.
            mac.update(&(part.len() as u16).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// True when `expected` is the verification value of `parts`, compared in
    /// constant time.
    pub fn verify(&self, label: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
        let actual = self.compute(label, parts);
        actual.as_slice().ct_eq(expected).into()
    }

    /// Plain HMAC-SHA256 of `msg`, with no label or framing: for formats
    /// that define their own input, such as a JWT's `header.payload`.
    pub fn hmac(&self, msg: &[u8]) -> [u8; VALUE_LEN] {
        let mut mac = self.mac.clone();
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    /// True when `tag` is [`MacKey::hmac`] of `msg`, compared in constant time.
    pub fn verify_hmac(&self, msg: &[u8], tag: &[u8]) -> bool {
        self.hmac(msg).as_slice().ct_eq(tag).into()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MacKey {
        MacKey::new(&SecretBytes::from_slice(&[byte; 32])).unwrap()
    }

    #[test]
    fn matches_rfc_4231_shape_of_hmac_sha256() {
        // HMAC-SHA256 itself, checked against RFC 4231 test case 2 through
        // the same crate, so the construction below rests on a known MAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_only_the_same_input_under_the_same_key_and_label() {
        let k = key(7);
        let v = k.compute(label::PIN, &[b"card-1", b"1234"]);
        assert!(k.verify(label::PIN, &[b"card-1", b"1234"], &v));
        assert!(!k.verify(label::PIN, &[b"card-1", b"1235"], &v));
        assert!(!k.verify(label::PIN, &[b"card-2", b"1234"], &v));
        assert!(!k.verify(label::OTP, &[b"card-1", b"1234"], &v));
        assert!(!key(8).verify(label::PIN, &[b"card-1", b"1234"], &v));
        assert!(!k.verify(label::PIN, &[b"card-1", b"1234"], &v[..31]));
    }

    #[test]
    fn parts_are_length_prefixed() {
        let k = key(1);
        assert_ne!(
            k.compute(label::PIN, &[b"ab", b"c"]),
            k.compute(label::PIN, &[b"a", b"bc"])
        );
    }

    #[test]
    fn plain_hmac_matches_rfc_4231() {
        // RFC 4231 test cases 6 and 7: a 131-byte key (the only vectors with
        // a key long enough for `MacKey`).
        let k = MacKey::new(&SecretBytes::from_slice(&[0xaa; 131])).unwrap();
        let tc6 = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(
            hex::encode(k.hmac(tc6)),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let tc7 = b"This is a test using a larger than block-size key and a larger than block-size data. \
The key needs to be hashed before being used by the HMAC algorithm.";
        assert_eq!(
            hex::encode(k.hmac(tc7)),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
        let tag = k.hmac(tc6);
        assert!(k.verify_hmac(tc6, &tag));
        assert!(!k.verify_hmac(tc7, &tag));
        assert!(!k.verify_hmac(tc6, &tag[..31]));
        assert!(!key(1).verify_hmac(tc6, &tag));
        // Unframed: not the labelled value of the same bytes.
        assert_ne!(k.hmac(b"ab"), k.compute(b"", &[b"ab"]));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(MacKey::new(&SecretBytes::from_slice(&[0; 16])).is_err());
    }
}
