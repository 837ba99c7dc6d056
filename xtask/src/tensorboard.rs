//! The Python `tensorboard` package for the test that reads the trainer's event files back with
//! TensorBoard's own reader (`crates/ipt-train/tests/tensorboard.rs`). `cargo xtask test` installs
//! it once into `$IPT_HOME/python/tensorboard-<VERSION>` (`pip install --target`, a stamp file
//! marking a finished install, as the libtorch cache) and passes the folder to the tests as
//! `IPT_TENSORBOARD_PYTHONPATH`, with `IPT_REQUIRE_TENSORBOARD=1` so that the test cannot skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The version installed.
pub const VERSION: &str = "2.20.0";

/// The file that marks a complete install.
const STAMP: &str = ".ipt-complete";

/// The install folder under `ipt_home`.
pub fn folder(ipt_home: &Path) -> PathBuf {
    ipt_home
        .join("python")
        .join(format!("tensorboard-{VERSION}"))
}

/// The installed package's folder, installing it with `python -m pip` first if needed.
pub fn ensure(ipt_home: &Path, python: &Path) -> Result<PathBuf> {
    let dir = folder(ipt_home);
    if dir.join(STAMP).is_file() {
        return Ok(dir);
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    eprintln!(
        "xtask: installing tensorboard {VERSION} for the event-file test into {}",
        dir.display()
    );
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--target",
        ])
        .arg(&partial)
        .arg(format!("tensorboard=={VERSION}"))
        .status()
        .with_context(|| format!("could not run {} -m pip", python.display()))?;
    if !status.success() {
        bail!(
            "`{} -m pip install tensorboard=={VERSION}` failed ({status}); the TensorBoard \
             read-back test needs it (network to PyPI, or set IPT_TENSORBOARD_PYTHONPATH to a \
             folder holding the package)",
            python.display()
        );
    }
    std::fs::write(partial.join(STAMP), VERSION)
        .with_context(|| format!("writing {}", partial.join(STAMP).display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_folder_is_used_without_installing() {
        let home = tempfile::tempdir().unwrap();
        let dir = folder(home.path());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(STAMP), VERSION).unwrap();
        // A Python that does not exist proves nothing is run.
        let got = ensure(home.path(), Path::new("/nonexistent/python3")).unwrap();
        assert_eq!(got, dir);
        let err = ensure(
            tempfile::tempdir().unwrap().path(),
            Path::new("/nonexistent/python3"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("pip"), "{err}");
    }
}
