//! The `pipe` binary: parse the command line, run the command, turn the result into an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pipe::cli::Cli::parse();
    pipe::heap::keep_freed_memory(matches!(cli.command, pipe::cli::Command::Build(_)));
    match pipe::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
