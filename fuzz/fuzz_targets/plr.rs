//! PLR codes on the device. Half the inputs are raw text; the other half are bytes mapped
//! onto the 64-character Z85 shape, so the fuzzer spends its time past the length and
//! alphabet checks: in the number, the header and the signature point.
#![no_main]

use libfuzzer_sys::fuzz_target;

const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) if rest.len() >= 64 => {
            let text: String = rest[..64]
                .iter()
                .map(|&b| char::from(Z85[usize::from(b) % 85]))
                .collect();
            entitle_fuzz::check_authorization(&text);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                entitle_fuzz::check_authorization(text);
            }
        }
    }
});
