//! Benchmarks with the IPT test protocols: super-resolution (Set5, Set14, B100, Urban100 at
//! ×2/×3/×4), colour denoising (CBSD68, Urban100 at σ 30/50) and deraining (Rain100L).
//!
//! - [`data_root`]: `--data-root`, else `IPT_DATA`, else `data/benchmark`.
//! - [`layout`]: the EDSR layout (`<Set>/HR`, optional `<Set>/LR_bicubic/X{s}`) and flat
//!   folders; missing sets are reported and skipped.
//! - [`rain_pairs`]: Rain100L's `rain-*`/`norain-*` pairing.
//! - [`sr`], [`denoise`], [`derain`]: the protocols (see each module for the exact steps).
//! - [`method`]: bicubic, identity, and IPT checkpoints ([`ipt_method`]).
//! - [`published`]: the paper's IPT numbers and the published bicubic row.
//! - [`report`]: Markdown table, per-image CSV and the JSON summary.
//! - [`seed`]: the per-image noise seeds of the denoising benchmark.
//!
//! Every PSNR/SSIM is computed per image on the quantized output and averaged over the set;
//! the Y channel follows IPT's convention (`ipt_metrics::psnr_y`). `docs/benchmarks.md` has the
//! commands and the numbers they give.

pub mod data_root;
pub mod denoise;
pub mod derain;
mod error;
pub mod ipt_method;
pub mod layout;
pub mod method;
pub mod progress;
pub mod published;
pub mod rain_pairs;
pub mod report;
pub mod runner;
pub mod seed;
pub mod sr;

pub use data_root::{resolve_data_root, DataRoot};
pub use denoise::{run_denoise, DenoiseOptions};
pub use derain::run_derain;
pub use error::BenchError;
pub use ipt_method::{IptMethod, WeightsSpec};
pub use method::{Job, Method};
pub use progress::BenchProgress;
pub use report::{BenchOutcome, BenchReport, BenchTask};
pub use sr::{run_sr, SrOptions};
