//! Luhn (mod 10) check digits, and PAN generation from a BIN.

use rand::{CryptoRng, Rng, RngCore};
use zeroize::Zeroizing;

use crate::secret::Pan;

/// True when the ASCII digit string ends in a valid Luhn check digit.
pub fn is_valid(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&last, body)) if last.is_ascii_digit() => check_digit(body) == Some(last),
        _ => false,
    }
}

/// The Luhn check digit (ASCII) to append to `body`, or `None` if `body`
/// holds anything but ASCII digits.
pub fn check_digit(body: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &b) in body.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    Some(b'0' + ((10 - (sum % 10)) % 10) as u8)
}

/// Why a PAN cannot be generated; the messages never quote the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanGenerationError {
    #[error("BIN must be 6 to 11 decimal digits")]
    Bin,
    #[error("PAN length must be 13 to 19 digits")]
    Length,
}

/// Shortest BIN accepted: the 6-digit IIN of ISO/IEC 7812-1.
pub const BIN_MIN_LEN: usize = 6;
/// Longest BIN accepted: an 11-digit range still leaves an account digit at length 13.
pub const BIN_MAX_LEN: usize = 11;
/// Shortest PAN generated (ISO/IEC 7812 allows shorter, no scheme we serve issues them).
pub const PAN_MIN_LEN: usize = 13;
/// Longest PAN (ISO/IEC 7812-1).
pub const PAN_MAX_LEN: usize = 19;

/// A PAN of `length` digits: `bin`, uniformly random account digits, and a
/// valid Luhn check digit. Uniqueness is the caller's job (a unique index).
pub fn generate_pan<R: RngCore + CryptoRng>(bin: &str, length: usize, rng: &mut R) -> Result<Pan, PanGenerationError> {
    let bin = bin.as_bytes();
    if !(BIN_MIN_LEN..=BIN_MAX_LEN).contains(&bin.len()) || !bin.iter().all(u8::is_ascii_digit) {
        return Err(PanGenerationError::Bin);
    }
    if !(PAN_MIN_LEN..=PAN_MAX_LEN).contains(&length) {
        return Err(PanGenerationError::Length);
    }
    // BIN ≤ 11 and length ≥ 13 leave at least one account digit before the
    // check digit, so every generated PAN carries randomness.
    let mut buf = Zeroizing::new([0u8; PAN_MAX_LEN]);
    let (body, _) = buf.split_at_mut(length - 1);
    let (prefix, account) = body.split_at_mut(bin.len());
    prefix.copy_from_slice(bin);
    for d in account.iter_mut() {
        *d = b'0' + rng.gen_range(0..10u8);
    }
    // Neither conversion below can fail (every byte is an ASCII digit); the
    // error arms exist only because this code may not unwrap.
    buf[length - 1] = check_digit(&buf[..length - 1]).ok_or(PanGenerationError::Bin)?;
    let text = std::str::from_utf8(&buf[..length]).map_err(|_| PanGenerationError::Bin)?;
    Pan::parse(text).map_err(|_| PanGenerationError::Length)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn known_check_digits() {
        // The textbook Luhn example (Wikipedia, "Luhn algorithm"): 7992739871 → 3.
        assert_eq!(check_digit(b"7992739871"), Some(b'3'));
        assert!(is_valid(b"79927398713"));
        assert!(is_valid(b"4111111111111111"));
        assert!(!is_valid(b"4111111111111112"));
        assert!(!is_valid(b""));
        assert_eq!(check_digit(b"41a1"), None);
    }

    #[test]
    fn generated_pan_keeps_bin_and_length_and_passes_luhn() {
        let mut rng = StdRng::seed_from_u64(7);
        let pan = generate_pan("400000", 16, &mut rng).unwrap();
        assert_eq!(pan.len(), 16);
        assert_eq!(pan.bin(), "400000");
        assert!(is_valid(pan.expose_bytes()));
        assert!(Pan::parse_checked(pan.expose()).is_ok());
    }

    #[test]
    fn account_digits_are_random() {
        let mut rng = StdRng::seed_from_u64(11);
        let a = generate_pan("52000011", 16, &mut rng).unwrap();
        let b = generate_pan("52000011", 16, &mut rng).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_bad_bin_and_length() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            generate_pan("40000", 16, &mut rng).unwrap_err(),
            PanGenerationError::Bin
        );
        assert_eq!(
            generate_pan("400000000000", 19, &mut rng).unwrap_err(),
            PanGenerationError::Bin
        );
        assert_eq!(
            generate_pan("40000a", 16, &mut rng).unwrap_err(),
            PanGenerationError::Bin
        );
        assert_eq!(
            generate_pan("４00000", 16, &mut rng).unwrap_err(),
            PanGenerationError::Bin
        );
        assert_eq!(
            generate_pan("400000", 12, &mut rng).unwrap_err(),
            PanGenerationError::Length
        );
        assert_eq!(
            generate_pan("400000", 20, &mut rng).unwrap_err(),
            PanGenerationError::Length
        );
        // The tightest corner: an 11-digit BIN in a 13-digit PAN keeps one random digit.
        let pan = generate_pan("12345678901", 13, &mut rng).unwrap();
        assert!(pan.expose().starts_with("12345678901"));
        assert!(is_valid(pan.expose_bytes()));
    }

    proptest! {
        #[test]
        fn every_generated_pan_is_valid(
            bin in "[0-9]{6,11}",
            length in 13usize..=19,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let pan = generate_pan(&bin, length, &mut rng).unwrap();
            prop_assert_eq!(pan.len(), length);
            prop_assert!(pan.expose().starts_with(bin.as_str()));
            prop_assert!(is_valid(pan.expose_bytes()));
        }

        #[test]
        fn check_digit_makes_any_body_valid(body in "[0-9]{1,30}") {
            let mut full = body.clone().into_bytes();
            full.push(check_digit(body.as_bytes()).unwrap());
            prop_assert!(is_valid(&full));
        }
    }
}
