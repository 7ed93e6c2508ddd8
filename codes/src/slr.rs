//! The SLR authorisation code: portal to device, a signed node-locked licence document of
//! up to 16 KiB.
//!
//! # Format
//!
//! `SLR1.` + base64url(body) + `.` + base64url(signature), base64url without padding and
//! with no stray bits (the decoding is strict, so one text is one code). Spaces and line
//! breaks anywhere are ignored when reading, so a code wrapped by an e-mail still installs.
//!
//! The body, big-endian, each text preceded by its length in one byte:
//!
//! | field | encoding |
//! |---|---|
//! | format version (1 or 2) | u8 |
//! | flags: bit 0 export-controlled, others 0 | u8 |
//! | request sequence | u32 |
//! | issue time, unix seconds | i64 |
//! | product id, serial | text, text (as [`Udi`]) |
//! | smart account, virtual account | text, text (1 to 64 letters, digits, spaces, `- _ . @`) |
//! | number of licences (1 to 256) | u16 |
//! | each licence, tags in ascending order, no repeats | text (tag, `[A-Za-z0-9-_.:]{1,64}`), u64 quantity (at least 1) |
//! | version 2 only, after each licence's quantity: what one unit is worth | u64 TPS per unit (1 to 10^9), u8 policy (1 hard, 2 steady-state, 3 monitor) |
//!
//! A grant that says what its licences are worth ([`SlrGrant::worth`], for every licence)
//! is written as version 2; one that says nothing as version 1, byte for byte as before.
//! Both are read; a body of any other version is refused as [`CodeError::UnknownVersion`].
//!
//! The signature is the authority's BLS signature (the same key as PLR codes, see
//! [`keys`](super::keys)) over `"entitle/slr/v1" 0x00` followed by the body bytes. Reading
//! is bounded: codes over 16 KiB, over 256 licences or with a bad tag are refused before
//! any signature is checked.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use entitle_codes::{
//!     CodeSigningKey, Request, SlrGrant, Udi, Verified, make_slr, verify_authorization,
//! };
//!
//! let key = CodeSigningKey::from_seed(&[7; 32]);
//! let request = Request { udi: Udi::new("CPAR", "SN1")?, sequence: 7 };
//! let grant = SlrGrant {
//!     licences: BTreeMap::from([("PAR-TPS".to_owned(), 300)]),
//!     smart_account: "Acme".into(),
//!     virtual_account: "Lab".into(),
//!     export_controlled: false,
//!     issued_at: 1_750_000_000,
//!     worth: Default::default(), // none signed: a version 1 body
//! };
//! let code = make_slr(&key, &request, &grant)?;
//! assert!(code.starts_with("SLR1."));
//!
//! // Wrapped by an e-mail client: still the same code.
//! let wrapped: String = code
//!     .as_bytes()
//!     .chunks(40)
//!     .map(|line| format!("{}\r\n", std::str::from_utf8(line).unwrap()))
//!     .collect();
//! let verified = verify_authorization(&wrapped, &key.verifying_key(), &request.udi, 7)?;
//! assert_eq!(verified, Verified::Slr(grant));
//! # Ok::<(), entitle_codes::CodeError>(())
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use blst::min_sig::Signature;
use entitle_engine::Policy;
use entitle_engine::table::is_valid_tag;
use entitle_licensing::{Catalogue, Worth};

use super::error::{CodeError, CodeKind, Result};
use super::keys::{CodeSigningKey, CodeVerifyingKey, SIGNATURE_LEN, signature_from_bytes};
use super::request::Request;
use super::udi::Udi;

/// What every SLR code starts with: the kind and the format version.
pub const SLR_PREFIX: &str = "SLR1.";

/// The longest authorisation code accepted, in bytes, whitespace included.
pub const MAX_SLR_LEN: usize = 16 * 1024;

/// The most licences one SLR code reserves.
pub const MAX_SLR_LICENCES: usize = 256;

const VERSION: u8 = 1;
/// The body version whose licences carry what they are worth.
const VERSION_WORTH: u8 = 2;
/// The most TPS one unit may be worth.
const MAX_TPS_PER_UNIT: u64 = 1_000_000_000;
const DOMAIN: &[u8] = b"entitle/slr/v1\0";
const KIND: CodeKind = CodeKind::Slr;
/// base64url characters of a 48-byte signature.
const SIGNATURE_TEXT_LEN: usize = 64;

/// What an SLR code grants: exactly these licences, from these accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlrGrant {
    /// Licence tag to quantity reserved.
    pub licences: BTreeMap<String, u64>,
    /// The smart account that reserved them.
    pub smart_account: String,
    /// The virtual account they were reserved from.
    pub virtual_account: String,
    /// Whether export-controlled functionality is allowed.
    pub export_controlled: bool,
    /// When the authority issued the code, in unix seconds.
    pub issued_at: i64,
    /// What one unit of each licence is worth, signed: empty (a version 1 code, the
    /// product's own values apply) or naming every licence.
    pub worth: Catalogue,
}

