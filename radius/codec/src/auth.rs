//! Authenticators and the Message-Authenticator: computing them when a packet is sent and
//! checking them when one arrives.
//!
//! * An Access-Request's (and Status-Server's) Request Authenticator is 16 unpredictable
//!   octets that the caller supplies; this crate draws no randomness of its own.
//! * An Accounting-Request's is MD5(Code, Identifier, Length, 16 zero octets, attributes,
//!   secret) (RFC 2866 §3).
//! * A reply's Response Authenticator is MD5(Code, Identifier, Length, the request's
//!   authenticator, attributes, secret) (RFC 2865 §3).
//! * The Message-Authenticator (RFC 3579 §3.2) is HMAC-MD5, keyed with the secret, of the
//!   whole packet with its own 16 octets zeroed and, in the authenticator field: the packet's
//!   own authenticator for Access-Request and Status-Server; the request's authenticator for
//!   Access-Accept/Reject/Challenge and for any reply to Status-Server; 16 zero octets for
//!   Accounting-Request and for an Accounting-Response to one (RFC 3579 defines neither; this
//!   is how FreeRADIUS and the freeradius-client library compute them, since those
//!   authenticators are themselves digests of the packet). A Message-Authenticator is computed
//!   before the Accounting-Request or Response Authenticator, which covers it.
//!
//! BlastRADIUS (CVE-2024-3596) forges a reply to an Access-Request that has no
//! Message-Authenticator. So the encoders always put a Message-Authenticator in
//! Access-Requests, Status-Server and their replies (first, where the mitigation recommends
//! it), and the checks require one unless told [`Policy::AllowMissingMessageAuthenticator`].
//! Every comparison is in constant time.
//!
//! ```
//! use entitle_radius::attribute::{Attribute, USER_NAME};
//! use entitle_radius::{Code, Packet, Policy};
//!
//! let secret = b"xyzzy5461";
//! // Client: the request authenticator comes from the caller's random number generator.
//! let mut request = Packet::new(Code::AccessRequest, 1, [0x5a; 16])
//!     .with(Attribute::new(USER_NAME, "nemo"));
//! let datagram = request.encode_request(secret)?;
//!
//! // Server: decode, check, answer.
//! let received = Packet::decode(&datagram)?;
//! received.verify_request(secret, Policy::RequireMessageAuthenticator)?;
//! let mut reply = received.reply(Code::AccessAccept);
//! let answer = reply.encode_response(secret, &received)?;
//!
//! // Client: the reply must answer what was sent.
//! let answer = Packet::decode(&answer)?;
//! answer.verify_response(secret, &request, Policy::RequireMessageAuthenticator)?;
//! # Ok::<(), entitle_radius::Error>(())
//! ```

use hmac::digest::Update;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use crate::attribute::{Attribute, MESSAGE_AUTHENTICATOR};
use crate::code::Code;
use crate::error::{Error, Result};
use crate::packet::{AUTHENTICATOR_LEN, MAX_PACKET_LEN, Packet, attribute_length};

type HmacMd5 = Hmac<Md5>;
type Authenticator = [u8; AUTHENTICATOR_LEN];

const ZERO: Authenticator = [0; AUTHENTICATOR_LEN];

/// A shared secret made ready once: its octets and the HMAC-MD5 key schedule, which
/// otherwise costs two of the four MD5 blocks of each Message-Authenticator of a small
/// packet. Its `Debug` shows no octet of it.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    hmac: HmacMd5,
}

impl Secret {
    /// The secret `bytes` (checked where it is used: an empty one signs nothing).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        let bytes = bytes.into();
        let hmac = HmacMd5::new_from_slice(&bytes).expect("HMAC takes a key of any length");
        Secret { bytes, hmac }
    }

    /// The secret's octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} octets)", self.bytes.len())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        // Not a guarantee (copies may exist), but no plain copy left by this one.
        self.bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.bytes);
    }
}

