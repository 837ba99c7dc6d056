//! A run directory: `config.toml` (the resolved config), `metrics.jsonl` (the run log),
//! `loss.png` / `psnr.png` and `checkpoints/`.
//!
//! Starting a run in a directory that has checkpoints resumes from the latest; the resolved
//! config must then match in everything that shapes the run
//! ([`Fingerprint`]).
//!
//! One process at a time: opening takes an exclusive lock on `<run dir>/.lock` (an OS file
//! lock, released when the process ends however it ends, so a lock left by a dead process is
//! simply taken over) and writes the holder's pid into it, so a second run on the same directory
//! is refused with a message naming the process. With the lock held, temporary files left in the
//! directory by an earlier process that died mid-write are removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::{write_bytes_atomic, CheckpointDir, CheckpointDirError};
use crate::config::ExperimentConfig;
use crate::plan::Fingerprint;
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

/// Another process holds the run directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "{run_dir} is in use by another run (process {holder}); wait for it to finish, stop it, or \
     choose another --run-dir"
)]
pub struct RunDirLocked {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The holder's pid as it wrote it into the lock file (`unknown` when unreadable).
    pub holder: String,
}

/// Errors of opening a run directory.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// Another process holds it.
    #[error(transparent)]
    Locked(#[from] RunDirLocked),
    /// A file system operation failed.
    #[error(transparent)]
    Files(#[from] CheckpointDirError),
}

/// The files of one run, held by this process for as long as the value lives.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    checkpoints: CheckpointDir,
    log: RunLog,
    /// The locked `.lock` file (the lock is released when it is closed).
    _lock: File,
    /// Stale temporary files removed when the directory was opened.
    removed_temporaries: Vec<PathBuf>,
}

impl RunDir {
    /// The run directory `root` (created with its `checkpoints/` folder if needed), locked for
    /// this process; stale temporary files in it are removed.
    pub fn open(root: &Path) -> Result<Self, RunDirError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointDirError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        let lock_path = root.join(".lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(RunDirLocked {
                    run_dir: root.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                }
                .into());
            }
            Err(TryLockError::Error(e)) => return Err(io(&lock_path)(e).into()),
        }
        lock.set_len(0)
            .and_then(|()| lock.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| write!(lock, "{}", std::process::id()))
            .and_then(|()| lock.flush())
            .map_err(io(&lock_path))?;
        let checkpoints = CheckpointDir::create(root)?;
        let mut removed_temporaries = remove_temporaries(root)?;
        removed_temporaries.extend(remove_temporaries(checkpoints.path())?);
        Ok(RunDir {
            root: root.to_path_buf(),
            checkpoints,
            log: RunLog::new(root.join("metrics.jsonl")),
            _lock: lock,
            removed_temporaries,
        })
    }

    /// Temporary files of an earlier, interrupted process that [`RunDir::open`] removed.
    pub fn removed_temporaries(&self) -> &[PathBuf] {
        &self.removed_temporaries
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

    /// Errors when `recorded` (the config of the run being resumed: the one stored in its
    /// checkpoint, else the directory's `config.toml`) differs from `fingerprint` (the current
    /// run's) in something that shapes the run.
    pub fn check_same_experiment(
        &self,
        fingerprint: &Fingerprint,
        recorded: Option<&str>,
    ) -> Result<(), ResumeMismatch> {
        let prev = match recorded {
            Some(text) => ExperimentConfig::from_toml_str(text, &self.config_path()).ok(),
            None => ExperimentConfig::load(&self.config_path()).ok(),
        };
        let Some(prev) = prev else {
            return Ok(());
        };
        match Fingerprint::of(&prev).first_difference(fingerprint) {
            Some(what) => Err(ResumeMismatch {
                run_dir: self.root.clone(),
                what: what.to_string(),
            }),
            None => Ok(()),
        }
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

/// Remove the `.tmp-*` files ([`ipt_degrade::files::write_atomic`]'s temporaries) in `dir`.
fn remove_temporaries(dir: &Path) -> Result<Vec<PathBuf>, CheckpointDirError> {
    let io = |source| CheckpointDirError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_tmp = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-"));
        if is_tmp && path.is_file() {
            std::fs::remove_file(&path).map_err(io)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_naming_the_holder_and_a_released_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunDir::open(dir.path()).unwrap();
        let err = RunDir::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RunDirError::Locked(_)), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        // The holder is gone (as when its process dies): the lock file stays, and is taken over.
        assert!(dir.path().join(".lock").is_file());
        RunDir::open(dir.path()).unwrap();
    }

    #[test]
    fn stale_temporaries_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        let stale = dir.path().join("checkpoints/.tmp-Ab12Cd.safetensors");
        std::fs::write(&stale, vec![0u8; 1000]).unwrap();
        let keep = dir.path().join("checkpoints/step-00000002.json");
        std::fs::write(&keep, b"{}").unwrap();
        let run = RunDir::open(dir.path()).unwrap();
        assert_eq!(run.removed_temporaries(), std::slice::from_ref(&stale));
        assert!(!stale.exists() && keep.exists());
    }
}
