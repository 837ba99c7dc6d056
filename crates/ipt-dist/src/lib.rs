//! Data-parallel collectives for ipt-rs, through libtorch's own distributed engine (c10d).
//!
//! IPT's pre-training is a many-GPU job (the paper trains on 32 GPUs). PyTorch peers scale out with
//! `torch.distributed` (NCCL between GPUs, Gloo between CPUs). libtorch ships that engine, c10d, and exports its
//! symbols, but the `tch` crate has no bindings for it. This crate is the bridge:
//!
//! - `csrc/c10d_shim.cpp`, a small C++ file built by `build.rs` against the headers of the libtorch torch-sys
//!   uses, exposes `extern "C"` functions: a `TCPStore` rendezvous (rank 0 hosts it), `ProcessGroupGloo` for CPU
//!   tensors and `ProcessGroupNCCL` for CUDA tensors (the latter compiled only with the CUDA libtorch), with
//!   all-reduce, broadcast and barrier over `torch::Tensor*` handles (tch's `Tensor::as_mut_ptr`). Every C++
//!   exception is caught in the shim and comes back as an error; nothing aborts the process.
//! - [`DistEnv`] reads the launcher's environment (torchrun's `RANK`, `WORLD_SIZE`, ... or SLURM's).
//! - [`ProcessGroup`] joins the group and runs collectives with a timeout; a lost or stopped peer makes the
//!   collective return a [`DistError`] naming it, within the timeout, instead of hanging.
//! - [`ProcessGroup::all_reduce_coalesced_avg`] averages a gradient set in size-bounded buckets, one collective
//!   per bucket, as PyTorch's DDP does.
//!
//! ```no_run
//! use ipt_dist::{Backend, DistEnv, ProcessGroup, ReduceOp, DEFAULT_BUCKET_BYTES};
//! use std::time::Duration;
//! # fn main() -> Result<(), ipt_dist::DistError> {
//! let Some(env) = DistEnv::from_env()? else { return Ok(()) }; // not launched distributed
//! let pg = ProcessGroup::connect(&env, Backend::Gloo, Duration::from_secs(300))?;
//! let weights = vec![tch::Tensor::zeros([4], (tch::Kind::Float, tch::Device::Cpu))];
//! pg.broadcast(&weights, 0)?; // everyone starts from rank 0's weights
//! let mut grads = vec![tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu))];
//! pg.all_reduce_coalesced_avg(&mut grads, DEFAULT_BUCKET_BYTES)?;
//! let stop_at = pg.agree_u64(1200, ReduceOp::Max)?;
//! # let _ = stop_at; Ok(()) }
//! ```
//!
//! [`testing`] holds helpers for tests that start real ranks as processes.
//!
//! The binary `ipt-dist-check` joins a job and checks the collectives end to end (see docs/distributed.md).
#![warn(missing_docs)]

pub mod bucket;
pub mod env;
mod error;
mod ffi;
mod group;
pub mod testing;

pub use env::{DistEnv, EnvError, Launcher};
pub use error::{DistError, Failure, Peer};
pub use group::{local_address_towards, Backend, ProcessGroup, ReduceOp, DEFAULT_BUCKET_BYTES};
