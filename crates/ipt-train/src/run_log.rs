//! The run log: `metrics.jsonl` in the run directory, one JSON object per line.
//!
//! One JSON object per line. Training rows (`"kind": "train"`) summarise the `window` steps that
//! end at `step`: `loss`, `l1` and `contrastive` are means over the window, `task` is the task of
//! step `step` itself, `loss_by_task` the mean loss of each task seen in the window, `lr` the
//! learning rate of step `step` and `patches_per_s` the training throughput over the window.
//! Validation rows (`"kind": "validation"`) hold `psnr_y`: task name → mean PSNR-Y (dB) over the
//! held-out images, and `baseline`: the same for the task's trivial baseline (bicubic for SR,
//! the degraded input otherwise) on the same images. Steps count completed optimizer steps (the first row after one step has
//! `step` = 1; validation before training has `step` = 0).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use ipt_degrade::files::write_bytes_atomic;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LogRow {
    /// Training loss over a window of steps.
    Train {
        /// Completed steps.
        step: u64,
        /// Epoch of the last step.
        epoch: u64,
        /// Task of the last step.
        task: String,
        /// Mean total loss over the window.
        loss: f64,
        /// Mean L1 term.
        l1: f64,
        /// Mean contrastive term (unweighted).
        contrastive: f64,
        /// Mean loss per task in the window.
        loss_by_task: BTreeMap<String, f64>,
        /// Mean L1 term per task in the window (absent in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        l1_by_task: BTreeMap<String, f64>,
        /// Mean contrastive term per task in the window (likewise).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        contrastive_by_task: BTreeMap<String, f64>,
        /// Learning rate of the last step.
        lr: f64,
        /// Training patches per second over the window, all ranks together.
        patches_per_s: f64,
        /// Steps in the window (skipped NaN/Inf steps excluded).
        window: u64,
        /// Processes of the data-parallel job (1: a single process); the global batch is
        /// `world_size × optim.batch_size`.
        #[serde(default = "one")]
        world_size: usize,
    },
    /// Validation PSNR.
    Validation {
        /// Completed steps.
        step: u64,
        /// Task name → mean PSNR-Y in dB.
        psnr_y: BTreeMap<String, f64>,
        /// Task name → the trivial baseline's mean PSNR-Y in dB on the same images.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        baseline: BTreeMap<String, f64>,
        /// Task name → mean SSIM-Y (absent in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        ssim_y: BTreeMap<String, f64>,
    },
}

fn one() -> usize {
    1
}

impl LogRow {
    /// The row's step.
    pub fn step(&self) -> u64 {
        match self {
            LogRow::Train { step, .. } | LogRow::Validation { step, .. } => *step,
        }
    }
}

/// Errors of the run log.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RunLogError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Appends rows to `metrics.jsonl`.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
}

impl RunLog {
    /// The log at `path` (created on first write).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one row (and flush).
    pub fn append(&self, row: &LogRow) -> Result<(), RunLogError> {
        let io = |source| RunLogError {
            path: self.path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let line = serde_json::to_string(row).unwrap_or_default();
        writeln!(f, "{line}").map_err(io)?;
        f.flush().map_err(io)
    }

    /// All rows; lines that do not parse (e.g. cut by a crash) are ignored.
    pub fn read(&self) -> Vec<LogRow> {
        std::fs::read_to_string(&self.path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keep only the rows with `step ≤ step` (used when resuming from a checkpoint, so the log
    /// has no rows from the lost tail of the interrupted run). Atomic.
    pub fn truncate_after(&self, step: u64) -> Result<(), RunLogError> {
        if !self.path.exists() {
            return Ok(());
        }
        let kept: String = self
            .read()
            .into_iter()
            .filter(|r| r.step() <= step)
            .map(|r| serde_json::to_string(&r).unwrap_or_default() + "\n")
            .collect();
        write_bytes_atomic(&self.path, kept.as_bytes()).map_err(|e| RunLogError {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_row(step: u64, loss: f64) -> LogRow {
        LogRow::Train {
            step,
            epoch: 0,
            task: "sr2".into(),
            loss,
            l1: loss,
            contrastive: 0.0,
            loss_by_task: [("sr2".to_string(), loss)].into(),
            l1_by_task: [("sr2".to_string(), loss)].into(),
            contrastive_by_task: [("sr2".to_string(), 0.0)].into(),
            lr: 1e-4,
            patches_per_s: 10.0,
            window: 1,
            world_size: 1,
        }
    }

    #[test]
    fn log_round_trip_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new(dir.path().join("metrics.jsonl"));
        for s in 1..=6 {
            log.append(&train_row(s, 10.0 / s as f64)).unwrap();
        }
        log.append(&LogRow::Validation {
            step: 6,
            psnr_y: [("sr2".to_string(), 25.0)].into(),
            baseline: [("sr2".to_string(), 24.0)].into(),
            ssim_y: Default::default(),
        })
        .unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "step",
            "task",
            "loss",
            "l1",
            "contrastive",
            "lr",
            "patches_per_s",
        ] {
            assert!(first.get(key).is_some(), "missing {key} in {first}");
        }
        assert_eq!(log.read().len(), 7);
        log.truncate_after(4).unwrap();
        let rows = log.read();
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.step() <= 4));
    }
}
