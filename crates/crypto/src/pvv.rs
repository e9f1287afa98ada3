//! Visa PIN Verification Value (PVV), for interop with processors and HSMs
//! that verify PINs against a PVV on the card record.
//!
//! TSP = 11 rightmost PAN digits excluding the check digit ‖ PVKI ‖ 4 PIN
//! digits; the PVV is the first 4 decimal digits of TDES(PVK, TSP), read
//! left to right, topped up if needed with the hex digits A..F read as 0..5.

use std::fmt;

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::TdesEde2;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::{Pan, Pin, SecretFormatError};

/// Why a PVV cannot be computed; the messages never quote the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PvvError {
    #[error("PVKI must be a single digit 0 to 9")]
    Pvki,
    #[error("the Visa PVV is defined for 4-digit PINs only")]
    PinLength,
}

/// A 4-digit Visa PVV. With the PVK it gives the PIN back in at most 10,000
/// trials, so it prints redacted and compares in constant time.
#[derive(Clone, Copy)]
pub struct Pvv([u8; 4]);

impl Pvv {
    /// Parses four decimal digits.
    pub fn parse(s: &str) -> Result<Self, SecretFormatError> {
        let bytes: [u8; 4] = s
            .as_bytes()
            .try_into()
            .map_err(|_| SecretFormatError::Length { min: 4, max: 4 })?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(SecretFormatError::NotDigits);
        }
        Ok(Self(bytes))
    }

    /// The four digits, as text (to store on the card record).
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl ConstantTimeEq for Pvv {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Pvv {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Pvv {}

impl fmt::Debug for Pvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pvv(****)")
    }
}

/// Visa PVV of `pin` for `pan` under the double-length `pvk` (K1‖K2) and
/// key index `pvki` (0..=9). Only 4-digit PINs: truncating a longer PIN
/// would silently verify only part of it.
pub fn generate_visa_pvv(pvk: &[u8; 16], pvki: u8, pin: &Pin, pan: &Pan) -> Result<Pvv, PvvError> {
    if pvki > 9 {
        return Err(PvvError::Pvki);
    }
    if pin.len() != 4 {
        return Err(PvvError::PinLength);
    }
    let mut tsp = Zeroizing::new([0u8; 16]);
    // A Pan has at least 12 digits, so 11 always precede the check digit.
    let body = pan.expose_bytes().split_last().map_or(&[][..], |(_, body)| body);
    for (slot, b) in tsp[..11].iter_mut().zip(&body[body.len().saturating_sub(11)..]) {
        *slot = b - b'0';
    }
    tsp[11] = pvki;
    for (slot, d) in tsp[12..].iter_mut().zip(pin.digit_values()) {
        *slot = d;
    }
    let mut block = Zeroizing::new([0u8; 8]);
    for (b, pair) in block.iter_mut().zip(tsp.chunks_exact(2)) {
        *b = (pair[0] << 4) | pair[1];
    }
    let cipher = TdesEde2::new(GenericArray::from_slice(pvk));
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut block[..]));
    let digits = Zeroizing::new(visa_decimalize::<4>(&block));
    let mut pvv = [0u8; 4];
    for (p, d) in pvv.iter_mut().zip(digits.iter()) {
        *p = b'0' + d;
    }
    Ok(Pvv(pvv))
}

/// True when `pin` matches `expected` for `pan`; compares in constant time.
pub fn verify_visa_pvv(pvk: &[u8; 16], pvki: u8, pin: &Pin, pan: &Pan, expected: &Pvv) -> Result<bool, PvvError> {
    Ok(generate_visa_pvv(pvk, pvki, pin, pan)?.ct_eq(expected).into())
}

