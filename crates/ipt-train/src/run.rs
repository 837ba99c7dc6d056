//! What a run is given and what it gives back: [`RunOptions`] (with its [`StopSignal`]) and
//! [`RunSummary`]. Their own module so that the trainer's parts (start-up, engine, recorder) can
//! name them without importing the trainer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ipt_degrade::Task;
use ipt_dist::DistEnv;

use crate::config::{DataRoots, Mode};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file (for messages).
    pub config_path: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Pre-train or fine-tune.
    pub mode: Mode,
    /// Stop after this many completed steps (writing a checkpoint), as if interrupted. For tests
    /// and time-boxed sessions.
    pub stop_after: Option<u64>,
    /// Show a progress bar (when stderr is a terminal) and log lines.
    pub verbose: bool,
    /// What `${IPT_DATA}` and `${IPT_TRAIN_DATA}` in the config's paths stand for.
    pub roots: DataRoots,
    /// Raised from outside (e.g. a Ctrl-C handler) to stop after the current step with a
    /// checkpoint ([`crate::TrainError::Interrupted`]).
    pub stop: StopSignal,
    /// This process's place in a data-parallel job (from `DistEnv::from_env`: torchrun's or
    /// SLURM's variables), or `None` for a single process.
    pub distributed: Option<DistEnv>,
}

/// A request to stop a run gracefully, shared between the trainer and whoever may ask (a
/// signal handler, a test): the run finishes its current step, writes a checkpoint and returns
/// [`crate::TrainError::Interrupted`].
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the run to stop after its current step.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// This process's rank in a data-parallel job (0 alone). Validation, checkpoints and the
    /// exported model are rank 0's.
    pub rank: usize,
    /// The step the run started from (0, or the resumed checkpoint's step).
    pub start_step: u64,
    /// Completed steps at the end.
    pub end_step: u64,
    /// Planned total steps.
    pub total_steps: u64,
    /// `(step, task, loss)` of every step run in this process (step = completed steps after it).
    pub losses: Vec<(u64, Task, f64)>,
    /// Validation results `(step, [(task, psnr)])` of this process.
    pub validation: Vec<(u64, Vec<(Task, f64)>)>,
    /// The trivial baseline of each task on the validation images (bicubic for SR, the
    /// degraded input otherwise), PSNR-Y in dB.
    pub baselines: Vec<(Task, f64)>,
    /// Training patches per second over this process's steps.
    pub patches_per_s: f64,
    /// Seconds of training in this process.
    pub elapsed_s: f64,
    /// Unreadable files skipped (distinct).
    pub bad_files: u64,
    /// Crops skipped because the image was too small.
    pub small_skips: u64,
    /// Crops cut from an image enlarged to the crop (`data.small_images = "resize"`).
    pub small_resized: u64,
    /// Distinct images so enlarged.
    pub small_resized_images: u64,
    /// Steps skipped for a NaN/Inf loss (whole run).
    pub nonfinite_steps: u64,
    /// The last checkpoint's weights.
    pub last_checkpoint: Option<PathBuf>,
    /// Fine-tuning: the exported single-task checkpoint.
    pub exported: Option<PathBuf>,
    /// The best weights written by this process (`checkpoint.keep_best`), if any.
    pub best_checkpoint: Option<PathBuf>,
    /// Where the validation images came from (`None`: no validation).
    pub validation_source: Option<crate::plan::ValidationSource>,
    /// Checkpoints that could not be resumed from and were set aside, with the reason.
    pub skipped_checkpoints: Vec<String>,
    /// Temporary files of an interrupted earlier process, removed at start.
    pub removed_temporaries: Vec<PathBuf>,
}
