//! Training checkpoints: atomic writes, retention of the last K, and discovery for resuming.
//!
//! A checkpoint of step `n` is three files in `<run dir>/checkpoints/`:
//!
//! - `step-<n>.safetensors`: the model weights under the official key names (loadable by
//!   `ipt restore` and by the official PyTorch code after conversion);
//! - `step-<n>.optim.safetensors`: the Adam state (`m.<key>`, `v.<key>`, `step.<key>`);
//! - `step-<n>.json`: the [`TrainState`] (step, epoch, counters, seed). It is written last, so
//!   its presence means the checkpoint is complete.
//!
//! Every file is written to a temporary name in the same folder, fsynced, renamed into place,
//! and the folder is fsynced, so a crash (or SIGKILL) never leaves a half-written checkpoint
//! under a final name. The data order and every random number of step `n` are functions of
//! `(seed, n)` (see [`crate::data::sampler`] and the trainer), so the step counter is the whole
//! sampler/RNG state.

use std::path::{Path, PathBuf};

use ipt_degrade::files;

use serde::{Deserialize, Serialize};

/// Errors of the checkpoint folder: writing, listing or reading its files. (Reading the
/// weights themselves is `ipt_model::CheckpointError`.)
#[derive(Debug, thiserror::Error)]
pub enum CheckpointDirError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but cannot be used.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointDirError + '_ {
    move |source| CheckpointDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything besides tensors needed to resume a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done (= index of the next batch).
    pub step: u64,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// The run's seed.
    pub seed: u64,
    /// Steps skipped because the loss was NaN/Inf, so far.
    pub nonfinite_steps: u64,
    /// Unreadable files seen so far (this process's run segments added up).
    pub bad_files: u64,
    /// Crops skipped because an image was smaller than the crop.
    pub small_skips: u64,
    /// Crops cut from an image enlarged to the crop (`data.small_images = "resize"`).
    #[serde(default)]
    pub small_resized: u64,
    /// Wall-clock seconds of training so far.
    pub elapsed_s: f64,
    /// Weights file name (in the same folder).
    pub weights: String,
    /// Optimizer-state file name (in the same folder).
    pub optimizer: String,
    /// The resolved config of the run that wrote it (TOML), so a resume can check it is the
    /// same experiment even when the run directory's `config.toml` is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl TrainState {
    /// The state of a run that has not taken a step yet.
    pub fn fresh(seed: u64) -> Self {
        TrainState {
            step: 0,
            epoch: 0,
            seed,
            nonfinite_steps: 0,
            bad_files: 0,
            small_skips: 0,
            small_resized: 0,
            elapsed_s: 0.0,
            weights: String::new(),
            optimizer: String::new(),
            config: None,
        }
    }
}

/// A complete checkpoint on disk: its state and the files it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The state file's content.
    pub state: TrainState,
    /// The state file.
    pub state_file: PathBuf,
    /// The weights file.
    pub weights: PathBuf,
    /// The optimizer-state file.
    pub optim: PathBuf,
}

/// Write a file atomically ([`ipt_degrade::files::write_atomic`]), as a checkpoint error.
pub fn write_atomic<E: std::fmt::Display + std::fmt::Debug>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), CheckpointDirError> {
    files::write_atomic(path, write).map_err(|e| CheckpointDirError::Invalid {
        path: path.to_path_buf(),
        message: match e {
            files::AtomicWriteError::Io { source, .. } => source.to_string(),
            files::AtomicWriteError::Write { message, .. } => format!("cannot write: {message}"),
        },
    })
}

/// Write bytes atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointDirError> {
    write_atomic(path, |tmp| std::fs::write(tmp, bytes))
}

