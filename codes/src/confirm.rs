//! The confirmation code: 8 upper-case hex digits the device shows after installing an
//! authorisation code, which the operator may give the portal as proof of the install.
//!
//! It is the first 4 bytes of SHA-256 over `"entitle/confirmation/v1" 0x00`, the UDI (each
//! part preceded by its length) and the authorisation code with its whitespace removed. The
//! authority, which issued the code for that UDI, recomputes it.
//!
//! ```
//! use entitle_codes::{Udi, confirmation, confirmation_matches};
//!
//! let udi = Udi::new("CPAR", "SN1")?;
//! let shown = confirmation("SLR1.AQ.xyz", &udi);
//! assert_eq!(shown.len(), 8);
//! assert!(shown.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
//! assert!(confirmation_matches(&shown.to_lowercase(), "SLR1.AQ.xyz", &udi));
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

use sha2::{Digest as _, Sha256};

use super::udi::Udi;
use super::verify::strip_whitespace;

/// The confirmation code for `authorization_code` installed on `udi`.
pub fn confirmation(authorization_code: &str, udi: &Udi) -> String {
    let mut udi_bytes = Vec::new();
    udi.signing_bytes(&mut udi_bytes);
    let digest = Sha256::new()
        .chain_update(b"entitle/confirmation/v1\0")
        .chain_update(&udi_bytes)
        .chain_update(strip_whitespace(authorization_code).as_bytes())
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02X}")).collect()
}

/// Whether `shown` (as the operator typed it: case and surrounding spaces do not matter) is
/// the confirmation code of `authorization_code` on `udi`.
pub fn confirmation_matches(shown: &str, authorization_code: &str, udi: &Udi) -> bool {
    shown
        .trim()
        .eq_ignore_ascii_case(&confirmation(authorization_code, udi))
}
