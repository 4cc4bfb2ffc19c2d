//! glibc malloc's settings for this process: what the allocator keeps once freed, and the
//! room a short-lived helper thread takes before its work.

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
pub fn keep_freed_memory(training: bool) {
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

/// What [`room_for_thread`] reserves: more than the helpers of a 500-variant decision
/// allocate (~1.2 MB each by their `mprotect` calls), far below an arena heap's 64 MB.
const ROOM: usize = 8 << 20;

/// Grows the calling thread's arena by [`ROOM`] in one step, at the start of a helper
/// thread. glibc grows a thread arena's heap a page at a time, one `mprotect` call each (its
/// top pad is for the main arena only): `pipe status` after an edit at N = 500 made 988
/// such calls in its nine helper threads (819 in the first three, which made the arenas),
/// `mprotect` 7.7% of its samples. The block is freed
/// at once and never touched, so it costs no memory; with trimming off
/// ([`keep_freed_memory`]) the heap keeps the room, and a later thread that reuses the
/// arena finds it grown.
pub fn room_for_thread() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain malloc/free pair; black_box keeps the pair from being optimised away.
    unsafe {
        libc::free(std::hint::black_box(libc::malloc(ROOM)));
    }
}
