//! loom models of the engine's atomic protocols. Run them with
//! `RUSTFLAGS="--cfg entitle_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`.
