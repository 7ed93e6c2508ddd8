//! SLR codes on the device. Inputs starting with byte 0 are an SLR body and signature in
//! raw bytes, wrapped as `SLR1.<body>.<signature>`, so the fuzzer works on the body parser
//! directly; other inputs are raw text.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) if rest.len() >= 48 => {
            let (signature, body) = rest.split_at(48);
            let text = format!(
                "SLR1.{}.{}",
                URL_SAFE_NO_PAD.encode(body),
                URL_SAFE_NO_PAD.encode(signature)
            );
            entitle_fuzz::check_authorization(&text);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                entitle_fuzz::check_authorization(text);
            }
        }
    }
});
