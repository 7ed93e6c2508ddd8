//! Signed envelopes and the device messages in them, as the authority receives them: never
//! panics, an envelope opens only with the signature the key's secret made, any change to a
//! signed envelope is refused, and batch verification answers what one-by-one does. Inputs
//! are `[pick, batch, envelope bytes...]` (see `entitle_fuzz::envelope::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    entitle_fuzz::envelope::check(data);
});
