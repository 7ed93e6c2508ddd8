//! The alphabets of the codes and the arithmetic over them.
//!
//! - Request and return codes end in a 4-character check in Crockford base32
//!   (`0-9 A-Z` without `I L O U`), and print sequence numbers in it.
//! - The PLR code is one number written in base 85 with the Z85 alphabet (ZeroMQ RFC 32):
//!   `0-9 a-z A-Z . - : + = ^ ! / * ? & < > ( ) [ ] { } @ % $ #`, no quotes, backslash or
//!   whitespace.
//!
//! # The check
//!
//! The check is a CRC of degree 20 (generator x^20 + x^3 + 1, a primitive trinomial) over a
//! domain string and then the bytes of the code before the check, written as 4 Crockford
//! characters (20 bits, most significant first). Appending a CRC makes the whole code (its
//! bytes, 8 bits each, then the 20 check bits) a multiple of the generator, so any error
//! confined to 20 consecutive bits of that stream is caught: the generator has a constant
//! term, so it divides no x^k·B(x) with B of degree below 20. A mistyped character spans
//! at most 8 bits, two swapped neighbours at most 16 (two bytes), 13 (the last byte and the
//! first check character) or 10 (two check characters). Every check character decodes to
//! one 5-bit value only (no aliases are accepted), so the stream is fixed by the text.

/// Crockford's base32 digits, by value.
pub(crate) const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The Z85 digits, by value.
pub(crate) const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Characters of the check.
pub(crate) const CHECK_LEN: usize = 4;

/// The value of a canonical Crockford digit (upper case; no `O`/`I`/`L` aliases, which
/// would let two texts pass as one code).
pub(crate) fn crockford_value(c: u8) -> Option<u32> {
    CROCKFORD.iter().position(|&d| d == c).map(|v| v as u32)
}

/// The value of a Z85 digit.
pub(crate) fn z85_value(c: u8) -> Option<u8> {
    Z85.iter().position(|&d| d == c).map(|v| v as u8)
}

/// `n` in Crockford base32, without leading zeros ("0" for zero): at most 7 characters.
pub(crate) fn crockford_u32(n: u32) -> String {
    let mut digits = Vec::with_capacity(7);
    let mut n = n;
    loop {
        digits.push(CROCKFORD[(n % 32) as usize]);
        n /= 32;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

/// Reads what [`crockford_u32`] writes, and only that: no leading zeros, no aliases, no
/// value past `u32::MAX`.
pub(crate) fn parse_crockford_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 7 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    let mut n: u64 = 0;
    for c in s.bytes() {
        n = n * 32 + u64::from(crockford_value(c)?);
    }
    u32::try_from(n).ok()
}

/// The CRC-20 of `domain` then `body`, MSB first, register starting at zero.
pub(crate) fn crc20(domain: &[u8], body: &[u8]) -> u32 {
    const POLY: u32 = 0x0_0009; // x^20 + x^3 + 1, the x^20 term implied
    const MASK: u32 = 0xF_FFFF;
    let mut r: u32 = 0;
    for &byte in domain.iter().chain(body) {
        for i in (0..8).rev() {
            let feedback = ((r >> 19) ^ u32::from(byte >> i)) & 1;
            r = (r << 1) & MASK;
            if feedback == 1 {
                r ^= POLY;
            }
        }
    }
    r
}

/// The check of `body` as 4 Crockford characters.
pub(crate) fn check(domain: &[u8], body: &str) -> String {
    let crc = crc20(domain, body.as_bytes());
    (0..CHECK_LEN)
        .rev()
        .map(|i| char::from(CROCKFORD[((crc >> (5 * i)) & 31) as usize]))
        .collect()
}

/// The value of a written check, if every character is a canonical Crockford digit.
pub(crate) fn check_value(text: &str) -> Option<u32> {
    text.bytes()
        .try_fold(0u32, |acc, c| Some((acc << 5) | crockford_value(c)?))
}

/// Writes the big-endian number `bytes` as exactly `N_DIGITS` Z85 digits, most significant
/// first, or `None` if it does not fit.
///
/// Written by hand: Z85 proper (and the crates for it) works in 4-byte blocks of 5
/// characters, and 51 bytes would pad to 52 and take 65 characters; the PLR code needs the
/// whole code as one number in base 85 to put 410 bits in 64 characters. It is a dozen lines
/// of schoolbook division by 85.
pub(crate) fn base85_encode<const N_DIGITS: usize>(bytes: &[u8]) -> Option<String> {
    let mut number = bytes.to_vec();
    let mut digits = [0u8; N_DIGITS];
    for digit in digits.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 85) as u8;
            remainder = acc % 85;
        }
        *digit = Z85[remainder as usize];
    }
    if number.iter().any(|&b| b != 0) {
        return None;
    }
    Some(digits.iter().map(|&d| char::from(d)).collect())
}

/// Reads Z85 digits as a big-endian number of `N` bytes: `None` for a character outside
/// the alphabet or a number that does not fit.
pub(crate) fn base85_decode<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let mut number = [0u8; N];
    for &c in text {
        let mut carry = u32::from(z85_value(c)?);
        for byte in number.iter_mut().rev() {
            let acc = u32::from(*byte) * 85 + carry;
            *byte = (acc & 0xFF) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crockford_numbers_round_trip_and_only_canonically() {
        for n in [0, 1, 31, 32, 1023, 1024, 123_456_789, u32::MAX] {
            let text = crockford_u32(n);
            assert!(text.len() <= 7);
            assert_eq!(parse_crockford_u32(&text), Some(n), "{text}");
        }
        assert_eq!(crockford_u32(u32::MAX), "3ZZZZZZ");
        for bad in [
            "", "01", "4000000", "ZZZZZZZ", "a", "O", "I", "L", "U", "12345678",
        ] {
            assert_eq!(parse_crockford_u32(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_crc_is_a_remainder_so_a_code_with_its_check_divides() {
        // Feeding the check's 20 bits after the body leaves a zero register.
        let body = b"CPAR:SN1:1";
        let crc = crc20(b"d", body);
        let mut r = crc20(b"d", body);
        for i in (0..20).rev() {
            let feedback = ((r >> 19) ^ (crc >> i)) & 1;
            r = (r << 1) & 0xF_FFFF;
            if feedback == 1 {
                r ^= 9;
            }
        }
        assert_eq!(r, 0);
        assert_ne!(crc20(b"d", body), crc20(b"e", body), "the domain counts");
    }

    #[test]
    fn base85_round_trips_the_extremes() {
        let max = {
            let mut m = [0xFFu8; 52];
            m[0] = 0x03; // 2^410 - 1, the largest PLR number
            m
        };
        for number in [[0u8; 52], max] {
            let text = base85_encode::<64>(&number).unwrap();
            assert_eq!(text.len(), 64);
            assert_eq!(base85_decode::<52>(text.as_bytes()), Some(number));
        }
        assert_eq!(base85_encode::<2>(&[1, 0, 0]), None, "65536 needs 3 digits");
        assert_eq!(base85_decode::<1>(b"30"), Some([255]));
        assert_eq!(base85_decode::<1>(b"31"), None, "past 255");
        assert_eq!(base85_decode::<1>(b"\""), None);
    }
}
