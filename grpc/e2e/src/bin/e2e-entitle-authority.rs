//! `entitle-authority` for the end-to-end tests (see the crate's documentation).

fn main() -> std::process::ExitCode {
    entitle_authority::program::main()
}
