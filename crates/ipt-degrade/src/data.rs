//! Where the shared test data lives.

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

/// The sorted image files (png, jpg, jpeg, bmp, tif, tiff, webp) directly inside `dir`.
pub fn list_images(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        if matches!(
            ext.as_deref(),
            Some("png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff" | "webp")
        ) && path.is_file()
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
