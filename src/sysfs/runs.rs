//! Many independent sysfs reads, split into contiguous runs read side by
//! side. Each read is a few syscalls whose path lookups the kernel serves
//! without locks (RCU walk), so a node with thousands of VFs is read in
//! about 1/threads of the time when the cores are free; results come back
//! in input order, identical to a sequential read.

/// Below this many items per thread, a thread costs more than it saves.
const ITEMS_PER_THREAD: usize = 128;
/// Beyond this, threads mostly wait for each other in the kernel.
const MAX_THREADS: usize = 4;

/// How many threads to use for `items`: `max_threads` 0 means as many as
/// the machine has cores, at most [`MAX_THREADS`]; 1 means this thread only.
pub(crate) fn threads_for(items: usize, max_threads: usize) -> usize {
    let limit = match max_threads {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_THREADS),
        n => n,
    };
    limit.min(items / ITEMS_PER_THREAD).max(1)
}

/// `read` over `items` in up to `threads` contiguous runs; the results in
/// input order. A panic in a run is resumed here.
pub(crate) fn in_runs<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    read: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() < 2 {
        return read(items);
    }
    let run = items.len().div_ceil(threads);
    let read = &read;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(run)
            .map(|chunk| scope.spawn(move || read(chunk)))
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for handle in handles {
            match handle.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_the_input_order() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = in_runs(&items, 3, |run| run.iter().map(|n| n * 2).collect());
        assert_eq!(doubled, (0..1000).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(threads_for(100, 4), 1, "too few items for a second thread");
        assert_eq!(threads_for(1000, 4), 4);
        assert_eq!(threads_for(1000, 1), 1);
    }
}