/// What the signing and checking methods take as the shared secret: its octets (`[u8]`,
/// `[u8; N]`, `Vec<u8>`) or a [`Secret`] made ready once.
pub trait SharedSecret: sealed::Sealed {}

mod sealed {
    pub trait Sealed {
        fn octets(&self) -> &[u8];
        fn keyed_hmac(&self) -> super::HmacMd5;
    }
}

impl sealed::Sealed for [u8] {
    fn octets(&self) -> &[u8] {
        self
    }
    fn keyed_hmac(&self) -> HmacMd5 {
        HmacMd5::new_from_slice(self).expect("HMAC takes a key of any length")
    }
}

impl<const N: usize> sealed::Sealed for [u8; N] {
    fn octets(&self) -> &[u8] {
        self
    }
    fn keyed_hmac(&self) -> HmacMd5 {
        self[..].keyed_hmac()
    }
}

impl sealed::Sealed for Vec<u8> {
    fn octets(&self) -> &[u8] {
        self
    }
    fn keyed_hmac(&self) -> HmacMd5 {
        self[..].keyed_hmac()
    }
}

impl sealed::Sealed for Secret {
    fn octets(&self) -> &[u8] {
        &self.bytes
    }
    fn keyed_hmac(&self) -> HmacMd5 {
        self.hmac.clone()
    }
}

impl SharedSecret for [u8] {}
impl<const N: usize> SharedSecret for [u8; N] {}
impl SharedSecret for Vec<u8> {}
impl SharedSecret for Secret {}

/// Whether a Message-Authenticator must be present. Status-Server always needs one
/// (RFC 5997 §3), and one that is present is always checked, whatever the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Access-Request and Access-Accept/Reject/Challenge must carry a Message-Authenticator:
    /// the BlastRADIUS mitigation, and the default.
    #[default]
    RequireMessageAuthenticator,
    /// They may omit it, for peers that cannot send one yet. An Access-Request without one
    /// is then not authenticated at all: only its User-Password depends on the secret.
    AllowMissingMessageAuthenticator,
}

/// What a reply is checked and signed against: the code, Identifier and authenticator of the
/// request as it was sent. Made from the request with `From<&Packet>`; a client or a proxy
/// can keep just this while it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestContext {
    /// The request's code.
    pub code: Code,
    /// The request's Identifier, which the reply must repeat.
    pub identifier: u8,
    /// The request's authenticator.
    pub authenticator: [u8; AUTHENTICATOR_LEN],
}

impl From<&Packet> for RequestContext {
    fn from(request: &Packet) -> RequestContext {
        RequestContext {
            code: request.code,
            identifier: request.identifier,
            authenticator: request.authenticator,
        }
    }
}

impl Packet {
    /// Signs a request with the shared secret and encodes it. An Access-Request,
    /// Status-Server or Status-Client gets a Message-Authenticator (as its first attribute if
    /// it had none) computed over its caller-supplied authenticator; an Accounting-Request
    /// gets its authenticator computed, after its Message-Authenticator if it has one.
    ///
    /// The packet is updated to what was encoded, so `self.authenticator` is the one a
    /// reply is checked against. On an error the packet is unchanged.
    pub fn encode_request<S: SharedSecret + ?Sized>(&mut self, secret: &S) -> Result<Vec<u8>> {
        check_secret(secret.octets())?;
        if !self.code.is_request() {
            return Err(Error::NotARequest(self.code));
        }
        let wants_ma = self.code != Code::AccountingRequest;
        self.sign(secret, wants_ma, None)?;
        self.encode()
    }

    /// Signs a reply with the shared secret and encodes it: Access-Accept/Reject/Challenge and
    /// any reply to Status-Server get a Message-Authenticator (first if they had none), then
    /// the Response Authenticator is computed. `request` is the request as received (a
    /// `&Packet` or a [`RequestContext`]); the reply must answer its code and repeat its
    /// Identifier.
    ///
    /// The packet is updated to what was encoded. On an error the packet is unchanged.
    pub fn encode_response<S: SharedSecret + ?Sized>(
        &mut self,
        secret: &S,
        request: impl Into<RequestContext>,
    ) -> Result<Vec<u8>> {
        let request = request.into();
        check_secret(secret.octets())?;
        self.check_answers(&request)?;
        let wants_ma = matches!(
            self.code,
            Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
        ) || matches!(request.code, Code::StatusServer | Code::StatusClient);
        self.sign(secret, wants_ma, Some(&request))?;
        self.encode()
    }

