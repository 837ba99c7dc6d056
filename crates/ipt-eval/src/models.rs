//! The models shipped with ipt-rs, compiled into the library, and how a command names a model:
//! by a shipped model's name or by a checkpoint file's path ([`ModelRef`]).
//!
//! The weights are those of `data/weights/` (its README says how each was trained, with the
//! commands, commit and seed); they are embedded so that `ipt restore --model NAME` works from
//! any folder and any copy of the binary.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipt_model::checkpoint::{self, InferOptions, Loaded};
use ipt_model::CheckpointError;
use tch::Device;

/// A model shipped with ipt-rs.
#[derive(Debug)]
pub struct ShippedModel {
    /// Its name (the file stem in `data/weights/`).
    pub name: &'static str,
    /// What it is and what it scores, in one line.
    pub about: &'static str,
    /// The tasks it is the best shipped choice for.
    pub best_for: &'static [&'static str],
    /// The safetensors file's bytes.
    pub bytes: &'static [u8],
}

impl ShippedModel {
    /// The path it has in the repository, which labels errors (`data/weights/NAME.safetensors`).
    pub fn path(&self) -> PathBuf {
        Path::new("data/weights").join(format!("{}.safetensors", self.name))
    }
}

macro_rules! weights {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/weights/",
            $name,
            ".safetensors"
        ))
    };
}

/// Every shipped model, the best ×2 model first (the default of the web page and the README's
/// first example).
pub static SHIPPED: [ShippedModel; 3] = [
    ShippedModel {
        name: "ipt-small-scratch-sr2",
        about: "×2 super-resolution, trained on ×2 only (Set5 ×2 36.31 dB, Urban100 ×2 29.00 dB)",
        best_for: &["sr2"],
        bytes: weights!("ipt-small-scratch-sr2"),
    },
    ShippedModel {
        name: "ipt-small-pretrain",
        about:
            "the six IPT tasks, pre-trained together (Set5 ×2 34.57 dB; CBSD68 σ30 28.15 dB RGB)",
        best_for: &["sr3", "sr4", "derain", "denoise30", "denoise50"],
        bytes: weights!("ipt-small-pretrain"),
    },
    ShippedModel {
        name: "ipt-small-finetune-sr2",
        about: "×2 super-resolution, the six-task model fine-tuned on ×2 (Set5 ×2 35.42 dB)",
        best_for: &[],
        bytes: weights!("ipt-small-finetune-sr2"),
    },
];

/// The shipped model called `name`.
pub fn shipped(name: &str) -> Option<&'static ShippedModel> {
    SHIPPED.iter().find(|m| m.name == name)
}

/// A model as a command names it: a shipped model's name, or a checkpoint file.
#[derive(Debug, Clone)]
pub enum ModelRef {
    /// A model compiled into ipt-rs ([`SHIPPED`]).
    Shipped(&'static ShippedModel),
    /// A checkpoint file (`.pt` or `.safetensors`).
    File(PathBuf),
}

impl ModelRef {
    /// The path that names the model in messages (a shipped model's repository path).
    pub fn path(&self) -> PathBuf {
        match self {
            ModelRef::Shipped(m) => m.path(),
            ModelRef::File(p) => p.clone(),
        }
    }

    /// Loads the checkpoint onto `device` ([`checkpoint::load`]).
    pub fn load(&self, device: Device, opts: &InferOptions) -> Result<Loaded, CheckpointError> {
        match self {
            ModelRef::Shipped(m) => checkpoint::load_bytes(m.bytes, &m.path(), device, opts),
            ModelRef::File(p) => checkpoint::load(p, device, opts),
        }
    }
}

impl FromStr for ModelRef {
    type Err = String;

    /// A shipped model's name refers to it; any other value is a file path (write
    /// `./ipt-small-pretrain` for a file that happens to have a shipped model's name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("a model is a shipped model's name (see `ipt models`) or a file".into());
        }
        Ok(match shipped(s) {
            Some(m) => ModelRef::Shipped(m),
            None => ModelRef::File(PathBuf::from(s)),
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Shipped(m) => f.write_str(m.name),
            ModelRef::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_shipped_models_and_anything_else_is_a_path() {
        let m: ModelRef = "ipt-small-pretrain".parse().unwrap();
        assert!(matches!(m, ModelRef::Shipped(s) if s.name == "ipt-small-pretrain"));
        assert_eq!(
            m.path(),
            Path::new("data/weights/ipt-small-pretrain.safetensors")
        );
        let f: ModelRef = "./ipt-small-pretrain".parse().unwrap();
        assert!(matches!(f, ModelRef::File(_)));
        assert!("".parse::<ModelRef>().is_err());
    }

    #[test]
    fn shipped_models_are_the_repository_files_and_load() {
        for m in &SHIPPED {
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(m.path());
            assert_eq!(std::fs::read(&file).unwrap(), m.bytes, "{}", m.name);
            let loaded = ModelRef::Shipped(m)
                .load(Device::Cpu, &InferOptions::default())
                .unwrap();
            for task in m.best_for {
                let selector = task.parse().unwrap();
                assert!(
                    loaded.config.task_map().resolve(Some(selector)).is_ok(),
                    "{} has no {task} head",
                    m.name
                );
            }
        }
        // every task has a best shipped model
        for task in ["sr2", "sr3", "sr4", "derain", "denoise30", "denoise50"] {
            let n = SHIPPED
                .iter()
                .filter(|m| m.best_for.contains(&task))
                .count();
            assert_eq!(n, 1, "{task}");
        }
    }
}
