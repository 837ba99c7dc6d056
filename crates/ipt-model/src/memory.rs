//! How much memory this process may still use: the probe behind the memory check of a restore
//! job (next to [`crate::device`], the other question about the machine a job runs on).
//!
//! The figure is the smaller of `MemAvailable` in `/proc/meminfo` and the room left under a
//! cgroup v2 `memory.max` (`memory.max − memory.current`), or a limit the user gave instead
//! ([`MemorySource::Limit`]). Parsing is kept apart from reading the files so that it can be
//! tested on text.

use std::fmt;

/// Where a [`MemoryBudget`] comes from (its `Display` is the wording of messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySource {
    /// A limit the user set (`--memory-limit` on the command line).
    Limit,
    /// The room left under the cgroup v2 memory limit.
    Cgroup,
    /// `MemAvailable` in `/proc/meminfo`.
    MemInfo,
}

impl fmt::Display for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemorySource::Limit => "--memory-limit",
            MemorySource::Cgroup => "the cgroup memory limit",
            MemorySource::MemInfo => "MemAvailable in /proc/meminfo",
        })
    }
}

/// Bytes that may still be used, and where the figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes available.
    pub bytes: u64,
    /// Where the figure comes from.
    pub source: MemorySource,
}

impl MemoryBudget {
    /// A limit the user gave.
    pub fn limit(bytes: u64) -> Self {
        MemoryBudget {
            bytes,
            source: MemorySource::Limit,
        }
    }

    /// The smaller of `MemAvailable` and the cgroup room, whichever are known.
    pub fn smaller_of(meminfo: Option<u64>, cgroup: Option<u64>) -> Option<Self> {
        let budget = |bytes, source| Some(MemoryBudget { bytes, source });
        match (meminfo, cgroup) {
            (Some(m), Some(c)) if c < m => budget(c, MemorySource::Cgroup),
            (Some(m), _) => budget(m, MemorySource::MemInfo),
            (None, Some(c)) => budget(c, MemorySource::Cgroup),
            (None, None) => None,
        }
    }
}

/// `MemAvailable` (bytes) from the text of `/proc/meminfo`.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value * 1024),
            Some(_) => None,
        }
    })
}

/// Memory this process may still use (see the module docs); `None` if neither `/proc/meminfo`
/// nor the cgroup files can be read.
pub fn available_memory() -> Option<MemoryBudget> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_mem_available(&t));
    let read = |p: &str| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(read("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    MemoryBudget::smaller_of(meminfo, cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses() {
        let text = "MemTotal:       24683584 kB\nMemFree:  100 kB\nMemAvailable:   23587484 kB\n";
        assert_eq!(parse_mem_available(text), Some(23587484 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn the_smaller_figure_wins() {
        let b = MemoryBudget::smaller_of(Some(10), Some(5)).unwrap();
        assert_eq!((b.bytes, b.source), (5, MemorySource::Cgroup));
        let b = MemoryBudget::smaller_of(Some(10), Some(50)).unwrap();
        assert_eq!((b.bytes, b.source), (10, MemorySource::MemInfo));
        assert_eq!(MemoryBudget::smaller_of(None, None), None);
        assert_eq!(MemoryBudget::limit(3).source.to_string(), "--memory-limit");
        assert!(available_memory().is_some_and(|b| b.bytes > 0));
    }
}
