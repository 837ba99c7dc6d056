//! PyTorch's `torch.save` zip format (PyTorch ≥ 1.6): `<name>/data.pkl` (a pickle of the state
//! dict, decoded by the safe machine in [`super::pickle`]) and one raw little-endian file
//! `<name>/data/<key>` per storage. [`read_pt`] reads it; [`write_pt`] writes a state dict the
//! way `torch.save` does (so that `torch.load`, the official code and model loaders read it).

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use tch::Tensor;

use super::pickle::{unpickle, StorageKind, TensorRef, Value};
use super::pickler::{state_dict_pickle, TensorEntry};
use super::CheckpointError;
use super::StateDict;

/// The pickled magic number that starts a legacy (pre-1.6, non-zip) `torch.save` file:
/// PROTO 2, LONG1 of 10 bytes = 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// True when `head` (the first bytes of a file) look like a legacy `torch.save` file.
pub fn is_legacy(head: &[u8]) -> bool {
    head.starts_with(LEGACY_MAGIC)
}

/// How much memory reading a `.pt` file may take, as a multiple of the file's size (plus
/// [`MEMORY_SLACK`]): the zip entries read and the tensors built together. `torch.save` stores
/// its entries uncompressed and its tensors as disjoint views, so a real checkpoint needs about
/// once its size (twice with tied weights); a compressed entry that inflates further, or views
/// whose overlapping strides repeat a storage, are refused before they exhaust memory.
pub const MEMORY_FACTOR: u64 = 16;

/// Memory a `.pt` file may take beyond [`MEMORY_FACTOR`] times its size: 16 MiB.
pub const MEMORY_SLACK: u64 = 16 << 20;

/// Reads a `torch.save` zip file holding a state dict (optionally wrapped in a dict under
/// `state_dict` or `model`; a `module.` prefix on every key is removed).
pub fn read_pt(path: &Path) -> Result<StateDict, CheckpointError> {
    let io_err = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    read_pt_from(std::io::BufReader::new(file), len, path)
}

/// [`read_pt`] on a file held in memory; `name` only labels errors.
pub fn read_pt_bytes(bytes: &[u8], name: &Path) -> Result<StateDict, CheckpointError> {
    read_pt_from(std::io::Cursor::new(bytes), bytes.len() as u64, name)
}

