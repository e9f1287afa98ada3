//! Visa CVV method (Mastercard calls the same algorithm CVC): CVV1 with the
//! card's service code, CVV2 with `000`, iCVV with `999`.
//!
//! PAN ‖ expiry ‖ service code, right-padded with 0 to 32 nibbles, is split
//! into blocks B1 and B2; the result is TDES(K1‖K2, DES(K1, B1) XOR B2),
//! decimalised the Visa way (decimal digits left to right, then A..F as 0..5)
//! and cut to 3 digits.

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::{Des, TdesEde2};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::pvv::visa_decimalize;
use crate::secret::{Cvv, Pan};

/// Service code that turns the algorithm into CVV2 (printed on the card).
pub const SERVICE_CODE_CVV2: &str = "000";
/// Service code that turns the algorithm into iCVV (chip track-2 equivalent).
pub const SERVICE_CODE_ICVV: &str = "999";

/// Why a CVV cannot be computed; the messages never quote the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CvvError {
    #[error("expiry must be 4 decimal digits")]
    Expiry,
    #[error("service code must be 3 decimal digits")]
    ServiceCode,
}

/// CVV of `pan` under the double-length `cvk` (CVK A ‖ CVK B). The expiry is
/// 4 digits in the order the issuer encodes it (YYMM on the track); its value
/// is not checked, since the algorithm treats it as plain digits.
pub fn generate_cvv(cvk: &[u8; 16], pan: &Pan, expiry_yymm: &str, service_code: &str) -> Result<Cvv, CvvError> {
    let expiry = digits_of::<4>(expiry_yymm).ok_or(CvvError::Expiry)?;
    let service_code = digits_of::<3>(service_code).ok_or(CvvError::ServiceCode)?;

    // A Pan has at most 19 digits: 19 + 4 + 3 = 26 ≤ 32 nibbles.
    let mut nibbles = Zeroizing::new([0u8; 32]);
    let input = pan
        .digit_values()
        .chain(expiry.iter().copied())
        .chain(service_code.iter().copied());
    for (slot, d) in nibbles.iter_mut().zip(input) {
        *slot = d;
    }
    let mut blocks = Zeroizing::new([0u8; 16]);
    for (b, pair) in blocks.iter_mut().zip(nibbles.chunks_exact(2)) {
        *b = (pair[0] << 4) | pair[1];
    }
    let (b1, b2) = blocks.split_at_mut(8);

    let single = Des::new(GenericArray::from_slice(&cvk[..8]));
    single.encrypt_block(GenericArray::from_mut_slice(b1));
    for (x, y) in b1.iter_mut().zip(b2.iter()) {
        *x ^= y;
    }
    let double = TdesEde2::new(GenericArray::from_slice(cvk));
    double.encrypt_block(GenericArray::from_mut_slice(b1));

    let mut result = Zeroizing::new([0u8; 8]);
    result.copy_from_slice(b1);
    let digits = Zeroizing::new(visa_decimalize::<3>(&result));
    // Three values 0..=9: always a valid Cvv; typed rather than unwrapped.
    Cvv::from_digit_values(&digits[..]).map_err(|_| CvvError::ServiceCode)
}

/// Windows a dynamic CVV2 input tells apart before it repeats: the window
/// number fills the 7 digits of the expiry and service-code fields.
pub const DYNAMIC_WINDOW_CYCLE: u64 = 10_000_000;

/// Dynamic CVV2 of `pan` for CVV2 window `window` (see
/// `cardcore_domain::cvv_window`): the Visa CVV algorithm under the CVK,
/// with the 7 digits of the expiry and service-code fields replaced by the
/// window number modulo 10^7, zero-padded (expiry field = its first 4
/// digits, service code = its last 3). So the CVK is used only in its own
/// algorithm, an HSM's CVV command computes the same value from these
/// fields, and a card's values repeat only after 10^7 windows (1,141 years
/// of hourly windows).
pub fn generate_dynamic_cvv2(cvk: &[u8; 16], pan: &Pan, window: u64) -> Cvv {
    let digits = Zeroizing::new(format!("{:07}", window % DYNAMIC_WINDOW_CYCLE));
    let (expiry, service_code) = digits.split_at(4);
    match generate_cvv(cvk, pan, expiry, service_code) {
        Ok(cvv) => cvv,
        // 4 and 3 decimal digits by construction.
        Err(_) => unreachable_digits(),
    }
}

#[allow(clippy::panic)]
fn unreachable_digits() -> Cvv {
    panic!("a zero-padded window number is always 7 decimal digits")
}

/// True when `cvv` is the CVV of this card data; compares in constant time.
pub fn verify_cvv(
    cvk: &[u8; 16],
    pan: &Pan,
    expiry_yymm: &str,
    service_code: &str,
    cvv: &Cvv,
) -> Result<bool, CvvError> {
    Ok(generate_cvv(cvk, pan, expiry_yymm, service_code)?.ct_eq(cvv).into())
}

