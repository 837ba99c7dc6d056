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
    /// A tensor holds NaN or infinite values: such weights restore to black images and train
    /// nothing, so they are refused when read.
    #[error("{path}: tensor {tensor} holds {count} non-finite value(s) (NaN or infinity) among its {numel}; the weights are damaged")]
    NonFinite {
        /// The checkpoint file.
        path: PathBuf,
        /// The first tensor (in name order) with a non-finite value.
        tensor: String,
        /// How many of its values are not finite.
        count: i64,
        /// Its number of values.
        numel: i64,
    },
    /// The file's tensors do not hash to the checksum recorded when it was written (a flipped
    /// or truncated byte).
    #[error("{path}: the tensors do not match the checksum recorded when the file was written (crc32c {expected}, now {found}); the file is damaged")]
    Checksum {
        /// The checkpoint file.
        path: PathBuf,
        /// The recorded checksum.
        expected: String,
        /// The checksum of the tensors as read.
        found: String,
    },
    /// A tensor's stored type cannot hold what the model keeps there (integers for a weight,
    /// or floats for an integer buffer).
    #[error("{path}: tensor {tensor} is stored as {found}, but the model needs {expected}")]
    WrongKind {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type in the file, in words.
        found: String,
        /// What the model needs, in words.
        expected: &'static str,
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
        let dims = |d: &[i64]| {
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("×")
        };
        s += &format!(
            "\n  wrong shape: {k}: the file has {}, the model needs {}",
            dims(file),
            dims(model)
        );
    }
    s
}
