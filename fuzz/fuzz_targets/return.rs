//! The portal's return code parser: never panics, and accepts only texts of the shape
//! `make_return` writes.
#![no_main]

use entitle_fuzz::codes::{Udi, parse_return, return_tag_matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(returned) = parse_return(text) {
        let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let prefix = format!("{}:{}:", returned.udi.product_id(), returned.udi.serial());
        assert!(
            trimmed.starts_with(&prefix),
            "{trimmed} read as {returned:?}"
        );
        assert!(Udi::new(returned.udi.product_id(), returned.udi.serial()).is_ok());
        let _ = return_tag_matches(&returned, text);
    }
});
