//! Installing an authorisation code on the device: [`verify_authorization`] takes either
//! kind, checks it against the authority's key, this device and its pending request, and
//! says what it grants.

use entitle_licensing::{ReservationKind, Reserved};

use super::error::{CodeError, CodeKind, Result};
use super::keys::CodeVerifyingKey;
use super::plr::{self, PLR_LEN, PlrGrant};
use super::slr::{self, MAX_SLR_LEN, SlrGrant};
use super::udi::Udi;

/// What a verified authorisation code grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// Permanent licence reservation: everything, unlimited.
    Plr(PlrGrant),
    /// Specific licence reservation: exactly the licences listed.
    Slr(SlrGrant),
}

impl Verified {
    /// What the licence agent installs, for the request `sequence` the code answered. A PLR
    /// code names its smart account by reference only, shown as `#4711`.
    pub fn into_reserved(self, sequence: u32) -> Reserved {
        match self {
            Verified::Plr(grant) => Reserved {
                sequence,
                smart_account: format!("#{}", grant.smart_account_ref),
                virtual_account: None,
                export_controlled: grant.export_controlled,
                kind: ReservationKind::Permanent,
                worth: Default::default(),
            },
            Verified::Slr(grant) => Reserved {
                sequence,
                smart_account: grant.smart_account,
                virtual_account: Some(grant.virtual_account),
                export_controlled: grant.export_controlled,
                kind: ReservationKind::Specific {
                    licences: grant.licences,
                },
                worth: grant.worth,
            },
        }
    }
}

/// An authorisation code read without checking its signature: for showing it and for
/// making a return code from it, never for installing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unverified {
    /// A PLR code; the device and request are not in it.
    Plr(PlrGrant),
    /// An SLR code, with the device and request it names.
    Slr {
        /// The device it is locked to.
        udi: Udi,
        /// The request it answers.
        sequence: u32,
        /// What it grants.
        grant: SlrGrant,
    },
}

/// Checks an authorisation code, PLR or SLR, on the device: with the authority's key, for
/// this device `udi`, answering its pending request `pending_sequence`. Whitespace anywhere
/// in the code is ignored.
///
/// ```
/// use entitle_codes::{
///     CodeError, CodeSigningKey, PlrGrant, Request, Udi, make_plr, verify_authorization,
/// };
///
/// let key = CodeSigningKey::from_seed(&[7; 32]);
/// let udi = Udi::new("CPAR", "SN1")?;
/// let grant = PlrGrant { smart_account_ref: 1, export_controlled: false };
/// let code = make_plr(&key, &Request { udi: udi.clone(), sequence: 3 }, &grant)?;
///
/// let another_authority = CodeSigningKey::from_seed(&[8; 32]).verifying_key();
/// assert!(matches!(
///     verify_authorization(&code, &another_authority, &udi, 3),
///     Err(CodeError::PlrDoesNotVerify { .. })
/// ));
/// assert_eq!(
///     verify_authorization(" \n", &key.verifying_key(), &udi, 3).unwrap_err().to_string(),
///     "the authorisation code is empty"
/// );
/// # Ok::<(), CodeError>(())
/// ```
pub fn verify_authorization(
    code: &str,
    key: &CodeVerifyingKey,
    udi: &Udi,
    pending_sequence: u32,
) -> Result<Verified> {
    match parse_authorization(code)? {
        Parsed::Plr(parsed) => plr::verify(&parsed, key, udi, pending_sequence).map(Verified::Plr),
        Parsed::Slr(parsed) => {
            slr::verify(&parsed, key)?;
            if parsed.udi != *udi {
                return Err(CodeError::WrongDevice {
                    code: parsed.udi,
                    device: udi.clone(),
                });
            }
            if parsed.sequence != pending_sequence {
                return Err(CodeError::WrongSequence {
                    code: parsed.sequence,
                    pending: pending_sequence,
                });
            }
            Ok(Verified::Slr(parsed.grant))
        }
    }
}

/// Reads an authorisation code without checking its signature (see [`Unverified`]).
pub fn peek_authorization(code: &str) -> Result<Unverified> {
    Ok(match parse_authorization(code)? {
        Parsed::Plr(parsed) => Unverified::Plr(parsed.grant),
        Parsed::Slr(parsed) => Unverified::Slr {
            udi: parsed.udi,
            sequence: parsed.sequence,
            grant: parsed.grant,
        },
    })
}

/// The authorisation code as it is kept and hashed: whitespace (line breaks, spaces,
/// non-breaking spaces from e-mails) removed; refuses an empty or overlong code and any
/// other character outside printable ASCII.
pub fn normalize_authorization(code: &str) -> Result<String> {
    let kind = CodeKind::Authorization;
    if code.len() > MAX_SLR_LEN {
        return Err(CodeError::TooLong {
            kind,
            len: code.len(),
            max: MAX_SLR_LEN,
        });
    }
    let mut text = String::with_capacity(code.len());
    for (i, c) in code.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        if !c.is_ascii() || c.is_ascii_control() {
            return Err(CodeError::NotAscii {
                kind,
                position: i + 1,
            });
        }
        text.push(c);
    }
    if text.is_empty() {
        return Err(CodeError::Empty { kind });
    }
    Ok(text)
}

/// Whitespace removed, nothing checked: what the return tag and the confirmation hash.
pub(crate) fn strip_whitespace(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

enum Parsed {
    Plr(plr::ParsedPlr),
    Slr(slr::ParsedSlr),
}

fn parse_authorization(code: &str) -> Result<Parsed> {
    let text = normalize_authorization(code)?;
    if text.starts_with("SLR") {
        slr::parse(&text).map(Parsed::Slr)
    } else if text.len() == PLR_LEN {
        plr::parse(&text).map(Parsed::Plr)
    } else {
        Err(CodeError::NotAuthorization { len: text.len() })
    }
}
