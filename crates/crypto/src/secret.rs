//! Secret newtypes. Each one zeroizes its memory on drop and never prints
//! its value: `Debug` is redacted and there is no `Display`. "No secret in
//! logs" then holds by construction: a secret reaches a log line only if
//! somebody calls `expose()` and formats the result on purpose.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Why a string is not a valid secret of its kind. The messages never quote
/// the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("must contain digits only")]
    NotDigits,
    #[error("must be {min} to {max} digits long")]
    Length { min: usize, max: usize },
    #[error("fails the Luhn check")]
    Luhn,
}

/// A fixed-capacity buffer of ASCII digits: no heap, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Digits<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> Digits<N> {
    fn parse(s: &str, min: usize) -> Result<Self, SecretFormatError> {
        let bytes = s.as_bytes();
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(SecretFormatError::NotDigits);
        }
        if bytes.len() < min || bytes.len() > N {
            return Err(SecretFormatError::Length { min, max: N });
        }
        let mut buf = [0u8; N];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            buf,
            len: bytes.len() as u8,
        })
    }

    fn from_values(values: &[u8]) -> Self {
        let mut buf = [0u8; N];
        for (b, v) in buf.iter_mut().zip(values) {
            *b = b'0' + v;
        }
        Self {
            buf,
            len: values.len().min(N) as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored, so this cannot fail.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Digit values 0..=9, one per position.
    fn values(&self) -> impl Iterator<Item = u8> + '_ {
        self.as_bytes().iter().map(|b| b - b'0')
    }
}

impl<const N: usize> ConstantTimeEq for Digits<N> {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.buf.ct_eq(&other.buf) & self.len.ct_eq(&other.len)
    }
}

macro_rules! digit_secret {
    ($(#[$meta:meta])* $name:ident, min = $min:expr, max = $max:expr) => {
        $(#[$meta])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name(Digits<$max>);

        impl $name {
            /// Shortest accepted length.
            pub const MIN_LEN: usize = $min;
            /// Longest accepted length.
            pub const MAX_LEN: usize = $max;

            /// Parses a string of digits; the error never quotes the input.
            pub fn parse(s: &str) -> Result<Self, SecretFormatError> {
                Digits::parse(s, $min).map(Self)
            }

            /// Builds the secret from digit values 0..=9 (e.g. a decoded PIN block).
            pub fn from_digit_values(values: &[u8]) -> Result<Self, SecretFormatError> {
                if values.iter().any(|v| *v > 9) {
                    return Err(SecretFormatError::NotDigits);
                }
                if values.len() < $min || values.len() > $max {
                    return Err(SecretFormatError::Length { min: $min, max: $max });
                }
                Ok(Self(Digits::from_values(values)))
            }

            /// The digits, as text. Every call site is a place a secret leaves
            /// its box: keep them few and never log the result.
            pub fn expose(&self) -> &str {
                self.0.as_str()
            }

            /// The digits as ASCII bytes.
            pub fn expose_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }

            /// The digit values 0..=9, in order.
            pub fn digit_values(&self) -> impl Iterator<Item = u8> + '_ {
                self.0.values()
            }

            /// Number of digits.
            pub fn len(&self) -> usize {
                self.0.len as usize
            }

            /// Always false: a parsed secret has at least `MIN_LEN` digits.
            pub fn is_empty(&self) -> bool {
                self.0.len == 0
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> subtle::Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}
    };
}

digit_secret!(
    /// A cardholder PIN: 4 to 12 digits (ISO 9564-1). Prints as `Pin(****)`.
    Pin, min = 4, max = 12
);
digit_secret!(
    /// A primary account number: 12 to 19 digits. Prints as `Pan(****1234)`.
    Pan, min = 12, max = 19
);
digit_secret!(
    /// A card verification value (CVV2/CVC2): 3 digits. Prints as `Cvv(***)`.
    Cvv, min = 3, max = 3
);
digit_secret!(
    /// A one-time password, or an activation code. Prints as `Otp(******)`.
    Otp, min = 6, max = 6
);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl fmt::Debug for Cvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvv(***)")
    }
}

impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Otp(******)")
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan(****{})", self.last_four())
    }
}

impl Pan {
    /// Parses a PAN and checks its Luhn digit.
    pub fn parse_checked(s: &str) -> Result<Self, SecretFormatError> {
        let pan = Self::parse(s)?;
        if crate::luhn::is_valid(pan.expose_bytes()) {
            Ok(pan)
        } else {
            Err(SecretFormatError::Luhn)
        }
    }

    /// The last four digits: the only part of a PAN that may be shown.
    pub fn last_four(&self) -> &str {
        let s = self.expose();
        &s[s.len().saturating_sub(4)..]
    }

    /// The issuer identification number (first six digits).
    pub fn bin(&self) -> &str {
        &self.expose()[..6]
    }
}

/// Raw key material or any other secret bytes: zeroized on drop, redacted in
/// `Debug`, compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of the bytes (the caller's copy moves in).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies from a slice; the caller stays responsible for its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// The bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses hex into secret bytes; the temporary buffer is zeroized.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let v = Zeroizing::new(hex::decode(s.trim())?);
        Ok(Self::from_slice(&v))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {}])", self.0.len())
    }
}

impl ConstantTimeEq for SecretBytes {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_digits() {
        let pin = Pin::parse("4821").unwrap();
        let pan = Pan::parse("4000001234567899").unwrap();
        let cvv = Cvv::parse("123").unwrap();
        let otp = Otp::parse("654321").unwrap();
        let key = SecretBytes::from_slice(&[0xAB; 16]);
        let all = format!("{pin:?} {pan:?} {cvv:?} {otp:?} {key:?}");
        assert_eq!(
            all,
            "Pin(****) Pan(****7899) Cvv(***) Otp(******) SecretBytes([redacted; 16])"
        );
        for secret in ["4821", "400000123456", "123", "654321", "abab"] {
            assert!(!all.contains(secret), "{secret} leaked in {all}");
        }
    }

    #[test]
    fn parse_rejects_without_quoting_input() {
        assert_eq!(Pin::parse("12a4").unwrap_err(), SecretFormatError::NotDigits);
        assert_eq!(
            Pin::parse("123").unwrap_err(),
            SecretFormatError::Length { min: 4, max: 12 }
        );
        assert_eq!(
            Pin::parse("1234567890123").unwrap_err(),
            SecretFormatError::Length { min: 4, max: 12 }
        );
        assert!(Pin::parse("123456789012").is_ok());
        assert_eq!(
            Pin::parse("").unwrap_err(),
            SecretFormatError::Length { min: 4, max: 12 }
        );
        assert_eq!(Pin::parse("١٢٣٤").unwrap_err(), SecretFormatError::NotDigits);
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(Pin::parse("1234").unwrap(), Pin::parse("1234").unwrap());
        assert_ne!(Pin::parse("1234").unwrap(), Pin::parse("12340").unwrap());
        assert_ne!(Pin::parse("1234").unwrap(), Pin::parse("1235").unwrap());
    }

    #[test]
    fn digit_values_round_trip() {
        let pin = Pin::from_digit_values(&[0, 5, 7, 0]).unwrap();
        assert_eq!(pin.expose(), "0570");
        assert_eq!(pin.digit_values().collect::<Vec<_>>(), vec![0, 5, 7, 0]);
        assert!(Pin::from_digit_values(&[1, 2, 10, 4]).is_err());
    }

    #[test]
    fn pan_checks_luhn_and_shows_last_four() {
        assert!(Pan::parse_checked("4111111111111111").is_ok());
        assert_eq!(
            Pan::parse_checked("4111111111111112").unwrap_err(),
            SecretFormatError::Luhn
        );
        let pan = Pan::parse("5555555551234567").unwrap();
        assert_eq!(pan.last_four(), "4567");
        assert_eq!(pan.bin(), "555555");
    }
}
