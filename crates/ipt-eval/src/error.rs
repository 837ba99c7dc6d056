//! The typed error of the benchmark library.

use std::path::PathBuf;

/// Everything that can go wrong while finding data, running a protocol or writing results.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// None of the requested sets exists under the data root.
    #[error(
        "no benchmark sets found under {root} (from {source_name}); looked for: {looked}. \
         Pass --data-root DIR or set IPT_DATA (see docs/benchmarks.md)"
    )]
    NoSets {
        /// The data root searched.
        root: PathBuf,
        /// Which setting supplied the root (flag, IPT_DATA, default).
        source_name: String,
        /// The folders that were tried, comma separated.
        looked: String,
    },
    /// Some of the requested sets are missing (without `--skip-missing`).
    #[error(
        "benchmark set(s) missing under {root} (from {source_name}): {sets}. Check the names and \
         the data root (--data-root / IPT_DATA), or pass --skip-missing to run the sets that exist"
    )]
    MissingSets {
        /// The data root searched.
        root: PathBuf,
        /// Which setting supplied the root.
        source_name: String,
        /// Each missing set and why, `; `-separated.
        sets: String,
    },
    /// The pairs of a deraining test set (Rain100L, Rain100H) are absent or unusable.
    #[error(
        "{set} not usable at {dir}: {reason}. Expected pairs rain-NNN.png / norain-NNN.png \
         (side by side, or in rainy/ + norain/ folders) or Rain100H's inputcrop/ + cleancrop/ \
         folders; see docs/benchmarks.md for where the sets come from"
    )]
    RainSet {
        /// The set's name.
        set: String,
        /// The folder that was searched.
        dir: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Listing a directory failed.
    #[error(transparent)]
    List(#[from] ipt_degrade::files::ListError),
    /// Reading an image failed.
    #[error(transparent)]
    Image(#[from] ipt_degrade::DegradeError),
    /// An image pair has unusable sizes (e.g. HR smaller than LR·scale).
    #[error("{path}: {reason}")]
    Shape {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with its size.
        reason: String,
    },
    /// A metric could not be computed.
    #[error("metric for {image}: {source}")]
    Metric {
        /// The image (set/name).
        image: String,
        /// The metric error.
        source: ipt_metrics::MetricsError,
    },
    /// The method cannot run this task (e.g. bicubic on denoising, or no checkpoint for it).
    #[error("{0}")]
    Unsupported(String),
    /// Loading or running the model failed.
    #[error("model: {0}")]
    Model(String),
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Encoding JSON or CSV failed.
    #[error("cannot encode {path}: {reason}")]
    Encode {
        /// The output file.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
}
