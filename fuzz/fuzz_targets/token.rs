//! The ID token's form at registration: never panics, and accepts exactly the texts with a
//! non-empty id, a dot, a non-empty secret and at most 128 bytes, split at the first dot so
//! that id, dot and secret give the text back.
#![no_main]

use entitle_fuzz::token::{MAX_TOKEN_LEN, parse_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // The rule, written out independently of the parser.
    let well_formed = text.len() <= MAX_TOKEN_LEN
        && text
            .find('.')
            .is_some_and(|dot| dot > 0 && dot + 1 < text.len());
    match parse_token(text) {
        Ok((id, secret)) => {
            assert!(well_formed, "accepted {text:?}");
            assert_eq!(format!("{id}.{secret}"), text);
            assert!(!id.is_empty() && !secret.is_empty() && !id.contains('.'));
        }
        Err(e) => assert!(!well_formed, "refused {text:?}: {e:?}"),
    }
});
