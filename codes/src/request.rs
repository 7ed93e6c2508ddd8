//! The reservation request code: device to portal, at most 32 characters.
//!
//! # Format
//!
//! `<product id>:<serial>:<sequence><check>`, for example `CPAR:SN1:7` followed by a
//! 4-character check:
//!
//! - product id and serial as in the [`Udi`], so the operator can read which device it is;
//! - the request's sequence number in Crockford base32 without leading zeros (1 to 7
//!   characters: `7`, `10` for 32, `3ZZZZZZ` for `u32::MAX`);
//! - a CRC-20 check of everything before it, in 4 Crockford characters: any one mistyped
//!   character and any swap of two neighbours is caught (see
//!   [`alphabet`](super::alphabet) for why); other typos pass with odds of 1 in 2^20.
//!
//! The parts take 2 separators, the sequence and 4 check characters, so product id and
//! serial together have `32 - 6 - len(sequence)` characters: 25 for sequences below 32,
//! 19 for any sequence. [`make_request`] refuses a longer UDI and names the limit.
//! Parsing tolerates whitespace around the code and nothing else (the parts are case
//! sensitive, and no alias of a check character is accepted).
//!
//! ```
//! use entitle_codes::{Udi, make_request, parse_request};
//!
//! let udi = Udi::new("CPAR", "SN1")?;
//! let code = make_request(&udi, 7)?;
//! assert!(code.starts_with("CPAR:SN1:7") && code.len() == 14);
//!
//! let request = parse_request(&format!("  {code}\n"))?;
//! assert_eq!((request.udi, request.sequence), (udi, 7));
//!
//! let typo = code.replace("SN1", "SM1");
//! assert_eq!(
//!     parse_request(&typo).unwrap_err().to_string(),
//!     "the request code's check does not match: a character is mistyped"
//! );
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

use super::alphabet::{CHECK_LEN, crockford_u32, parse_crockford_u32};
use super::error::{CodeError, CodeKind, Result};
use super::typed::{self, Shape};
use super::udi::Udi;

/// The longest request code.
pub const MAX_REQUEST_LEN: usize = 32;

const SHAPE: Shape = Shape {
    kind: CodeKind::Request,
    domain: b"entitle/request-code/v1",
    // "P:S:1" and the check.
    min_len: 5 + CHECK_LEN,
    max_len: MAX_REQUEST_LEN,
    colons: 2,
    layout: "a request code is product id, serial, and sequence with check, separated by two \
             ':' (is it another kind of code?)",
};

/// What a request code asks: a reservation for this device, answering this request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The device.
    pub udi: Udi,
    /// The sequence number of the device's pending request.
    pub sequence: u32,
}

/// The request code for `udi`'s request `sequence`; refuses a UDI too long to fit in 32
/// characters with this sequence.
pub fn make_request(udi: &Udi, sequence: u32) -> Result<String> {
    let sequence_text = crockford_u32(sequence);
    let max = MAX_REQUEST_LEN - 2 - sequence_text.len() - CHECK_LEN;
    let len = udi.product_id().len() + udi.serial().len();
    if len > max {
        return Err(CodeError::UdiTooLong {
            udi: udi.clone(),
            len,
            max,
            sequence,
        });
    }
    let body = format!("{}:{}:{sequence_text}", udi.product_id(), udi.serial());
    Ok(typed::seal(&SHAPE, &body))
}

/// Reads a request code (the portal's side), refusing a typo with a clear error.
pub fn parse_request(code: &str) -> Result<Request> {
    let parts = typed::open(&SHAPE, code)?;
    let malformed = |detail| CodeError::Malformed {
        kind: CodeKind::Request,
        detail,
    };
    let [product_id, serial, sequence] = parts[..] else {
        return Err(malformed(SHAPE.layout));
    };
    // The check passed, so these can fail only for a code not made by make_request.
    let udi = Udi::new(product_id, serial)
        .map_err(|_| malformed("its product id or serial is empty or too long"))?;
    let sequence = parse_crockford_u32(sequence).ok_or(malformed(
        "its sequence number is not a canonical base32 number",
    ))?;
    Ok(Request { udi, sequence })
}
