//! `entitle-radius-proxy`: the TPS-licensing RADIUS proxy; see [`entitle_radius_proxy::program`].

fn main() -> std::process::ExitCode {
    entitle_radius_proxy::program::main()
}
