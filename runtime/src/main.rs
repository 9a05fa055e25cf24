//! The `berth` binary: `berth init` (internal, run from the sealed copy inside
//! the container) or the runc-compatible CLI.

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "init")
        && std::env::var_os(berth::process::INIT_FD_ENV).is_some()
    {
        berth::process::init::main();
    }
    std::process::exit(berth::cli::main());
}
