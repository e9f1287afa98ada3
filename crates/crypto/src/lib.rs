//! cardcore's payment cryptography. Pure: no I/O, no clock, no async. Every
//! algorithm carries the test vectors of `shared/docs/pin-security.md`.
//!
//! - [`secret`]: `Pin`, `Pan`, `Cvv`, `Otp`, `SecretBytes`, redacted and zeroized.
//! - [`luhn`]: check digits and PAN generation from a BIN.
//! - [`pinblock`]: ISO 9564-1 PIN block formats 0, 1, 3 and 4.
//! - [`pvv`], [`ibm3624`]: issuer PIN verification values for interop.
//! - [`cvv`]: Visa CVV / CVV2 / iCVV under a CVK.
//! - [`kcv`]: key check values.
//! - [`keys`]: symmetric keys, the AES-256-GCM envelope and key wrapping.
//! - [`verifier`]: keyed PIN/OTP verification values (HMAC-SHA256).
//! - [`transport`]: RSA-OAEP-SHA256 PIN transport (aws-lc-rs, constant time).
//! - [`webhook`]: Standard Webhooks secrets and signatures (HMAC-SHA256).

pub mod cvv;
pub mod ibm3624;
pub mod kcv;
pub mod keys;
pub mod luhn;
pub mod pinblock;
pub mod pvv;
pub mod secret;
pub mod transport;
pub mod verifier;
pub mod webhook;

pub use secret::{Cvv, Otp, Pan, Pin, SecretBytes, SecretFormatError};