    /// Checks a received request against the shared secret: an Accounting-Request's
    /// authenticator, and any request's Message-Authenticator, which Status-Server must have
    /// and an Access-Request must have unless `policy` allows it missing.
    pub fn verify_request<S: SharedSecret + ?Sized>(
        &self,
        secret: &S,
        policy: Policy,
    ) -> Result<()> {
        check_secret(secret.octets())?;
        if !self.code.is_request() {
            return Err(Error::NotARequest(self.code));
        }
        let length = self.checked_length()?;
        if self.code == Code::AccountingRequest {
            let expected = self.digest(length, &ZERO, secret.octets());
            if !constant_time_eq(&expected, &self.authenticator) {
                return Err(Error::BadAuthenticator(self.code));
            }
        }
        let required = match self.code {
            Code::AccessRequest => policy == Policy::RequireMessageAuthenticator,
            Code::StatusServer | Code::StatusClient => true,
            _ => false,
        };
        self.verify_message_authenticator(secret, length, None, required)
    }

    /// Checks a received reply against the shared secret and the request it answers (a
    /// `&Packet` or a [`RequestContext`], as sent): its code answers the request's, its
    /// Identifier is the request's, its Response Authenticator and any Message-Authenticator
    /// verify, and Access-Accept/Reject/Challenge carry a Message-Authenticator unless
    /// `policy` allows it missing.
    pub fn verify_response<S: SharedSecret + ?Sized>(
        &self,
        secret: &S,
        request: impl Into<RequestContext>,
        policy: Policy,
    ) -> Result<()> {
        let request = request.into();
        check_secret(secret.octets())?;
        self.check_answers(&request)?;
        let length = self.checked_length()?;
        let expected = self.digest(length, &request.authenticator, secret.octets());
        if !constant_time_eq(&expected, &self.authenticator) {
            return Err(Error::BadAuthenticator(self.code));
        }
        let required = policy == Policy::RequireMessageAuthenticator
            && matches!(
                self.code,
                Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
            );
        self.verify_message_authenticator(secret, length, Some(&request), required)
    }

    fn check_answers(&self, request: &RequestContext) -> Result<()> {
        if !self.code.answers(request.code) {
            return Err(Error::UnexpectedReply {
                request: request.code,
                reply: self.code,
            });
        }
        if self.identifier != request.identifier {
            return Err(Error::IdentifierMismatch {
                request: request.identifier,
                reply: self.identifier,
            });
        }
        Ok(())
    }

    /// Adds the Message-Authenticator if wanted and missing, computes it, then computes the
    /// authenticator of an Accounting-Request or a reply. Checks everything before changing
    /// anything.
    fn sign<S: SharedSecret + ?Sized>(
        &mut self,
        secret: &S,
        wants_ma: bool,
        request: Option<&RequestContext>,
    ) -> Result<()> {
        let mut length = usize::from(self.checked_length()?);
        let mut index = self.message_authenticator_index()?;
        if index.is_none() && wants_ma {
            length += 2 + AUTHENTICATOR_LEN;
            if length > MAX_PACKET_LEN {
                return Err(Error::PacketTooLong { length });
            }
            self.attributes
                .insert(0, Attribute::new(MESSAGE_AUTHENTICATOR, ZERO));
            index = Some(0);
        }
        let length = u16::try_from(length).expect("checked against MAX_PACKET_LEN");
        if let Some(index) = index {
            let field = self.message_authenticator_field(request);
            let mac = self.hmac(length, &field, secret);
            let value = &mut self.attributes[index].value;
            value.clear();
            value.extend_from_slice(&mac.finalize().into_bytes());
        }
        if let Some(request) = request {
            self.authenticator = self.digest(length, &request.authenticator, secret.octets());
        } else if self.code == Code::AccountingRequest {
            self.authenticator = self.digest(length, &ZERO, secret.octets());
        }
        Ok(())
    }

