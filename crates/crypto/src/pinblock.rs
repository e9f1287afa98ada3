//! ISO 9564-1 PIN blocks: formats 0, 1 and 3 (8 bytes, under TDES) and
//! format 4 (16 bytes, under AES).
//!
//! Clear layouts, in nibbles (P = PIN digit, N = PIN length 4..C):
//!
//! - format 0: `0 N P..P F..F` XOR `0000` + 12 rightmost PAN digits excluding
//!   the check digit;
//! - format 1: `1 N P..P T..T`, T a transaction-unique fill, no PAN;
//! - format 3: as format 0, with fill nibbles drawn from A..F;
//! - format 4: PIN field `4 N P..P A..A` (16 nibbles) + 8 random bytes, PAN
//!   field `M` + PAN digits padded with 0, block `E(E(PIN field) XOR PAN field)`.
//!
//! Nothing here allocates. Intermediate PIN material lives in stack buffers
//! wrapped in [`Zeroizing`], wiped on every exit path (best effort: moves may
//! leave copies the compiler does not tell us about). Returned clear blocks
//! and fields are the caller's to wipe.
//!
//! **Decoding errors are an oracle.** Telling a remote caller *which* check
//! failed (format, length, digit, fill) lets an attacker who can replay a
//! block against chosen PANs learn PIN digits (the format-0 attacks on HSM
//! APIs, e.g. Clulow 2003). [`PinBlockError`] is typed for our own
//! diagnostics; the edge must answer every variant with one generic error.
//!
//! **What a wrong PAN does.** A PIN block carries no PAN checksum, so a wrong
//! PAN is never reported as such:
//!
//! - format 0: every PAN-field nibble overlays either a PIN digit or an `F`
//!   fill nibble, so a PAN whose field differs yields [`PinBlockError::Fill`],
//!   [`PinBlockError::PinDigit`] or a *different* PIN, never the right PIN;
//! - format 3: a difference that falls on fill nibbles can turn one A..F fill
//!   value into another and go unnoticed: the *right* PIN comes back. Format 3
//!   binds the PAN only over the PIN digit positions;
//! - format 4: the PAN enters between two AES encryptions, so a wrong PAN
//!   scrambles the whole PIN field; decoding fails except with probability
//!   about 2^-24 (a random field passing every check), and then yields an
//!   unrelated PIN;
//! - formats 0 and 3 only see the 12 digits left of the check digit: PANs
//!   that agree on those are the same PAN to them.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use des::{TdesEde2, TdesEde3};
use rand::{CryptoRng, Rng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::secret::{Pan, Pin};

/// Why a PIN block cannot be built or read. The messages never quote PIN
/// digits, PAN digits or block contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinBlockError {
    #[error("not an ISO 9564 format {expected} PIN block")]
    Format { expected: u8 },
    #[error("PIN length field is outside 4 to 12")]
    PinLength,
    #[error("PIN field holds a non-decimal digit")]
    PinDigit,
    #[error("fill digits do not match ISO 9564 format {format}")]
    Fill { format: u8 },
    #[error("TDES PIN keys are 16 or 24 bytes")]
    TdesKeyLength,
    #[error("AES PIN keys are 16, 24 or 32 bytes")]
    AesKeyLength,
    #[error("PAN must be 1 to 19 decimal digits")]
    PanDigits,
}

/// Nibbles in a clear 8-byte block, or in the first half of a format-4 PIN field.
const NIBBLES: usize = 16;

const FORMAT_0: u8 = 0x0;
const FORMAT_1: u8 = 0x1;
const FORMAT_3: u8 = 0x3;
const FORMAT_4: u8 = 0x4;

// --- nibble plumbing -------------------------------------------------------

fn unpack(bytes: &[u8], nibbles: &mut [u8]) {
    for (pair, b) in nibbles.chunks_exact_mut(2).zip(bytes) {
        pair[0] = b >> 4;
        pair[1] = b & 0x0F;
    }
}

fn pack(nibbles: &[u8], bytes: &mut [u8]) {
    for (b, pair) in bytes.iter_mut().zip(nibbles.chunks_exact(2)) {
        *b = (pair[0] << 4) | pair[1];
    }
}

fn xor_in_place(target: &mut [u8], mask: &[u8]) {
    for (t, m) in target.iter_mut().zip(mask) {
        *t ^= m;
    }
}

/// The 16-nibble PIN field `C N P..P` followed by `fill(i)` for each
/// remaining nibble position `i`, packed into 8 bytes.
fn pin_field(control: u8, pin: &Pin, mut fill: impl FnMut(usize) -> u8) -> Zeroizing<[u8; 8]> {
    let mut nibbles = Zeroizing::new([0u8; NIBBLES]);
    nibbles[0] = control;
    // Pin guarantees 4..=12 digits, so the length fits one nibble.
    nibbles[1] = pin.len() as u8;
    for (slot, digit) in nibbles[2..].iter_mut().zip(pin.digit_values()) {
        *slot = digit;
    }
    for (i, slot) in nibbles.iter_mut().enumerate().skip(2 + pin.len()) {
        *slot = fill(i) & 0x0F;
    }
    let mut field = Zeroizing::new([0u8; 8]);
    pack(&nibbles[..], &mut field[..]);
    field
}

