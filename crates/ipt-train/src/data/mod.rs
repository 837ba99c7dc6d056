//! Training data: image sources, the batch sampler and the worker pipeline.
//!
//! - [`procedural`]: the embedded, seeded image generator (no files needed).
//! - [`source`]: where images come from (embedded, image folders, rain pairs) and how a bad file
//!   is reported.
//! - [`sampler`]: which images, task, crops and augmentations make batch number `k` — a pure
//!   function of `(seed, k)`, shardable by rank.
//! - [`pipeline`]: worker threads that decode and synthesise batches ahead of the training step,
//!   delivered in order through a bounded queue.

pub mod pipeline;
pub mod procedural;
pub mod sampler;
pub mod source;

pub use ipt_degrade::Image;
pub use pipeline::{Batch, DataStats, Pipeline};
pub use procedural::ProceduralImages;
pub use sampler::{BatchPlan, Sampler, SamplerConfig};
pub use source::{ImageSource, Sample, SourceError};
