//! entitle's processes: the licence authority (the cloud "CSSM" role) and a device's client
//! of it; to come, the sidecar `entitled` and the operator CLI `entitle`.
#![forbid(unsafe_code)]

pub mod authority;
pub mod crypto;
pub mod device;
pub mod error;
