//! The `#` function-range syntax of `pfNames` and `rootDevices`:
//! `<PF name or PF PCI address>#<items>`, items comma-separated, each `n` or `a-b`,
//! 0-based and inclusive (`ens1f0#0,2-7,9`). The index is the VF number (`virtfnN`), or the SF
//! number for aux devices.
//!
//! Upstream re-parses the text for every device and, when the text is malformed, prints a line
//! to stdout and lets that entry match nothing. We parse once at load time and refuse malformed
//! entries instead, so a typo cannot silently empty a pool.

use std::fmt;
use std::ops::RangeInclusive;

/// What is wrong with a `#` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VfRangeError {
    #[error("is empty")]
    Empty,
    #[error("nothing before '#': give a PF name or PCI address")]
    EmptyTarget,
    #[error("more than one '#'; write one '#' followed by comma-separated indexes")]
    ExtraHash,
    #[error("no indexes after '#'")]
    EmptyList,
    #[error("empty item at position {position} (two commas in a row, or a comma at an end)")]
    EmptyItem { position: usize },
    #[error("{item:?} is not a range: write a single index or `first-last`")]
    BadRange { item: String },
    #[error("{item:?} is not a non-negative whole number")]
    NotANumber { item: String },
    #[error(
        "range {start}-{end} runs backwards (first is greater than last), so it selects nothing"
    )]
    Backwards { start: u32, end: u32 },
}

/// Parsed function indexes, as written (order kept for display; overlaps are harmless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfRanges {
    ranges: Vec<RangeInclusive<u32>>,
}

impl VfRanges {
    /// Parse the part after `#`.
    pub fn parse(items: &str) -> Result<Self, VfRangeError> {
        if items.is_empty() {
            return Err(VfRangeError::EmptyList);
        }
        let mut ranges = Vec::new();
        for (position, item) in items.split(',').enumerate() {
            if item.is_empty() {
                return Err(VfRangeError::EmptyItem { position });
            }
            let range = match item.split_once('-') {
                None => {
                    let n = parse_index(item)?;
                    n..=n
                }
                Some((first, last)) => {
                    if first.is_empty() || last.is_empty() || last.contains('-') {
                        return Err(VfRangeError::BadRange {
                            item: item.to_string(),
                        });
                    }
                    let (start, end) = (parse_index(first)?, parse_index(last)?);
                    if start > end {
                        return Err(VfRangeError::Backwards { start, end });
                    }
                    start..=end
                }
            };
            ranges.push(range);
        }
        Ok(VfRanges { ranges })
    }

    pub fn contains(&self, index: u32) -> bool {
        self.ranges.iter().any(|r| r.contains(&index))
    }

    pub fn ranges(&self) -> &[RangeInclusive<u32>] {
        &self.ranges
    }
}

impl fmt::Display for VfRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// Digits only. Go's `Atoi` would also take a sign (`+3`); nobody means that, so we refuse it.
fn parse_index(text: &str) -> Result<u32, VfRangeError> {
    let not_a_number = || VfRangeError::NotANumber {
        item: text.to_string(),
    };
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }
    text.parse().map_err(|_| not_a_number())
}

/// One `pfNames` or `rootDevices` entry: the PF, and which of its functions (all when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfEntry {
    /// PF netdev name as written, or PF PCI address in lower case.
    pub pf: String,
    pub vfs: Option<VfRanges>,
}

impl PfEntry {
    /// Split `<pf>[#<items>]`; the caller validates the `pf` part (name or address rules).
    pub fn parse(text: &str) -> Result<PfEntry, VfRangeError> {
        if text.is_empty() {
            return Err(VfRangeError::Empty);
        }
        let (pf, vfs) = match text.split_once('#') {
            None => (text, None),
            Some((pf, rest)) => {
                if rest.contains('#') {
                    return Err(VfRangeError::ExtraHash);
                }
                (pf, Some(VfRanges::parse(rest)?))
            }
        };
        if pf.is_empty() {
            return Err(VfRangeError::EmptyTarget);
        }
        Ok(PfEntry {
            pf: pf.to_string(),
            vfs,
        })
    }

    /// Whether this entry names `pf`. Upstream compares with Go's `strings.EqualFold`, so case is
    /// ignored for names and for addresses alike.
    pub fn is_for(&self, pf: &str) -> bool {
        fold_eq(&self.pf, pf)
    }

    /// Whether a function with this index is selected. A device without an index (not a VF or
    /// SF) passes only an entry without a range.
    pub fn selects(&self, index: Option<u32>) -> bool {
        match (&self.vfs, index) {
            (None, _) => true,
            (Some(ranges), Some(i)) => ranges.contains(i),
            (Some(_), None) => false,
        }
    }
}

impl fmt::Display for PfEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vfs {
            None => f.write_str(&self.pf),
            Some(r) => write!(f, "{}#{r}", self.pf),
        }
    }
}

/// Case-insensitive equality, close to Go's `EqualFold` (simple Unicode lower-casing).
pub(crate) fn fold_eq(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}
