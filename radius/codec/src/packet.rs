//! Framing (RFC 2865 §3): the 20-octet header and the attributes after it, decoded strictly
//! and encoded back to exactly the same octets.
//!
//! Decoding refuses a datagram shorter than 20 octets, a Length below 20 or above 4096 or
//! other than the datagram's size, an unknown Code, an attribute whose Length is below 2 or
//! runs past the end, and a Message-Authenticator that is not 18 octets long or appears
//! twice. It changes nothing: every attribute keeps its place and its octets, so
//! [`Packet::encode`] gives the datagram back. Nothing here checks a secret; that is
//! [`crate::auth`].
//!
//! ```
//! use entitle_radius::attribute::{Attribute, NAS_PORT, USER_NAME};
//! use entitle_radius::{header, Code, Packet};
//!
//! let packet = Packet::new(Code::AccessRequest, 7, [0x42; 16])
//!     .with(Attribute::new(USER_NAME, "nemo"))
//!     .with(Attribute::from_u32(NAS_PORT, 3));
//! let datagram = packet.encode()?;
//! assert_eq!(datagram.len(), 20 + 6 + 6);
//!
//! // The cheap look at the header, then the full decode.
//! let head = header(&datagram)?;
//! assert_eq!((head.code, head.identifier, head.length), (Code::AccessRequest, 7, 32));
//! let decoded = Packet::decode(&datagram)?;
//! assert_eq!(decoded, packet);
//! assert_eq!(decoded.get(USER_NAME).map(|a| a.as_str()), Some(Ok("nemo")));
//! # Ok::<(), entitle_radius::Error>(())
//! ```

use crate::attribute::{Attribute, MAX_VALUE_LEN, MESSAGE_AUTHENTICATOR, PROXY_STATE};
use crate::code::Code;
use crate::error::{Error, Result};

/// Octets in the header: Code, Identifier, Length (two) and the 16-octet Authenticator.
pub const HEADER_LEN: usize = 20;
/// The largest packet RFC 2865 §3 allows.
pub const MAX_PACKET_LEN: usize = 4096;
/// Octets in an Authenticator, and in a Message-Authenticator's value.
pub const AUTHENTICATOR_LEN: usize = 16;

/// The fixed fields of a datagram, read without decoding the attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The packet's code.
    pub code: Code,
    /// The Identifier that matches a reply to its request.
    pub identifier: u8,
    /// The Length field, which [`header`] has checked equals the datagram's size.
    pub length: u16,
}

/// Reads and checks the header of a datagram without allocating or looking at the
/// attributes: the datagram is at least 20 octets, Length is within 20..=4096 and equals
/// the datagram's size, and the Code is known. [`Packet::decode`] makes the same checks,
/// in the same order, first.
pub fn header(datagram: &[u8]) -> Result<Header> {
    let Some(&[code, identifier, hi, lo, ..]) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(Error::Truncated {
            len: datagram.len(),
        });
    };
    let length = u16::from_be_bytes([hi, lo]);
    if usize::from(length) < HEADER_LEN || usize::from(length) > MAX_PACKET_LEN {
        return Err(Error::LengthOutOfRange { length });
    }
    if usize::from(length) != datagram.len() {
        return Err(Error::LengthMismatch {
            length,
            datagram: datagram.len(),
        });
    }
    Ok(Header {
        code: Code::try_from(code)?,
        identifier,
        length,
    })
}

/// A RADIUS packet: the header's fields and the attributes in order.
///
/// The fields are public, so a packet can be built or changed freely; [`Packet::encode`]
/// (and the signing encoders of [`crate::auth`]) check it again before writing it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The packet's code.
    pub code: Code,
    /// The Identifier that matches a reply to its request.
    pub identifier: u8,
    /// The Request or Response Authenticator. For an Access-Request or Status-Server the
    /// caller supplies 16 unpredictable octets; the other authenticators are computed by
    /// [`Packet::encode_request`] and [`Packet::encode_response`].
    pub authenticator: [u8; AUTHENTICATOR_LEN],
    /// The attributes in the order they are on the wire, duplicates included.
    pub attributes: Vec<Attribute>,
}

impl Packet {
    /// A packet with no attributes.
    pub fn new(code: Code, identifier: u8, authenticator: [u8; AUTHENTICATOR_LEN]) -> Packet {
        Packet {
            code,
            identifier,
            authenticator,
            attributes: Vec::new(),
        }
    }