/// An SLR code read but not yet verified.
#[derive(Clone, Debug)]
pub(crate) struct ParsedSlr {
    pub udi: Udi,
    pub sequence: u32,
    pub grant: SlrGrant,
    body: Vec<u8>,
    signature: Signature,
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    [DOMAIN, body].concat()
}

/// The SLR authorisation code answering `request` (the authority's side).
pub fn make_slr(key: &CodeSigningKey, request: &Request, grant: &SlrGrant) -> Result<String> {
    check_grant(grant)?;
    let version = if grant.worth.is_empty() {
        VERSION
    } else {
        VERSION_WORTH
    };
    let mut body = vec![version, u8::from(grant.export_controlled)];
    body.extend_from_slice(&request.sequence.to_be_bytes());
    body.extend_from_slice(&grant.issued_at.to_be_bytes());
    request.udi.signing_bytes(&mut body);
    for name in [&grant.smart_account, &grant.virtual_account] {
        push_text(&mut body, name);
    }
    // check_grant allowed at most 256 licences.
    body.extend_from_slice(&(grant.licences.len() as u16).to_be_bytes());
    for (tag, quantity) in &grant.licences {
        push_text(&mut body, tag);
        body.extend_from_slice(&quantity.to_be_bytes());
        if let Some(worth) = grant.worth.get(tag) {
            body.extend_from_slice(&worth.tps_per_unit.to_be_bytes());
            body.push(policy_byte(worth.policy));
        }
    }
    let signature = key.sign(&signed_message(&body));
    let code = format!(
        "{SLR_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(signature)
    );
    if code.len() > MAX_SLR_LEN {
        return Err(CodeError::SlrTooLarge {
            len: code.len(),
            max: MAX_SLR_LEN,
        });
    }
    Ok(code)
}

fn push_text(body: &mut Vec<u8>, text: &str) {
    // Every text was checked to be at most 64 bytes.
    body.push(text.len() as u8);
    body.extend_from_slice(text.as_bytes());
}

fn check_grant(grant: &SlrGrant) -> Result<()> {
    check_name("smart account", &grant.smart_account)?;
    check_name("virtual account", &grant.virtual_account)?;
    if grant.licences.is_empty() {
        return Err(CodeError::NoLicences);
    }
    if grant.licences.len() > MAX_SLR_LICENCES {
        return Err(CodeError::TooManyLicences {
            count: grant.licences.len(),
            max: MAX_SLR_LICENCES,
        });
    }
    for (tag, &quantity) in &grant.licences {
        if !is_valid_tag(tag) {
            return Err(CodeError::InvalidTag);
        }
        if quantity == 0 {
            return Err(CodeError::ZeroQuantity { tag: tag.clone() });
        }
    }
    if !grant.worth.is_empty() {
        let covers = grant.worth.len() == grant.licences.len()
            && grant
                .licences
                .keys()
                .all(|tag| grant.worth.contains_key(tag));
        let sane = grant
            .worth
            .values()
            .all(|w| (1..=MAX_TPS_PER_UNIT).contains(&w.tps_per_unit));
        if !covers || !sane {
            return Err(CodeError::Malformed {
                kind: KIND,
                detail: "its worth must name every licence, each at 1 to 10^9 TPS per unit",
            });
        }
    }
    Ok(())
}

fn policy_byte(policy: Policy) -> u8 {
    match policy {
        Policy::Hard => 1,
        Policy::SteadyState => 2,
        Policy::Monitor => 3,
    }
}

/// The authority's rule for account names: 1 to 64 letters, digits, spaces and `- _ . @`,
/// no space at either end.
fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.trim() == name
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" -_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CodeError::InvalidName { what })
    }
}

/// Reads an SLR code with its whitespace removed, without checking the signature.
pub(crate) fn parse(code: &str) -> Result<ParsedSlr> {
    let malformed = |detail| CodeError::Malformed { kind: KIND, detail };
    if code.len() > MAX_SLR_LEN {
        return Err(CodeError::TooLong {
            kind: KIND,
            len: code.len(),
            max: MAX_SLR_LEN,
        });
    }
    let Some(rest) = code.strip_prefix(SLR_PREFIX) else {
        // "SLR2." and on: a later format.
        if let [b'S', b'L', b'R', digit @ b'0'..=b'9', b'.', ..] = code.as_bytes() {
            return Err(CodeError::UnknownVersion {
                kind: KIND,
                version: digit - b'0',
            });
        }
        return Err(malformed("it does not start with SLR1."));
    };
    if let Some((i, c)) = rest
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(CodeError::BadCharacter {
            kind: KIND,
            character: c,
            position: SLR_PREFIX.len() + i + 1,
        });
    }
    let Some((body_text, signature_text)) = rest.split_once('.') else {
        return Err(malformed(
            "it has no '.' between the body and the signature",
        ));
    };
    if signature_text.len() != SIGNATURE_TEXT_LEN {
        return Err(malformed(
            "its signature (after the last '.') is not 64 characters",
        ));
    }
    let body = URL_SAFE_NO_PAD
        .decode(body_text)
        .map_err(|_| malformed("its body is not valid base64url"))?;
    let signature: [u8; SIGNATURE_LEN] = URL_SAFE_NO_PAD
        .decode(signature_text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(malformed("its signature is not valid base64url"))?;
    let (udi, sequence, grant) = read_body(&body)?;
    let signature =
        signature_from_bytes(&signature).ok_or(CodeError::SignatureEncoding { kind: KIND })?;
    Ok(ParsedSlr {
        udi,
        sequence,
        grant,
        body,
        signature,
    })
}

