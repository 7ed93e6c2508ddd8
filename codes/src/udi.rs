//! The unique device identifier a code is bound to: product id and serial number.

use std::fmt;

/// A device's UDI: its product id (`CPAR`) and serial number, each 1 to 64 letters, digits
/// and `- _ .`. Shown as `CPAR/SN1`.
///
/// ```
/// use entitle_codes::Udi;
///
/// let udi = Udi::new("CPAR", "SN1")?;
/// assert_eq!(udi.to_string(), "CPAR/SN1");
/// assert!(Udi::new("CPAR", "SN 1").is_err());
/// # Ok::<(), entitle_codes::CodeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Udi {
    product_id: String,
    serial: String,
}

/// A product id or serial number with characters or a length a UDI may not have; becomes
/// [`CodeError::InvalidUdi`](crate::CodeError::InvalidUdi).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {part} must be 1 to 64 letters, digits and - _ .")]
pub struct InvalidUdi {
    /// "product id" or "serial number".
    pub part: &'static str,
}

/// The longest product id or serial number.
pub const MAX_UDI_PART_LEN: usize = 64;

impl Udi {
    /// A UDI, refusing a part that is empty, longer than 64 or has other characters.
    pub fn new(
        product_id: impl Into<String>,
        serial: impl Into<String>,
    ) -> Result<Self, InvalidUdi> {
        let product_id = product_id.into();
        let serial = serial.into();
        if !is_valid_part(&product_id) {
            return Err(InvalidUdi { part: "product id" });
        }
        if !is_valid_part(&serial) {
            return Err(InvalidUdi {
                part: "serial number",
            });
        }
        Ok(Self { product_id, serial })
    }

    /// The product id.
    pub fn product_id(&self) -> &str {
        &self.product_id
    }

    /// The serial number.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Product id and serial as they enter a signed message: each preceded by its length.
    pub(crate) fn signing_bytes(&self, out: &mut Vec<u8>) {
        for part in [&self.product_id, &self.serial] {
            // A part is at most 64 bytes, so its length fits a byte.
            out.push(part.len() as u8);
            out.extend_from_slice(part.as_bytes());
        }
    }
}

impl fmt::Display for Udi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.product_id, self.serial)
    }
}

/// Whether `c` may appear in a product id or serial number.
pub(crate) fn is_udi_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
}

fn is_valid_part(part: &str) -> bool {
    (1..=MAX_UDI_PART_LEN).contains(&part.len()) && part.bytes().all(is_udi_char)
}
