//! IPT training: multi-task pre-training and single-task fine-tuning (Chen et al., CVPR 2021,
//! Section 3.2 and Section 4).
//!
//! - [`config`]: the TOML experiment configs (`configs/*.toml`): schema, checks, paths.
//! - [`plan`]: a config resolved once into a [`RunPlan`] (recipe, network, data, schedule,
//!   clipping, loss, validation, paths, fingerprint); the trainer reads only the plan.
//! - [`data`]: image sources (embedded procedural images, folders, rain pairs), the deterministic
//!   sampler and the worker pipeline.
//! - [`trainer`]: the [`Trainer`] and its `fit` loop (the policy: NaN skips, stop agreement,
//!   when to validate and save), over `startup` (private: device, process group, run directory,
//!   model, resume, replica sync), the [`engine`] ([`StepEngine`]: one optimizer step per batch)
//!   and `recorder` (private: progress, `metrics.jsonl`, validation, checkpoints; rank 0 owns
//!   the run directory).
//! - [`optim`]: Adam with owned (checkpointed) state and clipping; [`schedule`]: warm-up,
//!   multi-step and cosine learning rates; [`ema`]: the weights' moving average.
//! - `parallel` (private): the collectives of a data-parallel job (ipt-dist, libtorch's c10d).
//! - [`validation`]: held-out images scored through `ipt-eval`, next to their trivial baseline.
//! - [`run_dir`], [`checkpoint`], [`run_log`], [`plot`], [`tensorboard`]: what a run writes.
//! - [`finetune`]: a single-task model started from a pre-trained checkpoint.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod ema;
pub mod engine;
mod error;
pub mod finetune;
pub mod optim;
mod parallel;
pub mod plan;
pub mod plot;
mod progress;
mod recorder;
mod run;
pub mod run_dir;
pub mod run_log;
pub mod schedule;
mod startup;
pub mod tensorboard;
pub mod trainer;
pub mod validation;

pub use config::{DataRoots, ExperimentConfig, Mode};
pub use engine::{EngineSettings, StepEngine};
pub use plan::{Recipe, RunPlan};
pub use trainer::{train, RunOptions, RunSummary, StepOutput, TrainError, Trainer};