    /// Decodes a datagram, refusing anything malformed (see the [module docs](self)).
    pub fn decode(datagram: &[u8]) -> Result<Packet> {
        let head = header(datagram)?;
        let mut authenticator = [0; AUTHENTICATOR_LEN];
        authenticator.copy_from_slice(&datagram[4..HEADER_LEN]);
        let mut attributes = Vec::new();
        let mut offset = HEADER_LEN;
        while let Some(rest) = datagram.get(offset..).filter(|rest| !rest.is_empty()) {
            let &[kind, length, ..] = rest else {
                return Err(Error::AttributeTruncated { offset });
            };
            if length < 2 {
                return Err(Error::AttributeTooShort { offset, length });
            }
            let Some(value) = rest.get(2..usize::from(length)) else {
                return Err(Error::AttributeOverrun {
                    offset,
                    length,
                    remaining: rest.len(),
                });
            };
            attributes.push(Attribute::new(kind, value));
            offset += usize::from(length);
        }
        let packet = Packet {
            code: head.code,
            identifier: head.identifier,
            authenticator,
            attributes,
        };
        packet.message_authenticator_index()?;
        Ok(packet)
    }

    /// Encodes the packet as it stands, authenticator and Message-Authenticator included,
    /// without computing either (for that, see [`Packet::encode_request`] and
    /// [`Packet::encode_response`]). Refuses a value over 253 octets, a Message-Authenticator
    /// not 16 octets long or present twice, and a packet over 4096 octets, so that whatever
    /// encodes also decodes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let length = self.checked_length()?;
        let mut out = Vec::with_capacity(usize::from(length));
        out.push(self.code.as_u8());
        out.push(self.identifier);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        for attribute in &self.attributes {
            out.push(attribute.kind);
            out.push(attribute_length(attribute));
            out.extend_from_slice(&attribute.value);
        }
        Ok(out)
    }

    /// Appends an attribute, builder style.
    pub fn with(mut self, attribute: Attribute) -> Packet {
        self.attributes.push(attribute);
        self
    }

    /// Appends an attribute.
    pub fn push(&mut self, attribute: Attribute) {
        self.attributes.push(attribute);
    }

    /// The first attribute of a type.
    pub fn get(&self, kind: u8) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind == kind)
    }

    /// Every attribute of a type, in order.
    pub fn get_all(&self, kind: u8) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(move |a| a.kind == kind)
    }

    /// Removes every attribute of a type; returns how many there were.
    pub fn remove_all(&mut self, kind: u8) -> usize {
        let before = self.attributes.len();
        self.attributes.retain(|a| a.kind != kind);
        before - self.attributes.len()
    }

    /// The start of a reply to this request: the same Identifier, this packet's
    /// authenticator as a placeholder (replaced by [`Packet::encode_response`]), and the
    /// request's Proxy-State attributes copied in order, as RFC 2865 §5.33 requires.
    pub fn reply(&self, code: Code) -> Packet {
        Packet {
            code,
            identifier: self.identifier,
            authenticator: self.authenticator,
            attributes: self.get_all(PROXY_STATE).cloned().collect(),
        }
    }

    /// Checks what [`Packet::encode`] checks and returns the Length the packet would have.
    pub(crate) fn checked_length(&self) -> Result<u16> {
        let mut length = HEADER_LEN;
        for attribute in &self.attributes {
            if attribute.value.len() > MAX_VALUE_LEN {
                return Err(Error::AttributeTooLong {
                    kind: attribute.kind,
                    len: attribute.value.len(),
                });
            }
            length += attribute.encoded_len();
        }
        self.message_authenticator_index()?;
        if length > MAX_PACKET_LEN {
            return Err(Error::PacketTooLong { length });
        }
        Ok(u16::try_from(length).expect("at most MAX_PACKET_LEN, which fits in u16"))
    }

    /// Where the one Message-Authenticator is, if any; refuses a second one or one whose
    /// value is not 16 octets.
    pub(crate) fn message_authenticator_index(&self) -> Result<Option<usize>> {
        let mut found = None;
        for (index, attribute) in self.attributes.iter().enumerate() {
            if attribute.kind != MESSAGE_AUTHENTICATOR {
                continue;
            }
            if attribute.value.len() != AUTHENTICATOR_LEN {
                return Err(Error::MessageAuthenticatorLength {
                    length: attribute.encoded_len(),
                });
            }
            if found.is_some() {
                return Err(Error::DuplicateMessageAuthenticator);
            }
            found = Some(index);
        }
        Ok(found)
    }
}

