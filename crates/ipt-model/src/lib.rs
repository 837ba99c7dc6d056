//! The IPT network (Chen et al., *Pre-Trained Image Processing Transformer*, CVPR 2021) on
//! libtorch, numerically equal to the official PyTorch code, and its checkpoints.
//!
//! - [`IptConfig`]: hyperparameters, presets (`base`, `tiny`) and validation.
//! - [`Ipt`]: the network; variable paths equal the official state-dict keys
//!   (`head.0.1.body.0.weight`, `body.encoder.layers.3.self_attn.in_proj_weight`, …).
//! - [`checkpoint`]: official PyTorch `.pt` files (read with a small, safe pickle reader) and
//!   `.safetensors` files carrying the config in their metadata.

pub mod attention;
pub mod body;
pub mod checkpoint;
pub mod chop;
pub mod common;
pub mod config;
pub mod convert;
pub mod device;
pub mod ensemble;
pub mod error;
pub mod head;
pub mod ipt;
pub mod restore;
pub mod tail;
pub mod transformer;

pub use config::IptConfig;
pub use error::{CheckpointError, ModelError};
pub use ipt::Ipt;
