//! Published and independently computed packets: the RFC 2865 §7.1 Access-Request and
//! Access-Accept, the RFC 5997 Status-Server examples, and accounting and
//! Message-Authenticator packets whose digests were computed with Python's `hashlib` and
//! `hmac` (not with this crate), all under the RFCs' secret "xyzzy5461".

use entitle_radius::attribute::{
    ACCT_SESSION_ID, ACCT_STATUS_TYPE, Attribute, EAP_MESSAGE, LOGIN_IP_HOST, LOGIN_SERVICE,
    MESSAGE_AUTHENTICATOR, NAS_IP_ADDRESS, NAS_PORT, SERVICE_TYPE, STATE, USER_NAME, USER_PASSWORD,
    VENDOR_SPECIFIC,
};
use entitle_radius::{
    Code, Error, Packet, Policy, RequestContext, VendorSpecific, header, hide_password,
};
use std::net::Ipv4Addr;

const SECRET: &[u8] = b"xyzzy5461";

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|octet| u8::from_str_radix(octet, 16).expect("hex"))
        .collect()
}

/// RFC 2865 §7.1: nemo logs in with password "arctangent" from NAS 192.168.1.16 port 3.
const RFC2865_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a
    01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
    04 06 c0 a8 01 10 05 06 00 00 00 03";
/// RFC 2865 §7.1: the Access-Accept: Service-Type Login, Login-Service Telnet, host 192.168.1.3.
const RFC2865_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2
    06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";
/// RFC 5997 §6: Status-Server to the authentication port, with only a Message-Authenticator.
const RFC5997_STATUS_AUTH: &str = "0c da 00 26 8a 54 f4 68 6f b3 94 c5 28 66 e3 02 18 5d 06 23
    50 12 5a 66 5e 2e 1e 84 11 f3 e2 43 82 20 97 c8 4f a3";
/// RFC 5997 §6: Status-Server to the accounting port.
const RFC5997_STATUS_ACCT: &str = "0c b3 00 26 92 5f 6b 66 dd 5f ed 57 1f cb 1d b7 ad 38 82 60
    50 12 e8 d6 ea bd a9 10 87 5c d9 1f da de 26 36 78 58";
/// Accounting-Request Start (User-Name, NAS-IP-Address, NAS-Port, Acct-Status-Type,
/// Acct-Session-Id); authenticator by Python's MD5 per RFC 2866 §3.
const ACCT_REQUEST: &str = "04 2a 00 36 2e e2 10 53 7d a4 0c 1b af 04 59 89 98 ad 17 2d
    01 06 6e 65 6d 6f 04 06 c0 a8 01 10 05 06 00 00 00 03 28 06 00 00 00 01
    2c 0a 30 30 30 30 30 30 32 61";
/// The Accounting-Response to it, with no attributes.
const ACCT_RESPONSE: &str = "05 2a 00 14 48 65 66 cc 6a 05 6e 16 72 21 61 e3 50 57 65 b9";
/// Access-Request with a Message-Authenticator first, User-Name and EAP-Message; HMAC by Python.
const MA_REQUEST: &str = "01 37 00 37 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
    50 12 ce 5b 4d 92 40 b2 45 70 6e c6 c7 11 e0 57 01 be 01 06 6e 65 6d 6f
    4f 0b 02 00 00 09 01 6e 65 6d 6f";
/// The Access-Challenge to it: Message-Authenticator over the request's authenticator, then
/// the Response Authenticator; by Python.
const MA_CHALLENGE: &str = "0b 37 00 37 10 8d 4e f0 e2 06 58 fd f5 90 12 3e 97 69 24 ed
    50 12 5a b4 3d 66 b1 27 b6 df 75 b3 f3 55 83 3d 0a 56 18 09 73 74 61 74 65 2d 31
    4f 08 01 01 00 06 0d 20";
/// Accounting-Request Stop with a Message-Authenticator last: HMAC over 16 zero octets in the
/// authenticator field, then the RFC 2866 authenticator over the packet with it; by Python.
const ACCT_WITH_MA: &str = "04 2b 00 36 cf 3a da dc 24 5a d8 6b 6c 5a 17 40 c3 79 40 ed
    28 06 00 00 00 02 2c 0a 30 30 30 30 30 30 32 61 50 12 55 74 b3 fe 58 6f ee 79 be 7d
    fc 4f 0d 6a 26 42";

