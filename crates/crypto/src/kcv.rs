//! Key check values: three bytes, shown as 6 uppercase hex digits, that let
//! two custodians confirm they hold the same key without revealing it.
//!
//! Two conventions exist for AES and they give different answers for the same
//! key, so the method must be agreed with the other party:
//!
//! - [`aes_kcv`]: the legacy method, AES-ECB of a zero block (what TDES has
//!   always used, carried over);
//! - [`aes_cmac_kcv`]: AES-CMAC of a zero block, the method of ANSI X9.24-1
//!   for AES keys and of AWS Payment Cryptography (`KeyCheckValueAlgorithm`
//!   `CMAC`).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use des::{TdesEde2, TdesEde3};

/// Why a check value cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KcvError {
    #[error("AES keys are 16, 24 or 32 bytes")]
    AesKeyLength,
    #[error("TDES keys are 16 or 24 bytes")]
    TdesKeyLength,
}

/// Bytes of a check value.
const KCV_LEN: usize = 3;

/// Legacy AES KCV: first 3 bytes of AES-ECB(key, 16 zero bytes), uppercase hex.
pub fn aes_kcv(key: &[u8]) -> Result<String, KcvError> {
    let mut block = [0u8; 16];
    aes_encrypt(key, &mut block)?;
    Ok(hex::encode_upper(&block[..KCV_LEN]))
}

/// X9.24-1 AES KCV: first 3 bytes of AES-CMAC(key, 16 zero bytes), uppercase hex.
pub fn aes_cmac_kcv(key: &[u8]) -> Result<String, KcvError> {
    // RFC 4493 for one complete block M: L = E(0), K1 = dbl(L),
    // T = E(M XOR K1) = E(K1) since M is all zeros.
    let mut block = [0u8; 16];
    aes_encrypt(key, &mut block)?;
    dbl(&mut block);
    aes_encrypt(key, &mut block)?;
    Ok(hex::encode_upper(&block[..KCV_LEN]))
}

/// TDES KCV: first 3 bytes of TDES-ECB(key, 8 zero bytes), uppercase hex.
/// 16-byte keys are K1K2K1, 24-byte keys K1K2K3.
pub fn tdes_kcv(key: &[u8]) -> Result<String, KcvError> {
    let mut block = GenericArray::from([0u8; 8]);
    let bad = |_| KcvError::TdesKeyLength;
    match key.len() {
        16 => TdesEde2::new_from_slice(key).map_err(bad)?.encrypt_block(&mut block),
        24 => TdesEde3::new_from_slice(key).map_err(bad)?.encrypt_block(&mut block),
        _ => return Err(KcvError::TdesKeyLength),
    }
    Ok(hex::encode_upper(&block[..KCV_LEN]))
}

fn aes_encrypt(key: &[u8], block: &mut [u8; 16]) -> Result<(), KcvError> {
    let bad = |_| KcvError::AesKeyLength;
    let b = GenericArray::from_mut_slice(&mut block[..]);
    match key.len() {
        16 => Aes128::new_from_slice(key).map_err(bad)?.encrypt_block(b),
        24 => Aes192::new_from_slice(key).map_err(bad)?.encrypt_block(b),
        32 => Aes256::new_from_slice(key).map_err(bad)?.encrypt_block(b),
        _ => return Err(KcvError::AesKeyLength),
    }
    Ok(())
}

/// Doubling in GF(2^128), CMAC's subkey step: shift left one bit and, if a
/// bit fell off, XOR the last byte with 0x87 (x^128 = x^7 + x^2 + x + 1).
fn dbl(block: &mut [u8; 16]) {
    let carry = block[0] >> 7;
    for i in 0..15 {
        block[i] = (block[i] << 1) | (block[i + 1] >> 7);
    }
    block[15] = (block[15] << 1) ^ (0x87 * carry);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn key(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// psec `des.generate_kcv` docstring (first 2 bytes `08D7`) and pin-security
    /// brief (3 bytes `08D7B4`).
    #[test]
    fn tdes_known_value() {
        assert_eq!(tdes_kcv(&key("0123456789ABCDEFFEDCBA9876543210")).unwrap(), "08D7B4");
        // Same key written out as K1K2K1 in 24 bytes: same cipher, same KCV.
        assert_eq!(
            tdes_kcv(&key("0123456789ABCDEFFEDCBA98765432100123456789ABCDEF")).unwrap(),
            "08D7B4"
        );
        // Computed with pyca/cryptography 48 (TripleDES-ECB of 8 zero bytes).
        assert_eq!(
            tdes_kcv(&key("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")).unwrap(),
            "3FD539"
        );
    }

    /// AES-128 of the zero block under 000102…0F is the well-known
    /// C6A13B37878F5B826F4F8162A1C8D879; the others were computed with
    /// pyca/cryptography 48 (AES-ECB of 16 zero bytes).
    #[test]
    fn aes_known_values() {
        assert_eq!(aes_kcv(&key("00112233445566778899AABBCCDDEEFF")).unwrap(), "FDE4FB");
        assert_eq!(aes_kcv(&key("000102030405060708090A0B0C0D0E0F")).unwrap(), "C6A13B");
        assert_eq!(
            aes_kcv(&key("000102030405060708090A0B0C0D0E0F1011121314151617")).unwrap(),
            "916251"
        );
        assert_eq!(
            aes_kcv(&key("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")).unwrap(),
            "F29000"
        );
    }

    /// Computed with pyca/cryptography 48 (`cmac.CMAC` over 16 zero bytes).
    #[test]
    fn aes_cmac_known_values() {
        assert_eq!(
            aes_cmac_kcv(&key("00112233445566778899AABBCCDDEEFF")).unwrap(),
            "53E107"
        );
        assert_eq!(
            aes_cmac_kcv(&key("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap(),
            "7AD386"
        );
        assert_eq!(
            aes_cmac_kcv(&key("000102030405060708090A0B0C0D0E0F1011121314151617")).unwrap(),
            "D4FFB8"
        );
        assert_eq!(
            aes_cmac_kcv(&key("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")).unwrap(),
            "377822"
        );
    }

    /// RFC 4493 §4 subkey generation: K1 for key 2b7e1516…4f3c.
    #[test]
    fn dbl_matches_rfc4493_subkey() {
        let mut l: [u8; 16] = key("7df76b0c1ab899b33e42f047b91b546f").try_into().unwrap();
        dbl(&mut l);
        assert_eq!(hex::encode(l), "fbeed618357133667c85e08f7236a8de");
    }

    #[test]
    fn rejects_wrong_key_lengths() {
        for len in [0, 8, 15, 17, 31, 33] {
            assert_eq!(aes_kcv(&vec![0; len]).unwrap_err(), KcvError::AesKeyLength);
            assert_eq!(aes_cmac_kcv(&vec![0; len]).unwrap_err(), KcvError::AesKeyLength);
        }
        for len in [0, 8, 15, 17, 32] {
            assert_eq!(tdes_kcv(&vec![0; len]).unwrap_err(), KcvError::TdesKeyLength);
        }
    }
}