fn read_pt_from<R: Read + Seek>(
    reader: R,
    len: u64,
    path: &Path,
) -> Result<StateDict, CheckpointError> {
    let fmt = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let budget = len
        .saturating_mul(MEMORY_FACTOR)
        .saturating_add(MEMORY_SLACK);
    let over_budget = |what: String| {
        fmt(format!(
            "{what} would take the reader past {budget} bytes of memory ({MEMORY_FACTOR}× the \
             file's size + {} MiB); a torch.save checkpoint needs about its own size",
            MEMORY_SLACK >> 20
        ))
    };
    let mut spent: u64 = 0;
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| fmt(format!("not a PyTorch zip checkpoint ({e})")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .map(str::to_owned)
        .ok_or_else(|| {
            fmt("zip file has no `<name>/data.pkl`: not a torch.save checkpoint".into())
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    let mut read_entry =
        |name: &str, spent: &mut u64| -> Result<Option<Vec<u8>>, CheckpointError> {
            let f = match zip.by_name(name) {
                Ok(f) => f,
                Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                Err(e) => return Err(fmt(format!("zip entry {name}: {e}"))),
            };
            let room = budget.saturating_sub(*spent);
            // The size is read from the file: trust it for no more than the budget.
            let mut buf = Vec::with_capacity(f.size().min(room) as usize);
            f.take(room.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|e| fmt(format!("zip entry {name}: {e}")))?;
            if buf.len() as u64 > room {
                return Err(over_budget(format!("zip entry {name}")));
            }
            *spent += buf.len() as u64;
            Ok(Some(buf))
        };
    if let Some(order) = read_entry(&format!("{prefix}byteorder"), &mut spent)? {
        if order != b"little" {
            return Err(fmt(format!(
                "storages are {}-endian; only little-endian files are supported",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pkl =
        read_entry(&pkl_name, &mut spent)?.ok_or_else(|| fmt(format!("{pkl_name} vanished")))?;
    let root = unpickle(&pkl).map_err(|source| CheckpointError::Pickle {
        path: path.to_path_buf(),
        entry: pkl_name.clone(),
        source,
    })?;
    drop(pkl);
    let entries = state_dict_entries(root).map_err(fmt)?;

    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, tref) in entries {
        if !storages.contains_key(&tref.key) {
            let entry = format!("{prefix}data/{}", tref.key);
            let bytes = read_entry(&entry, &mut spent)?
                .ok_or_else(|| fmt(format!("tensor {name}: storage {entry} is missing")))?;
            storages.insert(tref.key.clone(), bytes);
        }
        let storage = &storages[&tref.key];
        let bytes =
            view_bytes(&tref, storage.len()).map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        spent = spent.saturating_add(bytes);
        if spent > budget {
            return Err(over_budget(format!("tensor {name}")));
        }
        let t = build_tensor(&tref, storage).map_err(|e| fmt(format!("tensor {name}: {e}")))?;
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

/// Bytes of the tensor `tref` describes, after checking that it is a view inside its storage
/// of `storage_len` bytes with no more elements than the storage (overlapping strides would
/// let a small file expand into a huge tensor).
fn view_bytes(tref: &TensorRef, storage_len: usize) -> Result<u64, String> {
    let es = tref.kind.elem_size();
    if !storage_len.is_multiple_of(es) {
        return Err(format!(
            "storage of {storage_len} bytes is not a whole number of {es}-byte elements"
        ));
    }
    let numel = storage_len / es;
    if tref.size.contains(&0) {
        return Ok(0);
    }
    // Highest element index the view touches must lie inside the storage.
    let mut last = tref.offset;
    let mut elements: usize = 1;
    for (&s, &st) in tref.size.iter().zip(&tref.stride) {
        last = (s - 1)
            .checked_mul(st)
            .and_then(|x| x.checked_add(last))
            .ok_or("tensor view overflows")?;
        elements = elements.saturating_mul(s);
    }
    if last >= numel {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) exceeds its storage of {numel} elements",
            tref.offset, tref.size, tref.stride
        ));
    }
    if elements > numel {
        return Err(format!(
            "view (size {:?}, stride {:?}) has {elements} elements, more than its storage of \
             {numel}: overlapping strides are not supported",
            tref.size, tref.stride
        ));
    }
    Ok((elements * es) as u64)
}

/// Copies the view `tref` of `storage` (checked by [`view_bytes`]) into a fresh contiguous
/// tensor.
fn build_tensor(tref: &TensorRef, storage: &[u8]) -> Result<Tensor, String> {
    view_bytes(tref, storage.len())?;
    let numel = storage.len() / tref.kind.elem_size();
    let dims = |xs: &[usize]| -> Result<Vec<i64>, String> {
        xs.iter()
            .map(|&x| i64::try_from(x).map_err(|_| format!("size or stride {x} is too large")))
            .collect()
    };
    let size = dims(&tref.size)?;
    if tref.size.contains(&0) {
        return Tensor::f_zeros(size, (tref.kind.kind(), tch::Device::Cpu))
            .map_err(|e| e.to_string());
    }
    let stride = dims(&tref.stride)?;
    let offset = i64::try_from(tref.offset).map_err(|e| e.to_string())?;
    let flat = Tensor::f_from_data_size(storage, &[numel as i64], tref.kind.kind())
        .map_err(|e| e.to_string())?;
    flat.f_as_strided(size, stride, offset)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| e.to_string())
}

/// Storage alignment of `torch.save` (`.storage_alignment`): every record starts at a multiple of
/// 64 bytes, so that a loader can map the storages in place.
const ALIGNMENT: u16 = 64;

/// Writes `tensors` as `torch.save(state_dict)` does: a zip archive (entries stored, not
/// compressed, each aligned to 64 bytes) holding `<name>/data.pkl` ([`state_dict_pickle`]: an
/// `OrderedDict` in the given order), `.format_version`, `.storage_alignment`, `byteorder`
/// (`little`), one storage per tensor under `data/<index>`, and `version` (3). `<name>` is the
/// file's stem. Written atomically: the file appears complete or not at all.
pub fn write_pt(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let fmt = |msg: String| CheckpointError::Format {
        path: path.to_path_buf(),
        msg,
    };
    let mut entries = Vec::with_capacity(tensors.len());
    let mut storages = Vec::with_capacity(tensors.len());
    for (i, (name, t)) in tensors.iter().enumerate() {
        let (kind, size, bytes) =
            super::cpu_bytes(t).map_err(|e| fmt(format!("tensor {name}: {e}")))?;
        let kind = StorageKind::from_kind(kind).ok_or_else(|| {
            fmt(format!(
                "tensor {name}: kind {kind:?} has no torch storage type"
            ))
        })?;
        entries.push(TensorEntry {
            name: name.clone(),
            kind,
            size,
            storage: i.to_string(),
        });
        storages.push(bytes);
    }
    let pickle = state_dict_pickle(&entries);
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = if stem.is_empty() {
        "archive".to_string()
    } else {
        stem
    };
    let total: u64 = storages.iter().map(|b| b.len() as u64).sum::<u64>() + pickle.len() as u64;
    let mut records: Vec<(String, &[u8])> = vec![
        (format!("{name}/data.pkl"), &pickle),
        (format!("{name}/.format_version"), b"1"),
        (format!("{name}/.storage_alignment"), b"64"),
        (format!("{name}/byteorder"), b"little"),
    ];
    for (i, bytes) in storages.iter().enumerate() {
        records.push((format!("{name}/data/{i}"), bytes));
    }
    records.push((format!("{name}/version"), b"3\n"));
    ipt_degrade::files::write_atomic(path, |tmp| -> std::io::Result<()> {
        use std::io::Write;
        let file = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::FileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(total >= u64::from(u32::MAX));
        for (entry, bytes) in &records {
            zip.start_file_aligned(entry.as_str(), options, ALIGNMENT)
                .map_err(std::io::Error::other)?;
            zip.write_all(bytes)?;
        }
        zip.finish().map_err(std::io::Error::other)?.flush()
    })
    .map_err(|e| CheckpointError::Io {
        path: path.to_path_buf(),
        source: e.into_io_error(),
    })
}
