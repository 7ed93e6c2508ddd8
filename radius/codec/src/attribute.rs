//! Attributes: a Type octet and a value of up to 253 octets, kept exactly as received; the
//! Type numbers of the well-known attributes; and readers and makers for the integer,
//! address and text forms (RFC 2865 §5, RFC 2866 §5, RFC 2869, RFC 3579).
//!
//! ```
//! use std::net::Ipv4Addr;
//! use entitle_radius::attribute::{self, Attribute, NAS_IP_ADDRESS, SESSION_TIMEOUT};
//!
//! let timeout = Attribute::from_u32(SESSION_TIMEOUT, 3600);
//! assert_eq!(timeout.value, [0, 0, 0x0e, 0x10]);
//! assert_eq!(timeout.as_u32()?, 3600);
//!
//! let nas = Attribute::from_ipv4(NAS_IP_ADDRESS, Ipv4Addr::new(192, 168, 1, 16));
//! assert_eq!(nas.as_ipv4()?, Ipv4Addr::new(192, 168, 1, 16));
//! assert_eq!(attribute::name(nas.kind), Some("NAS-IP-Address"));
//! # Ok::<(), entitle_radius::Error>(())
//! ```

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// The longest value an attribute can carry: its Length octet counts Type and Length too.
pub const MAX_VALUE_LEN: usize = 253;

/// One attribute as it is on the wire: Type, then the value (Length is the value's length
/// plus two). A packet keeps its attributes in order, duplicates included.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The Type octet, e.g. [`USER_NAME`].
    pub kind: u8,
    /// The value, at most [`MAX_VALUE_LEN`] octets for the packet to encode.
    pub value: Vec<u8>,
}

impl Attribute {
    /// An attribute with a raw value (text, octets, or anything already encoded).
    pub fn new(kind: u8, value: impl Into<Vec<u8>>) -> Attribute {
        Attribute {
            kind,
            value: value.into(),
        }
    }

    /// An "integer" attribute: four octets, big-endian (e.g. [`NAS_PORT`], [`SESSION_TIMEOUT`]).
    pub fn from_u32(kind: u8, value: u32) -> Attribute {
        Attribute::new(kind, value.to_be_bytes())
    }

    /// An "address" attribute: four octets (e.g. [`NAS_IP_ADDRESS`]).
    pub fn from_ipv4(kind: u8, address: Ipv4Addr) -> Attribute {
        Attribute::new(kind, address.octets())
    }

    /// The value as an "integer"; [`Error::AttributeValue`] unless it is four octets.
    pub fn as_u32(&self) -> Result<u32> {
        let octets: [u8; 4] = self
            .value
            .as_slice()
            .try_into()
            .map_err(|_| self.not("an integer"))?;
        Ok(u32::from_be_bytes(octets))
    }

    /// The value as an IPv4 "address"; [`Error::AttributeValue`] unless it is four octets.
    pub fn as_ipv4(&self) -> Result<Ipv4Addr> {
        let octets: [u8; 4] = self
            .value
            .as_slice()
            .try_into()
            .map_err(|_| self.not("an IPv4 address"))?;
        Ok(Ipv4Addr::from(octets))
    }

    /// The value as "text" (UTF-8, RFC 2865 §5); [`Error::AttributeValue`] if it is not UTF-8.
    pub fn as_str(&self) -> Result<&str> {
        std::str::from_utf8(&self.value).map_err(|_| self.not("UTF-8 text"))
    }

    /// Octets the attribute takes in a packet: the value plus Type and Length.
    pub fn encoded_len(&self) -> usize {
        self.value.len() + 2
    }

    fn not(&self, expected: &'static str) -> Error {
        Error::AttributeValue {
            kind: self.kind,
            len: self.value.len(),
            expected,
        }
    }
}

macro_rules! well_known {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        $($(#[$doc])* pub const $name: u8 = $value;)*

        /// The RFC name of a well-known attribute Type, e.g. `Some("User-Name")` for 1.
        pub fn name(kind: u8) -> Option<&'static str> {
            match kind {
                $($value => Some($text),)*
                _ => None,
            }
        }
    };
}

