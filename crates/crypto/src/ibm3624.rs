//! IBM 3624 natural PIN and PIN offset, for interop with issuers whose PINs
//! are verified as offsets.
//!
//! Validation data (usually a slice of the PAN, padded to 16 hex digits) is
//! TDES-encrypted under the PVK; each hex digit of the result is mapped to a
//! decimal digit through the decimalisation table, and the leading digits
//! form the natural PIN. The offset is the customer PIN minus the natural PIN,
//! digit by digit, mod 10.
//!
//! The decimalisation table must come from configuration, never from a
//! request: letting a caller choose it turns verification into the
//! decimalisation-table attack (Bond and Zieliński, 2003) that recovers a PIN
//! in about 15 guesses.

use std::fmt;

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::TdesEde2;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::{Pan, Pin};

/// Why an IBM 3624 input is invalid; the messages never quote the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ibm3624Error {
    #[error("decimalisation table must be 16 decimal digits")]
    Table,
    #[error("validation data must be 1 to 16 hex digits taken from within the PAN")]
    ValidationData,
    #[error("pad must be one hex digit")]
    Pad,
    #[error("offset must be 4 to 12 decimal digits")]
    Offset,
    #[error("PIN length must be 4 to 12")]
    PinLength,
}

/// Maps each of the 16 hex digits 0..F to a decimal digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalizationTable([u8; 16]);

impl DecimalizationTable {
    /// Parses 16 decimal digits, e.g. `0123456789012345`.
    pub fn parse(s: &str) -> Result<Self, Ibm3624Error> {
        let bytes: [u8; 16] = s.as_bytes().try_into().map_err(|_| Ibm3624Error::Table)?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(Ibm3624Error::Table);
        }
        Ok(Self(bytes.map(|b| b - b'0')))
    }
}

/// The 16-nibble block that is encrypted under the PVK.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ValidationData([u8; 8]);

impl ValidationData {
    /// 1 to 16 hex digits, right-padded with the hex digit `pad` to 16.
    pub fn new(data: &str, pad: char) -> Result<Self, Ibm3624Error> {
        let pad = pad.to_digit(16).ok_or(Ibm3624Error::Pad)? as u8;
        if data.is_empty() || data.len() > 16 {
            return Err(Ibm3624Error::ValidationData);
        }
        let mut nibbles = [pad; 16];
        for (slot, c) in nibbles.iter_mut().zip(data.chars()) {
            *slot = c.to_digit(16).ok_or(Ibm3624Error::ValidationData)? as u8;
        }
        let mut block = [0u8; 8];
        for (b, pair) in block.iter_mut().zip(nibbles.chunks_exact(2)) {
            *b = (pair[0] << 4) | pair[1];
        }
        Ok(Self(block))
    }

    /// `length` PAN digits from 0-based position `start`, right-padded with `pad`.
    pub fn from_pan(pan: &Pan, start: usize, length: usize, pad: char) -> Result<Self, Ibm3624Error> {
        let end = start.checked_add(length).ok_or(Ibm3624Error::ValidationData)?;
        let slice = pan.expose().get(start..end).ok_or(Ibm3624Error::ValidationData)?;
        Self::new(slice, pad)
    }
}

impl fmt::Debug for ValidationData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Usually PAN digits: as redacted as the PAN itself.
        f.write_str("ValidationData(****)")
    }
}

/// An IBM 3624 PIN offset: 4 to 12 decimal digits, one per PIN digit.
#[derive(Clone, Copy)]
pub struct PinOffset {
    digits: [u8; 12],
    len: u8,
}

impl PinOffset {
    /// Parses 4 to 12 decimal digits.
    pub fn parse(s: &str) -> Result<Self, Ibm3624Error> {
        let bytes = s.as_bytes();
        if !(Pin::MIN_LEN..=Pin::MAX_LEN).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(Ibm3624Error::Offset);
        }
        let mut digits = [0u8; 12];
        digits[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            digits,
            len: bytes.len() as u8,
        })
    }

    /// The digits, as text (to store on the card record).
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored, so this cannot fail.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Number of digits, which is also the PIN length.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: an offset has at least 4 digits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn values(&self) -> impl Iterator<Item = u8> + '_ {
        self.as_str().bytes().map(|b| b - b'0')
    }
}

impl ConstantTimeEq for PinOffset {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.digits.ct_eq(&other.digits) & self.len.ct_eq(&other.len)
    }
}