    fn verify_message_authenticator<S: SharedSecret + ?Sized>(
        &self,
        secret: &S,
        length: u16,
        request: Option<&RequestContext>,
        required: bool,
    ) -> Result<()> {
        let Some(index) = self.message_authenticator_index()? else {
            return match required {
                true => Err(Error::MissingMessageAuthenticator(self.code)),
                false => Ok(()),
            };
        };
        let field = self.message_authenticator_field(request);
        // `verify_slice` compares in constant time.
        self.hmac(length, &field, secret)
            .verify_slice(&self.attributes[index].value)
            .map_err(|_| Error::BadMessageAuthenticator)
    }

    /// What stands in the authenticator field while the Message-Authenticator is computed.
    fn message_authenticator_field(&self, request: Option<&RequestContext>) -> Authenticator {
        match (self.code, request) {
            (Code::AccessRequest | Code::StatusServer | Code::StatusClient, _) => {
                self.authenticator
            }
            (Code::AccountingRequest, _) => ZERO,
            (Code::AccountingResponse, Some(request))
                if !matches!(request.code, Code::StatusServer | Code::StatusClient) =>
            {
                ZERO
            }
            (_, Some(request)) => request.authenticator,
            // A reply is never signed or checked without its request.
            (_, None) => ZERO,
        }
    }

    /// MD5 of the packet with `field` as its authenticator, then the secret: the
    /// Accounting-Request and Response Authenticators.
    fn digest(&self, length: u16, field: &Authenticator, secret: &[u8]) -> Authenticator {
        let mut md5 = Md5::new();
        self.feed(&mut md5, length, field, false);
        Update::update(&mut md5, secret);
        md5.finalize().into()
    }

    /// HMAC-MD5 of the packet with `field` as its authenticator and the Message-Authenticator
    /// zeroed, not yet finalized.
    fn hmac<S: SharedSecret + ?Sized>(
        &self,
        length: u16,
        field: &Authenticator,
        secret: &S,
    ) -> HmacMd5 {
        let mut mac = secret.keyed_hmac();
        self.feed(&mut mac, length, field, true);
        mac
    }

    /// Feeds the packet's octets, as [`Packet::encode`] writes them, to a digest, without
    /// building them in a buffer.
    fn feed(&self, digest: &mut impl Update, length: u16, field: &Authenticator, zero_ma: bool) {
        digest.update(&[self.code.as_u8(), self.identifier]);
        digest.update(&length.to_be_bytes());
        digest.update(field);
        for attribute in &self.attributes {
            digest.update(&[attribute.kind, attribute_length(attribute)]);
            if zero_ma && attribute.kind == MESSAGE_AUTHENTICATOR {
                digest.update(&ZERO);
            } else {
                digest.update(&attribute.value);
            }
        }
    }
}

pub(crate) fn check_secret(secret: &[u8]) -> Result<()> {
    match secret.is_empty() {
        true => Err(Error::EmptySecret),
        false => Ok(()),
    }
}