/// Reads `C N P..P fill..` and checks every nibble; `fill_ok` judges the fill.
fn parse_pin_field(field: &[u8; 8], control: u8, fill_ok: impl Fn(u8) -> bool) -> Result<Pin, PinBlockError> {
    let mut nibbles = Zeroizing::new([0u8; NIBBLES]);
    unpack(field, &mut nibbles[..]);
    if nibbles[0] != control {
        return Err(PinBlockError::Format { expected: control });
    }
    let len = usize::from(nibbles[1]);
    if !(Pin::MIN_LEN..=Pin::MAX_LEN).contains(&len) {
        return Err(PinBlockError::PinLength);
    }
    let (digits, fill) = nibbles[2..].split_at(len);
    if !fill.iter().all(|&f| fill_ok(f)) {
        return Err(PinBlockError::Fill { format: control });
    }
    if digits.iter().any(|&d| d > 9) {
        return Err(PinBlockError::PinDigit);
    }
    Pin::from_digit_values(digits).map_err(|_| PinBlockError::PinDigit)
}

fn is_a_to_f(nibble: u8) -> bool {
    (0xA..=0xF).contains(&nibble)
}

/// Format 0/3 PAN field: `0000` then the 12 rightmost PAN digits excluding
/// the check digit, right-justified with leading zeros when there are fewer
/// (a 12-digit PAN has 11).
fn iso0_pan_field(pan: &Pan) -> [u8; 8] {
    let body = pan.expose_bytes().split_last().map_or(&[][..], |(_, body)| body);
    let take = body.len().min(12);
    let mut nibbles = [0u8; NIBBLES];
    for (slot, b) in nibbles[NIBBLES - take..].iter_mut().zip(&body[body.len() - take..]) {
        *slot = b - b'0';
    }
    let mut field = [0u8; 8];
    pack(&nibbles, &mut field);
    field
}

// --- formats 0, 1, 3: clear blocks ------------------------------------------

/// Clear ISO format 0 block for `pin` bound to `pan`.
pub fn encode_format0(pin: &Pin, pan: &Pan) -> [u8; 8] {
    let mut block = pin_field(FORMAT_0, pin, |_| 0xF);
    xor_in_place(&mut block[..], &iso0_pan_field(pan));
    *block
}

/// Reads a clear ISO format 0 block; the fill must be all `F`.
pub fn decode_format0(block: &[u8; 8], pan: &Pan) -> Result<Pin, PinBlockError> {
    let mut field = Zeroizing::new(*block);
    xor_in_place(&mut field[..], &iso0_pan_field(pan));
    parse_pin_field(&field, FORMAT_0, |f| f == 0xF)
}

/// Clear ISO format 1 block, fill nibbles drawn from `rng`.
pub fn encode_format1<R: RngCore + CryptoRng>(pin: &Pin, rng: &mut R) -> [u8; 8] {
    let mut fill = Zeroizing::new([0u8; 8]);
    rng.fill_bytes(&mut fill[..]);
    encode_format1_with_fill(pin, &fill)
}

/// Clear ISO format 1 block whose fill nibbles are those of `fill` at the
/// same positions (the first 2 + PIN-length nibbles of `fill` are ignored).
pub fn encode_format1_with_fill(pin: &Pin, fill: &[u8; 8]) -> [u8; 8] {
    let mut fill_nibbles = Zeroizing::new([0u8; NIBBLES]);
    unpack(fill, &mut fill_nibbles[..]);
    *pin_field(FORMAT_1, pin, |i| fill_nibbles[i])
}

/// Reads a clear ISO format 1 block; any fill is accepted, as the standard allows.
pub fn decode_format1(block: &[u8; 8]) -> Result<Pin, PinBlockError> {
    parse_pin_field(block, FORMAT_1, |_| true)
}

/// Clear ISO format 3 block for `pin` bound to `pan`, fill drawn uniformly from A..F.
pub fn encode_format3<R: RngCore + CryptoRng>(pin: &Pin, pan: &Pan, rng: &mut R) -> [u8; 8] {
    let mut block = pin_field(FORMAT_3, pin, |_| rng.gen_range(0xA..=0xF));
    xor_in_place(&mut block[..], &iso0_pan_field(pan));
    *block
}

