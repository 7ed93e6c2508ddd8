//! A strict RADIUS codec: RFC 2865 framing and attributes, RFC 2866 accounting, the RFC 3579
//! Message-Authenticator, RFC 5997 Status-Server, User-Password hiding, Vendor-Specific
//! attributes and Proxy-State. Pure: no I/O, no clock, no randomness (the caller supplies
//! the 16 random octets of an Access-Request's authenticator).
//!
//! Why not a crate from crates.io: `radius` 0.4 never verifies a Message-Authenticator, and
//! the server of `radius-rust` does not check it either, which is exactly the hole that
//! BlastRADIUS (CVE-2024-3596) forges replies through. The codec is small, and its
//! strictness is the point: a datagram is refused unless every length agrees, a decoded
//! packet re-encodes to exactly the same octets, every failure is a typed [`Error`] (never a
//! panic), Message-Authenticators are added to and required of Access-Requests, Status-Server
//! and their replies, and every comparison of a digest is in constant time.
//!
//! # A server
//!
//! ```
//! use entitle_radius::attribute::{Attribute, REPLY_MESSAGE, USER_NAME};
//! use entitle_radius::{Code, Packet, Policy};
//! # let secret = b"xyzzy5461";
//! # let mut client = Packet::new(Code::AccessRequest, 42, [0x2b; 16])
//! #     .with(Attribute::new(USER_NAME, "nemo"));
//! # client.set_user_password(b"arctangent", secret)?;
//! # let datagram = client.encode_request(secret)?;
//!
//! let request = Packet::decode(&datagram)?;
//! request.verify_request(secret, Policy::RequireMessageAuthenticator)?;
//! let password = request.user_password(secret)?;
//! let code = match password.as_deref() {
//!     Some(b"arctangent") => Code::AccessAccept,
//!     _ => Code::AccessReject,
//! };
//! // Same Identifier, Proxy-States copied; Message-Authenticator and Response
//! // Authenticator computed against the request.
//! let mut reply = request.reply(code).with(Attribute::new(REPLY_MESSAGE, "welcome"));
//! let answer = reply.encode_response(secret, &request)?;
//! # let answer = Packet::decode(&answer)?;
//! # answer.verify_response(secret, &client, Policy::RequireMessageAuthenticator)?;
//! # assert_eq!(answer.code, Code::AccessAccept);
//! # Ok::<(), entitle_radius::Error>(())
//! ```
//!
//! # A proxy
//!
//! ```
//! use entitle_radius::attribute::{Attribute, USER_NAME};
//! use entitle_radius::{Code, Packet, Policy, RequestContext};
//! # let (client_secret, home_secret) = (&b"client"[..], &b"home"[..]);
//! # let mut client = Packet::new(Code::AccessRequest, 42, [0x2b; 16])
//! #     .with(Attribute::new(USER_NAME, "nemo@example.com"));
//! # client.set_user_password(b"arctangent", client_secret)?;
//! # let datagram = client.encode_request(client_secret)?;
//! # let (our_identifier, our_authenticator) = (7, [0x3c; 16]);
//!
//! // From the client: check it, then forward it with our Identifier, our Proxy-State and
//! // the User-Password hidden again for the home server.
//! let request = Packet::decode(&datagram)?;
//! request.verify_request(client_secret, Policy::RequireMessageAuthenticator)?;
//! let original = RequestContext::from(&request);
//! let mut forward = request.clone();
//! forward.identifier = our_identifier;
//! forward.authenticator = our_authenticator; // fresh random octets
//! if let Some(password) = request.user_password(client_secret)? {
//!     forward.set_user_password(&password, home_secret)?;
//! }
//! forward.push_proxy_state(*b"proxy-1:7");
//! let to_home = forward.encode_request(home_secret)?; // Message-Authenticator re-signed
//! # let at_home = Packet::decode(&to_home)?;
//! # at_home.verify_request(home_secret, Policy::RequireMessageAuthenticator)?;
//! # assert_eq!(at_home.user_password(home_secret)?.as_deref(), Some(&b"arctangent"[..]));
//! # let from_home = at_home.reply(Code::AccessAccept).encode_response(home_secret, &at_home)?;
//!
//! // From the home server: check it against what we sent, take our Proxy-State off, and
//! // answer the client's request with the client's secret.
//! let mut reply = Packet::decode(&from_home)?;
//! reply.verify_response(home_secret, &forward, Policy::RequireMessageAuthenticator)?;
//! assert_eq!(reply.pop_proxy_state().as_deref(), Some(&b"proxy-1:7"[..]));
//! reply.identifier = original.identifier;
//! let to_client = reply.encode_response(client_secret, original)?;
//! # Packet::decode(&to_client)?.verify_response(client_secret, &client, Policy::default())?;
//! # Ok::<(), entitle_radius::Error>(())
//! ```
//!
//! Attributes that a reply hides with the request's authenticator (Tunnel-Password,
//! MS-MPPE keys) are carried as opaque octets; a proxy that must re-hide them does so itself.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod attribute;
pub mod auth;
pub mod code;
pub mod error;
pub mod packet;
pub mod password;
mod proxy;
pub mod vsa;

pub use attribute::Attribute;
pub use auth::{Policy, RequestContext, Secret, SharedSecret};
pub use code::Code;
pub use error::{Error, Result};
pub use packet::{Header, Packet, header};
pub use password::{hide_password, unhide_password};
pub use vsa::VendorSpecific;
