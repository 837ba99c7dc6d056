//! Checkpoints: official PyTorch `.pt` state dicts and `.safetensors` files.
//!
//! - [`read_state_dict`] reads either format (detected from the file's first bytes);
//!   [`read_state_dict_bytes`] the same from memory.
//! - [`infer_config`] recovers the [`IptConfig`] (from safetensors metadata, else from the
//!   key names and shapes).
//! - [`copy_into`] copies a state dict into a model's `VarStore`, strictly: missing,
//!   unexpected and wrongly-shaped keys are all reported by name.
//! - [`load`] does all three; [`save`] writes safetensors with the config in the metadata.

mod error;
pub mod infer;
pub mod pickle;
mod pickler;
pub mod pytorch;
pub mod safetensors_file;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use tch::{nn, Device, Tensor};

use crate::config::IptConfig;
use crate::ipt::Ipt;

pub use error::CheckpointError;
pub use infer::{infer_config, FieldDifference, InferError, InferOptions};
pub use pickle::PickleError;
pub use safetensors_file::{CHECKSUM_KEY, CONFIG_KEY};

/// Named tensors read from a checkpoint file, in file order, plus string metadata
/// (safetensors only; empty for `.pt`).
#[derive(Debug)]
pub struct StateDict {
    /// `(key, tensor)` pairs, CPU tensors.
    pub tensors: Vec<(String, Tensor)>,
    /// String metadata (the `ipt_config` JSON lives here).
    pub metadata: HashMap<String, String>,
}

impl StateDict {
    /// Total number of elements of every tensor except the int64 `position_ids` buffer (the
    /// convention of the spec's parameter counts).
    pub fn num_parameters(&self) -> usize {
        self.tensors
            .iter()
            .filter(|(k, _)| !k.ends_with("position_ids"))
            .map(|(_, t)| t.numel())
            .sum()
    }

    /// [`num_parameters`](Self::num_parameters) less the mean-shift constants (`sub_mean.*`,
    /// `add_mean.*`: the frozen 1×1 convolutions of the official `MeanShift`, 24 values, saved in
    /// the state dict but never trained): the trainable parameters, what training reports.
    pub fn num_trainable(&self) -> usize {
        let constants: usize = self
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with("sub_mean.") || k.starts_with("add_mean."))
            .map(|(_, t)| t.numel())
            .sum();
        self.num_parameters() - constants
    }
}