/// Clear ISO format 3 block with the fill nibbles of `fill` at the same
/// positions; fails with [`PinBlockError::Fill`] if one of them is not A..F.
pub fn encode_format3_with_fill(pin: &Pin, pan: &Pan, fill: &[u8; 8]) -> Result<[u8; 8], PinBlockError> {
    let mut fill_nibbles = Zeroizing::new([0u8; NIBBLES]);
    unpack(fill, &mut fill_nibbles[..]);
    if !fill_nibbles[2 + pin.len()..].iter().all(|&f| is_a_to_f(f)) {
        return Err(PinBlockError::Fill { format: FORMAT_3 });
    }
    let mut block = pin_field(FORMAT_3, pin, |i| fill_nibbles[i]);
    xor_in_place(&mut block[..], &iso0_pan_field(pan));
    Ok(*block)
}

/// Reads a clear ISO format 3 block; every fill nibble must be A..F.
pub fn decode_format3(block: &[u8; 8], pan: &Pan) -> Result<Pin, PinBlockError> {
    let mut field = Zeroizing::new(*block);
    xor_in_place(&mut field[..], &iso0_pan_field(pan));
    parse_pin_field(&field, FORMAT_3, is_a_to_f)
}

// --- formats 0, 1, 3 under TDES ---------------------------------------------

/// The ISO formats that travel as one 8-byte block under a TDES key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TdesFormat {
    /// ISO 9564-1 format 0 (ANSI X9.8), PAN-bound, `F` fill.
    Format0,
    /// ISO 9564-1 format 1, no PAN, transaction-unique fill.
    Format1,
    /// ISO 9564-1 format 3, PAN-bound, random A..F fill.
    Format3,
}

enum TdesKey {
    Double(TdesEde2),
    Triple(TdesEde3),
}

impl TdesKey {
    fn new(key: &[u8]) -> Result<Self, PinBlockError> {
        let bad = |_| PinBlockError::TdesKeyLength;
        match key.len() {
            16 => TdesEde2::new_from_slice(key).map(Self::Double).map_err(bad),
            24 => TdesEde3::new_from_slice(key).map(Self::Triple).map_err(bad),
            _ => Err(PinBlockError::TdesKeyLength),
        }
    }

    fn encrypt(&self, block: &mut [u8; 8]) {
        let block = GenericArray::from_mut_slice(&mut block[..]);
        match self {
            Self::Double(c) => c.encrypt_block(block),
            Self::Triple(c) => c.encrypt_block(block),
        }
    }

    fn decrypt(&self, block: &mut [u8; 8]) {
        let block = GenericArray::from_mut_slice(&mut block[..]);
        match self {
            Self::Double(c) => c.decrypt_block(block),
            Self::Triple(c) => c.decrypt_block(block),
        }
    }
}

/// Encodes `pin` in `format` and TDES-ECB encrypts the block under `key`
/// (16 bytes = K1K2K1, or 24 bytes = K1K2K3). Format 1 ignores `pan`.
pub fn encrypt_tdes<R: RngCore + CryptoRng>(
    key: &[u8],
    format: TdesFormat,
    pin: &Pin,
    pan: &Pan,
    rng: &mut R,
) -> Result<[u8; 8], PinBlockError> {
    let key = TdesKey::new(key)?;
    let mut block = Zeroizing::new(match format {
        TdesFormat::Format0 => encode_format0(pin, pan),
        TdesFormat::Format1 => encode_format1(pin, rng),
        TdesFormat::Format3 => encode_format3(pin, pan, rng),
    });
    key.encrypt(&mut block);
    Ok(*block)
}

/// Decrypts a TDES-encrypted block and decodes it as `format`. Format 1 ignores `pan`.
pub fn decrypt_tdes(key: &[u8], format: TdesFormat, block: &[u8; 8], pan: &Pan) -> Result<Pin, PinBlockError> {
    let key = TdesKey::new(key)?;
    let mut clear = Zeroizing::new(*block);
    key.decrypt(&mut clear);
    match format {
        TdesFormat::Format0 => decode_format0(&clear, pan),
        TdesFormat::Format1 => decode_format1(&clear),
        TdesFormat::Format3 => decode_format3(&clear, pan),
    }
}

// --- format 4 ----------------------------------------------------------------

/// Clear format-4 PIN field: `4 N P..P A..A` then the 8 bytes of `random`.
pub fn format4_pin_field(pin: &Pin, random: &[u8; 8]) -> [u8; 16] {
    let head = pin_field(FORMAT_4, pin, |_| 0xA);
    let mut field = [0u8; 16];
    field[..8].copy_from_slice(&head[..]);
    field[8..].copy_from_slice(random);
    field
}

/// Reads a clear format-4 PIN field; the fill up to nibble 16 must be all `A`.
pub fn decode_format4_pin_field(field: &[u8; 16]) -> Result<Pin, PinBlockError> {
    let mut head = Zeroizing::new([0u8; 8]);
    head.copy_from_slice(&field[..8]);
    parse_pin_field(&head, FORMAT_4, |f| f == 0xA)
}

