//! End-to-end tests of entitle's programs together: the authority, the sidecar and the
//! operator CLI as real processes on 127.0.0.1, killed with SIGKILL where it matters
//! (`tests/`).
//!
//! Cargo gives a test the path of a binary of its own package only, so this package builds
//! each program again under an `e2e-` name (`src/bin/`), each a one-line call of the same
//! `program::main` as the real binary: the tests run the programs users run. One more,
//! `e2e-packet-server`, stands in for a packet server that a test kills with SIGKILL.
#![forbid(unsafe_code)]
