//! `entitle-authority`: the licence authority and its admin CLI; see
//! [`entitle_authority::program`].

fn main() -> std::process::ExitCode {
    entitle_authority::program::main()
}
