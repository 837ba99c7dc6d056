//! Experiment configuration: the TOML files under `configs/`, read into [`ExperimentConfig`]
//! (the serde schema, [`schema`]), checked per section ([`check`]), with its paths typed and
//! expanded ([`paths`]). What a run is built from is resolved once, in [`crate::plan`].
//!
//! Every section and every key has a default (documented on the field): the defaults are the
//! paper's pre-training recipe (base model, batch 64, ImageNet schedule) on the embedded
//! procedural data. A config must say at least one thing, though: an empty file (or one with only
//! comments) is refused, because silently starting the full recipe — a 119 M-parameter model at
//! batch 64 — is never what a user meant.
//! Unknown keys are errors (`deny_unknown_fields`); parse errors name the file, the key path and
//! the line. Relative paths are relative to the current directory (run commands from the
//! repository root).
//!
//! ```toml
//! name = "demo"
//! [model]
//! preset = "tiny"
//! [tasks]
//! names = ["sr2", "denoise30"]
//! [data]
//! source = "embedded"
//! [optim]
//! batch_size = 8
//! steps = 300
//! ```

mod check;
pub mod paths;
pub mod schema;

use std::path::{Path, PathBuf};

pub use check::{check_command, MAX_THREADS};
pub use paths::{ConfigPaths, DataRoots, NamedPath};
pub use schema::*;

/// Errors from reading or checking a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax error or a key with a wrong name, type or value.
    #[error("{path}:{line}:{column}: {}{message}", key_prefix(key))]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Dotted key path (`.` when the error is not inside a key).
        key: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but cannot work (e.g. weights that do not match the tasks).
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The config file (or `<inline>`).
        path: PathBuf,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A folder or file named by the config exists but is of the other kind (a file where a
    /// folder is expected, or the reverse, or a pipe or device).
    #[error("{path}: key `{key}`: {what} {found} is not a {expected}; change `{key}`")]
    WrongKind {
        /// The config file.
        path: PathBuf,
        /// Dotted key path to change.
        key: String,
        /// What the path should hold.
        what: String,
        /// The path found.
        found: PathBuf,
        /// "folder" or "file".
        expected: &'static str,
    },
    /// A folder or file named by the config does not exist.
    #[error("{path}: key `{key}`: {what} {missing} does not exist; change `{key}` or put the data there")]
    MissingPath {
        /// The config file.
        path: PathBuf,
        /// Dotted key path to change.
        key: String,
        /// What the path should hold.
        what: String,
        /// The missing path.
        missing: PathBuf,
    },
}

/// Whether the run pre-trains (all tasks, contrastive on) or fine-tunes one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ipt pretrain`.
    Pretrain,
    /// `ipt finetune`.
    Finetune,
}

/// `key `k`: ` before a parse error's message, nothing for a syntax error outside any key.
fn key_prefix(key: &str) -> String {
    if key == "." || key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

impl ExperimentConfig {
    /// Parse TOML text; `path` is only used in error messages. A text without any key is
    /// refused.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        if toml::from_str::<toml::Table>(text).is_ok_and(|t| t.is_empty()) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: ".".into(),
                message: "the config is empty; without any key it would mean the paper's full \
                          recipe (base model, batch 64, ImageNet schedule). Start from \
                          configs/demo.toml or configs/imagenet.toml"
                    .into(),
            });
        }
        let defined = defined_tasks(text, path)?;
        let cfg: Self = ipt_degrade::task::with_defined(&defined, || parse_toml(text, path))?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Read and parse a config file; the run name defaults to the file stem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::from_toml_str(&text, path)?;
        if cfg.name.is_none() {
            cfg.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(cfg)
    }

    /// The resolved config as TOML (every default written out).
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of numbers, strings, paths and tables cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }

    /// The run name (`name`, else `"run"`).
    pub fn run_name(&self) -> &str {
        self.name.as_deref().unwrap_or("run")
    }
}

/// Deserializes `T` from TOML text, errors naming the key and its line.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or((0, 0));
        ConfigError::Parse {
            path: path.to_path_buf(),
            key,
            line,
            column,
            message: inner.message().trim().to_string(),
        }
    })
}

/// The tasks a TOML file defines in `[[tasks.define]]` (a config, or a file of recipes such as
/// `configs/tasks.toml`), each checked; other keys are ignored. Errors name the file, the key
/// and its line.
pub fn read_task_definitions(path: &Path) -> Result<Vec<ipt_degrade::Task>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    defined_tasks(&text, path)
}

/// The tasks of `[[tasks.define]]`, checked, so that the full parse can name them: read first
/// and on their own (the rest of the text is parsed afterwards).
fn defined_tasks(text: &str, path: &Path) -> Result<Vec<ipt_degrade::Task>, ConfigError> {
    #[derive(serde::Deserialize, Default)]
    struct Only {
        #[serde(default)]
        tasks: Defines,
    }
    #[derive(serde::Deserialize, Default)]
    struct Defines {
        #[serde(default)]
        define: Vec<ipt_degrade::task::TaskDef>,
    }
    let only: Only = parse_toml(text, path)?;
    let mut tasks: Vec<ipt_degrade::Task> = Vec::new();
    for (i, def) in only.tasks.define.into_iter().enumerate() {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: format!("tasks.define[{i}]"),
            message,
        };
        if tasks.iter().any(|t| t.name() == def.name) {
            return Err(invalid(format!("task `{}` is defined twice", def.name)));
        }
        tasks.push(ipt_degrade::Task::define(def).map_err(|e| invalid(e.to_string()))?);
    }
    Ok(tasks)
}

/// 1-based (line, column) of byte offset `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
