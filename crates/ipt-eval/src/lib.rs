//! Evaluation of IPT models: the test protocols of the paper (Chen et al., CVPR 2021, Section 4
//! and Tables 1–4) for super-resolution (Set5, Set14, B100, Urban100 at ×2/×3/×4), colour
//! denoising (CBSD68, Urban100 at σ 30/50) and deraining (Rain100L), and the scoring that
//! training-time validation shares with them.
//!
//! - [`data_root`]: where the sets live: `--data-root`, else `IPT_DATA`, else `data/benchmark`
//!   (and the training-data root, `IPT_TRAIN_DATA`, else `data/train`).
//! - [`layout`]: the EDSR layout (`<Set>/HR`, optional `<Set>/LR_bicubic/X{s}`) and flat
//!   folders; [`rain_pairs`]: Rain100L's `rain-*`/`norain-*` pairing.
//! - [`sr`], [`denoise`], [`derain`], [`recipe`] (any task: its recipe at a fixed seed, JPEG
//!   benchmarks with PSNR-B): how each protocol makes an (input, target) pair; one
//!   generic loop ([`protocol`]) runs every (job, set) cell of any of them.
//! - [`score`]: one image restored, quantized and scored (PSNR-Y and SSIM-Y with the IPT shave,
//!   PSNR-RGB for denoising): the path every benchmark image *and* every validation image takes.
//! - [`method`]: bicubic, identity, and IPT checkpoints ([`ipt_method`]).
//! - [`restore_job`]: the restore job behind `ipt restore` (inputs → outputs with the field's
//!   naming conventions, limits, memory check, task, faithful files: grey, alpha, bit depth,
//!   ICC and EXIF; progress events, cancellation), for any front end.
//! - [`models`]: the shipped models compiled in, and [`models::ModelRef`] (a shipped model's
//!   name or a checkpoint path).
//! - [`published`]: the paper's IPT numbers and the published bicubic row.
//! - [`report`]: Markdown table, per-image CSV and the JSON summary; [`progress`]: the bars.
//!
//! Every PSNR/SSIM is computed per image on the quantized output and averaged over the set.
//! `docs/benchmarks.md` has the commands and the numbers they give.

#![warn(missing_docs)]

pub mod data_root;
pub mod denoise;
pub mod derain;
mod error;
pub mod ipt_method;
pub mod job;
pub mod layout;
pub mod method;
pub mod models;
pub mod progress;
pub mod protocol;
pub mod published;
pub mod rain_pairs;
pub mod recipe;
pub mod report;
pub mod restore_job;
pub mod score;
pub mod sr;

pub use data_root::{resolve_data_root, DataRoot};
pub use denoise::{run_denoise, DenoiseOptions};
pub use derain::{run_derain, run_derain_set};
pub use error::BenchError;
pub use ipt_method::{IptMethod, WeightsSpec};
pub use job::Job;
pub use method::Method;
pub use progress::BenchProgress;
pub use recipe::{run_recipe, RecipeOptions};
pub use report::{BenchOutcome, BenchReport, BenchTask};
pub use score::{score_restored, Scores};
pub use sr::{run_sr, SrOptions};
