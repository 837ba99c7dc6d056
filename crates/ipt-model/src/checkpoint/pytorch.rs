//! Reader for PyTorch's `torch.save` zip format (PyTorch ≥ 1.6): `<name>/data.pkl` (a pickle
//! of the state dict, decoded by the safe machine in [`super::pickle`]) and one raw
//! little-endian file `<name>/data/<key>` per storage.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tch::Tensor;

use super::pickle::{unpickle, TensorRef, Value};
use super::StateDict;
use crate::error::CheckpointError;

/// The pickled magic number that starts a legacy (pre-1.6, non-zip) `torch.save` file:
/// PROTO 2, LONG1 of 10 bytes = 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// True when `head` (the first bytes of a file) look like a legacy `torch.save` file.
pub fn is_legacy(head: &[u8]) -> bool {
    head.starts_with(LEGACY_MAGIC)
}

/// Reads a `torch.save` zip file holding a state dict (optionally wrapped in a dict under
/// `state_dict` or `model`; a `module.` prefix on every key is removed).
pub fn read_pt(path: &Path) -> Result<StateDict, CheckpointError> {
    let fmt = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let file = std::fs::File::open(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fmt(format!("not a PyTorch zip checkpoint ({e})")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .map(str::to_owned)
        .ok_or_else(|| {
            fmt("zip file has no `<name>/data.pkl`: not a torch.save checkpoint".into())
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    let mut read_entry = |name: &str| -> Result<Option<Vec<u8>>, CheckpointError> {
        let mut f = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(fmt(format!("zip entry {name}: {e}"))),
        };
        // The size is read from the file: do not trust it for a large allocation.
        let mut buf = Vec::with_capacity((f.size() as usize).min(1 << 28));
        f.read_to_end(&mut buf)
            .map_err(|e| fmt(format!("zip entry {name}: {e}")))?;
        Ok(Some(buf))
    };
    if let Some(order) = read_entry(&format!("{prefix}byteorder"))? {
        if order != b"little" {
            return Err(fmt(format!(
                "storages are {}-endian; only little-endian files are supported",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pkl = read_entry(&pkl_name)?.ok_or_else(|| fmt(format!("{pkl_name} vanished")))?;
    let root = unpickle(&pkl).map_err(|e| fmt(format!("{pkl_name}: {e}")))?;
    let entries = state_dict_entries(root).map_err(fmt)?;

    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, tref) in entries {
        if !storages.contains_key(&tref.key) {
            let entry = format!("{prefix}data/{}", tref.key);
            let bytes = read_entry(&entry)?
                .ok_or_else(|| fmt(format!("tensor {name}: storage {entry} is missing")))?;
            storages.insert(tref.key.clone(), bytes);
        }
        let t = build_tensor(&tref, &storages[&tref.key])
            .map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        tensors.push((name, t));
    }
    Ok(StateDict {
        tensors,
        metadata: HashMap::new(),
    })
}

/// Extracts `(name, tensor)` pairs from the unpickled root value.
fn state_dict_entries(root: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(mut items) = root else {
        return Err("the pickled object is not a dict of tensors".into());
    };
    // A training checkpoint wrapping the weights: {'state_dict': {...}, ...} or {'model': ...}.
    let has_tensor = items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    if !has_tensor {
        let inner = items.iter().position(|(k, v)| {
            matches!(k, Value::Str(s) if s == "state_dict" || s == "model")
                && matches!(v, Value::Dict(_))
        });
        match inner {
            Some(i) => match items.swap_remove(i).1 {
                Value::Dict(d) => items = d,
                _ => unreachable!("checked to be a dict above"),
            },
            None => return Err("the pickled dict holds no tensors".into()),
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let Value::Str(name) = k else {
            return Err(format!("state dict key {k:?} is not a string"));
        };
        match v {
            Value::Tensor(t) => out.push((name, t)),
            other => {
                return Err(format!(
                    "state dict entry {name} is not a tensor: {other:?}"
                ))
            }
        }
    }
    if !out.is_empty() && out.iter().all(|(n, _)| n.starts_with("module.")) {
        for (n, _) in &mut out {
            n.drain(..7);
        }
    }
    Ok(out)
}

/// Views `storage` as described by `tref` and copies it into a fresh contiguous tensor.
fn build_tensor(tref: &TensorRef, storage: &[u8]) -> Result<Tensor, String> {
    let es = tref.kind.elem_size();
    if !storage.len().is_multiple_of(es) {
        return Err(format!(
            "storage of {} bytes is not a whole number of {es}-byte elements",
            storage.len()
        ));
    }
    let numel = storage.len() / es;
    let empty = tref.size.contains(&0);
    if !empty {
        // Highest element index the view touches must lie inside the storage.
        let mut last = tref.offset;
        for (&s, &st) in tref.size.iter().zip(&tref.stride) {
            last = (s - 1)
                .checked_mul(st)
                .and_then(|x| x.checked_add(last))
                .ok_or("tensor view overflows")?;
        }
        if last >= numel {
            return Err(format!(
                "view (offset {}, size {:?}, stride {:?}) exceeds its storage of {numel} elements",
                tref.offset, tref.size, tref.stride
            ));
        }
    }
    let flat = Tensor::f_from_data_size(storage, &[numel as i64], tref.kind.kind())
        .map_err(|e| e.to_string())?;
    let size: Vec<i64> = tref.size.iter().map(|&x| x as i64).collect();
    let stride: Vec<i64> = tref.stride.iter().map(|&x| x as i64).collect();
    if empty {
        return Ok(Tensor::zeros(size, (tref.kind.kind(), tch::Device::Cpu)));
    }
    flat.f_as_strided(size, stride, tref.offset as i64)
        .map(|t| t.contiguous())
        .map_err(|e| e.to_string())
}