/// Reads a checkpoint: a PyTorch zip file (`torch.save`, ≥ 1.6) or a `.safetensors` file,
/// told apart by content. Legacy (pre-1.6) PyTorch files are refused with instructions.
pub fn read_state_dict(path: &Path) -> Result<StateDict, CheckpointError> {
    let mut head = [0u8; 16];
    let n = ipt_degrade::files::open_regular(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let sd = match detect(&head[..n], path)? {
        Format::PyTorch => pytorch::read_pt(path)?,
        Format::Safetensors => safetensors_file::read_safetensors(path)?,
    };
    check_finite(&sd.tensors, path)?;
    Ok(sd)
}

/// [`read_state_dict`] on a file held in memory; `name` only labels errors.
pub fn read_state_dict_bytes(bytes: &[u8], name: &Path) -> Result<StateDict, CheckpointError> {
    let sd = match detect(&bytes[..bytes.len().min(16)], name)? {
        Format::PyTorch => pytorch::read_pt_bytes(bytes, name)?,
        Format::Safetensors => safetensors_file::read_safetensors_bytes(bytes, name)?,
    };
    check_finite(&sd.tensors, name)?;
    Ok(sd)
}

/// Refuses named tensors with a NaN or infinite value in any floating-point one, naming the
/// first such tensor (in name order) and how many of its values are bad.
pub fn check_finite(tensors: &[(String, Tensor)], path: &Path) -> Result<(), CheckpointError> {
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in sorted {
        if !t.is_floating_point() || t.numel() == 0 {
            continue;
        }
        let bad = t
            .f_isfinite()
            .and_then(|f| f.f_logical_not())
            .and_then(|b| b.f_sum(tch::Kind::Int64))
            .and_then(|n| n.f_int64_value(&[]))
            .map_err(|e| CheckpointError::Format {
                path: path.to_path_buf(),
                msg: format!("tensor {name}: cannot check its values: {e}"),
            })?;
        if bad > 0 {
            return Err(CheckpointError::NonFinite {
                path: path.to_path_buf(),
                tensor: name.clone(),
                count: bad,
                numel: t.numel() as i64,
            });
        }
    }
    Ok(())
}

/// A tensor kind in words, for messages.
fn kind_name(kind: tch::Kind) -> String {
    match kind {
        tch::Kind::Float => "float32".into(),
        tch::Kind::Double => "float64".into(),
        tch::Kind::Half => "float16".into(),
        tch::Kind::BFloat16 => "bfloat16".into(),
        tch::Kind::Int64 => "int64".into(),
        tch::Kind::Int => "int32".into(),
        tch::Kind::Int16 => "int16".into(),
        tch::Kind::Int8 => "int8".into(),
        tch::Kind::Uint8 => "uint8".into(),
        tch::Kind::Bool => "bool".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

enum Format {
    PyTorch,
    Safetensors,
}

/// The format of a checkpoint from its first bytes.
fn detect(head: &[u8], path: &Path) -> Result<Format, CheckpointError> {
    if head.starts_with(b"PK\x03\x04") {
        Ok(Format::PyTorch)
    } else if pytorch::is_legacy(head) {
        Err(CheckpointError::Format {
            path: path.to_path_buf(),
            msg: "legacy (pre-1.6, non-zip) PyTorch format is not supported; re-save it with a \
                  recent PyTorch: torch.save(torch.load(OLD), NEW)"
                .into(),
        })
    } else if head.len() >= 9 && head[8] == b'{' {
        Ok(Format::Safetensors)
    } else {
        Err(CheckpointError::Format {
            path: path.to_path_buf(),
            msg: "neither a PyTorch zip checkpoint nor a safetensors file".into(),
        })
    }
}

/// Copies `sd` into the variables of `vs` (converting float kinds and moving to the store's
/// device). Strict: fails, naming every key, when the file lacks a variable, has a tensor the
/// model lacks, or a shape differs. `path` is only used in messages.
pub fn copy_into(vs: &nn::VarStore, sd: &StateDict, path: &Path) -> Result<(), CheckpointError> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let file: BTreeMap<&str, &Tensor> = sd.tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let missing: Vec<String> = vars
        .keys()
        .filter(|k| !file.contains_key(k.as_str()))
        .cloned()
        .collect();
    let unexpected: Vec<String> = file
        .keys()
        .filter(|k| !vars.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    let wrong_shape: Vec<(String, Vec<i64>, Vec<i64>)> = vars
        .iter()
        .filter_map(|(k, v)| {
            let t = file.get(k.as_str())?;
            (t.size() != v.size()).then(|| (k.clone(), t.size(), v.size()))
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && wrong_shape.is_empty()) {
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            missing,
            unexpected,
            wrong_shape,
        });
    }
    // A weight must be stored as floats and an integer buffer as integers: casting integers
    // into a weight (or floats into an index) would give a model that runs and restores garbage.
    for (k, v) in &vars {
        let src = file[k.as_str()];
        if src.is_floating_point() != v.is_floating_point() {
            return Err(CheckpointError::WrongKind {
                path: path.to_path_buf(),
                tensor: k.clone(),
                found: kind_name(src.kind()),
                expected: if v.is_floating_point() {
                    "a floating-point type (float32, float64, float16 or bfloat16)"
                } else {
                    "an integer type"
                },
            });
        }
    }
    tch::no_grad(|| {
        for (k, v) in &vars {
            let src = file[k.as_str()].to_device(v.device()).to_kind(v.kind());
            v.shallow_clone()
                .f_copy_(&src)
                .map_err(|e| CheckpointError::Format {
                    path: path.to_path_buf(),
                    msg: format!("copying {k}: {e}"),
                })?;
        }
        Ok(())
    })
}

/// A tensor's elements as little-endian bytes in row-major order (moved to the CPU, made
/// contiguous), with its kind and shape: what both file writers store.
fn cpu_bytes(t: &Tensor) -> Result<(tch::Kind, Vec<usize>, Vec<u8>), tch::TchError> {
    let t = t.to_device(Device::Cpu).contiguous();
    let (kind, numel) = (t.kind(), t.numel());
    let mut buf = vec![0u8; numel * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut buf, numel)?;
    Ok((kind, t.size().iter().map(|&x| x as usize).collect(), buf))
}

/// Writes every variable of `vs` as a PyTorch state dict (`torch.save` format, keys in name
/// order; [`pytorch::write_pt`]), the layout of the official checkpoints, atomically. Refuses
/// non-finite weights, as [`save`] does. The file carries no config: readers infer it from the
/// shapes, except the attention heads (official code and loaders assume 12).
pub fn export_pt(path: &Path, vs: &nn::VarStore) -> Result<(), CheckpointError> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    check_finite(&tensors, path)?;
    pytorch::write_pt(path, &tensors)
}

/// A model built from a checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// The variables (on the requested device).
    pub vs: nn::VarStore,
    /// The network.
    pub model: Ipt,
    /// Its configuration.
    pub config: IptConfig,
}

