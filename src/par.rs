//! Splitting a short burst of work over the cores with scoped threads. Not rayon's pool:
//! its idle workers spin for a while after the work is done, taking a core from the rest
//! of a command that lasts milliseconds.

/// `f` of each chunk of `items`, one chunk a core, results in order; on this thread alone
/// when there is one core or fewer than `min` items (a thread costs more than they do).
pub fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    min: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = cores();
    if threads == 1 || items.len() < min {
        return vec![f(items)];
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    crate::heap::room_for_thread();
                    f(part)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The cores this process may use. Asked once: each `available_parallelism` call reads
/// the cgroup's CPU quota from three files, and a decision asks for every burst.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