/// Equality of two authenticators in time that does not depend on where they differ: every
/// octet pair is XORed and the differences ORed together, with no early exit, and the
/// accumulator passed through `black_box` so that the compiler does not add one.
fn constant_time_eq(a: &Authenticator, b: &Authenticator) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::{ACCT_STATUS_TYPE, REPLY_MESSAGE, USER_NAME};

    const SECRET: &[u8] = b"s3cret";

    fn access_request() -> Packet {
        Packet::new(Code::AccessRequest, 3, [7; 16]).with(Attribute::new(USER_NAME, "nemo"))
    }

    #[test]
    fn a_secret_made_ready_signs_and_checks_as_its_octets_do() {
        let ready = Secret::new(SECRET);
        let mut with_octets = access_request();
        let mut with_ready = access_request();
        let sent = with_octets.encode_request(SECRET).expect("encodes");
        assert_eq!(with_ready.encode_request(&ready).expect("encodes"), sent);
        let received = Packet::decode(&sent).expect("decodes");
        received
            .verify_request(&ready, Policy::RequireMessageAuthenticator)
            .expect("verifies");
        let other = Secret::new(&b"another"[..]);
        assert_eq!(
            received.verify_request(&other, Policy::RequireMessageAuthenticator),
            Err(Error::BadMessageAuthenticator)
        );
        let mut reply = Packet::new(Code::AccessAccept, 3, [0; 16]);
        let answer = reply.encode_response(&ready, &received).expect("signs");
        Packet::decode(&answer)
            .expect("decodes")
            .verify_response(SECRET, &with_octets, Policy::RequireMessageAuthenticator)
            .expect("verifies with the octets");
        assert_eq!(
            access_request().encode_request(&Secret::new(Vec::new())),
            Err(Error::EmptySecret)
        );
        assert_eq!(format!("{ready:?}"), "Secret(6 octets)");
    }

    #[test]
    fn constant_time_eq_finds_any_difference() {
        assert!(constant_time_eq(&[1; 16], &[1; 16]));
        for i in 0..16 {
            let mut b = [1; 16];
            b[i] ^= 0x80;
            assert!(!constant_time_eq(&[1; 16], &b));
        }
    }

    #[test]
    fn encode_request_puts_the_message_authenticator_first() {
        let mut request = access_request();
        let bytes = request.encode_request(SECRET).unwrap();
        assert_eq!(request.attributes[0].kind, MESSAGE_AUTHENTICATOR);
        assert_eq!(
            request.authenticator, [7; 16],
            "the caller's authenticator is kept"
        );
        assert_eq!(Packet::decode(&bytes).unwrap(), request);
        request.verify_request(SECRET, Policy::default()).unwrap();
        // Signing again keeps the one Message-Authenticator where it is.
        let again = request.encode_request(SECRET).unwrap();
        assert_eq!(again, bytes);
    }

    #[test]
    fn a_tampered_request_is_refused() {
        let mut request = access_request();
        request.encode_request(SECRET).unwrap();
        let mut tampered = request.clone();
        tampered.attributes[1].value = b"root".to_vec();
        assert_eq!(
            tampered.verify_request(SECRET, Policy::default()),
            Err(Error::BadMessageAuthenticator)
        );
        assert_eq!(
            request.verify_request(b"other", Policy::default()),
            Err(Error::BadMessageAuthenticator)
        );
    }

    #[test]
    fn policy_decides_whether_an_access_request_needs_one() {
        let request = access_request();
        assert_eq!(
            request.verify_request(SECRET, Policy::RequireMessageAuthenticator),
            Err(Error::MissingMessageAuthenticator(Code::AccessRequest))
        );
        request
            .verify_request(SECRET, Policy::AllowMissingMessageAuthenticator)
            .unwrap();
        let status = Packet::new(Code::StatusServer, 1, [1; 16]);
        assert_eq!(
            status.verify_request(SECRET, Policy::AllowMissingMessageAuthenticator),
            Err(Error::MissingMessageAuthenticator(Code::StatusServer))
        );
    }

    #[test]
    fn accounting_request_authenticator_round_trip() {
        let mut request = Packet::new(Code::AccountingRequest, 9, [0; 16])
            .with(Attribute::from_u32(ACCT_STATUS_TYPE, 1));
        let bytes = request.encode_request(SECRET).unwrap();
        assert_eq!(request.get(MESSAGE_AUTHENTICATOR), None, "none is added");
        assert_ne!(request.authenticator, [0; 16]);
        let received = Packet::decode(&bytes).unwrap();
        received.verify_request(SECRET, Policy::default()).unwrap();
        let mut forged = received.clone();
        forged.authenticator[0] ^= 1;
        assert_eq!(
            forged.verify_request(SECRET, Policy::default()),
            Err(Error::BadAuthenticator(Code::AccountingRequest))
        );
    }

    #[test]
    fn replies_are_checked_against_their_request() {
        let mut request = access_request();
        request.encode_request(SECRET).unwrap();
        let mut reply = request.reply(Code::AccessReject);
        reply.push(Attribute::new(REPLY_MESSAGE, "no"));
        reply.encode_response(SECRET, &request).unwrap();
        assert_eq!(reply.attributes[0].kind, MESSAGE_AUTHENTICATOR);
        reply
            .verify_response(SECRET, &request, Policy::default())
            .unwrap();

        let mut other = request.clone();
        other.authenticator[15] ^= 1;
        assert_eq!(
            reply.verify_response(SECRET, &other, Policy::default()),
            Err(Error::BadAuthenticator(Code::AccessReject))
        );
        other = request.clone();
        other.identifier += 1;
        assert_eq!(
            reply.verify_response(SECRET, &other, Policy::default()),
            Err(Error::IdentifierMismatch {
                request: 4,
                reply: 3
            })
        );
        let mut accounting = request.reply(Code::AccountingResponse);
        assert_eq!(
            accounting.encode_response(SECRET, &request),
            Err(Error::UnexpectedReply {
                request: Code::AccessRequest,
                reply: Code::AccountingResponse
            })
        );
        assert_eq!(accounting.attributes, [], "unchanged on error");
    }

    #[test]
    fn a_reply_without_message_authenticator_depends_on_policy() {
        let request = RequestContext {
            code: Code::AccessRequest,
            identifier: 1,
            authenticator: [2; 16],
        };
        let mut reply = Packet::new(Code::AccessAccept, 1, [0; 16]);
        reply.authenticator = reply.digest(20, &request.authenticator, SECRET);
        assert_eq!(
            reply.verify_response(SECRET, request, Policy::RequireMessageAuthenticator),
            Err(Error::MissingMessageAuthenticator(Code::AccessAccept))
        );
        reply
            .verify_response(SECRET, request, Policy::AllowMissingMessageAuthenticator)
            .unwrap();
    }

    #[test]
    fn an_empty_secret_is_refused_everywhere() {
        let mut request = access_request();
        assert_eq!(request.encode_request(b""), Err(Error::EmptySecret));
        assert_eq!(
            request.verify_request(b"", Policy::default()),
            Err(Error::EmptySecret)
        );
        let mut reply = request.reply(Code::AccessAccept);
        assert_eq!(
            reply.encode_response(b"", &request),
            Err(Error::EmptySecret)
        );
        assert_eq!(
            reply.verify_response(b"", &request, Policy::default()),
            Err(Error::EmptySecret)
        );
    }

    #[test]
    fn requests_and_replies_are_not_confused() {
        let mut reply = Packet::new(Code::AccessAccept, 1, [0; 16]);
        assert_eq!(
            reply.encode_request(SECRET),
            Err(Error::NotARequest(Code::AccessAccept))
        );
        assert_eq!(
            reply.verify_request(SECRET, Policy::default()),
            Err(Error::NotARequest(Code::AccessAccept))
        );
    }

    #[test]
    fn no_room_for_the_message_authenticator_leaves_the_packet_alone() {
        let mut request = Packet::new(Code::AccessRequest, 1, [1; 16]);
        // 20 + 15 * 255 + 241 = 4086 octets: room for the packet, not for 18 more.
        for _ in 0..15 {
            request.push(Attribute::new(REPLY_MESSAGE, vec![0; 253]));
        }
        request.push(Attribute::new(REPLY_MESSAGE, vec![0; 239]));
        let before = request.clone();
        assert_eq!(request.encode().map(|b| b.len()), Ok(4086));
        assert_eq!(
            request.encode_request(SECRET).map(|b| b.len()),
            Err(Error::PacketTooLong { length: 4104 })
        );
        assert_eq!(request, before);
    }
}
