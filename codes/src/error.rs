//! Why a code was refused: one variant per failure, each with one sentence for the operator.

use std::fmt;

use super::udi::{InvalidUdi, Udi};

/// A `Result` whose error is [`CodeError`].
pub type Result<T, E = CodeError> = std::result::Result<T, E>;

/// Which kind of code an error is about, as the operator would name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// The reservation request code (device to portal).
    Request,
    /// An authorisation code not yet known to be PLR or SLR.
    Authorization,
    /// The PLR authorisation code (portal to device).
    Plr,
    /// The SLR authorisation code (portal to device).
    Slr,
    /// The reservation return code (device to portal).
    Return,
}

impl fmt::Display for CodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodeKind::Request => "request",
            CodeKind::Authorization => "authorisation",
            CodeKind::Plr => "PLR authorisation",
            CodeKind::Slr => "SLR authorisation",
            CodeKind::Return => "return",
        })
    }
}

/// Why a code could not be made, parsed or verified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Nothing but whitespace was given.
    #[error("the {kind} code is empty")]
    Empty {
        /// The kind of code expected.
        kind: CodeKind,
    },
    /// A character outside printable ASCII (whitespace aside).
    #[error(
        "the {kind} code has a character that is not printable ASCII at position {position}: \
         copy it again from the original"
    )]
    NotAscii {
        /// The kind of code expected.
        kind: CodeKind,
        /// Where, counting characters from 1.
        position: usize,
    },
    /// Longer than any code of this kind.
    #[error("the {kind} code is {len} characters long, more than the {max} it can have")]
    TooLong {
        /// The kind of code expected.
        kind: CodeKind,
        /// Its length in bytes.
        len: usize,
        /// The most a code of this kind has.
        max: usize,
    },
    /// Shorter than any code of this kind.
    #[error("the {kind} code is {len} characters long, fewer than the {min} it needs")]
    TooShort {
        /// The kind of code expected.
        kind: CodeKind,
        /// Its length.
        len: usize,
        /// The fewest a code of this kind has.
        min: usize,
    },
    /// A character this kind of code never contains.
    #[error(
        "the {kind} code has {character:?} at position {position}, a character it never \
         contains: a character is mistyped"
    )]
    BadCharacter {
        /// The kind of code expected.
        kind: CodeKind,
        /// The character.
        character: char,
        /// Where, counting characters from 1 (after surrounding whitespace is removed).
        position: usize,
    },
    /// The parts of the code are not where they belong.
    #[error("the {kind} code is malformed: {detail}")]
    Malformed {
        /// The kind of code expected.
        kind: CodeKind,
        /// What is wrong, in a few words.
        detail: &'static str,
    },
    /// The typo check of a request or return code failed.
    #[error("the {kind} code's check does not match: a character is mistyped")]
    CheckMismatch {
        /// The kind of code.
        kind: CodeKind,
    },
    /// A format version this software does not know.
    #[error("the {kind} code has format version {version}, which this software does not know")]
    UnknownVersion {
        /// The kind of code.
        kind: CodeKind,
        /// The version it carries.
        version: u8,
    },
    /// A product id or serial number with characters or a length a UDI may not have.
    #[error("the {part} must be 1 to 64 letters, digits and - _ .")]
    InvalidUdi {
        /// "product id" or "serial number".
        part: &'static str,
    },
    /// The UDI does not fit in a request code of 32 characters.
    #[error(
        "the UDI {udi} has {len} characters in its product id and serial together; a request \
         code for request {sequence} holds at most {max} (32 characters in all)"
    )]
    UdiTooLong {
        /// The UDI.
        udi: Udi,
        /// Product id and serial, their lengths added.
        len: usize,
        /// The most that fits with this sequence number.
        max: usize,
        /// The request's sequence number.
        sequence: u32,
    },
    /// A smart account reference over 24 bits.
    #[error("the smart account reference {0} is over 16777215, the largest a PLR code carries")]
    AccountRefTooLarge(u32),
    /// A genuine SLR code for another device.
    #[error("this authorisation code is for device {code}, not {device}")]
    WrongDevice {
        /// The device the code is for.
        code: Udi,
        /// This device.
        device: Udi,
    },
    /// A genuine SLR code answering another request.
    #[error("this authorisation code answers request {code}, but the pending request is {pending}")]
    WrongSequence {
        /// The request the code answers.
        code: u32,
        /// The request this device has pending.
        pending: u32,
    },
    /// An SLR signature that does not verify.
    #[error(
        "the authorisation code's signature does not verify: it was altered or made by another \
         authority"
    )]
    BadSignature,
    /// A PLR signature that does not verify. A PLR code does not carry the device or the
    /// request (there is no room), so these causes cannot be told apart.
    #[error(
        "the PLR authorisation code does not verify for device {udi} and request {sequence}: \
         it answers another device or request, was made by another authority, or was altered"
    )]
    PlrDoesNotVerify {
        /// The device it was checked for.
        udi: Udi,
        /// The request it was checked for.
        sequence: u32,
    },
    /// The signature bytes are not a point of the curve's group.
    #[error("the {kind} code's signature is not a valid signature at all: it was altered")]
    SignatureEncoding {
        /// The kind of code.
        kind: CodeKind,
    },
    /// An SLR code with no licences.
    #[error("an SLR authorisation code must reserve at least one licence")]
    NoLicences,
    /// Too many licences for one SLR code.
    #[error("the SLR authorisation code reserves {count} licences; at most {max} are allowed")]
    TooManyLicences {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A licence tag that breaks the tag rule.
    #[error("a licence tag is invalid: use 1 to 64 letters, digits and - _ . :")]
    InvalidTag,
    /// A reserved quantity of zero.
    #[error("the SLR authorisation code reserves 0 of {tag}; every quantity must be at least 1")]
    ZeroQuantity {
        /// The licence tag.
        tag: String,
    },
    /// Licence tags out of order or repeated in an SLR body.
    #[error("the SLR authorisation code lists its licences out of order or twice")]
    UnorderedLicences,
    /// A smart or virtual account name that breaks the name rule.
    #[error(
        "the {what} must be 1 to 64 letters, digits, spaces and - _ . @, with no space at either end"
    )]
    InvalidName {
        /// "smart account" or "virtual account".
        what: &'static str,
    },
    /// An SLR code that would be longer than devices accept.
    #[error(
        "the reservation makes an SLR code of {len} characters, more than the {max} devices accept"
    )]
    SlrTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Text that is neither a PLR nor an SLR authorisation code.
    #[error(
        "this is not an authorisation code: a PLR code has 64 characters and an SLR code \
         starts with SLR1. (this has {len} characters)"
    )]
    NotAuthorization {
        /// Its length, whitespace removed.
        len: usize,
    },
    /// Public key bytes that are not a valid key.
    #[error("the code verifying key is not a valid BLS12-381 public key of 96 bytes")]
    InvalidVerifyingKey,
    /// Secret key bytes that are not a valid key.
    #[error("the code signing key is not a valid BLS12-381 secret key of 32 bytes")]
    InvalidSigningKey,
}

impl From<InvalidUdi> for CodeError {
    fn from(e: InvalidUdi) -> Self {
        CodeError::InvalidUdi { part: e.part }
    }
}