impl PartialEq for PinOffset {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for PinOffset {}

impl fmt::Debug for PinOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // With the PVK, an offset gives the PIN back: keep it out of logs.
        f.write_str("PinOffset(****)")
    }
}

/// The 16 decimalised digits of TDES(PVK, validation data).
fn intermediate_digits(pvk: &[u8; 16], table: &DecimalizationTable, data: &ValidationData) -> Zeroizing<[u8; 16]> {
    let mut block = Zeroizing::new(data.0);
    let cipher = TdesEde2::new(GenericArray::from_slice(pvk));
    cipher.encrypt_block(GenericArray::from_mut_slice(&mut block[..]));
    let mut digits = Zeroizing::new([0u8; 16]);
    for (pair, b) in digits.chunks_exact_mut(2).zip(block.iter()) {
        pair[0] = table.0[usize::from(b >> 4)];
        pair[1] = table.0[usize::from(b & 0x0F)];
    }
    digits
}

/// The natural PIN of `pin_len` digits (4..=12) under the double-length `pvk`.
pub fn natural_pin(
    pvk: &[u8; 16],
    table: &DecimalizationTable,
    data: &ValidationData,
    pin_len: usize,
) -> Result<Pin, Ibm3624Error> {
    if !(Pin::MIN_LEN..=Pin::MAX_LEN).contains(&pin_len) {
        return Err(Ibm3624Error::PinLength);
    }
    let digits = intermediate_digits(pvk, table, data);
    Pin::from_digit_values(&digits[..pin_len]).map_err(|_| Ibm3624Error::PinLength)
}

/// The offset that turns the natural PIN into `pin`: (PIN − natural) mod 10, digit-wise.
pub fn generate_offset(pvk: &[u8; 16], table: &DecimalizationTable, data: &ValidationData, pin: &Pin) -> PinOffset {
    let natural = intermediate_digits(pvk, table, data);
    let mut digits = [0u8; 12];
    for ((slot, p), n) in digits.iter_mut().zip(pin.digit_values()).zip(natural.iter()) {
        *slot = b'0' + (p + 10 - n) % 10;
    }
    PinOffset {
        digits,
        // Pin guarantees 4..=12 digits.
        len: pin.len() as u8,
    }
}

/// The customer PIN given its offset: (natural + offset) mod 10, digit-wise.
pub fn pin_from_offset(
    pvk: &[u8; 16],
    table: &DecimalizationTable,
    data: &ValidationData,
    offset: &PinOffset,
) -> Result<Pin, Ibm3624Error> {
    let natural = intermediate_digits(pvk, table, data);
    let mut digits = Zeroizing::new([0u8; 12]);
    for ((slot, o), n) in digits.iter_mut().zip(offset.values()).zip(natural.iter()) {
        *slot = (n + o) % 10;
    }
    // Cannot fail (digits 0..=9, 4..=12 of them); typed rather than unwrapped.
    Pin::from_digit_values(&digits[..offset.len()]).map_err(|_| Ibm3624Error::Offset)
}

