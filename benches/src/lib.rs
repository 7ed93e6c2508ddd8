//! Benchmarks of entitle against its peers.
