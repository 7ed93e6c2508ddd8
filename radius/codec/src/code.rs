//! Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5997) and which reply answers which request.
//!
//! ```
//! use entitle_radius::Code;
//!
//! let code = Code::try_from(12)?;
//! assert_eq!(code, Code::StatusServer);
//! assert!(code.is_request());
//! assert!(Code::AccessAccept.answers(code));
//! assert!(Code::try_from(40).is_err()); // CoA-Request (RFC 5176) is not handled here
//! # Ok::<(), entitle_radius::Error>(())
//! ```

use std::fmt;

/// The Code octet of a packet: the codes this codec handles. Any other octet is refused
/// with [`Error::UnknownCode`](crate::Error::UnknownCode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    /// Access-Request (1): a client asks for access.
    AccessRequest = 1,
    /// Access-Accept (2).
    AccessAccept = 2,
    /// Access-Reject (3).
    AccessReject = 3,
    /// Accounting-Request (4, RFC 2866).
    AccountingRequest = 4,
    /// Accounting-Response (5, RFC 2866).
    AccountingResponse = 5,
    /// Access-Challenge (11).
    AccessChallenge = 11,
    /// Status-Server (12, RFC 5997): is the server alive? Needs a Message-Authenticator.
    StatusServer = 12,
    /// Status-Client (13): listed as experimental in RFC 2865 and given no use by RFC 5997;
    /// treated here as Status-Server is.
    StatusClient = 13,
}

impl Code {
    /// The code for an octet, or `None` for one this codec does not know.
    pub const fn from_u8(octet: u8) -> Option<Code> {
        Some(match octet {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            13 => Code::StatusClient,
            _ => return None,
        })
    }

    /// The octet on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Sent by a client: Access-Request, Accounting-Request, Status-Server, Status-Client.
    pub const fn is_request(self) -> bool {
        matches!(
            self,
            Code::AccessRequest | Code::AccountingRequest | Code::StatusServer | Code::StatusClient
        )
    }

    /// Sent by a server: Access-Accept/Reject/Challenge and Accounting-Response.
    pub const fn is_response(self) -> bool {
        !self.is_request()
    }

    /// Whether a packet with this code is a valid reply to `request`: Access-Request takes
    /// Accept, Reject or Challenge; Accounting-Request takes Accounting-Response;
    /// Status-Server (and Status-Client) take Access-Accept or Accounting-Response
    /// (RFC 5997 §3, depending on the port).
    pub const fn answers(self, request: Code) -> bool {
        match request {
            Code::AccessRequest => matches!(
                self,
                Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
            ),
            Code::AccountingRequest => matches!(self, Code::AccountingResponse),
            Code::StatusServer | Code::StatusClient => {
                matches!(self, Code::AccessAccept | Code::AccountingResponse)
            }
            _ => false,
        }
    }

    /// The name the RFCs use, e.g. `"Access-Request"`.
    pub const fn name(self) -> &'static str {
        match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccountingResponse => "Accounting-Response",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::StatusClient => "Status-Client",
        }
    }
}

impl From<Code> for u8 {
    fn from(code: Code) -> u8 {
        code.as_u8()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn every_octet_maps_back_to_itself_or_is_refused() {
        let mut known = 0;
        for octet in 0..=u8::MAX {
            match Code::try_from(octet) {
                Ok(code) => {
                    known += 1;
                    assert_eq!(code.as_u8(), octet);
                    assert_ne!(code.is_request(), code.is_response());
                }
                Err(e) => assert_eq!(e, Error::UnknownCode(octet)),
            }
        }
        assert_eq!(known, 8);
    }

    #[test]
    fn replies_answer_only_their_requests() {
        use Code::*;
        assert!(AccessChallenge.answers(AccessRequest));
        assert!(!AccountingResponse.answers(AccessRequest));
        assert!(AccountingResponse.answers(AccountingRequest));
        assert!(!AccessAccept.answers(AccountingRequest));
        assert!(AccountingResponse.answers(StatusServer));
        assert!(!AccessReject.answers(StatusServer));
        // A request answers nothing, and nothing answers a response.
        assert!(!AccessRequest.answers(AccessRequest));
        assert!(!AccessAccept.answers(AccessAccept));
    }

    #[test]
    fn names_and_display() {
        assert_eq!(Code::AccountingRequest.to_string(), "Accounting-Request");
        assert_eq!(u8::from(Code::AccessChallenge), 11);
    }
}