#[test]
fn rfc2865_access_request_decodes_and_reveals_the_password() {
    let bytes = hex(RFC2865_REQUEST);
    let request = Packet::decode(&bytes).unwrap();
    assert_eq!((request.code, request.identifier), (Code::AccessRequest, 0));
    assert_eq!(request.get(USER_NAME).unwrap().as_str(), Ok("nemo"));
    assert_eq!(
        request.get(NAS_IP_ADDRESS).unwrap().as_ipv4(),
        Ok(Ipv4Addr::new(192, 168, 1, 16))
    );
    assert_eq!(request.get(NAS_PORT).unwrap().as_u32(), Ok(3));
    assert_eq!(
        request.user_password(SECRET).unwrap().as_deref(),
        Some(&b"arctangent"[..])
    );
    // Hiding it again gives the RFC's octets.
    let hidden = hide_password(b"arctangent", SECRET, &request.authenticator).unwrap();
    assert_eq!(hidden, request.get(USER_PASSWORD).unwrap().value);
    assert_eq!(request.encode().unwrap(), bytes);

    // It has no Message-Authenticator: it predates RFC 3579, and the default policy says no.
    assert_eq!(
        request.verify_request(SECRET, Policy::default()),
        Err(Error::MissingMessageAuthenticator(Code::AccessRequest))
    );
    request
        .verify_request(SECRET, Policy::AllowMissingMessageAuthenticator)
        .unwrap();
}

#[test]
fn rfc2865_access_accept_verifies_against_the_request() {
    let request = Packet::decode(&hex(RFC2865_REQUEST)).unwrap();
    let bytes = hex(RFC2865_ACCEPT);
    let accept = Packet::decode(&bytes).unwrap();
    assert_eq!(accept.get(SERVICE_TYPE).unwrap().as_u32(), Ok(1));
    assert_eq!(accept.get(LOGIN_SERVICE).unwrap().as_u32(), Ok(0));
    assert_eq!(
        accept.get(LOGIN_IP_HOST).unwrap().as_ipv4(),
        Ok(Ipv4Addr::new(192, 168, 1, 3))
    );
    accept
        .verify_response(SECRET, &request, Policy::AllowMissingMessageAuthenticator)
        .unwrap();
    assert_eq!(
        accept.verify_response(SECRET, &request, Policy::RequireMessageAuthenticator),
        Err(Error::MissingMessageAuthenticator(Code::AccessAccept))
    );
    assert_eq!(
        accept.verify_response(
            b"xyzzy5462",
            &request,
            Policy::AllowMissingMessageAuthenticator
        ),
        Err(Error::BadAuthenticator(Code::AccessAccept))
    );

    // Answering the request ourselves gives the same attributes behind a
    // Message-Authenticator, which the encoder always puts first in an Access-Accept.
    let mut rebuilt = request.reply(Code::AccessAccept);
    rebuilt.attributes = accept.attributes.clone();
    let signed = rebuilt.encode_response(SECRET, &request).unwrap();
    assert_eq!(rebuilt.attributes[0].kind, MESSAGE_AUTHENTICATOR);
    assert_eq!(signed.len(), bytes.len() + 18);
    Packet::decode(&signed)
        .unwrap()
        .verify_response(SECRET, &request, Policy::RequireMessageAuthenticator)
        .unwrap();
}

#[test]
fn rfc5997_status_server_examples_verify() {
    for example in [RFC5997_STATUS_AUTH, RFC5997_STATUS_ACCT] {
        let bytes = hex(example);
        let status = Packet::decode(&bytes).unwrap();
        assert_eq!(status.code, Code::StatusServer);
        status.verify_request(SECRET, Policy::default()).unwrap();
        assert_eq!(
            status.verify_request(b"wrong", Policy::default()),
            Err(Error::BadMessageAuthenticator)
        );
        // Re-signing with the same authenticator gives the same octets.
        let mut again = status.clone();
        assert_eq!(again.encode_request(SECRET).unwrap(), bytes);

        // Both replies that RFC 5997 allows verify; others are refused.
        for code in [Code::AccessAccept, Code::AccountingResponse] {
            let mut reply = status.reply(code);
            let answer = reply.encode_response(SECRET, &status).unwrap();
            assert_eq!(reply.attributes[0].kind, MESSAGE_AUTHENTICATOR);
            Packet::decode(&answer)
                .unwrap()
                .verify_response(SECRET, &status, Policy::default())
                .unwrap();
        }
        assert_eq!(
            status
                .reply(Code::AccessReject)
                .encode_response(SECRET, &status),
            Err(Error::UnexpectedReply {
                request: Code::StatusServer,
                reply: Code::AccessReject
            })
        );
    }
}

