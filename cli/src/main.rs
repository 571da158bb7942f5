//! The `torsion` binary: the command line of [`torsion::main`], with CPython embedded.

use std::process::ExitCode;

fn main() -> ExitCode {
    torsion::main(std::env::args_os())
}
