//! The error type of `ipt-metrics`.

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// The two images have different shapes.
    #[error("shape mismatch: sr {sr:?} vs hr {hr:?}")]
    ShapeMismatch {
        /// Shape of the restored image.
        sr: Vec<usize>,
        /// Shape of the reference.
        hr: Vec<usize>,
    },
    /// The images are neither 1- nor 3-channel.
    #[error("expected 1 or 3 channels (CHW), got shape {0:?}")]
    Channels(Vec<usize>),
    /// Nothing (or too little) is left after shaving the border.
    #[error("image {shape:?} is too small: {reason}")]
    TooSmall {
        /// Shape of the images.
        shape: Vec<usize>,
        /// What was needed.
        reason: String,
    },
}