/// The Length octet of an attribute already checked by [`Packet::checked_length`].
pub(crate) fn attribute_length(attribute: &Attribute) -> u8 {
    u8::try_from(attribute.encoded_len()).expect("values are checked to be at most 253 octets")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::{NAS_PORT, REPLY_MESSAGE, USER_NAME};

    fn datagram(code: u8, attributes: &[u8]) -> Vec<u8> {
        let length = u16::try_from(HEADER_LEN + attributes.len()).unwrap();
        let mut out = vec![code, 9];
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&[0xab; 16]);
        out.extend_from_slice(attributes);
        out
    }

    #[test]
    fn decodes_in_order_with_duplicates_and_encodes_back() {
        let bytes = datagram(
            2,
            &[
                18, 4, b'h', b'i', 18, 4, b'h', b'i', 5, 6, 0, 0, 0, 1, 18, 2,
            ],
        );
        let packet = Packet::decode(&bytes).unwrap();
        assert_eq!(packet.code, Code::AccessAccept);
        assert_eq!(packet.identifier, 9);
        assert_eq!(packet.authenticator, [0xab; 16]);
        let kinds: Vec<u8> = packet.attributes.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [REPLY_MESSAGE, REPLY_MESSAGE, NAS_PORT, REPLY_MESSAGE]
        );
        assert_eq!(packet.get_all(REPLY_MESSAGE).count(), 3);
        assert!(packet.attributes[3].value.is_empty());
        assert_eq!(packet.encode().unwrap(), bytes);
    }

    #[test]
    fn header_checks_in_order() {
        assert_eq!(header(&[]), Err(Error::Truncated { len: 0 }));
        assert_eq!(header(&[1; 19]), Err(Error::Truncated { len: 19 }));
        let mut bytes = datagram(1, &[]);
        assert_eq!(header(&bytes).unwrap().length, 20);
        bytes[3] = 19;
        assert_eq!(header(&bytes), Err(Error::LengthOutOfRange { length: 19 }));
        bytes[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(
            header(&bytes),
            Err(Error::LengthOutOfRange { length: 4097 })
        );
        bytes[2..4].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(
            header(&bytes),
            Err(Error::LengthMismatch {
                length: 21,
                datagram: 20
            })
        );
        bytes[2..4].copy_from_slice(&20u16.to_be_bytes());
        bytes[0] = 40;
        assert_eq!(header(&bytes), Err(Error::UnknownCode(40)));
    }

    #[test]
    fn encode_refuses_what_decode_would() {
        let mut packet = Packet::new(Code::AccessAccept, 1, [0; 16]);
        packet.push(Attribute::new(REPLY_MESSAGE, vec![b'x'; 254]));
        assert_eq!(
            packet.encode(),
            Err(Error::AttributeTooLong {
                kind: REPLY_MESSAGE,
                len: 254
            })
        );
        packet.attributes[0].value.truncate(253);
        assert_eq!(packet.encode().unwrap().len(), 20 + 255);
        for _ in 0..15 {
            packet.push(Attribute::new(REPLY_MESSAGE, vec![b'x'; 253]));
        }
        assert_eq!(
            packet.encode(),
            Err(Error::PacketTooLong {
                length: 20 + 16 * 255
            })
        );
        packet.attributes.truncate(1);
        packet.push(Attribute::new(MESSAGE_AUTHENTICATOR, [0; 15]));
        assert_eq!(
            packet.encode(),
            Err(Error::MessageAuthenticatorLength { length: 17 })
        );
        packet.attributes[1].value.push(0);
        packet.push(Attribute::new(MESSAGE_AUTHENTICATOR, [0; 16]));
        assert_eq!(packet.encode(), Err(Error::DuplicateMessageAuthenticator));
    }

    #[test]
    fn a_reply_keeps_the_identifier_and_the_proxy_states() {
        let request = Packet::new(Code::AccessRequest, 77, [5; 16])
            .with(Attribute::new(PROXY_STATE, "a"))
            .with(Attribute::new(USER_NAME, "nemo"))
            .with(Attribute::new(PROXY_STATE, "b"));
        let reply = request.reply(Code::AccessReject);
        assert_eq!((reply.code, reply.identifier), (Code::AccessReject, 77));
        assert_eq!(
            reply.attributes,
            [
                Attribute::new(PROXY_STATE, "a"),
                Attribute::new(PROXY_STATE, "b")
            ]
        );
    }

    #[test]
    fn remove_all_counts() {
        let mut packet = Packet::new(Code::AccessAccept, 1, [0; 16])
            .with(Attribute::new(REPLY_MESSAGE, "a"))
            .with(Attribute::from_u32(NAS_PORT, 1))
            .with(Attribute::new(REPLY_MESSAGE, "b"));
        assert_eq!(packet.remove_all(REPLY_MESSAGE), 2);
        assert_eq!(packet.attributes, [Attribute::from_u32(NAS_PORT, 1)]);
    }
}
