//! The reservation codes through their public API: round trips and lengths, every
//! single-character change refused, each wrong input refused with its own error, and
//! arbitrary text never panicking a parser.
#![allow(clippy::unwrap_used, missing_docs)] // tests fail loudly on purpose

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entitle_codes::{
    CodeError, CodeKind, CodeSigningKey, CodeVerifyingKey, MAX_REQUEST_LEN, MAX_SLR_LEN,
    MAX_SMART_ACCOUNT_REF, PLR_LEN, PlrGrant, Request, SlrGrant, Udi, Unverified, Verified,
    confirmation, confirmation_matches, make_plr, make_request, make_return, make_slr,
    normalize_authorization, parse_request, parse_return, peek_authorization, return_tag_matches,
    verify_authorization,
};
use entitle_licensing::{ReservationKind, Reserved};
use proptest::prelude::*;

const Z85: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Every character a request or return code may contain.
const TYPED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:";

fn authority() -> CodeSigningKey {
    CodeSigningKey::from_seed(&[0x5A; 32])
}

fn udi(product_id: &str, serial: &str) -> Udi {
    Udi::new(product_id, serial).unwrap()
}

fn request(serial: &str, sequence: u32) -> Request {
    Request {
        udi: udi("CPAR", serial),
        sequence,
    }
}

fn slr_grant() -> SlrGrant {
    SlrGrant {
        licences: BTreeMap::from([("PAR-TPS".to_owned(), 300), ("PAR-DIAM".to_owned(), 2)]),
        smart_account: "Acme".into(),
        virtual_account: "Lab".into(),
        export_controlled: true,
        issued_at: 1_750_000_000,
        worth: Default::default(),
    }
}

/// `code` with the character at byte `i` replaced by `c`.
fn replaced(code: &str, i: usize, c: char) -> String {
    let mut s = code.to_owned();
    s.replace_range(i..=i, c.encode_utf8(&mut [0; 4]));
    s
}

// ----- Request codes -----

#[test]
fn a_request_code_round_trips_and_reads_as_its_udi() {
    let code = make_request(&udi("CPAR", "SN1"), 7).unwrap();
    assert_eq!(code.len(), 14);
    assert!(code.starts_with("CPAR:SN1:7"), "{code}");
    assert_eq!(parse_request(&code).unwrap(), request("SN1", 7));
    assert_eq!(
        parse_request(&format!(" \t{code}\r\n")).unwrap(),
        request("SN1", 7)
    );
    let big = make_request(&udi("P", "S"), u32::MAX).unwrap();
    assert!(big.starts_with("P:S:3ZZZZZZ"), "{big}");
    assert_eq!(parse_request(&big).unwrap().sequence, u32::MAX);
}

#[test]
fn a_udi_too_long_for_32_characters_is_refused_naming_the_limit() {
    // 25 characters of UDI fit with a one-character sequence...
    let fits = udi("CPAR-SERVER", "FCH2144V1ABCDE");
    assert_eq!(make_request(&fits, 7).unwrap().len(), MAX_REQUEST_LEN);
    // ...not with a two-character one, nor 26 with any.
    let err = make_request(&fits, 32).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the UDI CPAR-SERVER/FCH2144V1ABCDE has 25 characters in its product id and serial \
         together; a request code for request 32 holds at most 24 (32 characters in all)"
    );
    assert!(matches!(
        make_request(&udi("CPAR-SERVER", "FCH2144V1ABCDEF"), 1),
        Err(CodeError::UdiTooLong {
            len: 26,
            max: 25,
            ..
        })
    ));
}

#[test]
fn every_single_typo_and_adjacent_swap_in_a_request_code_is_caught() {
    let code = make_request(&udi("CPAR-X.9_z", "FCH2144V1A"), 0x3FF_FFFF).unwrap();
    assert_eq!(code.len(), MAX_REQUEST_LEN, "{code}");
    let (substitutions, swaps) = assert_typos_caught(&code, |c| parse_request(c).is_err());
    assert_eq!(substitutions, 32 * (TYPED.len() - 1));
    assert!(swaps >= 25, "{swaps}");
}

