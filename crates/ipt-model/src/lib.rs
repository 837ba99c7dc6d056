//! The IPT network (Chen et al., *Pre-Trained Image Processing Transformer*, CVPR 2021) on
//! libtorch, numerically equal to the official PyTorch code, and its checkpoints.
//!
//! - [`IptConfig`]: hyperparameters, presets (`base`, `tiny`) and validation; [`TaskMap`]
//!   (`tasks.rs`): which head serves which task, and resolving a user's task choice.
//! - [`Ipt`]: the network; variable paths equal the official state-dict keys
//!   (`head.0.1.body.0.weight`, `body.encoder.layers.3.self_attn.in_proj_weight`, …). Its parts
//!   live in one file each, named as in the paper and the official `model/ipt.py`: `head.rs`,
//!   `body.rs` (the `VisionTransformer`), `transformer.rs` (encoder and decoder layers),
//!   `attention.rs`, `tail.rs`, with `common.rs` for the shared convolution blocks.
//! - [`device`] and [`memory`]: the machine a job runs on (CUDA, `--device`, bf16 autocast;
//!   the memory still available).
//! - [`cost`]: the multiply-accumulates of one window (what a speed is compared with the
//!   hardware's peak by).
//! - [`checkpoint`]: official PyTorch `.pt` files (read with a small, safe pickle reader) and
//!   `.safetensors` files carrying the config in their metadata.

#![warn(missing_docs)]

// The network, top-down as in the paper's Figure 2 (layer internals are private: the public
// surface is the network, its config and how to run it).
mod attention;
mod body;
mod common;
mod head;
mod ipt;
mod tail;
mod transformer;

pub mod checkpoint;
pub mod chop;
pub mod config;
pub mod convert;
pub mod cost;
pub mod device;
pub mod ensemble;
pub mod error;
pub mod memory;
pub mod restore;
pub mod tasks;

pub use attention::AttentionKernel;
pub use checkpoint::CheckpointError;
pub use config::IptConfig;
pub use error::ModelError;
pub use ipt::Ipt;
pub use tasks::{Head, TaskMap, TaskMapError, TaskSelector};
