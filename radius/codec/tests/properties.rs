//! Properties over random input: decoding never panics and gives back exactly what it was
//! given; encode then decode is the identity; a signed packet with any one bit flipped is
//! refused; hidden passwords and Vendor-Specific attributes round-trip.

use entitle_radius::attribute::{Attribute, MESSAGE_AUTHENTICATOR, VENDOR_SPECIFIC};
use entitle_radius::{
    Code, Packet, Policy, RequestContext, VendorSpecific, header, hide_password, unhide_password,
};
use proptest::prelude::*;

const SECRET: &[u8] = b"xyzzy5461";
const CODES: [Code; 8] = [
    Code::AccessRequest,
    Code::AccessAccept,
    Code::AccessReject,
    Code::AccountingRequest,
    Code::AccountingResponse,
    Code::AccessChallenge,
    Code::StatusServer,
    Code::StatusClient,
];

fn code() -> impl Strategy<Value = Code> {
    prop::sample::select(&CODES[..])
}

fn request_code() -> impl Strategy<Value = Code> {
    prop::sample::select(
        &[
            Code::AccessRequest,
            Code::AccountingRequest,
            Code::StatusServer,
            Code::StatusClient,
        ][..],
    )
}

/// Any attribute but a Message-Authenticator, which must be 16 octets; short values mostly.
fn attribute() -> impl Strategy<Value = Attribute> {
    (
        any::<u8>().prop_map(|k| if k == MESSAGE_AUTHENTICATOR { k + 1 } else { k }),
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..24),
            1 => prop::collection::vec(any::<u8>(), 0..=253),
        ],
    )
        .prop_map(|(kind, value)| Attribute::new(kind, value))
}

/// A packet that fits in 4096 octets, sometimes with a Message-Authenticator somewhere.
fn packet(code: impl Strategy<Value = Code>) -> impl Strategy<Value = Packet> {
    (
        code,
        any::<u8>(),
        any::<[u8; 16]>(),
        prop::collection::vec(attribute(), 0..12),
        prop::option::of((any::<prop::sample::Index>(), any::<[u8; 16]>())),
    )
        .prop_map(|(code, identifier, authenticator, attributes, ma)| {
            let mut packet = Packet::new(code, identifier, authenticator);
            packet.attributes = attributes;
            if let Some((at, value)) = ma {
                let index = at.index(packet.attributes.len() + 1);
                packet
                    .attributes
                    .insert(index, Attribute::new(MESSAGE_AUTHENTICATOR, value));
            }
            packet
        })
}

/// Octets behind a valid header: reaches the attribute parser far more often than noise.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&[1u8, 2, 3, 4, 5, 11, 12, 13][..]),
        any::<[u8; 17]>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(code, id_and_authenticator, attributes)| {
            let length = u16::try_from(20 + attributes.len()).expect("short");
            let mut out = vec![code, id_and_authenticator[0]];
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&id_and_authenticator[1..]);
            out.extend_from_slice(&attributes);
            out
        })
}

fn decode_exercise(bytes: &[u8]) -> Result<(), TestCaseError> {
    let head = header(bytes);
    match Packet::decode(bytes) {
        Ok(packet) => {
            prop_assert_eq!(packet.encode(), Ok(bytes.to_vec()));
            let head = head.expect("a packet that decodes has a good header");
            prop_assert_eq!(
                (head.code, head.identifier, usize::from(head.length)),
                (packet.code, packet.identifier, bytes.len())
            );
            // Checking never panics, whatever it decides.
            let _ = packet.verify_request(SECRET, Policy::default());
            let request = RequestContext {
                code: Code::AccessRequest,
                identifier: packet.identifier,
                authenticator: [7; 16],
            };
            let _ = packet.verify_response(SECRET, request, Policy::default());
            let _ = packet.user_password(SECRET);
            for attribute in packet.get_all(VENDOR_SPECIFIC) {
                if let Ok(vsa) = VendorSpecific::parse(attribute) {
                    prop_assert_eq!(vsa.to_attribute(), Ok(attribute.clone()));
                }
            }
        }
        Err(error) => {
            // The header check agrees with decode on every header fault.
            if let Err(head) = head {
                prop_assert_eq!(head, error);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_and_what_decodes_re_encodes(
        bytes in prop::collection::vec(any::<u8>(), 0..5000)
    ) {
        decode_exercise(&bytes)?;
    }

    #[test]
    fn framed_bytes_never_panic_and_what_decodes_re_encodes(bytes in framed()) {
        decode_exercise(&bytes)?;
    }

    #[test]
    fn encode_then_decode_is_the_identity(packet in packet(code())) {
        let bytes = packet.encode().expect("the strategy builds valid packets");
        prop_assert_eq!(Packet::decode(&bytes), Ok(packet));
    }

    #[test]
    fn a_signed_request_verifies_and_any_flipped_bit_is_caught(
        mut request in packet(request_code()),
        bit in any::<prop::sample::Index>(),
    ) {
        let bytes = request.encode_request(SECRET).expect("fits");
        let received = Packet::decode(&bytes).expect("decodes");
        prop_assert_eq!(&received, &request);
        received.verify_request(SECRET, Policy::default()).expect("verifies");

        let mut flipped = bytes.clone();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        let refused = Packet::decode(&flipped)
            .and_then(|p| p.verify_request(SECRET, Policy::default()));
        prop_assert!(refused.is_err(), "bit {} flipped and still accepted", bit);
    }

    #[test]
    fn a_signed_reply_verifies_and_any_flipped_bit_is_caught(
        mut request in packet(request_code()),
        mut reply in packet(code()),
        answer in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        request.encode_request(SECRET).expect("fits");
        let answers: Vec<Code> = CODES.into_iter().filter(|c| c.answers(request.code)).collect();
        reply.code = answers[answer.index(answers.len())];
        reply.identifier = request.identifier;
        let bytes = reply.encode_response(SECRET, &request).expect("fits");
        let received = Packet::decode(&bytes).expect("decodes");
        received.verify_response(SECRET, &request, Policy::default()).expect("verifies");

        let mut flipped = bytes.clone();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        let refused = Packet::decode(&flipped)
            .and_then(|p| p.verify_response(SECRET, &request, Policy::default()));
        prop_assert!(refused.is_err(), "bit {} flipped and still accepted", bit);
    }

    #[test]
    fn hidden_passwords_come_back(
        password in prop::collection::vec(any::<u8>(), 0..=128),
        secret in prop::collection::vec(any::<u8>(), 1..64),
        authenticator in any::<[u8; 16]>(),
    ) {
        let hidden = hide_password(&password, &secret, &authenticator).expect("at most 128");
        prop_assert_eq!(hidden.len(), password.len().div_ceil(16).max(1) * 16);
        let revealed = unhide_password(&hidden, &secret, &authenticator).expect("well formed");
        // Only the trailing NULs are lost: the padding cannot be told from them.
        let end = password.iter().rposition(|&o| o != 0).map_or(0, |i| i + 1);
        prop_assert_eq!(revealed, &password[..end]);
    }

    #[test]
    fn vendor_specific_round_trips(
        vendor_id in 0u32..(1 << 24),
        subs in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)), 1..5),
    ) {
        let mut vsa = VendorSpecific::new(vendor_id);
        for (kind, value) in subs {
            vsa = vsa.with(kind, value);
        }
        match vsa.to_attribute() {
            Ok(attribute) => prop_assert_eq!(VendorSpecific::parse(&attribute), Ok(vsa)),
            Err(_) => prop_assert!(4 + vsa.attributes.iter().map(Attribute::encoded_len).sum::<usize>() > 253),
        }
    }
}
