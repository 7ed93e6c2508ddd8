//! `entitled` for the end-to-end tests (see the crate's documentation).

fn main() -> std::process::ExitCode {
    entitle_sidecar::program::main()
}
