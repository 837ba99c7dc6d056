//! [`TrainError`]: everything that can stop a run, from the config to the last checkpoint.

use std::path::PathBuf;

use crate::checkpoint::CheckpointDirError;
use crate::config::ConfigError;
use crate::data::pipeline::DataError;
use crate::data::SourceError;
use crate::finetune::FinetuneError;
use crate::optim::OptimError;
use crate::plan::PlanError;
use crate::run_dir::ResumeMismatch;
use crate::run_log::RunLogError;
use crate::validation::{ValidationError, ValidationSetError};

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building the model failed.
    #[error(transparent)]
    Model(#[from] ipt_model::ModelError),
    /// Reading or writing model weights failed.
    #[error(transparent)]
    Weights(#[from] ipt_model::CheckpointError),
    /// Checkpoint bookkeeping failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointDirError),
    /// The data source is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The sampler cannot be built.
    #[error(transparent)]
    Sampler(#[from] crate::data::sampler::SamplerError),
    /// The data pipeline failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Optimizer state problem.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Fine-tune preparation failed.
    #[error(transparent)]
    Finetune(#[from] FinetuneError),
    /// The run log could not be written.
    #[error(transparent)]
    RunLog(#[from] RunLogError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// Writing TensorBoard events failed.
    #[error(transparent)]
    Events(#[from] crate::tensorboard::EventsError),
    /// Rain layers could not be loaded.
    #[error(transparent)]
    Rain(#[from] ipt_degrade::DegradeError),
    /// A libtorch operation failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// The validation images could not be prepared.
    #[error(transparent)]
    ValidationSet(#[from] ValidationSetError),
    /// Validating failed.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The device is unavailable.
    #[error(transparent)]
    Device(#[from] ipt_model::device::DeviceError),
    /// The run directory belongs to a different experiment.
    #[error(transparent)]
    ResumeMismatch(#[from] ResumeMismatch),
    /// Another process holds the run directory.
    #[error(transparent)]
    RunDirLocked(#[from] crate::run_dir::RunDirLocked),
    /// Every checkpoint of the run directory was unreadable.
    #[error(
        "{run_dir}: no checkpoint could be resumed from:\n  {}\nThey were set aside (renamed \
         *.corrupt) and are kept; run the same command again to start over, or restore a backup",
        problems.join("\n  ")
    )]
    NoUsableCheckpoint {
        /// The run directory.
        run_dir: PathBuf,
        /// What was wrong with each checkpoint.
        problems: Vec<String>,
    },
    /// `--stop-after` at or below the step the run has already reached.
    #[error(
        "--stop-after {stop_after}: the run in {run_dir} is already at step {step}; give a larger \
         value, or leave it out to finish the run"
    )]
    NothingToDo {
        /// The run directory.
        run_dir: PathBuf,
        /// Completed steps.
        step: u64,
        /// The requested stop.
        stop_after: u64,
    },
    /// Stopped on request (Ctrl-C or SIGTERM) after writing a checkpoint.
    #[error(
        "interrupted: stopped after step {step} and wrote checkpoint {}; run the same command \
         again to resume",
        checkpoint.display()
    )]
    Interrupted {
        /// Completed steps.
        step: u64,
        /// The checkpoint written.
        checkpoint: PathBuf,
    },
    /// A collective of a data-parallel job failed (a rank was lost, hung, or never came).
    #[error("data-parallel training failed: {0}")]
    Distributed(#[from] ipt_dist::DistError),
    /// The ranks of a data-parallel job no longer hold the same weights.
    #[error(
        "step {step}: the ranks of the data-parallel job hold different weights; this is a bug \
         (or ranks running different binaries or configs): resume from the last checkpoint"
    )]
    ReplicasDiverged {
        /// The step the check ran after.
        step: u64,
    },
    /// Too many consecutive NaN/Inf losses.
    #[error(
        "{count} consecutive steps had a NaN/Inf loss (last at step {step}); stopped after \
         writing checkpoint {checkpoint}. Lower optim.lr or check the data."
    )]
    Diverged {
        /// Consecutive non-finite steps.
        count: usize,
        /// The last step.
        step: u64,
        /// The checkpoint written.
        checkpoint: PathBuf,
    },
}

impl From<crate::run_dir::RunDirError> for TrainError {
    fn from(e: crate::run_dir::RunDirError) -> Self {
        match e {
            crate::run_dir::RunDirError::Locked(e) => e.into(),
            crate::run_dir::RunDirError::Files(e) => e.into(),
        }
    }
}

impl From<PlanError> for TrainError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Config(e) => e.into(),
            PlanError::Source(e) => e.into(),
        }
    }
}
