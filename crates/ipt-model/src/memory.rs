//! How much memory this process may still use: the probe behind the memory check of a restore
//! job (next to [`crate::device`], the other question about the machine a job runs on).
//!
//! The figure is the smallest of `MemAvailable` in `/proc/meminfo`, the room left under a
//! cgroup v2 `memory.max` (`memory.max − memory.current`) and the room left under the
//! process's address-space limit (`ulimit -v`: "Max address space" in `/proc/self/limits`
//! less `VmSize` in `/proc/self/status`), or a limit the user gave instead
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
    /// The room left under the process's address-space limit (`ulimit -v`).
    AddressSpace,
}

impl fmt::Display for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemorySource::Limit => "--memory-limit",
            MemorySource::Cgroup => "the cgroup memory limit",
            MemorySource::MemInfo => "MemAvailable in /proc/meminfo",
            MemorySource::AddressSpace => "the process's address-space limit (ulimit -v)",
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
        Self::smallest([
            (meminfo, MemorySource::MemInfo),
            (cgroup, MemorySource::Cgroup),
        ])
    }

    /// The smallest of the known figures (the first of equal ones), `None` if none is known.
    pub fn smallest(
        figures: impl IntoIterator<Item = (Option<u64>, MemorySource)>,
    ) -> Option<Self> {
        figures
            .into_iter()
            .filter_map(|(bytes, source)| {
                Some(MemoryBudget {
                    bytes: bytes?,
                    source,
                })
            })
            .fold(None, |best: Option<Self>, b| match best {
                Some(x) if x.bytes <= b.bytes => Some(x),
                _ => Some(b),
            })
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

/// The soft "Max address space" limit (bytes) from the text of `/proc/self/limits`; `None` when
/// unlimited or absent.
pub fn parse_address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmSize` (bytes: the process's current address space) from the text of
/// `/proc/self/status`.
pub fn parse_vm_size(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmSize:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        (parts.next() == Some("kB")).then_some(value * 1024)
    })
}

/// Memory this process may still use (see the module docs); `None` if none of `/proc/meminfo`,
/// the cgroup files and the process limits can be read.
pub fn available_memory() -> Option<MemoryBudget> {
    let text = |p: &str| std::fs::read_to_string(p).ok();
    let meminfo = text("/proc/meminfo").and_then(|t| parse_mem_available(&t));
    let read = |p: &str| text(p)?.trim().parse::<u64>().ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(read("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    let address_space = text("/proc/self/limits")
        .and_then(|t| parse_address_space_limit(&t))
        .map(|limit| {
            let used = text("/proc/self/status").and_then(|t| parse_vm_size(&t));
            limit.saturating_sub(used.unwrap_or(0))
        });
    MemoryBudget::smallest([
        (meminfo, MemorySource::MemInfo),
        (cgroup, MemorySource::Cgroup),
        (address_space, MemorySource::AddressSpace),
    ])
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
    fn address_space_limit_and_size_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max address space         3072000000           unlimited            bytes     \n";
        assert_eq!(parse_address_space_limit(limits), Some(3_072_000_000));
        let unlimited = limits.replace("3072000000 ", "unlimited  ");
        assert_eq!(parse_address_space_limit(&unlimited), None);
        let status = "Name:\tipt\nVmPeak:\t  2000 kB\nVmSize:\t  1500 kB\n";
        assert_eq!(parse_vm_size(status), Some(1500 * 1024));
        let b = MemoryBudget::smallest([
            (Some(10), MemorySource::MemInfo),
            (None, MemorySource::Cgroup),
            (Some(4), MemorySource::AddressSpace),
        ])
        .unwrap();
        assert_eq!((b.bytes, b.source), (4, MemorySource::AddressSpace));
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
