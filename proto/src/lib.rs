//! The wire of entitle: the `entitle.v1` protobuf package and its generated code.
//!
//! Empty until the authority issue defines the services.
#![forbid(unsafe_code)]