/// Visa's decimalisation (PVV and CVV): the decimal nibbles of `block` left
/// to right, then, if fewer than `N`, its A..F nibbles left to right as 0..5.
/// Returns digit values 0..=9. `N` must not exceed 16.
pub(crate) fn visa_decimalize<const N: usize>(block: &[u8; 8]) -> [u8; N] {
    let mut nibbles = Zeroizing::new([0u8; 16]);
    for (pair, b) in nibbles.chunks_exact_mut(2).zip(block) {
        pair[0] = b >> 4;
        pair[1] = b & 0x0F;
    }
    let decimal = nibbles.iter().copied().filter(|&n| n <= 9);
    let letters = nibbles.iter().copied().filter(|&n| n > 9).map(|n| n - 10);
    let mut out = [0u8; N];
    for (slot, d) in out.iter_mut().zip(decimal.chain(letters)) {
        *slot = d;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PVK: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
    ];

    fn pvv(pvki: u8, pin: &str, pan: &str) -> String {
        let pin = Pin::parse(pin).unwrap();
        let pan = Pan::parse(pan).unwrap();
        generate_visa_pvv(&PVK, pvki, &pin, &pan).unwrap().as_str().to_owned()
    }

    /// psec tests/test_pin.py (via pin-security.md), PVK 0123456789ABCDEFFEDCBA9876543210.
    #[test]
    fn psec_vectors() {
        assert_eq!(hex::encode_upper(PVK), "0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(pvv(1, "4524", "1122334455667788"), "8523");
        assert_eq!(pvv(2, "1912", "1122334455667788"), "3244");
        assert_eq!(pvv(1, "0570", "1122334455667718"), "3144");
        assert_eq!(pvv(1, "8299", "1122334455667708"), "4422");
    }

    /// psec's `generate_visa_pvv` docstring example.
    #[test]
    fn psec_docstring_vector() {
        assert_eq!(pvv(3, "4524", "1122334455667788"), "4021");
    }

    #[test]
    fn verify_matches_and_rejects() {
        let pan = Pan::parse("1122334455667788").unwrap();
        let good = Pvv::parse("8523").unwrap();
        let right = Pin::parse("4524").unwrap();
        let wrong = Pin::parse("4525").unwrap();
        assert!(verify_visa_pvv(&PVK, 1, &right, &pan, &good).unwrap());
        assert!(!verify_visa_pvv(&PVK, 1, &wrong, &pan, &good).unwrap());
        assert!(!verify_visa_pvv(&PVK, 2, &right, &pan, &good).unwrap());
    }

    #[test]
    fn rejects_bad_pvki_and_pin_length() {
        let pan = Pan::parse("1122334455667788").unwrap();
        let pin = Pin::parse("4524").unwrap();
        assert_eq!(generate_visa_pvv(&PVK, 10, &pin, &pan).unwrap_err(), PvvError::Pvki);
        let long = Pin::parse("452400").unwrap();
        assert_eq!(
            generate_visa_pvv(&PVK, 1, &long, &pan).unwrap_err(),
            PvvError::PinLength
        );
    }

    #[test]
    fn pvv_parses_and_redacts() {
        assert!(Pvv::parse("123").is_err());
        assert!(Pvv::parse("12a4").is_err());
        assert_eq!(format!("{:?}", Pvv::parse("8523").unwrap()), "Pvv(****)");
    }

    #[test]
    fn decimalisation_tops_up_with_letters() {
        // Two decimal nibbles (1, 2), then A..F from the left: A→0, B→1.
        let block = [0xAB, 0x1C, 0xDE, 0xF2, 0xAA, 0xBB, 0xCC, 0xDD];
        assert_eq!(visa_decimalize::<4>(&block), [1, 2, 0, 1]);
        let all_letters = [0xFE; 8];
        assert_eq!(visa_decimalize::<3>(&all_letters), [5, 4, 5]);
    }

    proptest! {
        #[test]
        fn always_four_digits(pvk in any::<[u8; 16]>(), pvki in 0u8..=9, pin in "[0-9]{4}", pan in "[0-9]{12,19}") {
            let pin = Pin::parse(&pin).unwrap();
            let pan = Pan::parse(&pan).unwrap();
            let pvv = generate_visa_pvv(&pvk, pvki, &pin, &pan).unwrap();
            prop_assert_eq!(pvv.as_str().len(), 4);
            prop_assert!(pvv.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