/// The checkpoint folder of a run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    /// `<run_dir>/checkpoints`, created if needed.
    pub fn create(run_dir: &Path) -> Result<Self, CheckpointDirError> {
        let c = Self::at(run_dir);
        std::fs::create_dir_all(&c.dir).map_err(io_err(&c.dir))?;
        Ok(c)
    }

    /// `<run_dir>/checkpoints`, as a name only (nothing is created or read).
    pub fn at(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join("checkpoints"),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// File stem of step `step`'s checkpoint.
    pub fn stem(step: u64) -> String {
        format!("step-{step:08}")
    }

    /// Paths of the weights, optimizer and state files of step `step`.
    pub fn files(&self, step: u64) -> (PathBuf, PathBuf, PathBuf) {
        let s = Self::stem(step);
        (
            self.dir.join(format!("{s}.safetensors")),
            self.dir.join(format!("{s}.optim.safetensors")),
            self.dir.join(format!("{s}.json")),
        )
    }

    /// Steps of the complete checkpoints (those with a state file), ascending.
    pub fn steps(&self) -> Result<Vec<u64>, CheckpointDirError> {
        let mut steps = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let name = entry.map_err(io_err(&self.dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("step-")
                .and_then(|r| r.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                steps.push(n);
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// The checkpoint of step `step`: its state file parsed, and the files it names present.
    pub fn read(&self, step: u64) -> Result<Checkpoint, CheckpointDirError> {
        let (_, _, state_file) = self.files(step);
        let text = std::fs::read_to_string(&state_file).map_err(io_err(&state_file))?;
        let state: TrainState =
            serde_json::from_str(&text).map_err(|e| CheckpointDirError::Invalid {
                path: state_file.clone(),
                message: format!("bad checkpoint state: {e}"),
            })?;
        let weights = self.dir.join(&state.weights);
        let optim = self.dir.join(&state.optimizer);
        for p in [&weights, &optim] {
            if !p.is_file() {
                return Err(CheckpointDirError::Invalid {
                    path: state_file.clone(),
                    message: format!("names {} which does not exist", p.display()),
                });
            }
        }
        Ok(Checkpoint {
            state,
            state_file,
            weights,
            optim,
        })
    }

    /// The latest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<Checkpoint>, CheckpointDirError> {
        match self.steps()?.last() {
            Some(&step) => self.read(step).map(Some),
            None => Ok(None),
        }
    }

    /// Move the files of step `step`'s checkpoint aside (`<name>.corrupt`), so that it is
    /// neither resumed from nor pruned; returns the new names.
    pub fn set_aside(&self, step: u64) -> Result<Vec<PathBuf>, CheckpointDirError> {
        let (w, o, s) = self.files(step);
        let mut moved = Vec::new();
        // The state file first: without it the checkpoint no longer counts as complete.
        for p in [s, w, o] {
            if p.exists() {
                let mut aside = p.clone().into_os_string();
                aside.push(".corrupt");
                let aside = PathBuf::from(aside);
                std::fs::rename(&p, &aside).map_err(io_err(&p))?;
                moved.push(aside);
            }
        }
        Ok(moved)
    }

    /// Write a checkpoint: `save_weights` and `save_optim` are called with temporary paths
    /// (ending in `.safetensors`), then the state file commits the set. Afterwards only the last
    /// `keep_last` checkpoints are kept.
    pub fn save<
        E1: std::fmt::Display + std::fmt::Debug,
        E2: std::fmt::Display + std::fmt::Debug,
    >(
        &self,
        state: &TrainState,
        save_weights: impl FnOnce(&Path) -> Result<(), E1>,
        save_optim: impl FnOnce(&Path) -> Result<(), E2>,
        keep_last: usize,
    ) -> Result<PathBuf, CheckpointDirError> {
        let (w, o, s) = self.files(state.step);
        write_atomic(&w, save_weights)?;
        write_atomic(&o, save_optim)?;
        let mut state = state.clone();
        state.weights = file_name(&w);
        state.optimizer = file_name(&o);
        let json =
            serde_json::to_string_pretty(&state).map_err(|e| CheckpointDirError::Invalid {
                path: s.clone(),
                message: e.to_string(),
            })?;
        write_bytes_atomic(&s, json.as_bytes())?;
        self.prune(keep_last)?;
        Ok(w)
    }

    /// Delete all but the last `keep_last` checkpoints (state file first, so an interrupted prune
    /// never leaves a state file pointing at deleted weights).
    pub fn prune(&self, keep_last: usize) -> Result<(), CheckpointDirError> {
        let steps = self.steps()?;
        let n_old = steps.len().saturating_sub(keep_last.max(1));
        for &step in &steps[..n_old] {
            let (w, o, s) = self.files(step);
            for p in [s, w, o] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&p)(e)),
                }
            }
        }
        Ok(())
    }
}

/// The best validation score so far (`checkpoints/best.json`), naming its weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    /// The step whose weights scored it.
    pub step: u64,
    /// The task scored (`checkpoint.keep_best`).
    pub task: String,
    /// Its validation PSNR-Y (dB).
    pub psnr_y: f64,
    /// Whether the weights are the moving average (`optim.ema_decay`).
    pub averaged: bool,
    /// The weights file (in the same folder): `best-<step>.safetensors`.
    pub weights: String,
}

