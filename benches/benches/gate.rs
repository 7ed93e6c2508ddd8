//! Criterion benches of the gate (filled in below).
fn main() {}
