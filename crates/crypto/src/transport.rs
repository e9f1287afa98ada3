//! RSA-OAEP PIN transport: the partner encrypts the PIN digits under
//! cardcore's public key (RSA-OAEP, SHA-256, MGF1-SHA-256) and cardcore
//! decrypts them.
//!
//! Decryption uses aws-lc-rs, whose RSA is constant-time. The pure-Rust `rsa`
//! crate is not used: it carries the Marvin timing advisory
//! (RUSTSEC-2023-0071) with no patched release.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    OAEP_SHA256_MGF1SHA256,
};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::secret::{Pin, SecretBytes};

/// Name of the algorithm as the API shows it.
pub const ALGORITHM: &str = "RSA-OAEP-256";

/// Why an encrypted PIN was refused. Never says anything about the plaintext
/// beyond "not a PIN".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("is not valid base64")]
    Base64,
    #[error("could not be decrypted with the PIN encryption key (wrong key, wrong padding, or altered ciphertext)")]
    Decrypt,
    #[error("decrypts to something that is not 4 to 12 digits")]
    NotAPin,
    #[error("the transport key could not be generated or loaded")]
    Key,
}

/// The service's RSA transport key pair.
pub struct TransportKey {
    private: OaepPrivateDecryptingKey,
    public_pem: String,
}

impl TransportKey {
    /// A fresh 2048-bit key pair, as PKCS#8 DER (to be wrapped and stored).
    pub fn generate_pkcs8() -> Result<SecretBytes, TransportError> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| TransportError::Key)?;
        let der: Pkcs8V1Der<'static> = key.as_der().map_err(|_| TransportError::Key)?;
        Ok(SecretBytes::from_slice(der.as_ref()))
    }

    /// Loads a key pair from PKCS#8 DER.
    pub fn from_pkcs8(der: &SecretBytes) -> Result<Self, TransportError> {
        let private = PrivateDecryptingKey::from_pkcs8(der.expose()).map_err(|_| TransportError::Key)?;
        let public = private.public_key();
        let spki: PublicKeyX509Der<'static> = public.as_der().map_err(|_| TransportError::Key)?;
        let public_pem = pem("PUBLIC KEY", spki.as_ref());
        let private = OaepPrivateDecryptingKey::new(private).map_err(|_| TransportError::Key)?;
        Ok(Self { private, public_pem })
    }

    /// The public key, PEM (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Decrypts a base64 RSA-OAEP ciphertext of the PIN's ASCII digits.
    pub fn decrypt_pin(&self, ciphertext_b64: &str) -> Result<Pin, TransportError> {
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|_| TransportError::Base64)?;
        let mut out = Zeroizing::new(vec![0u8; self.private.min_output_size()]);
        let plain = self
            .private
            .decrypt(&OAEP_SHA256_MGF1SHA256, &ciphertext, &mut out, None)
            .map_err(|_| TransportError::Decrypt)?;
        let text = std::str::from_utf8(plain).map_err(|_| TransportError::NotAPin)?;
        Pin::parse(text).map_err(|_| TransportError::NotAPin)
    }
}

impl fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportKey([redacted])")
    }
}

/// Encrypts `plaintext` under a PEM public key, as a partner would (used by
/// tests, examples and the load harness; the service itself only decrypts).
pub fn encrypt_with_public_pem(public_pem: &str, plaintext: &[u8]) -> Result<String, TransportError> {
    let der = pem_body(public_pem).ok_or(TransportError::Key)?;
    let public = PublicEncryptingKey::from_der(&der).map_err(|_| TransportError::Key)?;
    let public = OaepPublicEncryptingKey::new(public).map_err(|_| TransportError::Key)?;
    let mut out = vec![0u8; public.ciphertext_size()];
    let ct = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
        .map_err(|_| TransportError::Key)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(ct))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_public_pem() {
        let der = TransportKey::generate_pkcs8().unwrap();
        let key = TransportKey::from_pkcs8(&der).unwrap();
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let ct = encrypt_with_public_pem(key.public_key_pem(), b"4821").unwrap();
        assert_eq!(key.decrypt_pin(&ct).unwrap().expose(), "4821");
    }

    #[test]
    fn refuses_garbage_other_keys_and_non_pins() {
        let key = TransportKey::from_pkcs8(&TransportKey::generate_pkcs8().unwrap()).unwrap();
        let other = TransportKey::from_pkcs8(&TransportKey::generate_pkcs8().unwrap()).unwrap();
        assert_eq!(key.decrypt_pin("***").unwrap_err(), TransportError::Base64);
        assert_eq!(key.decrypt_pin("AAAA").unwrap_err(), TransportError::Decrypt);
        let for_other = encrypt_with_public_pem(other.public_key_pem(), b"4821").unwrap();
        assert_eq!(key.decrypt_pin(&for_other).unwrap_err(), TransportError::Decrypt);
        let not_pin = encrypt_with_public_pem(key.public_key_pem(), b"12ab").unwrap();
        assert_eq!(key.decrypt_pin(&not_pin).unwrap_err(), TransportError::NotAPin);
        let mut tampered = base64::engine::general_purpose::STANDARD
            .decode(encrypt_with_public_pem(key.public_key_pem(), b"4821").unwrap())
            .unwrap();
        tampered[5] ^= 0x40;
        let tampered = base64::engine::general_purpose::STANDARD.encode(tampered);
        assert_eq!(key.decrypt_pin(&tampered).unwrap_err(), TransportError::Decrypt);
    }
}