/// Changes every character of `code` to every other character of its alphabet, and swaps
/// every pair of different neighbours; `refused` must hold for each. Returns the counts.
fn assert_typos_caught(code: &str, refused: impl Fn(&str) -> bool) -> (usize, usize) {
    let mut substitutions = 0;
    for (i, original) in code.char_indices() {
        for c in TYPED.chars().filter(|&c| c != original) {
            let typo = replaced(code, i, c);
            assert!(
                refused(&typo),
                "{typo} (position {i} to {c:?}) was accepted"
            );
            substitutions += 1;
        }
    }
    let mut swaps = 0;
    let bytes = code.as_bytes();
    for i in 0..bytes.len() - 1 {
        if bytes[i] != bytes[i + 1] {
            let mut swapped = bytes.to_vec();
            swapped.swap(i, i + 1);
            let swapped = String::from_utf8(swapped).unwrap();
            assert!(refused(&swapped), "{swapped} (swap at {i}) was accepted");
            swaps += 1;
        }
    }
    (substitutions, swaps)
}

#[test]
fn request_codes_refuse_each_kind_of_bad_input_with_its_own_error() {
    let code = make_request(&udi("CPAR", "SN1"), 7).unwrap();
    let kind = CodeKind::Request;
    assert_eq!(parse_request(""), Err(CodeError::Empty { kind }));
    assert_eq!(parse_request(" \n\t "), Err(CodeError::Empty { kind }));
    assert_eq!(
        parse_request(&code[..code.len() - 1]),
        Err(CodeError::CheckMismatch { kind }),
        "truncated"
    );
    assert_eq!(
        parse_request("CPAR:1:1"),
        Err(CodeError::TooShort {
            kind,
            len: 8,
            min: 9
        })
    );
    assert!(matches!(
        parse_request(&format!("{code}{}", "A".repeat(40))),
        Err(CodeError::TooLong { max: 32, .. })
    ));
    assert_eq!(
        parse_request("CPAR:SN1é:7ABCD"),
        Err(CodeError::NotAscii { kind, position: 9 })
    );
    assert_eq!(
        parse_request(&code.replace(':', " ")),
        Err(CodeError::BadCharacter {
            kind,
            character: ' ',
            position: 5
        }),
        "whitespace inside is not tolerated"
    );
    assert!(matches!(
        parse_request("CPAR:SN1:7:ABCDEFGH"),
        Err(CodeError::Malformed { .. })
    ));
    assert_eq!(
        parse_request(&code.to_lowercase()),
        Err(CodeError::CheckMismatch { kind }),
        "the parts are case sensitive"
    );
    // A return code is not a request code, nor the other way round.
    let ret = make_return(&udi("C", "S"), 1, &plr_code()).unwrap();
    assert!(matches!(
        parse_request(&ret),
        Err(CodeError::TooLong { .. } | CodeError::Malformed { .. })
    ));
    assert!(matches!(
        parse_return(&code),
        Err(CodeError::TooShort { .. } | CodeError::Malformed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_request_that_fits_round_trips_within_32_characters(
        product_id in "[A-Za-z0-9._-]{1,20}",
        serial in "[A-Za-z0-9._-]{1,20}",
        sequence in any::<u32>(),
    ) {
        let udi = udi(&product_id, &serial);
        match make_request(&udi, sequence) {
            Ok(code) => {
                prop_assert!(code.len() <= MAX_REQUEST_LEN);
                prop_assert_eq!(parse_request(&code).unwrap(), Request { udi, sequence });
            }
            Err(CodeError::UdiTooLong { len, max, .. }) => {
                prop_assert_eq!(len, product_id.len() + serial.len());
                prop_assert!(len > max && max >= 19);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

// ----- PLR codes -----

fn plr_code() -> String {
    let grant = PlrGrant {
        smart_account_ref: 4711,
        export_controlled: true,
    };
    make_plr(&authority(), &request("SN1", 7), &grant).unwrap()
}

#[test]
fn a_plr_code_is_64_characters_and_grants_its_account_and_export_status() {
    let code = plr_code();
    assert_eq!(code.len(), PLR_LEN);
    assert!("9abcdefghi".contains(&code[..1]), "{code}");
    let verified =
        verify_authorization(&code, &authority().verifying_key(), &udi("CPAR", "SN1"), 7);
    let grant = PlrGrant {
        smart_account_ref: 4711,
        export_controlled: true,
    };
    assert_eq!(verified, Ok(Verified::Plr(grant)));
    assert_eq!(peek_authorization(&code), Ok(Unverified::Plr(grant)));
    assert_eq!(
        Verified::Plr(grant).into_reserved(7),
        Reserved {
            sequence: 7,
            smart_account: "#4711".into(),
            virtual_account: None,
            export_controlled: true,
            kind: ReservationKind::Permanent,
            worth: Default::default(),
        }
    );
    assert_eq!(
        make_plr(
            &authority(),
            &request("SN1", 7),
            &PlrGrant {
                smart_account_ref: MAX_SMART_ACCOUNT_REF + 1,
                export_controlled: false
            }
        ),
        Err(CodeError::AccountRefTooLarge(1 << 24))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_plr_code_is_64_characters_and_verifies_only_for_its_request(
        product_id in "[A-Za-z0-9._-]{1,64}",
        serial in "[A-Za-z0-9._-]{1,64}",
        sequence in any::<u32>(),
        smart_account_ref in 0..=MAX_SMART_ACCOUNT_REF,
        export_controlled in any::<bool>(),
    ) {
        let key = authority();
        let udi = udi(&product_id, &serial);
        let grant = PlrGrant { smart_account_ref, export_controlled };
        let code = make_plr(&key, &Request { udi: udi.clone(), sequence }, &grant).unwrap();
        prop_assert_eq!(code.len(), PLR_LEN);
        let public = key.verifying_key();
        prop_assert_eq!(verify_authorization(&code, &public, &udi, sequence), Ok(Verified::Plr(grant)));
        let is_plr_mismatch =
            matches!(verify_authorization(&code, &public, &udi, sequence ^ 1), Err(CodeError::PlrDoesNotVerify { .. }));
        prop_assert!(is_plr_mismatch);
    }
}

#[test]
fn every_character_of_a_plr_code_changed_to_every_other_is_refused() {
    let code = plr_code();
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let mut tried = 0;
    for i in 0..code.len() {
        for c in Z85.chars().filter(|&c| code.as_bytes()[i] != c as u8) {
            let tampered = replaced(&code, i, c);
            let result = verify_authorization(&tampered, &public, &device, 7);
            assert!(result.is_err(), "{tampered} accepted");
            tried += 1;
        }
    }
    assert_eq!(tried, 64 * 84);
}

#[test]
fn a_plr_code_for_another_device_request_or_authority_is_refused() {
    let code = plr_code();
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let refused = |key: &CodeVerifyingKey, udi: &Udi, sequence| {
        Err(CodeError::PlrDoesNotVerify {
            udi: udi.clone(),
            sequence,
        })
        .eq(&verify_authorization(&code, key, udi, sequence))
    };
    assert!(refused(&public, &udi("CPAR", "SN2"), 7), "another device");
    assert!(refused(&public, &device, 6), "another request");
    let other = CodeSigningKey::from_seed(&[1; 32]).verifying_key();
    assert!(refused(&other, &device, 7), "another authority");
    assert_eq!(
        verify_authorization(&code, &public, &udi("CPAR", "SN2"), 7)
            .unwrap_err()
            .to_string(),
        "the PLR authorisation code does not verify for device CPAR/SN2 and request 7: it \
         answers another device or request, was made by another authority, or was altered"
    );
}

#[test]
fn malformed_authorisation_codes_are_refused_each_with_its_own_error() {
    let code = plr_code();
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let verify = |text: &str| verify_authorization(text, &public, &device, 7);
    let kind = CodeKind::Authorization;
    assert_eq!(verify(""), Err(CodeError::Empty { kind }));
    assert_eq!(verify(" \r\n\t\u{a0}"), Err(CodeError::Empty { kind }));
    assert_eq!(
        verify(&code[..63]),
        Err(CodeError::NotAuthorization { len: 63 }),
        "truncated"
    );
    assert_eq!(
        verify(&format!("{code}x")),
        Err(CodeError::NotAuthorization { len: 65 })
    );
    assert!(matches!(
        verify(&"a".repeat(MAX_SLR_LEN + 1)),
        Err(CodeError::TooLong { .. })
    ));
    assert_eq!(
        verify(&replaced(&code, 10, 'é')),
        Err(CodeError::NotAscii { kind, position: 11 })
    );
    assert_eq!(
        verify(&replaced(&code, 10, '"')),
        Err(CodeError::BadCharacter {
            kind: CodeKind::Plr,
            character: '"',
            position: 11
        })
    );
    assert_eq!(
        verify(&"#".repeat(64)),
        Err(CodeError::Malformed {
            kind: CodeKind::Plr,
            detail: "its number is larger than any PLR code"
        })
    );
    assert_eq!(
        verify(&"0".repeat(64)),
        Err(CodeError::UnknownVersion {
            kind: CodeKind::Plr,
            version: 0
        })
    );
    // Whitespace anywhere is ignored, as in a wrapped e-mail.
    let wrapped = format!(" {}\r\n  {} ", &code[..30], &code[30..]);
    assert!(verify(&wrapped).is_ok());
}

// ----- SLR codes -----

fn slr_code() -> String {
    make_slr(&authority(), &request("SN1", 7), &slr_grant()).unwrap()
}

#[test]
fn an_slr_code_grants_exactly_its_licences_and_accounts() {
    let code = slr_code();
    assert!(code.starts_with("SLR1."), "{code}");
    let public = authority().verifying_key();
    let verified = verify_authorization(&code, &public, &udi("CPAR", "SN1"), 7).unwrap();
    assert_eq!(verified, Verified::Slr(slr_grant()));
    assert_eq!(
        verified.into_reserved(7),
        Reserved {
            sequence: 7,
            smart_account: "Acme".into(),
            virtual_account: Some("Lab".into()),
            export_controlled: true,
            kind: ReservationKind::Specific {
                licences: slr_grant().licences
            },
            worth: Default::default(),
        }
    );
    assert_eq!(
        peek_authorization(&code),
        Ok(Unverified::Slr {
            udi: udi("CPAR", "SN1"),
            sequence: 7,
            grant: slr_grant()
        })
    );
}

#[test]
fn an_slr_code_for_another_device_request_or_authority_or_truncated_says_which() {
    let code = slr_code();
    let public = authority().verifying_key();
    assert_eq!(
        verify_authorization(&code, &public, &udi("CPAR", "SN2"), 7)
            .unwrap_err()
            .to_string(),
        "this authorisation code is for device CPAR/SN1, not CPAR/SN2"
    );
    assert_eq!(
        verify_authorization(&code, &public, &udi("CPAR", "SN1"), 8),
        Err(CodeError::WrongSequence {
            code: 7,
            pending: 8
        })
    );
    assert_eq!(
        verify_authorization(&code[..code.len() - 1], &public, &udi("CPAR", "SN1"), 7),
        Err(CodeError::Malformed {
            kind: CodeKind::Slr,
            detail: "its signature (after the last '.') is not 64 characters"
        }),
        "truncated"
    );
    let other = CodeSigningKey::from_seed(&[1; 32]).verifying_key();
    let err = verify_authorization(&code, &other, &udi("CPAR", "SN1"), 7).unwrap_err();
    assert_eq!(err, CodeError::BadSignature);
    assert_eq!(
        err.to_string(),
        "the authorisation code's signature does not verify: it was altered or made by \
         another authority"
    );
}

#[test]
fn every_character_of_an_slr_code_changed_to_every_other_is_refused() {
    let code = slr_code();
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let alphabet = format!("{BASE64URL}.SLR");
    let mut tried = 0;
    for i in 0..code.len() {
        for c in alphabet.chars().filter(|&c| code.as_bytes()[i] != c as u8) {
            let tampered = replaced(&code, i, c);
            assert!(
                verify_authorization(&tampered, &public, &device, 7).is_err(),
                "{tampered} accepted"
            );
            tried += 1;
        }
    }
    assert!(tried > 100 * 64, "{tried}");
}

#[test]
fn every_bit_of_an_slr_body_flipped_and_re_encoded_is_refused() {
    let code = slr_code();
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let (body, signature) = code["SLR1.".len()..].split_once('.').unwrap();
    let body = URL_SAFE_NO_PAD.decode(body).unwrap();
    for bit in 0..body.len() * 8 {
        let mut flipped = body.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let tampered = format!("SLR1.{}.{signature}", URL_SAFE_NO_PAD.encode(&flipped));
        assert!(
            verify_authorization(&tampered, &public, &device, 7).is_err(),
            "bit {bit} accepted"
        );
    }
}

/// An SLR code around a body of our own making and a valid-looking signature: its parse
/// must fail before the signature matters.
fn slr_with_body(body: &[u8]) -> String {
    let signature = slr_code().rsplit_once('.').unwrap().1.to_owned();
    format!("SLR1.{}.{signature}", URL_SAFE_NO_PAD.encode(body))
}

/// A body by the documented layout.
fn body_with(licences: &[(&str, u64)]) -> Vec<u8> {
    let mut body = vec![1, 0];
    body.extend_from_slice(&7u32.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    for text in ["CPAR", "SN1", "Acme", "Lab"] {
        body.push(text.len() as u8);
        body.extend_from_slice(text.as_bytes());
    }
    body.extend_from_slice(&(licences.len() as u16).to_be_bytes());
    for (tag, quantity) in licences {
        body.push(tag.len() as u8);
        body.extend_from_slice(tag.as_bytes());
        body.extend_from_slice(&quantity.to_be_bytes());
    }
    body
}

#[test]
fn slr_parsing_is_bounded_and_refuses_bad_contents_before_the_signature() {
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let verify = |text: &str| verify_authorization(text, &public, &device, 7);
    // The layout above is the real one: a genuine body still reaches the signature check.
    assert_eq!(
        verify(&slr_with_body(&body_with(&[("PAR-TPS", 1)]))),
        Err(CodeError::BadSignature)
    );
    let tags: Vec<String> = (0..257).map(|i| format!("T{i:03}")).collect();
    let many: Vec<(&str, u64)> = tags.iter().map(|t| (t.as_str(), 1)).collect();
    assert_eq!(
        verify(&slr_with_body(&body_with(&many))),
        Err(CodeError::TooManyLicences {
            count: 257,
            max: 256
        })
    );
    assert_eq!(
        verify(&slr_with_body(&body_with(&[("PAR TPS", 1)]))),
        Err(CodeError::InvalidTag)
    );
    assert_eq!(
        verify(&slr_with_body(&body_with(&[("B", 1), ("A", 1)]))),
        Err(CodeError::UnorderedLicences)
    );
    assert_eq!(
        verify(&slr_with_body(&body_with(&[("A", 0)]))),
        Err(CodeError::ZeroQuantity { tag: "A".into() })
    );
    assert!(matches!(
        verify(&slr_with_body(&body_with(&[("A", 1)])[..40])),
        Err(CodeError::Malformed {
            detail: "its body ends early",
            ..
        })
    ));
    assert_eq!(
        verify("SLR2.AAAA.BBBB"),
        Err(CodeError::UnknownVersion {
            kind: CodeKind::Slr,
            version: 2
        })
    );
    let huge = format!("SLR1.{}", "A".repeat(MAX_SLR_LEN));
    assert!(matches!(verify(&huge), Err(CodeError::TooLong { .. })));
    // Making one refuses the same things.
    let mut grant = slr_grant();
    grant.licences = tags.iter().map(|t| (t.clone(), 1)).collect();
    assert!(matches!(
        make_slr(&authority(), &request("SN1", 7), &grant),
        Err(CodeError::TooManyLicences { count: 257, .. })
    ));
    grant.licences = BTreeMap::from([("bad tag".to_owned(), 1)]);
    assert_eq!(
        make_slr(&authority(), &request("SN1", 7), &grant),
        Err(CodeError::InvalidTag)
    );
    grant.licences = BTreeMap::new();
    assert_eq!(
        make_slr(&authority(), &request("SN1", 7), &grant),
        Err(CodeError::NoLicences)
    );
    // 256 long tags are more than 16 KiB of code.
    grant.licences = (0..256).map(|i| (format!("{i:0>64}"), u64::MAX)).collect();
    assert!(matches!(
        make_slr(&authority(), &request("SN1", 7), &grant),
        Err(CodeError::SlrTooLarge { .. })
    ));
}

// ----- Return and confirmation codes -----

#[test]
fn a_return_code_names_the_reservation_installed_or_not() {
    let plr = plr_code();
    let device = udi("CPAR", "SN1");
    let from_installed = make_return(&device, 7, &plr).unwrap();
    // The operator pastes the code from an e-mail, wrapped: the same return code.
    let pasted = format!("{}\n{}", &plr[..32], &plr[32..]);
    assert_eq!(make_return(&device, 7, &pasted).unwrap(), from_installed);
    let returned = parse_return(&from_installed).unwrap();
    assert_eq!((&returned.udi, returned.sequence), (&device, 7));
    assert!(return_tag_matches(&returned, &plr));
    assert!(!return_tag_matches(&returned, &slr_code()), "another code");

    let slr = slr_code();
    let returned = parse_return(&make_return(&device, 7, &slr).unwrap()).unwrap();
    assert!(return_tag_matches(&returned, &slr));
    assert_eq!(
        make_return(&udi("CPAR", "SN2"), 7, &slr),
        Err(CodeError::WrongDevice {
            code: device.clone(),
            device: udi("CPAR", "SN2")
        })
    );
    assert!(matches!(
        make_return(&device, 8, &slr),
        Err(CodeError::WrongSequence {
            code: 7,
            pending: 8
        })
    ));
    assert_eq!(
        make_return(&device, 7, "not a code"),
        Err(CodeError::NotAuthorization { len: 8 })
    );
}

#[test]
fn every_single_typo_and_adjacent_swap_in_a_return_code_is_caught() {
    let code = make_return(&udi("CPAR", "SN1"), 7, &plr_code()).unwrap();
    assert_eq!(code.len(), 31);
    let (substitutions, _) = assert_typos_caught(&code, |c| parse_return(c).is_err());
    assert_eq!(substitutions, 31 * (TYPED.len() - 1));
    assert_eq!(
        parse_return(""),
        Err(CodeError::Empty {
            kind: CodeKind::Return
        })
    );
}

#[test]
fn the_confirmation_is_8_hex_digits_the_authority_recomputes() {
    let plr = plr_code();
    let device = udi("CPAR", "SN1");
    let shown = confirmation(&plr, &device);
    assert_eq!(shown.len(), 8);
    assert!(
        shown
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    );
    assert_eq!(confirmation(&format!(" {plr}\n"), &device), shown);
    assert!(confirmation_matches(
        &format!(" {} ", shown.to_lowercase()),
        &plr,
        &device
    ));
    assert_ne!(confirmation(&plr, &udi("CPAR", "SN2")), shown);
    assert_ne!(confirmation(&slr_code(), &device), shown);
}

// ----- Keys -----

#[test]
fn keys_round_trip_and_invalid_keys_are_refused() {
    let key = authority();
    let again = CodeSigningKey::from_bytes(&key.to_bytes()).unwrap();
    assert_eq!(again.verifying_key(), key.verifying_key());
    let public = key.verifying_key().to_bytes();
    assert_eq!(
        CodeVerifyingKey::from_bytes(&public).unwrap(),
        key.verifying_key()
    );
    for bad in [&public[..95], &[0u8; 96][..], &[0xFF; 96][..]] {
        assert_eq!(
            CodeVerifyingKey::from_bytes(bad),
            Err(CodeError::InvalidVerifyingKey)
        );
    }
    let mut infinity = [0u8; 96];
    infinity[0] = 0xC0;
    assert_eq!(
        CodeVerifyingKey::from_bytes(&infinity),
        Err(CodeError::InvalidVerifyingKey),
        "the point at infinity would verify anything"
    );
    assert_eq!(
        CodeSigningKey::from_bytes(&[0u8; 32])
            .err()
            .map(|e| e.to_string()),
        Some("the code signing key is not a valid BLS12-381 secret key of 32 bytes".into())
    );
    let shown = format!("{key:?}");
    let secret_hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.contains(&secret_hex[..16]), "{shown}");
}

// ----- Arbitrary input -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn no_parser_panics_on_arbitrary_text(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn no_parser_panics_on_text_from_the_codes_alphabets(
        text in "[A-Za-z0-9._:#$%&()*+/<=>?@^{}!\\[\\]-]{0,80}",
    ) {
        exercise(&text);
    }

    #[test]
    fn no_parser_panics_on_a_real_code_with_a_few_bytes_changed(
        which in 0..4usize,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let device = udi("CPAR", "SN1");
        let code = match which {
            0 => plr_code(),
            1 => slr_code(),
            2 => make_request(&device, 7).unwrap(),
            _ => make_return(&device, 7, &plr_code()).unwrap(),
        };
        let mut bytes = code.into_bytes();
        for (index, byte) in edits {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

fn exercise(text: &str) {
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let _ = parse_request(text);
    let _ = parse_return(text);
    let _ = peek_authorization(text);
    let _ = normalize_authorization(text);
    let _ = verify_authorization(text, &public, &device, 7);
    if let Ok(returned) = parse_return(text) {
        let _ = return_tag_matches(&returned, text);
    }
    let _ = make_return(&device, 7, text);
    let _ = confirmation(text, &device);
}

// ----- SLR codes that say what their licences are worth (body version 2) -----

fn worth(tps_per_unit: u64, policy: entitle_engine::Policy) -> entitle_licensing::Worth {
    entitle_licensing::Worth {
        tps_per_unit,
        policy,
    }
}

fn slr_grant_with_worth() -> SlrGrant {
    SlrGrant {
        worth: BTreeMap::from([
            (
                "PAR-DIAM".to_owned(),
                worth(50, entitle_engine::Policy::Monitor),
            ),
            (
                "PAR-TPS".to_owned(),
                worth(100, entitle_engine::Policy::Hard),
            ),
        ]),
        ..slr_grant()
    }
}

#[test]
fn an_slr_code_carries_what_each_licence_is_worth_signed_and_old_codes_still_read() {
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let grant = slr_grant_with_worth();
    let code = make_slr(&authority(), &request("SN1", 7), &grant).unwrap();
    let verified = verify_authorization(&code, &public, &device, 7).unwrap();
    assert_eq!(verified, Verified::Slr(grant.clone()));
    let reserved = verified.into_reserved(7);
    assert_eq!(reserved.worth, grant.worth);
    // The body says version 2; a grant without worth is the version 1 body, as before.
    let body = |code: &str| {
        URL_SAFE_NO_PAD
            .decode(code.split('.').nth(1).unwrap())
            .unwrap()
    };
    assert_eq!(body(&code)[0], 2);
    assert_eq!(body(&slr_code())[0], 1);
    // Every byte of the worth is signed: changing a TPS per unit breaks the signature.
    let mut raised = body(&code);
    let at = raised.len() - 9; // the last licence's TPS per unit, then its policy
    raised[at + 7] ^= 0x40;
    let signature = code.rsplit_once('.').unwrap().1;
    let forged = format!("SLR1.{}.{signature}", URL_SAFE_NO_PAD.encode(&raised));
    assert_eq!(
        verify_authorization(&forged, &public, &device, 7),
        Err(CodeError::BadSignature)
    );
}

#[test]
fn slr_worth_that_is_malformed_or_of_an_unknown_version_is_refused() {
    let public = authority().verifying_key();
    let device = udi("CPAR", "SN1");
    let verify = |body: &[u8]| verify_authorization(&slr_with_body(body), &public, &device, 7);
    let v2 = |tps: u64, policy: u8| {
        let mut body = body_with(&[("PAR-TPS", 1)]);
        body[0] = 2;
        body.extend_from_slice(&tps.to_be_bytes());
        body.push(policy);
        body
    };
    assert_eq!(
        verify(&v2(100, 1)),
        Err(CodeError::BadSignature),
        "well formed"
    );
    for (bad, why) in [
        (v2(0, 1), "zero TPS per unit"),
        (v2(2_000_000_000, 1), "beyond 10^9"),
        (v2(100, 0), "policy 0"),
        (v2(100, 4), "policy 4"),
    ] {
        assert!(
            matches!(verify(&bad), Err(CodeError::Malformed { .. })),
            "{why}: {:?}",
            verify(&bad)
        );
    }
    // A version 2 body cut inside the worth ends early.
    let cut = v2(100, 1);
    assert!(matches!(
        verify(&cut[..cut.len() - 3]),
        Err(CodeError::Malformed { .. })
    ));
    // A version 1 body with worth bytes after it has bytes after the last licence.
    let mut trailing = body_with(&[("PAR-TPS", 1)]);
    trailing.extend_from_slice(&100u64.to_be_bytes());
    trailing.push(1);
    assert!(matches!(
        verify(&trailing),
        Err(CodeError::Malformed { .. })
    ));
    let mut v3 = v2(100, 1);
    v3[0] = 3;
    assert_eq!(
        verify(&v3),
        Err(CodeError::UnknownVersion {
            kind: CodeKind::Slr,
            version: 3
        })
    );
    // The authority refuses to make a code whose worth leaves a licence out.
    let mut partial = slr_grant_with_worth();
    partial.worth.remove("PAR-DIAM");
    assert!(make_slr(&authority(), &request("SN1", 7), &partial).is_err());
}
