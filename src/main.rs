//! The `pipe` binary: parse the command line, run the command, turn the result into an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `pipe list | head`: when the reader goes, end quietly, as other command-line tools
    // do, instead of panicking on the failed write (Rust ignores SIGPIPE by default).
    // SAFETY: restoring a signal's default disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = pipe::cli::Cli::parse();
    if let pipe::cli::Command::Completions(a) = &cli.command {
        // Needs no project: it describes the command line itself.
        pipe::cli::completions(a.shell, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    pipe::heap::keep_freed_memory(matches!(cli.command, pipe::cli::Command::Build(_)));
    match pipe::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
