//! `entitle` for the end-to-end tests (see the crate's documentation).

fn main() -> std::process::ExitCode {
    entitle_cli::program::main()
}
