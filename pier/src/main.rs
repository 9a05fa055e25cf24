//! The `pier` binary.

fn main() {
    std::process::exit(pier::cli::main());
}
