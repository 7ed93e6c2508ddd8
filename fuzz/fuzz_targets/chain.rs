//! The delegation chain through a satellite, as a device and a satellite check it: never
//! panics on envelopes, sync files and sync messages; nothing opens unless the chain to the
//! cloud key truly holds (a cloud-signed delegation, unexpired, unrevoked, naming the key
//! that signed the body); no edit of a genuine envelope opens as anything but itself; a
//! revocation list is learnt only as the cloud signed it, and never an older one. Inputs
//! are `[mode, bytes...]` (see `entitle_fuzz::chain`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    entitle_fuzz::chain::check(data);
});