well_known! {
    /// User-Name (1, RFC 2865 §5.1).
    USER_NAME = 1, "User-Name";
    /// User-Password (2, RFC 2865 §5.2), hidden with the secret: see [`crate::password`].
    USER_PASSWORD = 2, "User-Password";
    /// CHAP-Password (3, RFC 2865 §5.3).
    CHAP_PASSWORD = 3, "CHAP-Password";
    /// NAS-IP-Address (4, RFC 2865 §5.4).
    NAS_IP_ADDRESS = 4, "NAS-IP-Address";
    /// NAS-Port (5, RFC 2865 §5.5).
    NAS_PORT = 5, "NAS-Port";
    /// Service-Type (6, RFC 2865 §5.6).
    SERVICE_TYPE = 6, "Service-Type";
    /// Framed-Protocol (7, RFC 2865 §5.7).
    FRAMED_PROTOCOL = 7, "Framed-Protocol";
    /// Framed-IP-Address (8, RFC 2865 §5.8).
    FRAMED_IP_ADDRESS = 8, "Framed-IP-Address";
    /// Framed-IP-Netmask (9, RFC 2865 §5.9).
    FRAMED_IP_NETMASK = 9, "Framed-IP-Netmask";
    /// Filter-Id (11, RFC 2865 §5.11).
    FILTER_ID = 11, "Filter-Id";
    /// Framed-MTU (12, RFC 2865 §5.12).
    FRAMED_MTU = 12, "Framed-MTU";
    /// Framed-Compression (13, RFC 2865 §5.13).
    FRAMED_COMPRESSION = 13, "Framed-Compression";
    /// Login-IP-Host (14, RFC 2865 §5.14).
    LOGIN_IP_HOST = 14, "Login-IP-Host";
    /// Login-Service (15, RFC 2865 §5.15).
    LOGIN_SERVICE = 15, "Login-Service";
    /// Login-TCP-Port (16, RFC 2865 §5.16).
    LOGIN_TCP_PORT = 16, "Login-TCP-Port";
    /// Reply-Message (18, RFC 2865 §5.18).
    REPLY_MESSAGE = 18, "Reply-Message";
    /// State (24, RFC 2865 §5.24): copied from an Access-Challenge into the next request.
    STATE = 24, "State";
    /// Class (25, RFC 2865 §5.25): copied from an Access-Accept into accounting.
    CLASS = 25, "Class";
    /// Vendor-Specific (26, RFC 2865 §5.26): see [`crate::vsa`].
    VENDOR_SPECIFIC = 26, "Vendor-Specific";
    /// Session-Timeout (27, RFC 2865 §5.27).
    SESSION_TIMEOUT = 27, "Session-Timeout";
    /// Idle-Timeout (28, RFC 2865 §5.28).
    IDLE_TIMEOUT = 28, "Idle-Timeout";
    /// Termination-Action (29, RFC 2865 §5.29).
    TERMINATION_ACTION = 29, "Termination-Action";
    /// Called-Station-Id (30, RFC 2865 §5.30).
    CALLED_STATION_ID = 30, "Called-Station-Id";
    /// Calling-Station-Id (31, RFC 2865 §5.31).
    CALLING_STATION_ID = 31, "Calling-Station-Id";
    /// NAS-Identifier (32, RFC 2865 §5.32).
    NAS_IDENTIFIER = 32, "NAS-Identifier";
    /// Proxy-State (33, RFC 2865 §5.33): see [`Packet::push_proxy_state`](crate::Packet::push_proxy_state).
    PROXY_STATE = 33, "Proxy-State";
    /// Acct-Status-Type (40, RFC 2866 §5.1).
    ACCT_STATUS_TYPE = 40, "Acct-Status-Type";
    /// Acct-Delay-Time (41, RFC 2866 §5.2).
    ACCT_DELAY_TIME = 41, "Acct-Delay-Time";
    /// Acct-Input-Octets (42, RFC 2866 §5.3).
    ACCT_INPUT_OCTETS = 42, "Acct-Input-Octets";
    /// Acct-Output-Octets (43, RFC 2866 §5.4).
    ACCT_OUTPUT_OCTETS = 43, "Acct-Output-Octets";
    /// Acct-Session-Id (44, RFC 2866 §5.5).
    ACCT_SESSION_ID = 44, "Acct-Session-Id";
    /// Acct-Authentic (45, RFC 2866 §5.6).
    ACCT_AUTHENTIC = 45, "Acct-Authentic";
    /// Acct-Session-Time (46, RFC 2866 §5.7).
    ACCT_SESSION_TIME = 46, "Acct-Session-Time";
    /// Acct-Input-Packets (47, RFC 2866 §5.8).
    ACCT_INPUT_PACKETS = 47, "Acct-Input-Packets";
    /// Acct-Output-Packets (48, RFC 2866 §5.9).
    ACCT_OUTPUT_PACKETS = 48, "Acct-Output-Packets";
    /// Acct-Terminate-Cause (49, RFC 2866 §5.10).
    ACCT_TERMINATE_CAUSE = 49, "Acct-Terminate-Cause";
    /// Acct-Multi-Session-Id (50, RFC 2866 §5.11).
    ACCT_MULTI_SESSION_ID = 50, "Acct-Multi-Session-Id";
    /// Acct-Link-Count (51, RFC 2866 §5.12).
    ACCT_LINK_COUNT = 51, "Acct-Link-Count";
    /// Event-Timestamp (55, RFC 2869 §5.3).
    EVENT_TIMESTAMP = 55, "Event-Timestamp";
    /// CHAP-Challenge (60, RFC 2865 §5.40).
    CHAP_CHALLENGE = 60, "CHAP-Challenge";
    /// NAS-Port-Type (61, RFC 2865 §5.41).
    NAS_PORT_TYPE = 61, "NAS-Port-Type";
    /// Port-Limit (62, RFC 2865 §5.42).
    PORT_LIMIT = 62, "Port-Limit";
    /// EAP-Message (79, RFC 3579 §3.1).
    EAP_MESSAGE = 79, "EAP-Message";
    /// Message-Authenticator (80, RFC 3579 §3.2): HMAC-MD5 of the packet; see [`crate::auth`].
    MESSAGE_AUTHENTICATOR = 80, "Message-Authenticator";
    /// NAS-Port-Id (87, RFC 2869 §5.17).
    NAS_PORT_ID = 87, "NAS-Port-Id";
    /// NAS-IPv6-Address (95, RFC 3162 §2.1).
    NAS_IPV6_ADDRESS = 95, "NAS-IPv6-Address";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_addresses_are_four_octets_big_endian() {
        let port = Attribute::from_u32(NAS_PORT, 3);
        assert_eq!(port.value, [0, 0, 0, 3]);
        assert_eq!(port.encoded_len(), 6);
        assert_eq!(port.as_u32(), Ok(3));
        assert_eq!(port.as_ipv4(), Ok(Ipv4Addr::new(0, 0, 0, 3)));
    }

    #[test]
    fn a_value_of_the_wrong_size_is_refused_not_truncated() {
        let odd = Attribute::new(SESSION_TIMEOUT, [0, 1, 2]);
        assert_eq!(
            odd.as_u32(),
            Err(Error::AttributeValue {
                kind: SESSION_TIMEOUT,
                len: 3,
                expected: "an integer"
            })
        );
        assert!(Attribute::new(NAS_IP_ADDRESS, [1; 5]).as_ipv4().is_err());
    }

    #[test]
    fn text_must_be_utf8() {
        assert_eq!(Attribute::new(USER_NAME, "nemo").as_str(), Ok("nemo"));
        assert!(Attribute::new(USER_NAME, [0xff, 0xfe]).as_str().is_err());
    }

    #[test]
    fn names_of_well_known_types() {
        assert_eq!(name(USER_NAME), Some("User-Name"));
        assert_eq!(name(MESSAGE_AUTHENTICATOR), Some("Message-Authenticator"));
        assert_eq!(name(PROXY_STATE), Some("Proxy-State"));
        assert_eq!(name(200), None);
    }
}
