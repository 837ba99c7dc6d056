//! The error type of `ipt-degrade`.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or degrading images.
///
/// Errors about files always name the file.
#[derive(Debug, thiserror::Error)]
pub enum DegradeError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read file: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The file is not a decodable image (empty, truncated, corrupt or of an unknown format).
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    /// The image decoded but cannot be represented (e.g. zero width or height).
    #[error("{path}: unsupported image: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Why it is not supported.
        reason: String,
    },
    /// The image is larger than the decoding limits ([`crate::io::ImageLimits`]) allow: refused
    /// from the size its header claims, before its pixels were decoded.
    #[error("{path}: image too large to decode: its header claims {width}×{height} pixels (width×height), {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Width the header claims.
        width: u32,
        /// Height the header claims.
        height: u32,
        /// Which limit it exceeds, with the figures.
        limit: LimitExceeded,
    },
    /// The image could not be written.
    #[error("{path}: cannot write image: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An image has a shape the operation cannot handle.
    #[error("invalid image shape {shape:?}: {reason}")]
    Shape {
        /// The offending shape (CHW).
        shape: Vec<usize>,
        /// Why it is invalid.
        reason: String,
    },
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(String),
    /// A folder expected to hold rain-streak layers holds none.
    #[error("{path}: no rain-streak layers found (no image files in the folder)")]
    NoRainLayers {
        /// The folder.
        path: PathBuf,
    },
}

/// Which limit of [`crate::io::ImageLimits`] an image exceeds (in [`DegradeError::TooLarge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// Too many pixels.
    Pixels {
        /// Pixels the header claims (width × height).
        pixels: u64,
        /// The limit.
        max: u64,
    },
    /// Too many decoded bytes.
    Bytes {
        /// Bytes the decoded pixels would take.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            LimitExceeded::Pixels { pixels, max } => write!(
                f,
                "{:.1} megapixels, over the limit of {:.1} megapixels ({max} pixels)",
                pixels as f64 / 1e6,
                max as f64 / 1e6
            ),
            LimitExceeded::Bytes { bytes, max } => write!(
                f,
                "{} decoded, over the limit of {}",
                byte_size(bytes),
                byte_size(max)
            ),
        }
    }
}

/// `n` bytes, with MiB for large sizes.
fn byte_size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{n} bytes ({:.1} MiB)", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{n} bytes")
    }
}
