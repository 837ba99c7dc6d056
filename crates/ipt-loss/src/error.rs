//! The typed error of every fallible (`f_`) function of this crate.

use tch::{Kind, TchError};

/// What can go wrong when a loss is asked for.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// The contrastive features are not a `[B, N, d]` tensor.
    #[error("contrastive tokens must be [B, N, d] with B, N, d >= 1, got shape {shape:?}")]
    TokensShape {
        /// The shape that was passed.
        shape: Vec<i64>,
    },
    /// The batch is too small for the chosen contrastive form to be defined.
    #[error(
        "{variant} contrastive loss needs {need}; got B = {batch} images of N = {tokens} tokens"
    )]
    TooFewTokens {
        /// The variant's name.
        variant: &'static str,
        /// What the variant needs, in words.
        need: &'static str,
        /// Images in the batch (B).
        batch: i64,
        /// Tokens per image (N).
        tokens: i64,
    },
    /// The temperature is not a finite positive number.
    #[error("contrastive temperature must be finite and > 0, got {0}")]
    Temperature(f64),
    /// A chunk of zero rows was asked for.
    #[error("contrastive chunk must be at least 1 anchor row, got 0")]
    ZeroChunk,
    /// Output and target of the L1 loss differ in shape.
    #[error("L1 loss: output shape {output:?} differs from target shape {target:?}")]
    ShapeMismatch {
        /// Shape of the network output.
        output: Vec<i64>,
        /// Shape of the target.
        target: Vec<i64>,
    },
    /// Two tensors that must live together are on different devices.
    #[error("{what}: tensors on different devices ({a:?} vs {b:?})")]
    DeviceMismatch {
        /// Which loss complained.
        what: &'static str,
        /// Device of the first tensor.
        a: tch::Device,
        /// Device of the second tensor.
        b: tch::Device,
    },
    /// A tensor that must hold floating-point values does not.
    #[error("{what} must be a floating-point tensor, got {kind:?}")]
    NotFloat {
        /// Which tensor.
        what: &'static str,
        /// Its element kind.
        kind: Kind,
    },
    /// libtorch itself reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}
