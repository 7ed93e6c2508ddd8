//! The PLR authorisation code: portal to device, 64 characters, verifiable with the
//! authority's public key alone.
//!
//! # What is signed, and what is carried
//!
//! The BLS signature (see [`keys`](super::keys)) is over
//! `"entitle/plr/v1" 0x00 | version | len, product id | len, serial | sequence (u32) |
//! smart account reference (u32) | export-controlled (u8)`, big-endian. The code carries
//! only what the device cannot know:
//!
//! | field | bits |
//! |---|---|
//! | format version (1) | 3 |
//! | export-controlled flag | 1 |
//! | smart account reference, a number the authority assigns | 24 |
//! | signature: sign of y and the 381 bits of x (the compressed point without its two fixed flag bits: "compressed", always 1, and "infinity", always 0) | 382 |
//! | **total** | **410** |
//!
//! 64 characters of base 85 hold 64 × log2(85) = 410.2 bits, so the 410 bits are written
//! as one number of exactly 64 Z85 digits (see [`alphabet`](super::alphabet)); a number of
//! 2^410 or more is refused. A version-1 code starts with one of `9 a b c d e f g h i`.
//!
//! The trade-off: a 48-byte signature (BLS12-381 at about 128-bit security) alone is 64
//! characters of base64, so nothing else would fit in base64. In base 85 there is room for
//! 28 bits more, so the smart account is named by a 24-bit reference (up to 16,777,215),
//! not by its name, and the UDI and the request sequence are bound in the signed message
//! but not carried: the device knows them. The cost is in the errors: a code for another
//! device or request, from another authority or altered all fail the same way, as
//! [`CodeError::PlrDoesNotVerify`], which names the device and request it was checked for.
//! A BLS signature is unique for a key and a message, so changing any character yields
//! either no valid code or a code whose signature does not verify.
//!
//! ```
//! use entitle_codes::{
//!     CodeSigningKey, PlrGrant, Request, Udi, Verified, make_plr, verify_authorization,
//! };
//!
//! let key = CodeSigningKey::from_seed(&[7; 32]);
//! let request = Request { udi: Udi::new("CPAR", "SN1")?, sequence: 7 };
//! let grant = PlrGrant { smart_account_ref: 4711, export_controlled: true };
//! let code = make_plr(&key, &request, &grant)?;
//! assert_eq!(code.len(), 64);
//!
//! let verified = verify_authorization(&code, &key.verifying_key(), &request.udi, 7)?;
//! assert_eq!(verified, Verified::Plr(grant));
//! // Another request (or device) is refused.
//! assert!(verify_authorization(&code, &key.verifying_key(), &request.udi, 8).is_err());
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

use blst::min_sig::Signature;

use super::alphabet::{base85_decode, base85_encode, z85_value};
use super::error::{CodeError, CodeKind, Result};
use super::keys::{CodeSigningKey, CodeVerifyingKey, SIGNATURE_LEN, signature_from_bytes};
use super::request::Request;
use super::udi::Udi;

/// The length of every PLR authorisation code.
pub const PLR_LEN: usize = 64;

/// The largest smart account reference a PLR code carries (2^24 - 1).
pub const MAX_SMART_ACCOUNT_REF: u32 = (1 << 24) - 1;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"entitle/plr/v1\0";
/// Bytes of the number the code writes: 410 bits, the top 6 bits of 416 zero.
const NUMBER_LEN: usize = 52;

/// What a PLR code grants: every licence of the product, unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlrGrant {
    /// The authority's number for the smart account that reserved it.
    pub smart_account_ref: u32,
    /// Whether export-controlled functionality is allowed.
    pub export_controlled: bool,
}

/// A PLR code read but not yet verified.
#[derive(Clone, Debug)]
pub(crate) struct ParsedPlr {
    pub grant: PlrGrant,
    signature: Signature,
}