#[test]
fn rfc2866_accounting_authenticators() {
    let bytes = hex(ACCT_REQUEST);
    let request = Packet::decode(&bytes).unwrap();
    assert_eq!(request.get(ACCT_STATUS_TYPE).unwrap().as_u32(), Ok(1));
    assert_eq!(
        request.get(ACCT_SESSION_ID).unwrap().as_str(),
        Ok("0000002a")
    );
    request.verify_request(SECRET, Policy::default()).unwrap();

    // Computing it from a zero authenticator gives the same packet.
    let mut rebuilt = request.clone();
    rebuilt.authenticator = [0; 16];
    assert_eq!(rebuilt.encode_request(SECRET).unwrap(), bytes);
    assert_eq!(rebuilt.authenticator, request.authenticator);

    // A changed attribute, authenticator or secret is caught.
    let mut changed = request.clone();
    changed.attributes[3] = Attribute::from_u32(ACCT_STATUS_TYPE, 2);
    assert_eq!(
        changed.verify_request(SECRET, Policy::default()),
        Err(Error::BadAuthenticator(Code::AccountingRequest))
    );
    assert_eq!(
        request.verify_request(b"other", Policy::default()),
        Err(Error::BadAuthenticator(Code::AccountingRequest))
    );

    let response_bytes = hex(ACCT_RESPONSE);
    let response = Packet::decode(&response_bytes).unwrap();
    response
        .verify_response(SECRET, &request, Policy::default())
        .unwrap();
    let mut ours = request.reply(Code::AccountingResponse);
    assert_eq!(
        ours.encode_response(SECRET, &request).unwrap(),
        response_bytes
    );
    assert!(ours.attributes.is_empty(), "no Message-Authenticator added");
}

#[test]
fn rfc3579_message_authenticator_on_request_and_challenge() {
    let request_bytes = hex(MA_REQUEST);
    let request = Packet::decode(&request_bytes).unwrap();
    assert_eq!(request.attributes[0].kind, MESSAGE_AUTHENTICATOR);
    request.verify_request(SECRET, Policy::default()).unwrap();
    let mut again = request.clone();
    assert_eq!(again.encode_request(SECRET).unwrap(), request_bytes);

    let challenge_bytes = hex(MA_CHALLENGE);
    let challenge = Packet::decode(&challenge_bytes).unwrap();
    challenge
        .verify_response(SECRET, &request, Policy::default())
        .unwrap();
    let mut ours = request.reply(Code::AccessChallenge);
    ours.push(Attribute::new(STATE, "state-1"));
    ours.push(Attribute::new(EAP_MESSAGE, [1, 1, 0, 6, 13, 0x20]));
    assert_eq!(
        ours.encode_response(SECRET, &request).unwrap(),
        challenge_bytes
    );

    // Against another request authenticator, the Response Authenticator fails first.
    let mut other = RequestContext::from(&request);
    other.authenticator[0] ^= 1;
    assert_eq!(
        challenge.verify_response(SECRET, other, Policy::default()),
        Err(Error::BadAuthenticator(Code::AccessChallenge))
    );
    // A forged Message-Authenticator with a recomputed Response Authenticator (what an
    // attacker who knew the MD5 prefix could do) is still caught.
    let mut forged = challenge.clone();
    forged.attributes[0].value[0] ^= 1;
    let forged = {
        let mut bytes = forged.encode().unwrap();
        let recomputed = md5_response(&bytes, &request.authenticator);
        bytes[4..20].copy_from_slice(&recomputed);
        Packet::decode(&bytes).unwrap()
    };
    assert_eq!(
        forged.verify_response(SECRET, &request, Policy::default()),
        Err(Error::BadMessageAuthenticator)
    );
}

#[test]
fn accounting_request_message_authenticator_is_over_zeros() {
    let bytes = hex(ACCT_WITH_MA);
    let request = Packet::decode(&bytes).unwrap();
    request.verify_request(SECRET, Policy::default()).unwrap();
    let mut rebuilt = request.clone();
    rebuilt.authenticator = [0; 16];
    rebuilt.attributes[2].value = vec![0; 16];
    assert_eq!(rebuilt.encode_request(SECRET).unwrap(), bytes);
    // The Message-Authenticator stays where it was (last), none is added.
    assert_eq!(rebuilt.attributes.len(), 3);
    assert_eq!(rebuilt.attributes[2].kind, MESSAGE_AUTHENTICATOR);
}

