//! `berth-shim`: see `berth-shim --help` and the crate documentation.

use berth_shim::cli::{self, Invocation};

fn main() {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                eprintln!("berth-shim: argument {a:?} is not valid UTF-8");
                std::process::exit(2);
            }
        }
    }
    let code = match cli::parse(&args) {
        Ok(Invocation::Help) => {
            print!("{}", cli::HELP);
            0
        }
        Ok(Invocation::Version) => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Invocation::Ctl(c)) => berth_shim::client::main(c),
        Ok(Invocation::Shim(o)) => berth_shim::shim::main(*o),
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