/// The clear format-4 PAN field, built once per PAN and reusable.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Format4PanField([u8; 16]);

impl Format4PanField {
    /// PAN field of a [`Pan`] (12 to 19 digits).
    pub fn new(pan: &Pan) -> Self {
        Self::from_valid_digits(pan.expose_bytes())
    }

    /// PAN field of 1 to 19 ASCII digits; shorter than 12 is right-justified
    /// in 12 with leading zeros, as ISO 9564-1 specifies.
    pub fn from_digits(digits: &str) -> Result<Self, PinBlockError> {
        let digits = digits.as_bytes();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(PinBlockError::PanDigits);
        }
        Ok(Self::from_valid_digits(digits))
    }

    fn from_valid_digits(digits: &[u8]) -> Self {
        let mut nibbles = [0u8; 32];
        // M = PAN length − 12 for 12..=19 digits, 0 for shorter PANs.
        nibbles[0] = digits.len().saturating_sub(12) as u8;
        let start = 1 + 12usize.saturating_sub(digits.len());
        for (slot, b) in nibbles[start..].iter_mut().zip(digits) {
            *slot = b - b'0';
        }
        let mut field = [0u8; 16];
        pack(&nibbles, &mut field);
        nibbles.zeroize();
        Self(field)
    }

    /// The 16 bytes of the field.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for Format4PanField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Format4PanField(****)")
    }
}

#[derive(Clone)]
enum AesKey {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

/// An AES PIN key with its round keys expanded once: build it when the key
/// is loaded and reuse it, so the verification hot path does two AES block
/// operations and no key schedule. The round keys are wiped on drop only if
/// the `aes` crate's `zeroize` feature is enabled.
#[derive(Clone)]
pub struct Format4Key(AesKey);

impl Format4Key {
    /// Expands an AES-128, AES-192 or AES-256 key.
    pub fn new(key: &[u8]) -> Result<Self, PinBlockError> {
        let bad = |_| PinBlockError::AesKeyLength;
        let key = match key.len() {
            16 => Aes128::new_from_slice(key).map(AesKey::Aes128).map_err(bad)?,
            24 => Aes192::new_from_slice(key).map(AesKey::Aes192).map_err(bad)?,
            32 => Aes256::new_from_slice(key).map(AesKey::Aes256).map_err(bad)?,
            _ => return Err(PinBlockError::AesKeyLength),
        };
        Ok(Self(key))
    }

    fn encrypt_block(&self, block: &mut [u8; 16]) {
        let block = GenericArray::from_mut_slice(&mut block[..]);
        match &self.0 {
            AesKey::Aes128(c) => c.encrypt_block(block),
            AesKey::Aes192(c) => c.encrypt_block(block),
            AesKey::Aes256(c) => c.encrypt_block(block),
        }
    }

    fn decrypt_block(&self, block: &mut [u8; 16]) {
        let block = GenericArray::from_mut_slice(&mut block[..]);
        match &self.0 {
            AesKey::Aes128(c) => c.decrypt_block(block),
            AesKey::Aes192(c) => c.decrypt_block(block),
            AesKey::Aes256(c) => c.decrypt_block(block),
        }
    }

    /// Format-4 block for `pin` bound to `pan`, random half drawn from `rng`.
    pub fn encrypt<R: RngCore + CryptoRng>(&self, pin: &Pin, pan: &Format4PanField, rng: &mut R) -> [u8; 16] {
        let mut random = Zeroizing::new([0u8; 8]);
        rng.fill_bytes(&mut random[..]);
        self.encrypt_with_fill(pin, pan, &random)
    }

    /// Format-4 block with an explicit random half (`fill`), for test vectors.
    pub fn encrypt_with_fill(&self, pin: &Pin, pan: &Format4PanField, fill: &[u8; 8]) -> [u8; 16] {
        let mut block = Zeroizing::new(format4_pin_field(pin, fill));
        self.encrypt_block(&mut block);
        xor_in_place(&mut block[..], pan.as_bytes());
        self.encrypt_block(&mut block);
        *block
    }

    /// Decrypts a format-4 block bound to `pan` and reads the PIN.
    pub fn decrypt(&self, block: &[u8; 16], pan: &Format4PanField) -> Result<Pin, PinBlockError> {
        let mut field = Zeroizing::new(*block);
        self.decrypt_block(&mut field);
        xor_in_place(&mut field[..], pan.as_bytes());
        self.decrypt_block(&mut field);
        decode_format4_pin_field(&field)
    }
}

impl std::fmt::Debug for Format4Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = match self.0 {
            AesKey::Aes128(_) => 128,
            AesKey::Aes192(_) => 192,
            AesKey::Aes256(_) => 256,
        };
        write!(f, "Format4Key(AES-{bits}, redacted)")
    }
}

