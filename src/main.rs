//! The `pipe` binary: parse the command line, run the command, turn the result into an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pipe::cli::Cli::parse();
    keep_freed_memory(matches!(cli.command, pipe::cli::Command::Build(_)));
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
///
/// One arena, because a stage trains on its own thread and glibc gives each thread an arena
/// of 64 MB heaps that it unmaps whole once they empty, whatever the trim threshold: a
/// 2-epoch ConvNet run unmapped 285 such heaps and took 737k page faults (30k with one
/// arena), 1,587 against 2,161 images/s (medians of 3 alternated runs). Allocation is per
/// tensor, not per element, so training threads hardly ever wait on the shared arena's
/// lock. Only `build` trains; the other commands keep an arena per thread, since `status`
/// reads the cache on two threads that do wait on one lock (its 500-variant decision:
/// 12.9 ms with one arena, 10.1 without).
fn keep_freed_memory(training: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        if training {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
