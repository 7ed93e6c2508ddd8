//! The portal's request code parser: never panics, and whatever it accepts is exactly the
//! code `make_request` writes for what it read (one text per request).
#![no_main]

use entitle_fuzz::codes::{make_request, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(request) = parse_request(text) {
        let made = make_request(&request.udi, request.sequence).expect("it fitted once");
        assert_eq!(made, text.trim_matches(|c: char| c.is_ascii_whitespace()));
    }
});
