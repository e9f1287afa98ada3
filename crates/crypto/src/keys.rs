//! Symmetric keys and the envelope that protects data at rest.
//!
//! One master key (32 bytes) wraps every other key with AES-256-GCM; the
//! wrapped keys live in the database, so every node with the same master key
//! uses the same keys. Data keys seal PAN, CVV, codes in events and webhook
//! secrets with AES-256-GCM. The additional authenticated data (AAD) names
//! what a ciphertext is and which row it belongs to, so a ciphertext copied
//! to another row or column does not decrypt.
//!
//! Envelope layout: `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! Nonces are random: with 96-bit random nonces a key stays well inside
//! NIST SP 800-38D's bound for the volumes a card issuer has (and data keys
//! rotate with `cardcore keys rotate`).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a key could not be loaded or a ciphertext could not be opened. Never
/// carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a master key must be 32 bytes, given as 64 hex characters or base64")]
    MasterKeyFormat,
    #[error("key must be {expected} bytes, got {got}")]
    KeyLength { expected: usize, got: usize },
    #[error("ciphertext could not be authenticated (wrong key, or the data was altered)")]
    Authentication,
}

/// The root of the key hierarchy. Wraps every other key.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl MasterKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Builds the master key from raw bytes.
    pub fn from_bytes(bytes: &SecretBytes) -> Result<Self, KeyError> {
        if bytes.len() != Self::LEN {
            return Err(KeyError::MasterKeyFormat);
        }
        Aes256Gcm::new_from_slice(bytes.expose())
            .map(|cipher| Self { cipher })
            .map_err(|_| KeyError::MasterKeyFormat)
    }

    /// Parses a master key written as 64 hex characters or as base64.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = if text.len() == 2 * Self::LEN {
            Zeroizing::new(hex::decode(text).map_err(|_| KeyError::MasterKeyFormat)?)
        } else {
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| KeyError::MasterKeyFormat)?,
            )
        };
        Self::from_bytes(&SecretBytes::from_slice(&bytes))
    }

    /// A fresh master key, as 64 hex characters, for a key file or an env var.
    pub fn generate_hex<R: RngCore + CryptoRng>(rng: &mut R) -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; Self::LEN]);
        rng.fill_bytes(raw.as_mut());
        Zeroizing::new(hex::encode(raw.as_ref()))
    }

    /// Wraps `key` for storage. `label` names the key (purpose, version,
    /// owner) and is authenticated, so a wrapped key cannot be relabelled.
    pub fn wrap<R: RngCore + CryptoRng>(&self, label: &str, key: &SecretBytes, rng: &mut R) -> Vec<u8> {
        seal(&self.cipher, label.as_bytes(), key.expose(), rng)
    }

    /// Unwraps a key made by [`MasterKey::wrap`] with the same label.
    pub fn unwrap(&self, label: &str, wrapped: &[u8]) -> Result<SecretBytes, KeyError> {
        open(&self.cipher, label.as_bytes(), wrapped)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// An AES-256-GCM data key: seals card data and other secrets at rest.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl DataKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Builds a data key from 32 raw bytes.
    pub fn from_bytes(bytes: &SecretBytes) -> Result<Self, KeyError> {
        Aes256Gcm::new_from_slice(bytes.expose())
            .map(|cipher| Self { cipher })
            .map_err(|_| KeyError::KeyLength {
                expected: Self::LEN,
                got: bytes.len(),
            })
    }

    /// Encrypts `plaintext`, binding it to `aad` (what it is and whose it is).
    pub fn seal<R: RngCore + CryptoRng>(&self, aad: &[u8], plaintext: &[u8], rng: &mut R) -> Vec<u8> {
        seal(&self.cipher, aad, plaintext, rng)
    }

    /// Decrypts a ciphertext made by [`DataKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, KeyError> {
        open(&self.cipher, aad, sealed)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// Fresh random key material of `len` bytes.
pub fn random_key<R: RngCore + CryptoRng>(len: usize, rng: &mut R) -> SecretBytes {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    SecretBytes::new(bytes)
}

fn seal<R: RngCore + CryptoRng>(cipher: &Aes256Gcm, aad: &[u8], msg: &[u8], rng: &mut R) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    // Encryption with a valid key and in-memory buffers cannot fail; an
    // empty output would fail to open later rather than panic here.
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, KeyError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyError::Authentication);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .map(SecretBytes::new)
        .map_err(|_| KeyError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn master() -> MasterKey {
        MasterKey::parse(&"11".repeat(32)).unwrap()
    }

    #[test]
    fn master_key_parses_hex_and_base64_only_at_32_bytes() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse("q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=").is_ok());
        assert_eq!(
            MasterKey::parse(&"ab".repeat(16)).unwrap_err(),
            KeyError::MasterKeyFormat
        );
        assert_eq!(MasterKey::parse("not a key").unwrap_err(), KeyError::MasterKeyFormat);
        let generated = MasterKey::generate_hex(&mut OsRng);
        assert!(MasterKey::parse(&generated).is_ok());
    }

    #[test]
    fn wrap_round_trips_and_binds_the_label() {
        let key = random_key(32, &mut OsRng);
        let wrapped = master().wrap("data:v1", &key, &mut OsRng);
        assert!(!wrapped.windows(32).any(|w| w == key.expose()));
        assert_eq!(master().unwrap("data:v1", &wrapped).unwrap(), key);
        assert_eq!(
            master().unwrap("data:v2", &wrapped).unwrap_err(),
            KeyError::Authentication
        );
        let other = MasterKey::parse(&"22".repeat(32)).unwrap();
        assert_eq!(other.unwrap("data:v1", &wrapped).unwrap_err(), KeyError::Authentication);
    }

    #[test]
    fn data_key_seals_with_aad_and_detects_tampering() {
        let dk = DataKey::from_bytes(&random_key(32, &mut OsRng)).unwrap();
        let sealed = dk.seal(b"pan:card-1", b"4000001234567899", &mut OsRng);
        assert_eq!(dk.open(b"pan:card-1", &sealed).unwrap().expose(), b"4000001234567899");
        assert!(dk.open(b"pan:card-2", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(dk.open(b"pan:card-1", &tampered).is_err());
        assert!(dk.open(b"pan:card-1", &sealed[..10]).is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(sealed, dk.seal(b"pan:card-1", b"4000001234567899", &mut OsRng));
    }

    #[test]
    fn debug_is_redacted() {
        let dk = DataKey::from_bytes(&random_key(32, &mut OsRng)).unwrap();
        assert_eq!(
            format!("{:?} {:?}", master(), dk),
            "MasterKey([redacted]) DataKey([redacted])"
        );
    }
}