/// Access-Request with a Message-Authenticator first, User-Name, a two-block User-Password
/// ("correct horse battery"), a Cisco AV-Pair Vendor-Specific and two Proxy-States; by
/// Python. Also the fuzz seed `fuzz/seeds/radius/seed-6`.
const VSA_PROXY_REQUEST: &str = "01 44 00 8a a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af
    50 12 1a 06 2e 44 35 a4 1e 2d 15 cd 4e 16 82 2a 7f a1 01 12 6e 65 6d 6f 40 65 78 61 6d 70
    6c 65 2e 63 6f 6d 02 22 0e 0b b5 e9 43 e9 91 5f a8 dd d7 4c 5e 08 fc 4c cd 44 32 c0 e4 46
    4d 3b 57 ab 9f 6a 6c 24 90 c7 1a 19 00 00 00 09 01 13 73 68 65 6c 6c 3a 70 72 69 76 2d 6c
    76 6c 3d 31 35 21 0c 70 72 6f 78 79 2d 61 3a 31 37 21 0b 70 72 6f 78 79 2d 62 3a 34";

#[test]
fn vendor_specific_and_proxy_state_through_a_proxy() {
    let bytes = hex(VSA_PROXY_REQUEST);
    let request = Packet::decode(&bytes).unwrap();
    request.verify_request(SECRET, Policy::default()).unwrap();
    assert_eq!(
        request.user_password(SECRET).unwrap().as_deref(),
        Some(&b"correct horse battery"[..])
    );
    let vsa = VendorSpecific::parse(request.get(VENDOR_SPECIFIC).unwrap()).unwrap();
    assert_eq!(vsa, VendorSpecific::new(9).with(1, "shell:priv-lvl=15"));
    let states: Vec<&[u8]> = request.proxy_states().collect();
    assert_eq!(states, [&b"proxy-a:17"[..], b"proxy-b:4"]);

    // A proxy forwards it with its own Proxy-State, another Identifier, authenticator and
    // secret; the home server's reply carries all three Proxy-States back in order.
    let home_secret = b"home-secret";
    let mut forward = request.clone();
    forward.identifier = 200;
    forward.authenticator = [0x77; 16];
    let password = request.user_password(SECRET).unwrap().unwrap();
    forward.set_user_password(&password, home_secret).unwrap();
    forward.push_proxy_state(*b"us");
    let at_home = Packet::decode(&forward.encode_request(home_secret).unwrap()).unwrap();
    at_home
        .verify_request(home_secret, Policy::default())
        .unwrap();
    assert_eq!(at_home.user_password(home_secret).unwrap(), Some(password));
    let from_home = at_home
        .reply(Code::AccessAccept)
        .encode_response(home_secret, &at_home)
        .unwrap();

    let mut reply = Packet::decode(&from_home).unwrap();
    reply
        .verify_response(home_secret, &forward, Policy::default())
        .unwrap();
    assert_eq!(reply.pop_proxy_state().as_deref(), Some(&b"us"[..]));
    reply.identifier = request.identifier;
    let to_client = Packet::decode(&reply.encode_response(SECRET, &request).unwrap()).unwrap();
    to_client
        .verify_response(SECRET, &request, Policy::default())
        .unwrap();
    let states: Vec<&[u8]> = to_client.proxy_states().collect();
    assert_eq!(states, [&b"proxy-a:17"[..], b"proxy-b:4"]);
}

#[test]
fn header_peeks_without_decoding() {
    let head = header(&hex(MA_CHALLENGE)).unwrap();
    assert_eq!(
        (head.code, head.identifier, head.length),
        (Code::AccessChallenge, 0x37, 55)
    );
}

/// The Response Authenticator computed by hand, as an attacker would: MD5 over the packet
/// with the request authenticator, then the secret.
fn md5_response(packet: &[u8], request_authenticator: &[u8; 16]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut md5 = Md5::new();
    md5.update(&packet[..4]);
    md5.update(request_authenticator);
    md5.update(&packet[20..]);
    md5.update(SECRET);
    md5.finalize().into()
}
