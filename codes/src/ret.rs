//! The reservation return code: device to portal, proving which reservation the device
//! removed so that its licences go back to the pool.
//!
//! # Format
//!
//! `<product id>:<serial>:<sequence>:<tag><check>`: the device's UDI, the sequence of the
//! request the reservation answered (Crockford base32, as in the request code), a tag of 16
//! Crockford characters, and the same kind of 4-character check as the request code (with
//! its own domain, so neither passes for the other). At most 158 characters; 45 for a
//! 10-character UDI.
//!
//! The tag is the first 10 bytes (80 bits) of SHA-256 over `"entitle/return-tag/v1" 0x00`
//! and the authorisation code's text with its whitespace removed. The authority issued that
//! code and keeps it, so it recomputes the tag ([`return_tag_matches`]) and knows which
//! reservation is returned.
//!
//! # Trust
//!
//! The tag proves that whoever made the return code held the exact authorisation code; it
//! needs no secret on the device, and it does not prove that the device stopped using the
//! reservation (no code can: the device is air-gapped). Whoever holds the authorisation
//! code can return it, and that is the operator who installed it, or who was given it and
//! never installed it (`license smart reservation return authorization <code>`): both use
//! [`make_return`]. The authority also checks that the UDI and sequence are those of the
//! reservation it issued, and honours a return once.
//!
//! ```
//! use entitle_codes::{
//!     CodeSigningKey, PlrGrant, Request, Udi, make_plr, make_return, parse_return,
//!     return_tag_matches,
//! };
//!
//! let key = CodeSigningKey::from_seed(&[7; 32]);
//! let udi = Udi::new("CPAR", "SN1")?;
//! let grant = PlrGrant { smart_account_ref: 4711, export_controlled: false };
//! let authorization = make_plr(&key, &Request { udi: udi.clone(), sequence: 7 }, &grant)?;
//!
//! // The device, on `license smart reservation return`:
//! let code = make_return(&udi, 7, &authorization)?;
//! assert!(code.starts_with("CPAR:SN1:7:") && code.len() == 31);
//!
//! // The portal:
//! let returned = parse_return(&code)?;
//! assert_eq!((&returned.udi, returned.sequence), (&udi, 7));
//! assert!(return_tag_matches(&returned, &authorization));
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

use sha2::{Digest as _, Sha256};

use super::alphabet::{CHECK_LEN, CROCKFORD, crockford_u32, crockford_value, parse_crockford_u32};
use super::error::{CodeError, CodeKind, Result};
use super::typed::{self, Shape};
use super::udi::{MAX_UDI_PART_LEN, Udi};
use super::verify::{Unverified, normalize_authorization, peek_authorization, strip_whitespace};

/// Bytes of the return tag.
pub const RETURN_TAG_LEN: usize = 10;

/// Crockford characters of the tag: 80 bits, 5 a character.
const TAG_TEXT_LEN: usize = RETURN_TAG_LEN * 8 / 5;

/// The longest return code.
pub const MAX_RETURN_LEN: usize = 2 * MAX_UDI_PART_LEN + 7 + TAG_TEXT_LEN + CHECK_LEN + 3;

const SHAPE: Shape = Shape {
    kind: CodeKind::Return,
    domain: b"entitle/return-code/v1",
    // "P:S:1:" and the tag and check.
    min_len: 6 + TAG_TEXT_LEN + CHECK_LEN,
    max_len: MAX_RETURN_LEN,
    colons: 3,
    layout: "a return code is product id, serial, sequence, and tag with check, separated by \
             three ':' (is it another kind of code?)",
};

/// What a return code says: this device returned the reservation answering this request,
/// whose authorisation code has this tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    /// The device.
    pub udi: Udi,
    /// The sequence of the request the reservation answered.
    pub sequence: u32,
    /// The tag of the authorisation code (see the module docs).
    pub tag: [u8; RETURN_TAG_LEN],
}

/// The return code for the reservation `authorization_code` made on device `udi` for its
/// request `sequence`, installed or not. The code is read (not verified): it must be a
/// well-formed authorisation code, and an SLR code must name this device and sequence.
pub fn make_return(udi: &Udi, sequence: u32, authorization_code: &str) -> Result<String> {
    if let Unverified::Slr {
        udi: code_udi,
        sequence: code_sequence,
        ..
    } = peek_authorization(authorization_code)?
    {
        if code_udi != *udi {
            return Err(CodeError::WrongDevice {
                code: code_udi,
                device: udi.clone(),
            });
        }
        if code_sequence != sequence {
            return Err(CodeError::WrongSequence {
                code: code_sequence,
                pending: sequence,
            });
        }
    }
    let tag = return_tag(&normalize_authorization(authorization_code)?);
    let body = format!(
        "{}:{}:{}:{}",
        udi.product_id(),
        udi.serial(),
        crockford_u32(sequence),
        tag_text(&tag)
    );
    Ok(typed::seal(&SHAPE, &body))
}

/// Reads a return code (the portal's side), refusing a typo with a clear error.
pub fn parse_return(code: &str) -> Result<Return> {
    let parts = typed::open(&SHAPE, code)?;
    let malformed = |detail| CodeError::Malformed {
        kind: CodeKind::Return,
        detail,
    };
    let [product_id, serial, sequence, tag] = parts[..] else {
        return Err(malformed(SHAPE.layout));
    };
    // The check passed, so these can fail only for a code not made by make_return.
    let udi = Udi::new(product_id, serial)
        .map_err(|_| malformed("its product id or serial is empty or too long"))?;
    let sequence = parse_crockford_u32(sequence).ok_or(malformed(
        "its sequence number is not a canonical base32 number",
    ))?;
    let tag = parse_tag(tag).ok_or(malformed("its tag is not 16 base32 characters"))?;
    Ok(Return { udi, sequence, tag })
}

/// Whether `returned` names the reservation whose authorisation code is
/// `authorization_code` (the text the authority issued; whitespace is ignored).
pub fn return_tag_matches(returned: &Return, authorization_code: &str) -> bool {
    returned.tag == return_tag(&strip_whitespace(authorization_code))
}

fn return_tag(normalized_code: &str) -> [u8; RETURN_TAG_LEN] {
    let digest = Sha256::new()
        .chain_update(b"entitle/return-tag/v1\0")
        .chain_update(normalized_code.as_bytes())
        .finalize();
    let mut tag = [0u8; RETURN_TAG_LEN];
    tag.copy_from_slice(&digest[..RETURN_TAG_LEN]);
    tag
}

/// The 80-bit tag as 16 Crockford characters, most significant first.
fn tag_text(tag: &[u8; RETURN_TAG_LEN]) -> String {
    let mut number = [0u8; 16];
    number[6..].copy_from_slice(tag);
    let n = u128::from_be_bytes(number);
    (0..TAG_TEXT_LEN)
        .rev()
        .map(|i| char::from(CROCKFORD[((n >> (5 * i)) & 31) as usize]))
        .collect()
}

fn parse_tag(text: &str) -> Option<[u8; RETURN_TAG_LEN]> {
    if text.len() != TAG_TEXT_LEN {
        return None;
    }
    let n = text.bytes().try_fold(0u128, |n, c| {
        Some((n << 5) | u128::from(crockford_value(c)?))
    })?;
    let mut tag = [0u8; RETURN_TAG_LEN];
    tag.copy_from_slice(&n.to_be_bytes()[6..]);
    Some(tag)
}
