//! `entitle-authority`: the licence authority and its admin CLI; see
//! [`entitle_authority::program`].

#[global_allocator]
static ALLOCATOR: entitle_authority::Allocator = entitle_authority::Allocator;

fn main() -> std::process::ExitCode {
    entitle_authority::program::main()
}
