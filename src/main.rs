//! The `zdm` binary: parse the command line, run the command, map the outcome to an exit code.
//! Everything else lives in the library (`src/lib.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    zdm::cli::main()
}
