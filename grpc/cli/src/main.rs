//! `entitle`: the operator CLI of the sidecar `entitled`; see [`entitle_cli::program`].

fn main() -> std::process::ExitCode {
    entitle_cli::program::main()
}
