//! The crate's one error type: a variant for each way a datagram, a packet, an attribute or a
//! secret is refused, so that a server can count and log refusals by kind.
//!
//! ```
//! use entitle_radius::{Error, Packet};
//!
//! // Twelve octets: not even a header.
//! assert_eq!(Packet::decode(&[0; 12]), Err(Error::Truncated { len: 12 }));
//! ```

use crate::code::Code;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a datagram, a packet or a value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- Framing (RFC 2865 §3) ----
    /// The datagram is shorter than the 20-octet header.
    #[error("datagram of {len} octets is shorter than the 20-octet RADIUS header")]
    Truncated {
        /// Octets in the datagram.
        len: usize,
    },
    /// The Length field is below 20 or above 4096.
    #[error("length field {length} is outside 20..=4096")]
    LengthOutOfRange {
        /// The Length field.
        length: u16,
    },
    /// The Length field disagrees with the size of the datagram. RFC 2865 lets a receiver
    /// ignore octets past Length as padding; this codec refuses them as well as a short
    /// datagram, so that a decoded packet is exactly the datagram.
    #[error("length field says {length} octets but the datagram has {datagram}")]
    LengthMismatch {
        /// The Length field.
        length: u16,
        /// Octets in the datagram.
        datagram: usize,
    },
    /// The Code is not one of those this codec knows (see [`Code`]).
    #[error("unknown packet code {0}")]
    UnknownCode(u8),
    /// A single octet is left where an attribute's Type and Length should be.
    #[error("attribute at offset {offset} has no room for its Length octet")]
    AttributeTruncated {
        /// Offset of the attribute in the packet.
        offset: usize,
    },
    /// An attribute's Length is below 2, the size of its own Type and Length.
    #[error("attribute at offset {offset} has length {length}, below the minimum of 2")]
    AttributeTooShort {
        /// Offset of the attribute in the packet.
        offset: usize,
        /// The attribute's Length field.
        length: u8,
    },
    /// An attribute's Length runs past the end of the packet.
    #[error("attribute at offset {offset} has length {length} but only {remaining} octets remain")]
    AttributeOverrun {
        /// Offset of the attribute in the packet.
        offset: usize,
        /// The attribute's Length field.
        length: u8,
        /// Octets from the attribute to the end of the packet.
        remaining: usize,
    },
    /// An attribute's value is longer than the 253 octets a Length octet can describe.
    #[error("attribute {kind} has a {len}-octet value; at most 253 fit")]
    AttributeTooLong {
        /// The attribute's Type.
        kind: u8,
        /// Octets in its value.
        len: usize,
    },
    /// The packet would be longer than 4096 octets.
    #[error("packet of {length} octets exceeds the 4096-octet maximum")]
    PacketTooLong {
        /// Octets the packet would take.
        length: usize,
    },
    /// A Message-Authenticator whose Length is not 18 (RFC 3579 §3.2).
    #[error("Message-Authenticator has length {length}, not 18")]
    MessageAuthenticatorLength {
        /// Its Length: value octets plus two.
        length: usize,
    },
    /// More than one Message-Authenticator (RFC 3579 §3.2 allows at most one).
    #[error("more than one Message-Authenticator")]
    DuplicateMessageAuthenticator,

    // ---- Attribute values ----
    /// More than one attribute of a type that may appear at most once (User-Password).
    #[error("more than one attribute of type {kind}")]
    DuplicateAttribute {
        /// The attribute's Type.
        kind: u8,
    },
    /// An attribute's value does not have the form asked for (an integer, an address, text).
    #[error("attribute {kind} with a {len}-octet value is not {expected}")]
    AttributeValue {
        /// The attribute's Type.
        kind: u8,
        /// Octets in its value.
        len: usize,
        /// The form asked for.
        expected: &'static str,
    },
    /// Asked to parse as Vendor-Specific an attribute of another type.
    #[error("attribute {kind} is not Vendor-Specific (26)")]
    NotVendorSpecific {
        /// The attribute's Type.
        kind: u8,
    },
    /// A Vendor-Specific value too short for a Vendor-Id and one sub-attribute.
    #[error(
        "Vendor-Specific value of {len} octets is too short for a Vendor-Id and a sub-attribute"
    )]
    VendorSpecificTooShort {
        /// Octets in the value.
        len: usize,
    },
    /// A Vendor-Id whose high-order octet is not zero (RFC 2865 §5.26).
    #[error("Vendor-Id {vendor_id:#x} has a non-zero high-order octet")]
    VendorIdOutOfRange {
        /// The Vendor-Id.
        vendor_id: u32,
    },
    /// A vendor sub-attribute with a Vendor length below 2 or past the end of the value.
    #[error("vendor sub-attribute at offset {offset} of the Vendor-Specific value is malformed")]
    VendorSubAttribute {
        /// Offset of the sub-attribute in the Vendor-Specific value.
        offset: usize,
    },

    // ---- Authenticators ----
    /// The shared secret is empty (RFC 2865 §3 forbids it).
    #[error("the shared secret is empty")]
    EmptySecret,
    /// A request was expected and the packet's code is not one.
    #[error("{0} is not a request")]
    NotARequest(Code),
    /// The reply's code is not an answer to the request's (Access-Request takes
    /// Accept/Reject/Challenge; Accounting-Request takes Accounting-Response; Status-Server
    /// takes Access-Accept or Accounting-Response).
    #[error("{reply} is not a reply to {request}")]
    UnexpectedReply {
        /// The request's code.
        request: Code,
        /// The reply's code.
        reply: Code,
    },
    /// The reply's Identifier is not the request's.
    #[error("reply identifier {reply} does not match the request's {request}")]
    IdentifierMismatch {
        /// The request's Identifier.
        request: u8,
        /// The reply's Identifier.
        reply: u8,
    },
    /// A Message-Authenticator is required (by RFC 5997 for Status-Server, or by the
    /// [`Policy`](crate::Policy) asked for) and the packet has none.
    #[error("{0} carries no Message-Authenticator")]
    MissingMessageAuthenticator(Code),
    /// The Message-Authenticator is not the HMAC-MD5 of the packet under the secret.
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    /// The Accounting-Request or response Authenticator is not the MD5 the RFCs define.
    #[error("{0} authenticator does not verify")]
    BadAuthenticator(Code),

    // ---- User-Password (RFC 2865 §5.2) ----
    /// A password longer than 128 octets cannot be hidden.
    #[error("password of {len} octets is longer than 128")]
    PasswordTooLong {
        /// Octets in the password.
        len: usize,
    },
    /// A hidden User-Password that is empty, longer than 128 octets or not a multiple of 16.
    #[error("hidden User-Password of {len} octets is not 16 to 128 in multiples of 16")]
    HiddenPasswordLength {
        /// Octets in the hidden value.
        len: usize,
    },
}

impl TryFrom<u8> for Code {
    type Error = Error;

    fn try_from(octet: u8) -> Result<Code, Error> {
        Code::from_u8(octet).ok_or(Error::UnknownCode(octet))
    }
}