/// Format-4 block for `pin` and `pan` under the AES `key`, random half from `rng`.
pub fn encrypt_format4<R: RngCore + CryptoRng>(
    key: &[u8],
    pin: &Pin,
    pan: &Pan,
    rng: &mut R,
) -> Result<[u8; 16], PinBlockError> {
    Ok(Format4Key::new(key)?.encrypt(pin, &Format4PanField::new(pan), rng))
}

/// Format-4 block with an explicit random half (`fill`), for test vectors.
pub fn encrypt_format4_with_fill(key: &[u8], pin: &Pin, pan: &Pan, fill: &[u8; 8]) -> Result<[u8; 16], PinBlockError> {
    Ok(Format4Key::new(key)?.encrypt_with_fill(pin, &Format4PanField::new(pan), fill))
}

/// Decrypts a format-4 block under the AES `key`; prefer [`Format4Key`] on hot paths.
pub fn decrypt_format4(key: &[u8], block: &[u8; 16], pan: &Pan) -> Result<Pin, PinBlockError> {
    Format4Key::new(key)?.decrypt(block, &Format4PanField::new(pan))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    fn pin(s: &str) -> Pin {
        Pin::parse(s).unwrap()
    }

    fn pan(s: &str) -> Pan {
        Pan::parse(s).unwrap()
    }

    fn b8(s: &str) -> [u8; 8] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn b16(s: &str) -> [u8; 16] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn hex_upper(b: &[u8]) -> String {
        hex::encode_upper(b)
    }

    const AES_KEY: &str = "00112233445566778899AABBCCDDEEFF";

    fn aes_key() -> Vec<u8> {
        hex::decode(AES_KEY).unwrap()
    }

    // --- vectors from shared/docs/pin-security.md --------------------------

    /// Format 0 vectors: psec tests/test_pinblock.py (via pin-security.md).
    #[test]
    fn format0_vectors_psec() {
        for (p, a, block) in [
            ("1234", "5555555551234567", "041261AAAAEDCBA9"),
            ("123456789012", "5555555551234567", "0C1261032D8226A9"),
            ("1234", "5544332211009966", "041277CDDEEFF669"),
        ] {
            assert_eq!(hex_upper(&encode_format0(&pin(p), &pan(a))), block);
            assert_eq!(decode_format0(&b8(block), &pan(a)).unwrap().expose(), p);
        }
    }

    /// Format 3 decode vectors: psec (via pin-security.md).
    #[test]
    fn format3_decode_vectors_psec() {
        let a = pan("5555555551234567");
        assert_eq!(decode_format3(&b8("341261AAAAEDCBA9"), &a).unwrap().expose(), "1234");
        assert_eq!(
            decode_format3(&b8("3C1261032D8226A9"), &a).unwrap().expose(),
            "123456789012"
        );
    }

    /// The same vectors rebuilt with an explicit fill (all F, within A..F).
    #[test]
    fn format3_encode_with_fill_matches_the_decode_vectors() {
        let a = pan("5555555551234567");
        let fill = [0xFF; 8];
        assert_eq!(
            hex_upper(&encode_format3_with_fill(&pin("1234"), &a, &fill).unwrap()),
            "341261AAAAEDCBA9"
        );
        assert_eq!(
            hex_upper(&encode_format3_with_fill(&pin("123456789012"), &a, &fill).unwrap()),
            "3C1261032D8226A9"
        );
    }

    /// Format 4 encode, fill FF x 8: psec and paysec tests (via pin-security.md).
    #[test]
    fn format4_encode_vector_psec_paysec() {
        let block =
            encrypt_format4_with_fill(&aes_key(), &pin("1234"), &pan("1234567890123456789"), &[0xFF; 8]).unwrap();
        assert_eq!(hex_upper(&block), "28B41FDDD29B743E93124BD8E32D921E");
    }

    /// Format 4 decode vectors, AES-128 key 00112233…EEFF (via pin-security.md).
    #[test]
    fn format4_decode_vectors() {
        for (block, a, p) in [
            ("52DB178C6EDCE52E3A70F7FBC8E9C758", "1234567890123456", "1234"),
            ("847A0209C659E4C4A79CA6A2A2217D31", "123456789012345678", "123456"),
            ("018BFEC8B5EF60181A327AD8325A2BA4", "1234567890123456789", "12345678"),
        ] {
            assert_eq!(decrypt_format4(&aes_key(), &b16(block), &pan(a)).unwrap().expose(), p);
        }
    }

    /// Format 4 decode with the one-digit PAN `1` (M = 0, right-justified).
    #[test]
    fn format4_decode_vector_short_pan() {
        let key = Format4Key::new(&aes_key()).unwrap();
        let field = Format4PanField::from_digits("1").unwrap();
        assert_eq!(hex_upper(field.as_bytes()), "00000000000010000000000000000000");
        let got = key.decrypt(&b16("39B69B1B91FE05D48F7EF0D68EB2CBD6"), &field).unwrap();
        assert_eq!(got.expose(), "123456");
    }

    /// ep2 spec 8.0.0 §8.4 (via pin-security.md): key, block, PAN, PIN field.
    #[test]
    fn format4_vector_ep2() {
        let key = hex::decode("C1D0F8FB4958670DBA40AB1F3752EF0D").unwrap();
        let a = pan("432198765432109870");
        let block = b16("CC17F65586BFD0953010226C4FC5B3CA");
        let field = b16("441234AAAAAAAAAA146C6601F4A8035C");
        assert_eq!(decrypt_format4(&key, &block, &a).unwrap().expose(), "1234");
        assert_eq!(decode_format4_pin_field(&field).unwrap().expose(), "1234");
        // The PIN field's random half, fed back in, gives the same block.
        let random: [u8; 8] = field[8..].try_into().unwrap();
        assert_eq!(format4_pin_field(&pin("1234"), &random), field);
        assert_eq!(
            encrypt_format4_with_fill(&key, &pin("1234"), &a, &random).unwrap(),
            block
        );
    }

    /// Format 4 PAN field: psec docstring (via pin-security.md).
    #[test]
    fn format4_pan_field_vector() {
        let field = Format4PanField::from_digits("112233445566778899").unwrap();
        assert_eq!(hex_upper(field.as_bytes()), "61122334455667788990000000000000");
        assert_eq!(&Format4PanField::new(&pan("112233445566778899")), &field);
    }

    // --- further known answers and structure ---------------------------------

    /// TDES: the format 0 and 3 vectors above encrypted under
    /// 0123456789ABCDEFFEDCBA9876543210 (K1K2K1), computed with pyca/cryptography.
    #[test]
    fn tdes_known_answers() {
        let key = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let a = pan("5555555551234567");
        let mut rng = StdRng::seed_from_u64(0);
        let enc = encrypt_tdes(&key, TdesFormat::Format0, &pin("1234"), &a, &mut rng).unwrap();
        assert_eq!(hex_upper(&enc), "230B4C43B8BA2C5C");
        let got = decrypt_tdes(&key, TdesFormat::Format3, &b8("5F58BF6070565524"), &a).unwrap();
        assert_eq!(got.expose(), "1234");
        // The same key as K1K2K3 with K3 = K1 is the same cipher.
        let mut key3 = key.clone();
        key3.extend_from_slice(&key[..8]);
        let got = decrypt_tdes(&key3, TdesFormat::Format0, &enc, &a).unwrap();
        assert_eq!(got.expose(), "1234");
    }

    #[test]
    fn format1_layout_and_fill() {
        let fill = b8("0123456789ABCDEF");
        let block = encode_format1_with_fill(&pin("1234"), &fill);
        assert_eq!(hex_upper(&block), "1412346789ABCDEF");
        assert_eq!(decode_format1(&block).unwrap().expose(), "1234");
        let block = encode_format1_with_fill(&pin("123456789012"), &fill);
        assert_eq!(hex_upper(&block), "1C123456789012EF");
    }

    #[test]
    fn short_pan_field_for_formats_0_and_3_is_zero_padded() {
        // 12-digit PAN: 11 digits left of the check digit, right-justified.
        assert_eq!(hex_upper(&iso0_pan_field(&pan("123456789012"))), "0000012345678901");
        assert_eq!(hex_upper(&iso0_pan_field(&pan("5555555551234567"))), "0000555555123456");
    }

    #[test]
    fn decoders_reject_each_malformed_field() {
        let a = pan("5555555551234567");
        // The psec format-0 error vectors, checked for our variant.
        for (block, err) in [
            ("241261AAAAEDCBA9", PinBlockError::Format { expected: 0 }),
            ("0F1261AAAAEDCBA9", PinBlockError::PinLength),
            ("021261AAAAEDCBA9", PinBlockError::PinLength),
            ("041261AAAAEDCBAA", PinBlockError::Fill { format: 0 }),
            ("051261AAAAEDCBA9", PinBlockError::PinDigit),
        ] {
            assert_eq!(decode_format0(&b8(block), &a).unwrap_err(), err, "{block}");
        }
        // A non-decimal PIN digit with a valid fill.
        assert_eq!(
            decode_format1(&b8("14123AFFFFFFFFFF")).unwrap_err(),
            PinBlockError::PinDigit
        );
        // Format 3 rejects fill below A, which format 1 accepts.
        assert_eq!(
            decode_format3(&b8("341261AAAAEDCBA9"), &pan("5555555551234507")).unwrap_err(),
            PinBlockError::Fill { format: 3 }
        );
        assert_eq!(
            decode_format4_pin_field(&b16("441234AAAAAAAAA0146C6601F4A8035C")).unwrap_err(),
            PinBlockError::Fill { format: 4 }
        );
        assert_eq!(
            decode_format4_pin_field(&b16("341234AAAAAAAAAA146C6601F4A8035C")).unwrap_err(),
            PinBlockError::Format { expected: 4 }
        );
        assert_eq!(
            decode_format1(&b8("041234FFFFFFFFFF")).unwrap_err(),
            PinBlockError::Format { expected: 1 }
        );
    }

    #[test]
    fn errors_never_quote_the_block() {
        let a = pan("5555555551234567");
        let err = decode_format0(&b8("051261AAAAEDCBA9"), &a).unwrap_err();
        let text = err.to_string();
        for secret in ["1234", "5555", "0512"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn encode_format3_with_fill_rejects_fill_outside_a_to_f() {
        let err = encode_format3_with_fill(&pin("1234"), &pan("5555555551234567"), &[0x99; 8]);
        assert_eq!(err.unwrap_err(), PinBlockError::Fill { format: 3 });
        // Nibbles under the PIN are ignored, so only the tail must be A..F.
        let fill = b8("000000AAAAAAAAAA");
        assert!(encode_format3_with_fill(&pin("1234"), &pan("5555555551234567"), &fill).is_ok());
    }

    #[test]
    fn key_lengths_are_checked() {
        let mut rng = StdRng::seed_from_u64(0);
        let (p, a) = (pin("1234"), pan("5555555551234567"));
        for len in [0, 8, 15, 17, 32] {
            let err = encrypt_tdes(&vec![1; len], TdesFormat::Format0, &p, &a, &mut rng);
            assert_eq!(err.unwrap_err(), PinBlockError::TdesKeyLength, "{len}");
        }
        for len in [0, 8, 15, 17, 31, 33] {
            assert_eq!(Format4Key::new(&vec![1; len]).unwrap_err(), PinBlockError::AesKeyLength);
        }
        assert_eq!(Format4PanField::from_digits("").unwrap_err(), PinBlockError::PanDigits);
        assert_eq!(
            Format4PanField::from_digits("12345678901234567890").unwrap_err(),
            PinBlockError::PanDigits
        );
        assert_eq!(
            Format4PanField::from_digits("12a4").unwrap_err(),
            PinBlockError::PanDigits
        );
    }

    #[test]
    fn debug_is_redacted() {
        let key = Format4Key::new(&aes_key()).unwrap();
        let field = Format4PanField::new(&pan("5555555551234567"));
        assert_eq!(
            format!("{key:?} {field:?}"),
            "Format4Key(AES-128, redacted) Format4PanField(****)"
        );
    }

    // --- wrong PAN: what each format does (see the module docs) -------------

    #[test]
    fn format0_wrong_pan_in_a_fill_position_fails() {
        // PANs differing only in the last digit before the check digit.
        let block = encode_format0(&pin("1234"), &pan("5555555551234567"));
        assert_eq!(
            decode_format0(&block, &pan("5555555551234577")).unwrap_err(),
            PinBlockError::Fill { format: 0 }
        );
    }

    #[test]
    fn format0_wrong_pan_in_a_pin_position_changes_the_pin() {
        // PAN-field nibble 4 overlays the third PIN digit: 3 ^ 5 ^ 1 = 7.
        let block = encode_format0(&pin("123456789012"), &pan("5555555551234567"));
        let other = decode_format0(&block, &pan("5551555551234567")).unwrap();
        assert_eq!(other.expose(), "127456789012");
    }

    #[test]
    fn format3_wrong_pan_in_fill_positions_can_still_decode_the_right_pin() {
        // Documented weakness: F ^ 1 = E is still valid A..F fill.
        let block = b8("341261AAAAEDCBA9");
        let got = decode_format3(&block, &pan("5555555551234577")).unwrap();
        assert_eq!(got.expose(), "1234");
    }

    #[test]
    fn format4_wrong_pan_fails() {
        let block = b16("52DB178C6EDCE52E3A70F7FBC8E9C758");
        assert!(decrypt_format4(&aes_key(), &block, &pan("1234567890123457")).is_err());
    }

    // --- properties ----------------------------------------------------------

    fn any_pin() -> impl Strategy<Value = Pin> {
        "[0-9]{4,12}".prop_map(|s| Pin::parse(&s).unwrap())
    }

    fn any_pan() -> impl Strategy<Value = Pan> {
        "[0-9]{12,19}".prop_map(|s| Pan::parse(&s).unwrap())
    }

    fn any_tdes_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 16),
            proptest::collection::vec(any::<u8>(), 24)
        ]
    }

    fn any_aes_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 16),
            proptest::collection::vec(any::<u8>(), 24),
            proptest::collection::vec(any::<u8>(), 32)
        ]
    }

    fn any_tdes_format() -> impl Strategy<Value = TdesFormat> {
        prop_oneof![
            Just(TdesFormat::Format0),
            Just(TdesFormat::Format1),
            Just(TdesFormat::Format3)
        ]
    }

    proptest! {
        #[test]
        fn clear_blocks_round_trip(p in any_pin(), a in any_pan(), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            prop_assert_eq!(decode_format0(&encode_format0(&p, &a), &a).unwrap(), p.clone());
            prop_assert_eq!(decode_format1(&encode_format1(&p, &mut rng)).unwrap(), p.clone());
            let block = encode_format3(&p, &a, &mut rng);
            prop_assert_eq!(decode_format3(&block, &a).unwrap(), p.clone());
            let mut random = [0u8; 8];
            rng.fill_bytes(&mut random);
            let field = format4_pin_field(&p, &random);
            prop_assert_eq!(decode_format4_pin_field(&field).unwrap(), p);
        }

        #[test]
        fn tdes_round_trip(
            key in any_tdes_key(),
            format in any_tdes_format(),
            p in any_pin(),
            a in any_pan(),
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let block = encrypt_tdes(&key, format, &p, &a, &mut rng).unwrap();
            prop_assert_eq!(decrypt_tdes(&key, format, &block, &a).unwrap(), p);
        }

        #[test]
        fn format4_round_trip(key in any_aes_key(), p in any_pin(), a in any_pan(), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let block = encrypt_format4(&key, &p, &a, &mut rng).unwrap();
            prop_assert_eq!(decrypt_format4(&key, &block, &a).unwrap(), p.clone());
            // Fresh random half: the same PIN and PAN give a different block.
            prop_assert_ne!(encrypt_format4(&key, &p, &a, &mut rng).unwrap(), block);
        }

        #[test]
        fn format4_round_trip_short_pans(p in any_pin(), digits in "[0-9]{1,19}", seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let key = Format4Key::new(&aes_key()).unwrap();
            let field = Format4PanField::from_digits(&digits).unwrap();
            let block = key.encrypt(&p, &field, &mut rng);
            prop_assert_eq!(key.decrypt(&block, &field).unwrap(), p);
        }

        #[test]
        fn wrong_key_fails_or_differs(
            key in any_aes_key(),
            wrong in any_aes_key(),
            tkey in any_tdes_key(),
            twrong in any_tdes_key(),
            format in any_tdes_format(),
            p in any_pin(),
            a in any_pan(),
            seed in any::<u64>(),
        ) {
            prop_assume!(key != wrong && tkey != twrong);
            let mut rng = StdRng::seed_from_u64(seed);
            let block = encrypt_format4(&key, &p, &a, &mut rng).unwrap();
            if let Ok(other) = decrypt_format4(&wrong, &block, &a) {
                prop_assert_ne!(other, p.clone());
            }
            let block = encrypt_tdes(&tkey, format, &p, &a, &mut rng).unwrap();
            if let Ok(other) = decrypt_tdes(&twrong, format, &block, &a) {
                prop_assert_ne!(other, p);
            }
        }

        #[test]
        fn wrong_pan_fails_or_differs_for_formats_0_and_4(
            key in any_aes_key(),
            p in any_pin(),
            a in any_pan(),
            b in any_pan(),
            seed in any::<u64>(),
        ) {
            prop_assume!(iso0_pan_field(&a) != iso0_pan_field(&b));
            let mut rng = StdRng::seed_from_u64(seed);
            if let Ok(other) = decode_format0(&encode_format0(&p, &a), &b) {
                prop_assert_ne!(other, p.clone());
            }
            let block = encrypt_format4(&key, &p, &a, &mut rng).unwrap();
            if let Ok(other) = decrypt_format4(&key, &block, &b) {
                prop_assert_ne!(other, p);
            }
        }

        #[test]
        fn decoders_never_panic(
            raw8 in any::<[u8; 8]>(),
            raw16 in any::<[u8; 16]>(),
            key in any_aes_key(),
            tkey in any_tdes_key(),
            format in any_tdes_format(),
            a in any_pan(),
        ) {
            let _ = decode_format0(&raw8, &a);
            let _ = decode_format1(&raw8);
            let _ = decode_format3(&raw8, &a);
            let _ = decode_format4_pin_field(&raw16);
            let _ = decrypt_tdes(&tkey, format, &raw8, &a);
            let _ = decrypt_format4(&key, &raw16, &a);
        }

        #[test]
        fn decoded_pins_are_always_valid(raw8 in any::<[u8; 8]>()) {
            // Whatever passes the checks is a well-formed PIN of 4..=12 digits.
            if let Ok(p) = decode_format1(&raw8) {
                prop_assert!((4..=12).contains(&p.len()));
                prop_assert!(p.expose().bytes().all(|c| c.is_ascii_digit()));
            }
        }
    }
}
