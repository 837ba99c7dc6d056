//! IPT training: multi-task pre-training and single-task fine-tuning (spec §4).
//!
//! - [`config`]: the TOML experiment configs (`configs/*.toml`).
//! - [`data`]: image sources (embedded procedural images, folders, rain pairs), the deterministic
//!   sampler and the worker pipeline.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod finetune;
pub mod metrics;
pub mod optim;
pub mod trainer;
pub mod validation;

pub use config::{ExperimentConfig, Mode};
pub use trainer::{train, RunOptions, RunSummary, TrainError};
