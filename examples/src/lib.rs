//! In-process examples of entitle; see `examples/`.
