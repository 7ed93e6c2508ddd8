//! An HTTP proxy's answer to CONNECT (outside input: whatever listens at the proxy's
//! address): never panics, and reads a status only from an `HTTP/1.x NNN` first line, the
//! three digits given back as the number.
#![no_main]

use entitle_proto::proxy_answer_status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|answer: &[u8]| {
    if let Some(code) = proxy_answer_status(answer) {
        let first = answer.split(|b| *b == b'\n').next().unwrap_or_default();
        assert!(
            first.starts_with(b"HTTP/1.") && first.len() >= 12,
            "{answer:?}"
        );
        assert_eq!(&first[9..12], format!("{code:03}").as_bytes(), "{answer:?}");
    }
});
