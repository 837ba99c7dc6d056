//! What the tests of the `ipt` binary share: running it, and showing what it said when an
//! assertion fails.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `ipt` binary with `args` and waits for it.
pub fn ipt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipt"))
        .args(args)
        .output()
        .expect("running the ipt binary")
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A path as an argument (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
