//! The codes an operator copies and pastes: those of licence reservation (PLR and SLR) and
//! the ID token's form, made and checked without I/O or clock: times are arguments, keys
//! are bytes.
//!
//! | code | direction | format | length |
//! |---|---|---|---|
//! | [request] | device to portal | `CPAR:SN1:7` + 4-character check | at most 32 |
//! | [PLR authorisation](plr) | portal to device | one base-85 number: version, export flag, account reference, BLS signature | exactly 64 |
//! | [SLR authorisation](slr) | portal to device | `SLR1.` + base64url body + `.` + base64url signature | up to 16 KiB |
//! | [return](ret) | device to portal | `CPAR:SN1:7:` + 16-character tag + 4-character check | at most 158 |
//! | [confirmation](confirm) | device to operator | 8 upper-case hex digits | 8 |
//! | [ID token](token) | portal to device | `<id>.<secret>` | at most 128 |
//!
//! Every code is ASCII and safe to copy and paste: request and return codes use letters,
//! digits and `- _ . :` and tolerate whitespace around them; authorisation codes have no
//! quotes, backslash or whitespace, and whitespace anywhere in them is ignored (quote a PLR
//! code in single quotes on a shell command line: its alphabet has `&`, `$` and such).
//!
//! Authorisation codes are signed by the authority's [`CodeSigningKey`] (BLS12-381, through
//! `blst`) and verified on the device with its [`CodeVerifyingKey`] alone.
//!
//! The round, end to end:
//!
//! ```
//! use entitle_codes::{
//!     CodeSigningKey, PlrGrant, Udi, confirmation, make_plr, make_request, make_return,
//!     parse_request, parse_return, return_tag_matches, verify_authorization,
//! };
//!
//! let authority = CodeSigningKey::from_seed(&[7; 32]); // from the OS random source
//! let device_key = authority.verifying_key(); // what the device ships with
//! let udi = Udi::new("CPAR", "FCH2144V1AB")?;
//!
//! // Device: `license smart reservation request`.
//! let request_code = make_request(&udi, 1)?;
//! // Portal: the operator pastes it; the authority answers.
//! let request = parse_request(&request_code)?;
//! let grant = PlrGrant { smart_account_ref: 4711, export_controlled: true };
//! let authorization = make_plr(&authority, &request, &grant)?;
//! // Device: `license smart reservation install <code>`.
//! let verified = verify_authorization(&authorization, &device_key, &udi, 1)?;
//! let shown = confirmation(&authorization, &udi);
//! // Later, `license smart reservation return`; the portal frees the licences.
//! let returned = parse_return(&make_return(&udi, 1, &authorization)?)?;
//! assert!(return_tag_matches(&returned, &authorization));
//! # let _ = (verified, shown);
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alphabet;
pub mod confirm;
pub mod error;
pub mod keys;
pub mod plr;
pub mod request;
pub mod ret;
pub mod slr;
pub mod token;
mod typed;
pub mod udi;
pub mod verify;

pub use confirm::{confirmation, confirmation_matches};
pub use entitle_licensing::{Catalogue, Worth};
pub use error::{CodeError, CodeKind, Result};
pub use keys::{CodeSigningKey, CodeVerifyingKey, VERIFYING_KEY_LEN};
pub use plr::{MAX_SMART_ACCOUNT_REF, PLR_LEN, PlrGrant, make_plr};
pub use request::{MAX_REQUEST_LEN, Request, make_request, parse_request};
pub use ret::{
    MAX_RETURN_LEN, RETURN_TAG_LEN, Return, make_return, parse_return, return_tag_matches,
};
pub use slr::{MAX_SLR_LEN, MAX_SLR_LICENCES, SLR_PREFIX, SlrGrant, make_slr};
pub use udi::{InvalidUdi, MAX_UDI_PART_LEN, Udi};
pub use verify::{
    Unverified, Verified, normalize_authorization, peek_authorization, verify_authorization,
};
