//! The `pipe` binary: parse the command line, run the command, turn the result into an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = pipe::cli::Cli::parse();
    match pipe::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// Training frees and allocates the same large tensors every step (the seed perceptron's
/// 3072 × 3072 weight gradient is 37 MB). glibc serves blocks that large with `mmap` and
/// unmaps them on free, so each step faulted every page in again (zeroed by the kernel): 38%
/// slower seed-perceptron epochs. Served from the heap and never trimmed, a freed block is
/// reused as it is; the price is that the process keeps its peak heap until it exits.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
