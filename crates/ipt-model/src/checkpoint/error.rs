//! [`CheckpointError`]: why a checkpoint could not be read, checked or written.

use std::path::PathBuf;

use super::infer::InferError;
use super::pickle::PickleError;
use crate::error::ModelError;

/// Errors from reading, checking or writing checkpoints. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not in a format this crate reads, or is malformed.
    #[error("{path}: {msg}")]
    Format {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The pickle inside a `.pt` file was refused (malformed, unsafe or too large).
    #[error("{path}: {entry}: {source}")]
    Pickle {
        /// The checkpoint file.
        path: PathBuf,
        /// The zip entry holding the pickle (`<name>/data.pkl`).
        entry: String,
        /// Why it was refused.
        source: PickleError,
    },
    /// No model config could be read from or inferred for the file.
    #[error("{path}: {source}")]
    Config {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        source: InferError,
    },
    /// The tensors of the file do not match the network: listed by name.
    #[error("{path}: checkpoint does not match the model:{}", mismatch_lines(.missing, .unexpected, .wrong_shape))]
    Mismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Keys the model has but the file lacks.
        missing: Vec<String>,
        /// Keys the file has but the model lacks.
        unexpected: Vec<String>,
        /// `(key, shape in file, shape in model)`.
        wrong_shape: Vec<(String, Vec<i64>, Vec<i64>)>,
    },
    /// The configuration stored in or inferred from the file is invalid.
    #[error("{path}: {source}")]
    Model {
        /// The checkpoint file.
        path: PathBuf,
        /// The model error.
        source: ModelError,
    },
}

fn mismatch_lines(
    missing: &[String],
    unexpected: &[String],
    wrong_shape: &[(String, Vec<i64>, Vec<i64>)],
) -> String {
    let mut s = String::new();
    if !missing.is_empty() {
        s += &format!(
            "\n  missing keys ({}): {}",
            missing.len(),
            missing.join(", ")
        );
    }
    if !unexpected.is_empty() {
        s += &format!(
            "\n  unexpected keys ({}): {}",
            unexpected.len(),
            unexpected.join(", ")
        );
    }
    for (k, file, model) in wrong_shape {
        s += &format!("\n  wrong shape: {k}: file {file:?}, model {model:?}");
    }
    s
}
