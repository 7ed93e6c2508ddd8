//! entitle's processes: the licence authority (the cloud "CSSM" role), a device's client of
//! it, the sidecar `entitled` (also embeddable) and the operator CLI `entitle`.
#![forbid(unsafe_code)]

pub mod authority;
pub mod cli;
pub mod codes;
pub mod crypto;
pub mod device;
pub mod error;
pub mod sidecar;