/// Checks the signature of a parsed SLR code.
pub(crate) fn verify(parsed: &ParsedSlr, key: &CodeVerifyingKey) -> Result<()> {
    if key.verifies(&signed_message(&parsed.body), &parsed.signature) {
        Ok(())
    } else {
        Err(CodeError::BadSignature)
    }
}

fn read_body(body: &[u8]) -> Result<(Udi, u32, SlrGrant)> {
    let mut r = Reader { rest: body };
    let version = r.u8()?;
    if version != VERSION && version != VERSION_WORTH {
        return Err(CodeError::UnknownVersion {
            kind: KIND,
            version,
        });
    }
    let flags = r.u8()?;
    if flags > 1 {
        return Err(CodeError::Malformed {
            kind: KIND,
            detail: "its body sets flags this version does not have",
        });
    }
    let sequence = u32::from_be_bytes(r.array()?);
    let issued_at = i64::from_be_bytes(r.array()?);
    let udi = Udi::new(r.text()?, r.text()?)?;
    let smart_account = r.text()?.to_owned();
    check_name("smart account", &smart_account)?;
    let virtual_account = r.text()?.to_owned();
    check_name("virtual account", &virtual_account)?;
    let count = usize::from(u16::from_be_bytes(r.array()?));
    if count == 0 {
        return Err(CodeError::NoLicences);
    }
    if count > MAX_SLR_LICENCES {
        return Err(CodeError::TooManyLicences {
            count,
            max: MAX_SLR_LICENCES,
        });
    }
    let mut licences = BTreeMap::new();
    let mut worth = Catalogue::new();
    let mut last: Option<&str> = None;
    for _ in 0..count {
        let tag = r.text()?;
        if !is_valid_tag(tag) {
            return Err(CodeError::InvalidTag);
        }
        // Ascending and unique, so one set of licences has one body.
        if last.is_some_and(|last| last >= tag) {
            return Err(CodeError::UnorderedLicences);
        }
        last = Some(tag);
        let quantity = u64::from_be_bytes(r.array()?);
        if quantity == 0 {
            return Err(CodeError::ZeroQuantity {
                tag: tag.to_owned(),
            });
        }
        licences.insert(tag.to_owned(), quantity);
        if version == VERSION_WORTH {
            let tps_per_unit = u64::from_be_bytes(r.array()?);
            let policy = match r.u8()? {
                1 => Policy::Hard,
                2 => Policy::SteadyState,
                3 => Policy::Monitor,
                _ => {
                    return Err(CodeError::Malformed {
                        kind: KIND,
                        detail: "a licence's policy is not one this version knows",
                    });
                }
            };
            if !(1..=MAX_TPS_PER_UNIT).contains(&tps_per_unit) {
                return Err(CodeError::Malformed {
                    kind: KIND,
                    detail: "a licence is worth 0 TPS per unit, or more than 10^9",
                });
            }
            worth.insert(
                tag.to_owned(),
                Worth {
                    tps_per_unit,
                    policy,
                },
            );
        }
    }
    if !r.rest.is_empty() {
        return Err(CodeError::Malformed {
            kind: KIND,
            detail: "its body has bytes after the last licence",
        });
    }
    let grant = SlrGrant {
        licences,
        smart_account,
        virtual_account,
        export_controlled: flags == 1,
        issued_at,
        worth,
    };
    Ok((udi, sequence, grant))
}

/// Reads the body front to back; every read is bounded by what is left.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(CodeError::Malformed {
                kind: KIND,
                detail: "its body ends early",
            });
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A text of printable ASCII preceded by its length in one byte.
    fn text(&mut self) -> Result<&'a str> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        if !bytes.iter().all(|b| (0x20..0x7F).contains(b)) {
            return Err(CodeError::Malformed {
                kind: KIND,
                detail: "its body has text that is not printable ASCII",
            });
        }
        std::str::from_utf8(bytes).map_err(|_| CodeError::Malformed {
            kind: KIND,
            detail: "its body has text that is not printable ASCII",
        })
    }
}
