//! Consuming a large vector while giving its memory back as it empties.
//!
//! Turning one per-device list into another (the scan's functions into
//! discovery's records, pool devices into served devices) would otherwise
//! hold both lists whole at the end: the source's buffer lives until the
//! last element is taken. At 4096 VFs each list is over a megabyte, and
//! that overlap was the daemon's peak memory.

/// The elements of `items`, last first, shrinking its buffer whenever a
/// quarter of it is unused. Shrinking a heap block keeps it in place and
/// frees its tail (glibc splits the block, or remaps a mapped one and the
/// pages go back to the kernel), while the list being built only becomes
/// resident as it is written, even when reserved whole beforehand.
pub fn drain_freeing<T>(mut items: Vec<T>) -> impl Iterator<Item = T> {
    std::iter::from_fn(move || {
        let item = items.pop()?;
        if items.len() < items.capacity() / 4 * 3 {
            items.shrink_to_fit();
        }
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The order only: that the list gives its memory back as it empties
    // was measured (heaptrack, README), not asserted here.
    #[test]
    fn yields_every_element_last_first() {
        let items: Vec<u32> = (0..1000).collect();
        let mut drain = drain_freeing(items);
        let first: Vec<u32> = drain.by_ref().take(600).collect();
        assert_eq!(first[0], 999);
        assert_eq!(first[599], 400);
        let rest: Vec<u32> = drain.collect();
        assert_eq!(rest.len(), 400);
        assert_eq!(rest.last(), Some(&0));
    }
}
