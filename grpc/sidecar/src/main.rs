//! `entitled`: the licence sidecar of a packet server; see [`entitle_sidecar::program`].

fn main() -> std::process::ExitCode {
    entitle_sidecar::program::main()
}
