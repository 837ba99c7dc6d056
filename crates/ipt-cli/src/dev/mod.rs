//! Developer tools of the `ipt` binary, apart from its user-facing commands: they measure the
//! build rather than restore or train anything.
//!
//! - [`speed`]: `ipt bench-speed` (`cargo xtask bench-speed`), the speed table of
//!   `docs/performance.md`.

pub mod speed;