fn digits_of<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes: [u8; N] = s.as_bytes().try_into().ok()?;
    bytes.iter().all(u8::is_ascii_digit).then(|| bytes.map(|b| b - b'0'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cvv(cvk: &str, pan: &str, expiry: &str, sc: &str) -> String {
        let cvk: [u8; 16] = hex::decode(cvk).unwrap().try_into().unwrap();
        let pan = Pan::parse(pan).unwrap();
        generate_cvv(&cvk, &pan, expiry, sc).unwrap().expose().to_owned()
    }

    /// psec tests/test_cvv.py `test_generate_cvv`.
    #[test]
    fn psec_test_vector() {
        assert_eq!(
            cvv("99999999999999998888888888888888", "2222222222222222", "3333", "111"),
            "361"
        );
    }

    /// psec `cvv.generate_cvv` docstring example.
    #[test]
    fn psec_docstring_vector() {
        assert_eq!(
            cvv("0123456789ABCDEFFEDCBA9876543210", "1234567890123456", "9912", "220"),
            "170"
        );
    }

    /// The card data of the often-reproduced Visa CVV example (CVK A
    /// 0123456789ABCDEF, CVK B FEDCBA9876543210, PAN 4123456789012345, expiry
    /// 8701): CVV1 with service code 101, CVV2 with 000, iCVV with 999.
    /// Values confirmed with psec 1.3.0.
    #[test]
    fn cvv1_cvv2_icvv_of_one_card() {
        let cvk = "0123456789ABCDEFFEDCBA9876543210";
        assert_eq!(cvv(cvk, "4123456789012345", "8701", "101"), "561");
        assert_eq!(cvv(cvk, "4123456789012345", "8701", SERVICE_CODE_CVV2), "636");
        assert_eq!(cvv(cvk, "4123456789012345", "8701", SERVICE_CODE_ICVV), "651");
    }

    #[test]
    fn verify_and_reject() {
        let cvk: [u8; 16] = hex::decode("0123456789ABCDEFFEDCBA9876543210")
            .unwrap()
            .try_into()
            .unwrap();
        let pan = Pan::parse("4123456789012345").unwrap();
        let good = Cvv::parse("636").unwrap();
        assert!(verify_cvv(&cvk, &pan, "8701", "000", &good).unwrap());
        assert!(!verify_cvv(&cvk, &pan, "8702", "000", &good).unwrap());
        assert_eq!(generate_cvv(&cvk, &pan, "870", "000").unwrap_err(), CvvError::Expiry);
        assert_eq!(generate_cvv(&cvk, &pan, "87O1", "000").unwrap_err(), CvvError::Expiry);
        assert_eq!(
            generate_cvv(&cvk, &pan, "8701", "0000").unwrap_err(),
            CvvError::ServiceCode
        );
        assert_eq!(
            generate_cvv(&cvk, &pan, "8701", "00a").unwrap_err(),
            CvvError::ServiceCode
        );
    }

    /// The dynamic CVV2 is the Visa CVV with the window's 7 digits in the
    /// expiry and service-code fields (checked against the psec-confirmed
    /// vectors above through that identity).
    #[test]
    fn dynamic_cvv2_is_the_visa_cvv_of_the_window_digits() {
        let key = "0123456789ABCDEFFEDCBA9876543210";
        let cvk: [u8; 16] = hex::decode(key).unwrap().try_into().unwrap();
        let pan = Pan::parse("4123456789012345").unwrap();
        // Window 8,701,101 → expiry field 8701, service code 101: the CVV1 vector.
        assert_eq!(generate_dynamic_cvv2(&cvk, &pan, 8_701_101).expose(), "561");
        assert_eq!(generate_dynamic_cvv2(&cvk, &pan, 8_701_000).expose(), "636");
        // Only the window number modulo 10^7 counts.
        assert_eq!(generate_dynamic_cvv2(&cvk, &pan, 18_701_999).expose(), "651");
        // Leading zeros are kept: window 6930 is fields 0000 and 693.
        assert_eq!(
            generate_dynamic_cvv2(&cvk, &pan, 6930).expose(),
            cvv(key, "4123456789012345", "0006", "930")
        );
        // Neighbouring windows of one card: not one value for every window.
        let values: std::collections::HashSet<String> = (6930..6940)
            .map(|w| generate_dynamic_cvv2(&cvk, &pan, w).expose().to_owned())
            .collect();
        assert!(values.len() > 1, "{values:?}");
    }

    proptest! {
        #[test]
        fn dynamic_always_three_digits(cvk in any::<[u8; 16]>(), pan in "[0-9]{12,19}", window in any::<u64>()) {
            let pan = Pan::parse(&pan).unwrap();
            prop_assert_eq!(generate_dynamic_cvv2(&cvk, &pan, window).len(), 3);
        }

        #[test]
        fn always_three_digits(cvk in any::<[u8; 16]>(), pan in "[0-9]{12,19}", expiry in "[0-9]{4}", sc in "[0-9]{3}") {
            let pan = Pan::parse(&pan).unwrap();
            let cvv = generate_cvv(&cvk, &pan, &expiry, &sc).unwrap();
            prop_assert_eq!(cvv.len(), 3);
        }
    }
}
