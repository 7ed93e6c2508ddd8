//! `verify_authorization` on raw text, as the operator pastes it: never panics, and only
//! the authority's own codes verify.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    entitle_fuzz::check_authorization(text);
});
