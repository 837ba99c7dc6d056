//! `.safetensors` reading and writing (via the `safetensors` crate), with the model config as
//! JSON under the metadata key [`CONFIG_KEY`].

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorInfo, TensorView};
use tch::{Kind, Tensor};

use super::CheckpointError;
use super::StateDict;

/// Metadata key holding the [`IptConfig`](crate::IptConfig) as JSON.
pub const CONFIG_KEY: &str = "ipt_config";

/// Metadata key holding the CRC-32C of the tensors ([`checksum`]) as 8 hex digits, written by
/// [`write_safetensors`] and verified by [`read_safetensors`] when present (files written by
/// other tools have none and are read as before).
pub const CHECKSUM_KEY: &str = "ipt_crc32c";

/// CRC-32C over the tensors in name order: each tensor's name, dtype, shape and bytes.
pub fn checksum<'a>(mut tensors: Vec<(&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    let mut crc = 0u32;
    for (name, dtype, shape, data) in tensors {
        let head = format!("{name}\0{dtype:?}\0{shape:?}\0");
        crc = crc32c::crc32c_append(crc, head.as_bytes());
        crc = crc32c::crc32c_append(crc, data);
    }
    format!("{crc:08x}")
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// A safetensors reader error in words, naming the tensor where the crate's error does not
/// (its `TensorInvalidInfo` carries no name: the header is read again here to find it).
fn describe(e: &safetensors::SafeTensorError, bytes: &[u8]) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader | E::InvalidHeaderStart | E::InvalidHeaderDeserialization | E::JsonError(_) => {
            "not a safetensors file: its header is not the JSON table of tensors it must start with"
                .into()
        }
        E::HeaderTooLarge => "not a usable safetensors file: its header claims more than 100 MB".into(),
        E::HeaderTooSmall | E::InvalidHeaderLength => {
            "not a safetensors file: too short, or its header length points past the end of the file"
                .into()
        }
        E::MetadataIncompleteBuffer => {
            "the file is truncated or padded: the tensors the header lists do not cover its data \
             exactly"
                .into()
        }
        E::InvalidOffset(name) => {
            format!("tensor {name}: its data offsets lie outside the file or overlap another tensor")
        }
        E::TensorInvalidInfo | E::ValidationOverflow => match inconsistent_tensor(bytes) {
            Some((name, why)) => format!("tensor {name}: {why}"),
            None => "a tensor's shape, dtype and data size disagree".into(),
        },
        E::TensorNotFound(name) => format!("tensor {name} is not in the file"),
        E::InvalidTensorView(dtype, shape, size) => format!(
            "a tensor of dtype {dtype:?} and shape {shape:?} cannot hold {size} bytes"
        ),
        E::IoError(io) => io.to_string(),
    }
}

/// The first tensor (in name order) whose byte range does not match its shape and dtype, and
/// why, read from the header's JSON with the crate's own `TensorInfo`.
fn inconsistent_tensor(bytes: &[u8]) -> Option<(String, String)> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo = serde_json::from_value(value).ok()?;
        let (begin, end) = info.data_offsets;
        let need = info
            .shape
            .iter()
            .try_fold(info.dtype.size(), |acc, &d| acc.checked_mul(d));
        let have = end.saturating_sub(begin);
        if end < begin || need != Some(have) {
            let dims: Vec<String> = info.shape.iter().map(|d| d.to_string()).collect();
            return Some((
                name,
                format!(
                    "shape {} of {:?} needs {} bytes, but its data offsets {begin}..{end} hold {have}",
                    dims.join("×"),
                    info.dtype,
                    need.map_or("more than can be counted".to_string(), |n| n.to_string()),
                ),
            ));
        }
    }
    None
}

/// Reads every tensor and the metadata of a `.safetensors` file.
pub fn read_safetensors(path: &Path) -> Result<StateDict, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_safetensors_bytes(&bytes, path)
}

/// [`read_safetensors`] on a file held in memory; `path` only labels errors.
pub fn read_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<StateDict, CheckpointError> {
    let fmt = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| fmt(describe(&e, bytes)))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| fmt(describe(&e, bytes)))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    if let Some(expected) = metadata.get(CHECKSUM_KEY) {
        let views = st.tensors();
        let found = checksum(
            views
                .iter()
                .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data()))
                .collect(),
        );
        if &found != expected {
            return Err(CheckpointError::Checksum {
                path: path.to_path_buf(),
                expected: expected.clone(),
                found,
            });
        }
    }
    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            fmt(format!(
                "tensor {name}: dtype {:?} unsupported",
                view.dtype()
            ))
        })?;
        let shape: Vec<i64> = view
            .shape()
            .iter()
            .map(|&x| i64::try_from(x))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                fmt(format!(
                    "tensor {name}: shape {:?} is too large",
                    view.shape()
                ))
            })?;
        // TensorView::data() has been checked by the crate to hold numel · dtype size bytes.
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        tensors.push((name, t));
    }
    // Keep a stable order (the file orders by dtype, then name).
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(StateDict { tensors, metadata })
}

/// Writes `tensors` (moved to the CPU, made contiguous) and `metadata`, plus their checksum
/// under [`CHECKSUM_KEY`], to a `.safetensors` file, atomically: the file appears complete or
/// not at all (a failed write, e.g. on a full disk, leaves nothing behind).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    mut metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let fmt = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (kind, shape, buf) =
            super::cpu_bytes(t).map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        let dtype = dtype_of(kind)
            .ok_or_else(|| fmt(format!("tensor {name}: kind {kind:?} cannot be stored")))?;
        blobs.push((name.clone(), dtype, shape, buf));
    }
    let views = blobs
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| fmt(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sum = checksum(
        blobs
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice()))
            .collect(),
    );
    metadata.insert(CHECKSUM_KEY.to_string(), sum);
    let bytes = safetensors::serialize(views, &Some(metadata))
        .map_err(|e| fmt(format!("cannot serialise the tensors: {e}")))?;
    ipt_degrade::files::write_bytes_atomic(path, &bytes).map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        source: e.into_io_error(),
    })
}