/// Reads `path`, infers its config, builds the network on `device` and loads the weights
/// strictly.
pub fn load(path: &Path, device: Device, opts: &InferOptions) -> Result<Loaded, CheckpointError> {
    build(read_state_dict(path)?, path, device, opts)
}

/// [`load`] of a checkpoint held in memory (e.g. weights compiled into a binary); `name` only
/// labels errors.
pub fn load_bytes(
    bytes: &[u8],
    name: &Path,
    device: Device,
    opts: &InferOptions,
) -> Result<Loaded, CheckpointError> {
    build(read_state_dict_bytes(bytes, name)?, name, device, opts)
}

/// Infers the config of `sd`, builds the network on `device` and loads the weights strictly.
fn build(
    sd: StateDict,
    path: &Path,
    device: Device,
    opts: &InferOptions,
) -> Result<Loaded, CheckpointError> {
    let config = infer_config(&sd, opts).map_err(|source| CheckpointError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    let vs = nn::VarStore::new(device);
    let model = Ipt::new(&vs.root(), &config).map_err(|source| CheckpointError::Model {
        path: path.to_path_buf(),
        source,
    })?;
    copy_into(&vs, &sd, path)?;
    Ok(Loaded { vs, model, config })
}

/// Writes every variable of `vs` to a `.safetensors` file with `config` as JSON under the
/// metadata key [`CONFIG_KEY`] and the tensors' checksum under [`CHECKSUM_KEY`], atomically.
/// Refuses other extensions, so that nothing that is not a PyTorch pickle gets a `.pt` name,
/// and non-finite weights (named), so that no file of NaNs is ever written.
pub fn save(path: &Path, vs: &nn::VarStore, config: &IptConfig) -> Result<(), CheckpointError> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(CheckpointError::Format {
            path: path.to_path_buf(),
            msg: "checkpoints are written as .safetensors; use that extension".into(),
        });
    }
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    check_finite(&tensors, path)?;
    let json = serde_json::to_string(config).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        msg: format!("serialising the config: {e}"),
    })?;
    let metadata = HashMap::from([
        (CONFIG_KEY.to_string(), json),
        ("format".to_string(), "pt".to_string()),
    ]);
    safetensors_file::write_safetensors(path, &tensors, metadata)
}
