//! Where the shared test data lives (for tests, benches and examples: the `../shared/datasets`
//! folder beside the workspace, or `IPT_DATA`).

use std::path::PathBuf;

/// The environment variable that overrides the dataset root.
pub const DATA_ENV: &str = "IPT_DATA";

/// The dataset root: `$IPT_DATA` if set, else `<workspace root>/../shared/datasets`
/// (computed from this crate's manifest directory at compile time).
///
/// Returns `None` when the folder does not exist, so tests and benches can say they were skipped.
pub fn dataset_root() -> Option<PathBuf> {
    let root = match std::env::var_os(DATA_ENV) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
    };
    if root.is_dir() {
        Some(root.canonicalize().unwrap_or(root))
    } else {
        None
    }
}
