//! entitle's processes: the sidecar, the licence authority and the operator CLI.
//!
//! Empty until the authority and sidecar issues build them.
#![forbid(unsafe_code)]
