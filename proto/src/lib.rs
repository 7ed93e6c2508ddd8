//! The wire of entitle: the `entitle.v1` protobuf package (`proto/entitle/v1/`) and the
//! prost messages and tonic services generated from it, re-exported as [`pb`].
//!
//! Signed messages travel as [`pb::Signed`] envelopes; [`signing_bytes`] gives the
//! canonical byte form that is signed, as the `.proto` file documents; [`signing`] holds the
//! rules both sides apply with it (envelopes, the registration proof, keys, secret files).
//! [`tls`] is how clients reach an authority, [`local`] how they reach the sidecar's local
//! API (its Unix socket, or TCP with a bearer credential).
//!
//! ```
//! use entitle_proto::{pb, signing_bytes};
//!
//! let bytes = signing_bytes("UsageReport", b"\x0a\x01x");
//! assert_eq!(bytes, b"entitle.v1.UsageReport\x00\x0a\x01x");
//! # let _ = pb::Signed::default();
//! ```
#![forbid(unsafe_code)]

mod connect;
pub mod delegation;
pub use connect::{ProxyError, answer_status as proxy_answer_status};
pub mod local;
pub mod signing;
pub mod tls;

/// The generated code of package `entitle.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("entitle.v1");
}

/// The encoded `FileDescriptorSet` of every entitle proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/entitle_descriptor.bin"));

/// The bytes a signature covers: `"entitle.v1." <type name> 0x00 <body>`.
pub fn signing_bytes(type_name: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12 + type_name.len() + body.len());
    bytes.extend_from_slice(b"entitle.v1.");
    bytes.extend_from_slice(type_name.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    #[test]
    fn the_descriptor_set_decodes_and_names_both_services() {
        let fds =
            prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).expect("decodes");
        let file = fds
            .file
            .iter()
            .find(|f| f.package() == "entitle.v1")
            .expect("entitle.v1 is there");
        let services: Vec<_> = file.service.iter().map(|s| s.name()).collect();
        assert_eq!(services, ["Authority", "SatelliteSync", "AuthorityAdmin"]);
        let authority = &file.service[0];
        let report = authority
            .method
            .iter()
            .find(|m| m.name() == "ReportUsage")
            .expect("ReportUsage");
        assert!(report.client_streaming() && report.server_streaming());
    }
}