/// True when `pin` and `offset` agree for this validation data; constant time.
pub fn verify_offset(
    pvk: &[u8; 16],
    table: &DecimalizationTable,
    data: &ValidationData,
    pin: &Pin,
    offset: &PinOffset,
) -> bool {
    generate_offset(pvk, table, data, pin).ct_eq(offset).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PVK: [u8; 16] = [
        0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
    ];

    fn table() -> DecimalizationTable {
        DecimalizationTable::parse("1234567890123456").unwrap()
    }

    fn data() -> ValidationData {
        ValidationData::new("1122334455667788", 'F').unwrap()
    }

    fn offset(pin: &str) -> String {
        let pin = Pin::parse(pin).unwrap();
        generate_offset(&PVK, &table(), &data(), &pin).as_str().to_owned()
    }

    /// psec (via pin-security.md): PVK 0123456789ABCDEFFEDCBA9876543210, table
    /// 1234567890123456, validation data 1122334455667788, pad F.
    #[test]
    fn pin_security_md_vectors() {
        assert_eq!(hex::encode_upper(PVK), "0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(natural_pin(&PVK, &table(), &data(), 4).unwrap().expose(), "4524");
        assert_eq!(offset("1234"), "7710");
        assert_eq!(offset("0000"), "6586");
        assert_eq!(offset("1111"), "7697");
        assert_eq!(offset("5635"), "1111");
    }

    /// The same vectors backwards: psec tests/test_pin.py `test_generate_ibm3624_pin`.
    #[test]
    fn pin_from_offset_vectors_psec() {
        for (off, pin) in [
            ("0000", "4524"),
            ("1111", "5635"),
            ("6586", "0000"),
            ("7697", "1111"),
            ("7710", "1234"),
        ] {
            let off = PinOffset::parse(off).unwrap();
            assert_eq!(pin_from_offset(&PVK, &table(), &data(), &off).unwrap().expose(), pin);
        }
    }

    /// psec tests/test_pin.py: validation data cut from PAN 1122334455667788
    /// at (offset, length) and padded.
    #[test]
    fn pan_slice_vectors_psec() {
        let pan = Pan::parse("1122334455667788").unwrap();
        for (start, len, pad, natural) in [
            (0, 16, 'F', "4524"),
            (0, 16, 'f', "4524"),
            (0, 14, 'F', "5518"),
            (0, 14, 'f', "5518"),
            (1, 14, '1', "3675"),
            (2, 14, '1', "5550"),
        ] {
            let data = ValidationData::from_pan(&pan, start, len, pad).unwrap();
            assert_eq!(natural_pin(&PVK, &table(), &data, 4).unwrap().expose(), natural);
            let pin = Pin::parse(natural).unwrap();
            assert_eq!(generate_offset(&PVK, &table(), &data, &pin).as_str(), "0000");
        }
    }

    #[test]
    fn verify_offset_accepts_only_the_right_pin() {
        let off = PinOffset::parse("7710").unwrap();
        assert!(verify_offset(
            &PVK,
            &table(),
            &data(),
            &Pin::parse("1234").unwrap(),
            &off
        ));
        assert!(!verify_offset(
            &PVK,
            &table(),
            &data(),
            &Pin::parse("1235").unwrap(),
            &off
        ));
        assert!(!verify_offset(
            &PVK,
            &table(),
            &data(),
            &Pin::parse("12340").unwrap(),
            &off
        ));
    }

    #[test]
    fn rejects_bad_inputs() {
        assert_eq!(
            DecimalizationTable::parse("123456789012345").unwrap_err(),
            Ibm3624Error::Table
        );
        assert_eq!(
            DecimalizationTable::parse("123456789012345A").unwrap_err(),
            Ibm3624Error::Table
        );
        assert_eq!(ValidationData::new("1122", 'X').unwrap_err(), Ibm3624Error::Pad);
        assert_eq!(ValidationData::new("", 'F').unwrap_err(), Ibm3624Error::ValidationData);
        assert_eq!(
            ValidationData::new("11223344556677889", 'F').unwrap_err(),
            Ibm3624Error::ValidationData
        );
        assert_eq!(
            ValidationData::new("11G2", 'F').unwrap_err(),
            Ibm3624Error::ValidationData
        );
        let pan = Pan::parse("1122334455667788").unwrap();
        assert_eq!(
            ValidationData::from_pan(&pan, 1, 16, 'F').unwrap_err(),
            Ibm3624Error::ValidationData
        );
        assert_eq!(
            ValidationData::from_pan(&pan, usize::MAX, 2, 'F').unwrap_err(),
            Ibm3624Error::ValidationData
        );
        assert_eq!(PinOffset::parse("000").unwrap_err(), Ibm3624Error::Offset);
        assert_eq!(PinOffset::parse("000A").unwrap_err(), Ibm3624Error::Offset);
        assert_eq!(
            natural_pin(&PVK, &table(), &data(), 13).unwrap_err(),
            Ibm3624Error::PinLength
        );
        assert_eq!(format!("{:?}", PinOffset::parse("7710").unwrap()), "PinOffset(****)");
    }

    proptest! {
        #[test]
        fn offset_round_trips(pvk in any::<[u8; 16]>(), table in "[0-9]{16}", data in "[0-9A-F]{1,16}", pin in "[0-9]{4,12}") {
            let table = DecimalizationTable::parse(&table).unwrap();
            let data = ValidationData::new(&data, 'F').unwrap();
            let pin = Pin::parse(&pin).unwrap();
            let off = generate_offset(&pvk, &table, &data, &pin);
            prop_assert_eq!(off.len(), pin.len());
            prop_assert_eq!(pin_from_offset(&pvk, &table, &data, &off).unwrap(), pin.clone());
            prop_assert!(verify_offset(&pvk, &table, &data, &pin, &off));
        }
    }
}
