//! Paths named by a config: the data roots (`${IPT_DATA}`, `${IPT_TRAIN_DATA}`, other
//! `${IPT_*}` variables) and [`ConfigPaths`], every path of a config as a typed field with its
//! roots expanded, plus the check that each exists (before anything expensive is built).

use std::path::{Path, PathBuf};

use super::{ConfigError, DataSourceKind, ExperimentConfig};

/// The data roots that paths in a config may start from: `${IPT_DATA}` (the benchmark sets:
/// `--data-root`, else the `IPT_DATA` environment variable, else `data/benchmark`) and
/// `${IPT_TRAIN_DATA}` (training images: `--train-data`, else `IPT_TRAIN_DATA`, else
/// `data/train`). Any other `${IPT_…}` stands for the environment variable of that name (an
/// error when unset, e.g. `${IPT_IMAGENET}`). Other paths are relative to the working
/// directory, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoots {
    /// What `${IPT_DATA}` stands for.
    pub bench: PathBuf,
    /// What `${IPT_TRAIN_DATA}` stands for.
    pub train: PathBuf,
}

impl DataRoots {
    /// The roots from the optional command-line flags, the environment and the defaults.
    pub fn resolve(bench_flag: Option<&Path>, train_flag: Option<&Path>) -> Self {
        DataRoots {
            bench: ipt_eval::data_root::resolve_data_root(bench_flag).path,
            train: ipt_eval::data_root::resolve_train_root(train_flag).path,
        }
    }

    /// `path` with a leading `${IPT_DATA}` or `${IPT_TRAIN_DATA}` replaced by its root;
    /// `Err` names an unknown `${…}`.
    pub fn expand(&self, path: &Path) -> Result<PathBuf, String> {
        let text = path.to_string_lossy();
        let Some(rest) = text.strip_prefix("${") else {
            return Ok(path.to_path_buf());
        };
        let (name, tail) = rest
            .split_once('}')
            .ok_or_else(|| format!("`{text}`: unclosed `${{`"))?;
        let from_env;
        let root = match name {
            "IPT_DATA" => &self.bench,
            "IPT_TRAIN_DATA" => &self.train,
            other if other.starts_with("IPT_") => match std::env::var_os(other) {
                Some(v) if !v.is_empty() => {
                    from_env = PathBuf::from(v);
                    &from_env
                }
                _ => {
                    return Err(format!(
                        "`{text}`: the environment variable {other} is not set (it names a data root)"
                    ))
                }
            },
            other => {
                return Err(format!(
                "`{text}`: unknown root `${{{other}}}` (known: ${{IPT_DATA}}, ${{IPT_TRAIN_DATA}}, or any set IPT_* environment variable)"
            ))
            }
        };
        Ok(root.join(tail.trim_start_matches(['/', '\\'])))
    }
}

impl Default for DataRoots {
    fn default() -> Self {
        Self::resolve(None, None)
    }
}

/// A path named by a config, roots expanded, with the key to change and what it should hold
/// (both only for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPath {
    /// The dotted key (`data.path`, …), for messages.
    pub key: &'static str,
    /// What it should hold, for messages.
    pub what: &'static str,
    /// The path, roots expanded.
    pub path: PathBuf,
    /// A folder (`true`) or a file.
    pub dir: bool,
}

/// Every folder or file a config names, one typed field each, roots expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigPaths {
    /// `data.path`: the training images (every source but `embedded`).
    pub data: Option<NamedPath>,
    /// `data.rain_streaks`: a folder of RainTrainL streak layers.
    pub rain_streaks: Option<NamedPath>,
    /// `validation.path`: a folder of HR validation images.
    pub validation: Option<NamedPath>,
    /// `finetune.from`: the pre-trained checkpoint.
    pub finetune_from: Option<NamedPath>,
}

impl ConfigPaths {
    /// The paths of `cfg` with `roots` expanded; `file` (the config) is named in errors.
    pub fn resolve(
        cfg: &ExperimentConfig,
        roots: &DataRoots,
        file: &Path,
    ) -> Result<Self, ConfigError> {
        let named = |key: &'static str, what: &'static str, p: &Path, dir: bool| {
            let path = roots.expand(p).map_err(|message| ConfigError::Invalid {
                path: file.to_path_buf(),
                key: key.to_string(),
                message,
            })?;
            Ok::<_, ConfigError>(NamedPath {
                key,
                what,
                path,
                dir,
            })
        };
        let data_what = match cfg.data.source {
            DataSourceKind::Embedded => None,
            DataSourceKind::RainPairs => Some("rain-pair folder"),
            DataSourceKind::Div2k => Some("DIV2K-style HR folder"),
            DataSourceKind::Folder => Some("training image folder"),
        };
        let data = match (&cfg.data.path, data_what) {
            (Some(p), Some(what)) => Some(named("data.path", what, p, true)?),
            _ => None,
        };
        let rain_streaks = match &cfg.data.rain_streaks {
            Some(p) => Some(named("data.rain_streaks", "rain-streak folder", p, true)?),
            None => None,
        };
        let validation = match &cfg.validation.path {
            Some(p) => Some(named(
                "validation.path",
                "validation image folder",
                p,
                true,
            )?),
            None => None,
        };
        let finetune_from = match &cfg.finetune {
            Some(ft) => Some(named(
                "finetune.from",
                "pre-trained checkpoint",
                &ft.from,
                false,
            )?),
            None => None,
        };
        Ok(ConfigPaths {
            data,
            rain_streaks,
            validation,
            finetune_from,
        })
    }

    /// Every path, in the order of the config's sections.
    pub fn all(&self) -> impl Iterator<Item = &NamedPath> {
        [
            &self.data,
            &self.rain_streaks,
            &self.validation,
            &self.finetune_from,
        ]
        .into_iter()
        .flatten()
    }

    /// Errors naming the first path that does not exist, or exists as the wrong kind (a folder
    /// where one is expected, else a regular file).
    pub fn check(&self, file: &Path) -> Result<(), ConfigError> {
        for p in self.all() {
            let ok = if p.dir {
                p.path.is_dir()
            } else {
                p.path.is_file()
            };
            if !ok && p.path.exists() {
                return Err(ConfigError::WrongKind {
                    path: file.to_path_buf(),
                    key: p.key.to_string(),
                    what: p.what.to_string(),
                    found: p.path.clone(),
                    expected: if p.dir { "folder" } else { "regular file" },
                });
            }
            if !ok {
                return Err(ConfigError::MissingPath {
                    path: file.to_path_buf(),
                    key: p.key.to_string(),
                    what: p.what.to_string(),
                    missing: p.path.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The path of an optional [`NamedPath`].
pub(crate) fn path(p: &Option<NamedPath>) -> Option<PathBuf> {
    p.as_ref().map(|p| p.path.clone())
}

impl ExperimentConfig {
    /// Check that every folder/file the config names exists ([`ConfigPaths::check`]). Call
    /// before building the model so a wrong path fails at once.
    pub fn check_paths(&self, roots: &DataRoots, file: &Path) -> Result<(), ConfigError> {
        ConfigPaths::resolve(self, roots, file)?.check(file)
    }
}
