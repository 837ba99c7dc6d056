//! Where the data lives.
//!
//! - Benchmark sets: the `--data-root` flag, else the `IPT_DATA` environment variable, else
//!   `data/benchmark` (relative to the working directory).
//! - Training images: the `--train-data` flag of `ipt pretrain|finetune`, else `IPT_TRAIN_DATA`,
//!   else `data/train`. Experiment configs name folders under either root as
//!   `${IPT_DATA}/Set5` or `${IPT_TRAIN_DATA}/T91` (see `ipt_train::config`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable that names the data root when no flag is given.
pub const DATA_ENV: &str = "IPT_DATA";

/// The data root used when neither the flag nor `IPT_DATA` is set (EDSR's `benchmark/` folder).
pub const DEFAULT_DATA_ROOT: &str = "data/benchmark";

/// Environment variable that names the training-data root when no flag is given.
pub const TRAIN_DATA_ENV: &str = "IPT_TRAIN_DATA";

/// The training-data root used when neither the flag nor `IPT_TRAIN_DATA` is set.
pub const DEFAULT_TRAIN_ROOT: &str = "data/train";

/// How the data root was chosen (reported in messages so users know which setting won).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// From `--data-root`.
    Flag,
    /// From the `IPT_DATA` environment variable.
    Env,
    /// The built-in default [`DEFAULT_DATA_ROOT`].
    Default,
}

impl fmt::Display for RootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootSource::Flag => "--data-root",
            RootSource::Env => DATA_ENV,
            RootSource::Default => "default",
        })
    }
}

/// A resolved data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    /// The folder that holds one sub-folder per set (`Set5/`, `B100/`, `Rain100L/`, ...).
    pub path: PathBuf,
    /// Which setting supplied it.
    pub source: RootSource,
}

/// Resolves the data root from the flag and the process environment.
pub fn resolve_data_root(flag: Option<&Path>) -> DataRoot {
    resolve_data_root_with(flag, std::env::var_os(DATA_ENV))
}

/// The training-data root: `flag`, else `IPT_TRAIN_DATA`, else [`DEFAULT_TRAIN_ROOT`] (the
/// returned source says which; its `Flag` means `--train-data`).
pub fn resolve_train_root(flag: Option<&Path>) -> DataRoot {
    resolve_with(flag, std::env::var_os(TRAIN_DATA_ENV), DEFAULT_TRAIN_ROOT)
}

/// Pure form of [`resolve_data_root`]: the flag wins, then a non-empty `env` value, then
/// [`DEFAULT_DATA_ROOT`].
pub fn resolve_data_root_with(flag: Option<&Path>, env: Option<OsString>) -> DataRoot {
    resolve_with(flag, env, DEFAULT_DATA_ROOT)
}

fn resolve_with(flag: Option<&Path>, env: Option<OsString>, default: &str) -> DataRoot {
    if let Some(path) = flag {
        return DataRoot {
            path: path.to_path_buf(),
            source: RootSource::Flag,
        };
    }
    match env {
        Some(value) if !value.is_empty() => DataRoot {
            path: PathBuf::from(value),
            source: RootSource::Env,
        },
        _ => DataRoot {
            path: PathBuf::from(default),
            source: RootSource::Default,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_env_beats_default() {
        let flag = Path::new("/flag");
        let env = Some(OsString::from("/env"));
        assert_eq!(
            resolve_data_root_with(Some(flag), env.clone()),
            DataRoot {
                path: "/flag".into(),
                source: RootSource::Flag
            }
        );
        assert_eq!(
            resolve_data_root_with(None, env),
            DataRoot {
                path: "/env".into(),
                source: RootSource::Env
            }
        );
        assert_eq!(
            resolve_data_root_with(None, None),
            DataRoot {
                path: DEFAULT_DATA_ROOT.into(),
                source: RootSource::Default
            }
        );
        // An empty IPT_DATA counts as unset.
        assert_eq!(
            resolve_data_root_with(None, Some(OsString::new())).source,
            RootSource::Default
        );
    }
}
