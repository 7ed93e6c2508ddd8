//! The RADIUS codec on any datagram: never panics; whatever decodes re-encodes to exactly the
//! input, with the header peek agreeing; checking a request or a reply under a fixed secret
//! never panics, and re-signing what decoded always verifies; every User-Password reveals
//! without panic and hides back to what reveals the same; every Vendor-Specific that parses
//! encodes back to itself.
#![no_main]

use entitle_radius::attribute::{USER_PASSWORD, VENDOR_SPECIFIC};
use entitle_radius::{
    Code, Packet, Policy, RequestContext, VendorSpecific, header, hide_password, unhide_password,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"xyzzy5461";

fuzz_target!(|data: &[u8]| {
    let head = header(data);
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    assert_eq!(packet.encode().as_deref(), Ok(data), "re-encodes to the input");
    let head = head.expect("a packet that decodes has a good header");
    assert_eq!((head.code, head.identifier), (packet.code, packet.identifier));
    assert_eq!(usize::from(head.length), data.len());

    // Checking never panics, whatever it decides.
    let _ = packet.verify_request(SECRET, Policy::RequireMessageAuthenticator);
    let _ = packet.verify_request(SECRET, Policy::AllowMissingMessageAuthenticator);
    for code in [Code::AccessRequest, Code::AccountingRequest, Code::StatusServer] {
        let request = RequestContext {
            code,
            identifier: packet.identifier,
            authenticator: [0x5a; 16],
        };
        let _ = packet.verify_response(SECRET, request, Policy::RequireMessageAuthenticator);

        // Signed as a reply to that request, it verifies as one.
        if packet.code.answers(code) {
            let mut reply = packet.clone();
            if let Ok(bytes) = reply.encode_response(SECRET, request) {
                let decoded = Packet::decode(&bytes).expect("a signed reply decodes");
                assert_eq!(decoded, reply);
                decoded
                    .verify_response(SECRET, request, Policy::RequireMessageAuthenticator)
                    .expect("a signed reply verifies");
            }
        }
    }

    // Signed as a request, it verifies as one.
    if packet.code.is_request() {
        let mut request = packet.clone();
        if let Ok(bytes) = request.encode_request(SECRET) {
            let decoded = Packet::decode(&bytes).expect("a signed request decodes");
            assert_eq!(decoded, request);
            decoded
                .verify_request(SECRET, Policy::RequireMessageAuthenticator)
                .expect("a signed request verifies");
        }
    }

    let _ = packet.user_password(SECRET);
    for hidden in packet.get_all(USER_PASSWORD) {
        if let Ok(password) = unhide_password(&hidden.value, SECRET, &packet.authenticator) {
            let again = hide_password(&password, SECRET, &packet.authenticator)
                .expect("a revealed password is at most 128 octets");
            assert!(again.len() <= hidden.value.len());
            assert_eq!(
                unhide_password(&again, SECRET, &packet.authenticator).as_ref(),
                Ok(&password)
            );
        }
    }

    for attribute in packet.get_all(VENDOR_SPECIFIC) {
        if let Ok(vsa) = VendorSpecific::parse(attribute) {
            assert_eq!(vsa.to_attribute().as_ref(), Ok(attribute));
        }
    }
});
