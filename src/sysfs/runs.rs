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
/// input order (None where `read` left a slot empty), with room for
/// `spare` more. A panic in a run is resumed here.
///
/// Each run fills its own part of one list rather than returning a list
/// to be merged: at 4096 VFs each list is most of a megabyte, and the
/// runs' lists beside the merged one were the peak of the daemon's
/// memory. The slots are handed back as they are: the caller consumes
/// them in one pass anyway, and unwrapping them here would be one more
/// list.
pub(crate) fn in_runs<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    spare: usize,
    read: impl Fn(&[T], &mut [Option<R>]) + Sync,
) -> Vec<Option<R>> {
    let mut slots: Vec<Option<R>> = Vec::with_capacity(items.len() + spare);
    slots.resize_with(items.len(), || None);
    if threads <= 1 || items.len() < 2 {
        read(items, &mut slots);
    } else {
        let run = items.len().div_ceil(threads);
        let read = &read;
        std::thread::scope(|scope| {
            let mut runs = items.chunks(run).zip(slots.chunks_mut(run));
            let first = runs.next();
            let handles: Vec<_> = runs
                .map(|(chunk, slots)| scope.spawn(move || read(chunk, slots)))
                .collect();
            // This thread reads the first run instead of waiting: one
            // thread fewer, and one malloc arena fewer, which glibc keeps
            // for the process's life (168 KiB resident in the daemon).
            if let Some((chunk, slots)) = first {
                read(chunk, slots);
            }
            for handle in handles {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_the_input_order() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = in_runs(&items, 3, 5, |run, slots| {
            for (n, slot) in run.iter().zip(slots) {
                *slot = Some(n * 2);
            }
        });
        assert_eq!(doubled, (0..1000).map(|n| Some(n * 2)).collect::<Vec<_>>());
        assert!(doubled.capacity() >= 1005, "room for the spare ones");
        assert_eq!(threads_for(100, 4), 1, "too few items for a second thread");
        assert_eq!(threads_for(1000, 4), 4);
        assert_eq!(threads_for(1000, 1), 1);
    }

    #[test]
    fn a_panic_in_any_run_reaches_the_caller() {
        let items: Vec<u32> = (0..300).collect();
        // run 0 is read on the calling thread, runs 1 and 2 on their own
        for panicking in [0, 150, 299] {
            let outcome = std::panic::catch_unwind(|| {
                in_runs(&items, 3, 0, |run, slots| {
                    for (n, slot) in run.iter().zip(slots) {
                        assert_ne!(*n, panicking, "item {n}");
                        *slot = Some(*n);
                    }
                })
            });
            assert!(outcome.is_err(), "a panic at item {panicking} was lost");
        }
    }
}