fn message(version: u8, udi: &Udi, sequence: u32, grant: &PlrGrant) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 1 + 130 + 9);
    m.extend_from_slice(DOMAIN);
    m.push(version);
    udi.signing_bytes(&mut m);
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(&grant.smart_account_ref.to_be_bytes());
    m.push(u8::from(grant.export_controlled));
    m
}

/// The PLR authorisation code answering `request` (the authority's side).
pub fn make_plr(key: &CodeSigningKey, request: &Request, grant: &PlrGrant) -> Result<String> {
    if grant.smart_account_ref > MAX_SMART_ACCOUNT_REF {
        return Err(CodeError::AccountRefTooLarge(grant.smart_account_ref));
    }
    let signature = key.sign(&message(VERSION, &request.udi, request.sequence, grant));
    let header = u64::from(VERSION) << 25
        | u64::from(grant.export_controlled) << 24
        | u64::from(grant.smart_account_ref);
    // The header takes bits 382..410 of the number, the signature bits 0..382.
    let shifted = (header << 6).to_be_bytes();
    let mut number = [0u8; NUMBER_LEN];
    number[..5].copy_from_slice(&shifted[3..]);
    number[4] |= signature[0] & 0x3F;
    number[5..].copy_from_slice(&signature[1..]);
    Ok(base85_encode::<PLR_LEN>(&number).expect("2^410 is below 85^64, so 64 digits suffice"))
}

/// Reads a PLR code with its whitespace removed, without checking the signature.
pub(crate) fn parse(code: &str) -> Result<ParsedPlr> {
    let kind = CodeKind::Plr;
    let malformed = |detail| CodeError::Malformed { kind, detail };
    if code.len() < PLR_LEN {
        return Err(CodeError::TooShort {
            kind,
            len: code.len(),
            min: PLR_LEN,
        });
    }
    if code.len() > PLR_LEN {
        return Err(CodeError::TooLong {
            kind,
            len: code.len(),
            max: PLR_LEN,
        });
    }
    if let Some((i, c)) = code
        .char_indices()
        .find(|&(_, c)| u8::try_from(c).ok().and_then(z85_value).is_none())
    {
        return Err(CodeError::BadCharacter {
            kind,
            character: c,
            position: i + 1,
        });
    }
    let number = base85_decode::<NUMBER_LEN>(code.as_bytes())
        .ok_or(malformed("its number is larger than any PLR code"))?;
    if number[0] >> 2 != 0 {
        return Err(malformed("its number is larger than any PLR code"));
    }
    let mut header_bytes = [0u8; 8];
    header_bytes[3..].copy_from_slice(&number[..5]);
    let header = u64::from_be_bytes(header_bytes) >> 6;
    let version = (header >> 25) as u8;
    if version != VERSION {
        return Err(CodeError::UnknownVersion { kind, version });
    }
    let grant = PlrGrant {
        smart_account_ref: (header & u64::from(MAX_SMART_ACCOUNT_REF)) as u32,
        export_controlled: (header >> 24) & 1 == 1,
    };
    let mut compressed = [0u8; SIGNATURE_LEN];
    compressed[0] = 0x80 | (number[4] & 0x3F);
    compressed[1..].copy_from_slice(&number[5..]);
    let signature =
        signature_from_bytes(&compressed).ok_or(CodeError::SignatureEncoding { kind })?;
    Ok(ParsedPlr { grant, signature })
}

/// Checks a parsed PLR code against the device and its pending request.
pub(crate) fn verify(
    parsed: &ParsedPlr,
    key: &CodeVerifyingKey,
    udi: &Udi,
    sequence: u32,
) -> Result<PlrGrant> {
    if key.verifies(
        &message(VERSION, udi, sequence, &parsed.grant),
        &parsed.signature,
    ) {
        Ok(parsed.grant)
    } else {
        Err(CodeError::PlrDoesNotVerify {
            udi: udi.clone(),
            sequence,
        })
    }
}
