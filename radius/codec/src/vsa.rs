//! Vendor-Specific attributes (RFC 2865 §5.26): a four-octet Vendor-Id whose high-order
//! octet is zero, then sub-attributes of Vendor type, Vendor length and value.
//!
//! A packet keeps a Vendor-Specific attribute as raw octets like any other, so one that
//! does not follow this layout still decodes and re-encodes unchanged; it is refused only
//! when asked to be parsed here.
//!
//! ```
//! use entitle_radius::attribute::VENDOR_SPECIFIC;
//! use entitle_radius::VendorSpecific;
//!
//! // Cisco (9) AV-Pair (1).
//! let vsa = VendorSpecific::new(9).with(1, "shell:priv-lvl=15");
//! let attribute = vsa.to_attribute()?;
//! assert_eq!(attribute.kind, VENDOR_SPECIFIC);
//! assert_eq!(&attribute.value[..6], [0, 0, 0, 9, 1, 19]);
//! assert_eq!(VendorSpecific::parse(&attribute)?, vsa);
//! # Ok::<(), entitle_radius::Error>(())
//! ```

use crate::attribute::{Attribute, MAX_VALUE_LEN, VENDOR_SPECIFIC};
use crate::error::{Error, Result};

/// A Vendor-Specific attribute's contents: the Vendor-Id and the vendor's sub-attributes,
/// each an [`Attribute`] whose `kind` is the Vendor type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VendorSpecific {
    /// The vendor's SMI Private Enterprise Number (below 2^24).
    pub vendor_id: u32,
    /// The sub-attributes in order.
    pub attributes: Vec<Attribute>,
}

impl VendorSpecific {
    /// An empty Vendor-Specific for a vendor; it needs a sub-attribute to be encoded.
    pub fn new(vendor_id: u32) -> VendorSpecific {
        VendorSpecific {
            vendor_id,
            attributes: Vec::new(),
        }
    }

    /// Appends a sub-attribute, builder style.
    pub fn with(mut self, vendor_type: u8, value: impl Into<Vec<u8>>) -> VendorSpecific {
        self.attributes.push(Attribute::new(vendor_type, value));
        self
    }

    /// Parses a Vendor-Specific attribute, refusing another type, a value too short for a
    /// Vendor-Id and a sub-attribute, a Vendor-Id of 2^24 or more, and a sub-attribute whose
    /// Vendor length is below 2 or runs past the end.
    pub fn parse(attribute: &Attribute) -> Result<VendorSpecific> {
        if attribute.kind != VENDOR_SPECIFIC {
            return Err(Error::NotVendorSpecific {
                kind: attribute.kind,
            });
        }
        let value = attribute.value.as_slice();
        let Some((&id, mut rest)) = value.split_first_chunk::<4>().filter(|(_, r)| r.len() >= 2)
        else {
            return Err(Error::VendorSpecificTooShort { len: value.len() });
        };
        let vendor_id = u32::from_be_bytes(id);
        if vendor_id >> 24 != 0 {
            return Err(Error::VendorIdOutOfRange { vendor_id });
        }
        let mut attributes = Vec::new();
        while !rest.is_empty() {
            let offset = value.len() - rest.len();
            let malformed = Error::VendorSubAttribute { offset };
            let &[kind, length, ..] = rest else {
                return Err(malformed);
            };
            let length = usize::from(length);
            let sub_value = rest.get(2..length).ok_or(malformed)?;
            attributes.push(Attribute::new(kind, sub_value));
            rest = &rest[length..];
        }
        Ok(VendorSpecific {
            vendor_id,
            attributes,
        })
    }

    /// The Vendor-Specific attribute, refusing what [`VendorSpecific::parse`] would: no
    /// sub-attribute, a Vendor-Id of 2^24 or more, and a value over 253 octets.
    pub fn to_attribute(&self) -> Result<Attribute> {
        if self.vendor_id >> 24 != 0 {
            return Err(Error::VendorIdOutOfRange {
                vendor_id: self.vendor_id,
            });
        }
        let len = 4 + self
            .attributes
            .iter()
            .map(Attribute::encoded_len)
            .sum::<usize>();
        if self.attributes.is_empty() {
            return Err(Error::VendorSpecificTooShort { len });
        }
        if len > MAX_VALUE_LEN {
            return Err(Error::AttributeTooLong {
                kind: VENDOR_SPECIFIC,
                len,
            });
        }
        let mut value = Vec::with_capacity(len);
        value.extend_from_slice(&self.vendor_id.to_be_bytes());
        for sub in &self.attributes {
            // At most 253 in all, so each Vendor length fits in an octet.
            value.push(sub.kind);
            value.push(u8::try_from(sub.encoded_len()).expect("checked: the whole is at most 253"));
            value.extend_from_slice(&sub.value);
        }
        Ok(Attribute::new(VENDOR_SPECIFIC, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsa(value: &[u8]) -> Attribute {
        Attribute::new(VENDOR_SPECIFIC, value)
    }

    #[test]
    fn parses_several_sub_attributes() {
        let raw = vsa(&[0, 0, 0x01, 0x37, 1, 5, b'a', b'b', b'c', 2, 2]);
        let parsed = VendorSpecific::parse(&raw).unwrap();
        assert_eq!(parsed.vendor_id, 311);
        assert_eq!(
            parsed.attributes,
            [Attribute::new(1, "abc"), Attribute::new(2, [])]
        );
        assert_eq!(parsed.to_attribute().unwrap(), raw);
    }

    #[test]
    fn malformed_values_have_their_own_errors() {
        assert_eq!(
            VendorSpecific::parse(&Attribute::new(1, [0; 8])),
            Err(Error::NotVendorSpecific { kind: 1 })
        );
        assert_eq!(
            VendorSpecific::parse(&vsa(&[0, 0, 0, 9, 1])),
            Err(Error::VendorSpecificTooShort { len: 5 })
        );
        assert_eq!(
            VendorSpecific::parse(&vsa(&[1, 0, 0, 9, 1, 2])),
            Err(Error::VendorIdOutOfRange {
                vendor_id: 0x0100_0009
            })
        );
        // Vendor length 1, past the end, and a lone trailing octet.
        for (value, offset) in [
            (&[0, 0, 0, 9, 1, 1][..], 4),
            (&[0, 0, 0, 9, 1, 4, b'x'][..], 4),
            (&[0, 0, 0, 9, 1, 2, 7][..], 6),
        ] {
            assert_eq!(
                VendorSpecific::parse(&vsa(value)),
                Err(Error::VendorSubAttribute { offset })
            );
        }
    }

    #[test]
    fn to_attribute_refuses_what_parse_would() {
        assert_eq!(
            VendorSpecific::new(9).to_attribute(),
            Err(Error::VendorSpecificTooShort { len: 4 })
        );
        assert!(
            VendorSpecific::new(1 << 24)
                .with(1, "x")
                .to_attribute()
                .is_err()
        );
        let long = VendorSpecific::new(9).with(1, vec![0; 247]);
        assert_eq!(long.to_attribute().unwrap().value.len(), 253);
        let longer = VendorSpecific::new(9).with(1, vec![0; 248]);
        assert_eq!(
            longer.to_attribute(),
            Err(Error::AttributeTooLong {
                kind: VENDOR_SPECIFIC,
                len: 254
            })
        );
    }
}
