//! Every way a datagram is refused, each with its own error, and what is refused on encode.

use entitle_radius::attribute::{
    Attribute, MESSAGE_AUTHENTICATOR, PROXY_STATE, REPLY_MESSAGE, USER_NAME, VENDOR_SPECIFIC,
};
use entitle_radius::{
    Code, Error, Packet, Policy, VendorSpecific, header, hide_password, unhide_password,
};

const SECRET: &[u8] = b"xyzzy5461";

/// A datagram with a correct Length over the given attribute octets.
fn datagram(code: u8, attributes: &[u8]) -> Vec<u8> {
    let length = u16::try_from(20 + attributes.len()).expect("test datagrams are short");
    let mut out = vec![code, 1];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&[0x11; 16]);
    out.extend_from_slice(attributes);
    out
}

fn with_length(mut bytes: Vec<u8>, length: u16) -> Vec<u8> {
    bytes[2..4].copy_from_slice(&length.to_be_bytes());
    bytes
}

#[test]
fn shorter_than_a_header() {
    for len in [0, 1, 4, 19] {
        assert_eq!(Packet::decode(&vec![1; len]), Err(Error::Truncated { len }));
    }
}

#[test]
fn length_field_out_of_range() {
    assert_eq!(
        Packet::decode(&with_length(datagram(1, &[]), 19)),
        Err(Error::LengthOutOfRange { length: 19 })
    );
    assert_eq!(
        Packet::decode(&with_length(datagram(1, &[]), 0)),
        Err(Error::LengthOutOfRange { length: 0 })
    );
    // A 4097-octet datagram that says so is still too long.
    let big = with_length(datagram(1, &[0; 4077]), 4097);
    assert_eq!(big.len(), 4097);
    assert_eq!(
        Packet::decode(&big),
        Err(Error::LengthOutOfRange { length: 4097 })
    );
}

#[test]
fn length_field_disagreeing_with_the_datagram() {
    let good = datagram(1, &[1, 6, b'n', b'e', b'm', b'o']);
    // Longer than the datagram.
    assert_eq!(
        Packet::decode(&with_length(good.clone(), 27)),
        Err(Error::LengthMismatch {
            length: 27,
            datagram: 26
        })
    );
    // Shorter: the RFC would call the rest padding; it is refused.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0, 0]);
    assert_eq!(
        Packet::decode(&padded),
        Err(Error::LengthMismatch {
            length: 26,
            datagram: 28
        })
    );
    // The cheap header check refuses it the same way.
    assert_eq!(
        header(&padded),
        Err(Error::LengthMismatch {
            length: 26,
            datagram: 28
        })
    );
}

#[test]
fn unknown_codes() {
    for code in [0, 6, 7, 10, 14, 40, 43, 255] {
        assert_eq!(
            Packet::decode(&datagram(code, &[])),
            Err(Error::UnknownCode(code))
        );
    }
}

#[test]
fn attribute_lengths() {
    for length in [0, 1] {
        assert_eq!(
            Packet::decode(&datagram(1, &[1, 3, b'x', 1, length, 0])),
            Err(Error::AttributeTooShort { offset: 23, length })
        );
    }
    assert_eq!(
        Packet::decode(&datagram(1, &[1, 3, b'x', 1, 5, b'a', b'b'])),
        Err(Error::AttributeOverrun {
            offset: 23,
            length: 5,
            remaining: 4
        })
    );
    assert_eq!(
        Packet::decode(&datagram(1, &[1, 3, b'x', 1])),
        Err(Error::AttributeTruncated { offset: 23 })
    );
    // Length 2, an empty value, is framed correctly and kept.
    let empty = datagram(2, &[REPLY_MESSAGE, 2]);
    let packet = Packet::decode(&empty).unwrap();
    assert_eq!(packet.attributes, [Attribute::new(REPLY_MESSAGE, [])]);
    assert_eq!(packet.encode().unwrap(), empty);
}

#[test]
fn message_authenticator_of_the_wrong_length() {
    for length in [2u8, 17, 19, 34] {
        let mut attributes = vec![MESSAGE_AUTHENTICATOR, length];
        attributes.resize(usize::from(length), 0);
        assert_eq!(
            Packet::decode(&datagram(1, &attributes)),
            Err(Error::MessageAuthenticatorLength {
                length: usize::from(length)
            })
        );
    }
}

#[test]
fn duplicate_message_authenticator() {
    let mut attributes = vec![MESSAGE_AUTHENTICATOR, 18];
    attributes.extend_from_slice(&[0; 16]);
    attributes.extend_from_slice(&[USER_NAME, 3, b'x']);
    attributes.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
    attributes.extend_from_slice(&[0; 16]);
    assert_eq!(
        Packet::decode(&datagram(1, &attributes)),
        Err(Error::DuplicateMessageAuthenticator)
    );
}

#[test]
fn a_malformed_vendor_specific_round_trips_and_is_refused_only_when_parsed() {
    // Vendor 9, then a sub-attribute whose Vendor length (9) runs past the value.
    let vsa = [VENDOR_SPECIFIC, 9, 0, 0, 0, 9, 1, 9, b'a'];
    let bytes = datagram(2, &vsa);
    let packet = Packet::decode(&bytes).unwrap();
    assert_eq!(packet.encode().unwrap(), bytes);
    assert_eq!(
        VendorSpecific::parse(&packet.attributes[0]),
        Err(Error::VendorSubAttribute { offset: 4 })
    );
}

#[test]
fn encode_refuses_too_long_values_and_packets() {
    let mut packet = Packet::new(Code::AccessAccept, 1, [0; 16]);
    packet.push_proxy_state(vec![0; 254]);
    assert_eq!(
        packet.encode(),
        Err(Error::AttributeTooLong {
            kind: PROXY_STATE,
            len: 254
        })
    );
    let mut packet = Packet::new(Code::AccessAccept, 1, [0; 16]);
    for _ in 0..17 {
        packet.push(Attribute::new(REPLY_MESSAGE, vec![b'x'; 253]));
    }
    assert_eq!(
        packet.encode(),
        Err(Error::PacketTooLong {
            length: 20 + 17 * 255
        })
    );
}

#[test]
fn passwords_at_the_block_edges() {
    let authenticator = [0x0f; 16];
    for (len, hidden_len) in [(16, 16), (17, 32), (128, 128)] {
        let password: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let hidden = hide_password(&password, SECRET, &authenticator).unwrap();
        assert_eq!(hidden.len(), hidden_len);
        assert_eq!(
            unhide_password(&hidden, SECRET, &authenticator).unwrap(),
            password
        );
        // In a packet, through the wire and back.
        let mut request = Packet::new(Code::AccessRequest, 1, authenticator);
        request.set_user_password(&password, SECRET).unwrap();
        let bytes = request.encode_request(SECRET).unwrap();
        let received = Packet::decode(&bytes).unwrap();
        received.verify_request(SECRET, Policy::default()).unwrap();
        assert_eq!(received.user_password(SECRET).unwrap(), Some(password));
    }
    assert_eq!(
        hide_password(&[b'a'; 129], SECRET, &authenticator),
        Err(Error::PasswordTooLong { len: 129 })
    );
    for len in [0, 15, 129, 144] {
        assert_eq!(
            unhide_password(&vec![0; len], SECRET, &authenticator),
            Err(Error::HiddenPasswordLength { len })
        );
    }
    // A hidden User-Password of a bad length in a received packet is refused on reading.
    let request = Packet::decode(&datagram(1, &[2, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(
        request.user_password(SECRET),
        Err(Error::HiddenPasswordLength { len: 10 })
    );
}