impl CheckpointDir {
    /// The record of the best weights so far, if any.
    pub fn best(&self) -> Result<Option<BestRecord>, CheckpointDirError> {
        let file = self.dir.join("best.json");
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&file)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CheckpointDirError::Invalid {
                path: file,
                message: format!("bad best-checkpoint record: {e}"),
            })
    }

    /// Record new best weights: `best-<step>.safetensors` written by `save_weights`, then
    /// `best.json` naming it (the commit), then the weights of earlier bests removed. A crash at
    /// any point leaves `best.json` naming a complete file. Returns the record as written (its
    /// `weights` filled in) and the weights file.
    pub fn save_best<E: std::fmt::Display + std::fmt::Debug>(
        &self,
        record: &BestRecord,
        save_weights: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(BestRecord, PathBuf), CheckpointDirError> {
        let name = format!("best-{:08}.safetensors", record.step);
        let weights = self.dir.join(&name);
        write_atomic(&weights, save_weights)?;
        let record = BestRecord {
            weights: name.clone(),
            ..record.clone()
        };
        let file = self.dir.join("best.json");
        let json =
            serde_json::to_string_pretty(&record).map_err(|e| CheckpointDirError::Invalid {
                path: file.clone(),
                message: e.to_string(),
            })?;
        write_bytes_atomic(&file, json.as_bytes())?;
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let other = entry.file_name().to_string_lossy().into_owned();
            if other != name && other.starts_with("best-") && other.ends_with(".safetensors") {
                std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            }
        }
        Ok((record, weights))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainState {
        TrainState {
            step,
            ..TrainState::fresh(1)
        }
    }

    #[test]
    fn save_latest_and_keep_last() {
        let run = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::create(run.path()).unwrap();
        assert!(ck.latest().unwrap().is_none());
        for step in [10, 20, 30, 40] {
            ck.save(
                &state(step),
                |p| std::fs::write(p, format!("w{step}")),
                |p| std::fs::write(p, format!("o{step}")),
                2,
            )
            .unwrap();
        }
        assert_eq!(ck.steps().unwrap(), vec![30, 40]);
        let c = ck.latest().unwrap().unwrap();
        assert_eq!(c.state.step, 40);
        assert_eq!(std::fs::read_to_string(&c.weights).unwrap(), "w40");
        assert_eq!(std::fs::read_to_string(&c.optim).unwrap(), "o40");
        // Set aside, step 40 no longer counts, and its files are kept under new names.
        let moved = ck.set_aside(40).unwrap();
        assert_eq!(moved.len(), 3);
        assert!(moved.iter().all(|p| p.is_file()));
        assert_eq!(ck.steps().unwrap(), vec![30]);
        ck.prune(1).unwrap();
        assert!(
            moved.iter().all(|p| p.is_file()),
            "pruning keeps set-aside files"
        );
        // No temporary files are left behind, and old weights are gone.
        let names: Vec<String> = std::fs::read_dir(ck.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn the_best_record_names_its_weights_and_survives_pruning() {
        let run = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::create(run.path()).unwrap();
        assert!(ck.best().unwrap().is_none());
        let rec = |step, psnr_y| BestRecord {
            step,
            task: "sr2".into(),
            psnr_y,
            averaged: false,
            weights: String::new(),
        };
        ck.save_best(&rec(10, 30.0), |p| std::fs::write(p, "b10"))
            .unwrap();
        let (_, w) = ck
            .save_best(&rec(20, 31.0), |p| std::fs::write(p, "b20"))
            .unwrap();
        for step in [10, 20, 30] {
            ck.save(
                &state(step),
                |p| std::fs::write(p, "w"),
                |p| std::fs::write(p, "o"),
                1,
            )
            .unwrap();
        }
        let best = ck.best().unwrap().unwrap();
        assert_eq!((best.step, best.psnr_y), (20, 31.0));
        assert_eq!(ck.path().join(&best.weights), w);
        assert_eq!(std::fs::read_to_string(&w).unwrap(), "b20");
        assert!(!ck.path().join("best-00000010.safetensors").exists());
        // A failed write keeps the previous best.
        let r = ck.save_best(&rec(40, 32.0), |_p: &Path| Err::<(), _>("disk full"));
        assert!(r.is_err());
        assert_eq!(ck.best().unwrap().unwrap().step, 20);
        assert!(w.is_file());
    }

    #[test]
    fn failed_write_leaves_no_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::create(run.path()).unwrap();
        let r = ck.save(
            &state(5),
            |p| std::fs::write(p, "w"),
            |_p: &Path| Err::<(), _>("disk full"),
            3,
        );
        assert!(r.is_err());
        assert!(ck.latest().unwrap().is_none());
    }
}
