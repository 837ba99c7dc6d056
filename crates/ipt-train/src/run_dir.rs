//! A run directory: `config.toml` (the resolved config), `metrics.jsonl` (the run log),
//! `loss.png` / `psnr.png` and `checkpoints/`.
//!
//! Starting a run in a directory that has checkpoints resumes from the latest; the resolved
//! config must then match in everything that shapes the run
//! ([`ExperimentConfig::fingerprint`]).

use std::path::{Path, PathBuf};

use crate::checkpoint::{write_bytes_atomic, CheckpointDir, CheckpointDirError};
use crate::config::ExperimentConfig;
use crate::plot::{plot, PlotError};
use crate::run_log::RunLog;

/// The run directory changed experiment: refused to resume.
#[derive(Debug, thiserror::Error)]
#[error(
    "{run_dir} holds a run of a different config ({what} differs); use another --run-dir \
     or delete the folder"
)]
pub struct ResumeMismatch {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Which part differs.
    pub what: String,
}

/// The files of one run.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    checkpoints: CheckpointDir,
    log: RunLog,
}

impl RunDir {
    /// The run directory `root` (created with its `checkpoints/` folder if needed).
    pub fn open(root: &Path) -> Result<Self, CheckpointDirError> {
        std::fs::create_dir_all(root).map_err(|source| CheckpointDirError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(RunDir {
            root: root.to_path_buf(),
            checkpoints: CheckpointDir::create(root)?,
            log: RunLog::new(root.join("metrics.jsonl")),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The checkpoints.
    pub fn checkpoints(&self) -> &CheckpointDir {
        &self.checkpoints
    }

    /// The run log.
    pub fn log(&self) -> &RunLog {
        &self.log
    }

    /// `config.toml`, the resolved config of the run.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Errors when the run directory's recorded config differs from `cfg` in something that
    /// shapes the run (checked only when there is something to resume).
    pub fn check_same_experiment(&self, cfg: &ExperimentConfig) -> Result<(), ResumeMismatch> {
        let Ok(prev) = ExperimentConfig::load(&self.config_path()) else {
            return Ok(());
        };
        for ((what, a), (_, b)) in prev.fingerprint().into_iter().zip(cfg.fingerprint()) {
            if a != b {
                return Err(ResumeMismatch {
                    run_dir: self.root.clone(),
                    what: what.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Write the resolved config (atomically).
    pub fn write_config(&self, cfg: &ExperimentConfig) -> Result<(), CheckpointDirError> {
        write_bytes_atomic(&self.config_path(), cfg.to_toml().as_bytes())
    }

    /// Redraw `loss.png` and `psnr.png` from the log.
    pub fn plot(&self) -> Result<(), PlotError> {
        plot(&self.root, &self.log.read())
    }
}
