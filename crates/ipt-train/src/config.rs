//! Experiment configuration: the TOML files under `configs/`.
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

use std::path::{Path, PathBuf};

use ipt_degrade::seed::derive_seed;
use ipt_degrade::Task;
use ipt_loss::ContrastiveVariant;
use ipt_loss::PretrainLoss;
use ipt_model::device::DeviceSpec;
use ipt_model::IptConfig;

use crate::data::{ImageSource, SourceError};
use crate::optim::{Clip, MultiStepLr};
use serde::{Deserialize, Serialize};

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
    #[error("{path}:{line}:{column}: key `{key}`: {message}")]
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

/// A whole experiment: model, tasks, data, optimisation, loss, checkpoints, validation, runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Run name; the run directory is `runs/<name>/`. Default: the config file's stem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Model preset and overrides.
    pub model: ModelSection,
    /// Tasks trained (one per batch) and their sampling weights.
    pub tasks: TasksSection,
    /// Where training images come from and how crops are made.
    pub data: DataSection,
    /// Optimiser, schedule, batch size and run length.
    pub optim: OptimSection,
    /// Loss weights.
    pub loss: LossSection,
    /// Checkpoint interval and retention.
    pub checkpoint: CheckpointSection,
    /// Periodic PSNR validation.
    pub validation: ValidationSection,
    /// Seed, device, precision, logging.
    pub runtime: RuntimeSection,
    /// Present only in fine-tune configs: the starting checkpoint and the task to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneSection>,
}

/// Model size preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPreset {
    /// [`IptConfig::tiny`]: a few-layer model for tests and the CPU demo.
    Tiny,
    /// [`IptConfig::small`]: the largest model a 2-core CPU trains usefully in half an hour.
    Small,
    /// [`IptConfig::base`]: the paper's model (12+12 layers, d = 576).
    Base,
}

/// `[model]`: a preset, and any of its architecture fields changed (the names and meanings of
/// [`IptConfig`]'s fields, the official `option.py` flags). The task heads and the task
/// embedding come from `[tasks]`, the input size from `data.patch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// `"tiny"`, `"small"` or `"base"`. Default `"base"`.
    pub preset: ModelPreset,
    /// Feature channels of heads and tails. Default: the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_feats: Option<usize>,
    /// Side of one token cut from the feature map. Default: the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_dim: Option<usize>,
    /// Attention heads (must divide n_feats·patch_dim²). Default: the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<usize>,
    /// Encoder layers, and also decoder layers. Default: the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
    /// Dropout probability. Default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// No `linear_encoding`, `mlp_head`, `query_embed` (official `--no_mlp`). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_mlp: Option<bool>,
    /// Position embedding added in every layer (official `--pos_every`). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos_every: Option<bool>,
    /// No position embedding (official `--no_pos`). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_pos: Option<bool>,
    /// No LayerNorm (official `--no_norm`). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_norm: Option<bool>,
    /// A bias on the attention output projections (PyTorch 1.5–1.8 checkpoints). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attn_out_bias: Option<bool>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            preset: ModelPreset::Base,
            n_feats: None,
            patch_dim: None,
            num_heads: None,
            num_layers: None,
            dropout: None,
            no_mlp: None,
            pos_every: None,
            no_pos: None,
            no_norm: None,
            attn_out_bias: None,
        }
    }
}

impl ModelSection {
    /// The network for `tasks` (one head, tail and query each, in this order, recorded in the
    /// config) on `patch`-pixel inputs: the preset, then the fields set here.
    pub fn network(&self, tasks: &[Task], patch: usize) -> IptConfig {
        let scales: Vec<usize> = tasks.iter().map(|t| t.scale()).collect();
        let base = match self.preset {
            ModelPreset::Tiny => IptConfig::tiny(&scales),
            ModelPreset::Small => IptConfig::small(&scales),
            ModelPreset::Base => IptConfig::base(&scales),
        };
        IptConfig {
            n_feats: self.n_feats.unwrap_or(base.n_feats),
            patch_size: patch,
            patch_dim: self.patch_dim.unwrap_or(base.patch_dim),
            num_heads: self.num_heads.unwrap_or(base.num_heads),
            num_layers: self.num_layers.unwrap_or(base.num_layers),
            dropout: self.dropout.unwrap_or(base.dropout),
            no_mlp: self.no_mlp.unwrap_or(base.no_mlp),
            pos_every: self.pos_every.unwrap_or(base.pos_every),
            no_pos: self.no_pos.unwrap_or(base.no_pos),
            no_norm: self.no_norm.unwrap_or(base.no_norm),
            attn_out_bias: self.attn_out_bias.unwrap_or(base.attn_out_bias),
            tasks: Some(tasks.to_vec()),
            ..base
        }
    }
}

/// `[tasks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksSection {
    /// Task names: `sr2`, `sr3`, `sr4`, `derain`, `denoise30`, `denoise50`. The model gets one
    /// head/tail/query per entry, in this order; list them in the official order (as the default
    /// does) so that head `i` is official task `i`. Default: all six.
    pub names: Vec<Task>,
    /// Relative sampling weight per task (same length as `names`). Default: uniform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
}

impl Default for TasksSection {
    fn default() -> Self {
        Self {
            names: Task::ALL.to_vec(),
            weights: None,
        }
    }
}

/// Kind of training data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSourceKind {
    /// The built-in seeded procedural image generator (no files needed).
    Embedded,
    /// Every image under `path`, recursively (jpg/jpeg/png/bmp/webp, any case; ImageNet's
    /// `train/<wnid>/*.JPEG` works as is). One crop per image per epoch (× `repeat`).
    Folder,
    /// A DIV2K-style folder of HR images (e.g. `DIV2K_train_HR`); LR is synthesised from the HR
    /// crops. Same reader as `folder`, meant for fine-tuning with `repeat` > 1.
    Div2k,
    /// A RainTrainL-style folder of pairs `norain-N.png` (clean) / `rain-N.png` (rainy), for
    /// derain fine-tuning.
    RainPairs,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// `"embedded"`, `"folder"`, `"div2k"` or `"rain_pairs"`. Default `"embedded"`.
    pub source: DataSourceKind,
    /// The image folder (required for every source but `embedded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Embedded source: number of distinct procedural training images. Default 4096.
    pub images: usize,
    /// Embedded source: side of each procedural image in pixels (must be ≥ the largest HR crop,
    /// 48·4 = 192 with SR×4). Default 200.
    pub image_size: usize,
    /// Crops taken from each image per epoch. Default 1 (ImageNet style); use more for DIV2K.
    pub repeat: usize,
    /// Crops cut from one decoded image: the epoch order keeps this many of an image's
    /// `repeat` items next to each other, and a worker decodes the image once for them
    /// (decoding dominates the data pipeline). Must divide `repeat`. Default 1.
    pub crops_per_image: usize,
    /// Optional folder of RainTrainL `rainstreak-*.png` layers used for the derain task in
    /// pre-training. Default: ipt-degrade's procedural (non-official) streaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rain_streaks: Option<PathBuf>,
    /// Random flips and transposes of each crop. Default: off for pre-training (as the official
    /// code), on for fine-tuning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<bool>,
    /// LR patch side (the model's input size). Default 48.
    pub patch: usize,
    /// Decoding/synthesis worker threads. Default 2.
    pub workers: usize,
    /// Batches prepared ahead of the training step (bounded queue). Default 4.
    pub queue: usize,
    /// Stop with an error when more than this fraction of the files read so far was unreadable
    /// (checked once more than `bad_file_grace` files failed). Default 0.01.
    pub max_bad_fraction: f64,
    /// Number of unreadable files always tolerated before `max_bad_fraction` applies. Default 10.
    pub bad_file_grace: usize,
    /// What to do with an image smaller than a task's HR crop: `"skip"` it (the default) or
    /// `"resize"` it up (MATLAB bicubic, aspect kept) until its short side equals the crop.
    pub small_images: SmallImages,
    /// Train on this fraction of the source's images, in (0, 1]: the files of smallest
    /// `ipt_degrade::seed::name_rank(data.fraction_seed, file name)`, so subsets for growing
    /// fractions are nested. Default 1.
    pub fraction: f64,
    /// The seed of `data.fraction`'s order. Default 0.
    pub fraction_seed: u64,
}

/// `data.small_images`: the policy for an image smaller than the HR crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmallImages {
    /// Skip the item and take the next one of the epoch order (counted).
    #[default]
    Skip,
    /// Enlarge the image with bicubic interpolation until its short side equals the crop
    /// (counted), then crop as usual.
    Resize,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            source: DataSourceKind::Embedded,
            path: None,
            images: 4096,
            image_size: 200,
            repeat: 1,
            crops_per_image: 1,
            rain_streaks: None,
            augment: None,
            patch: 48,
            workers: 2,
            queue: 4,
            max_bad_fraction: 0.01,
            bad_file_grace: 10,
            small_images: SmallImages::Skip,
            fraction: 1.0,
            fraction_seed: 0,
        }
    }
}

/// Gradient clipping mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipMode {
    /// Each gradient tensor scaled to norm ≤ `clip_norm` on its own (MindSpore `ClipByNorm`,
    /// the official setting).
    PerTensor,
    /// All gradients scaled together so the global norm is ≤ `clip_norm` (PyTorch
    /// `clip_grad_norm_`).
    Global,
    /// No clipping.
    None,
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimSection {
    /// Batch size per process (per GPU). Default 64 (the official per-device batch).
    pub batch_size: usize,
    /// Initial learning rate of Adam (β = 0.9/0.999, ε = 1e-8). Default 5e-5.
    pub lr: f64,
    /// Epochs at which the learning rate is multiplied by `gamma`. Default `[200]`.
    pub milestones: Vec<usize>,
    /// Steps at which the learning rate is multiplied by `gamma` (in addition to
    /// `milestones`). Default `[]`.
    pub milestone_steps: Vec<usize>,
    /// Learning-rate decay factor per milestone. Default 0.5.
    pub gamma: f64,
    /// Run length in epochs (ignored when `steps` is set). Default 300.
    pub epochs: usize,
    /// Run length in optimizer steps; overrides `epochs`. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// `"per_tensor"` (official), `"global"` or `"none"`. Default `"per_tensor"`.
    pub clip: ClipMode,
    /// Clipping threshold. Default 1.0.
    pub clip_norm: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            batch_size: 64,
            lr: 5e-5,
            milestones: vec![200],
            milestone_steps: Vec::new(),
            gamma: 0.5,
            epochs: 300,
            steps: None,
            clip: ClipMode::PerTensor,
            clip_norm: 1.0,
        }
    }
}

/// `[loss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossSection {
    /// Weight λ of the contrastive term. Default 0.1 for pre-training and 0 (off) for
    /// fine-tuning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// Temperature τ. Default 0.07.
    pub tau: f64,
    /// `"supcon"` (official code) or `"paper_eq5"`. Default `"supcon"`.
    pub variant: ContrastiveVariant,
    /// Row chunk for the (256·B)² logit matrix, to bound memory. Default: ipt-loss's default
    /// (`PretrainLoss::default().chunk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<usize>,
}

impl Default for LossSection {
    fn default() -> Self {
        Self {
            lambda: None,
            tau: 0.07,
            variant: ContrastiveVariant::SupCon,
            chunk: None,
        }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointSection {
    /// Write a checkpoint every this many steps (and always at the end). Default 1000.
    pub every: usize,
    /// Number of checkpoints kept; older ones are deleted. Default 3.
    pub keep_last: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every: 1000,
            keep_last: 3,
        }
    }
}

/// `[validation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationSection {
    /// Validate every this many steps (and at step 0 and at the end); 0 disables. Default 1000.
    pub every: usize,
    /// Number of held-out images per task. Default 4.
    pub images: usize,
    /// Input size: an LR side in pixels (images are centre crops of `size·scale`, or
    /// procedural images of that size), or `"whole"`: each image of `path` whole, degraded by
    /// the benchmark protocol of its task (SR: mod-crop, MATLAB bicubic ↓s; denoising: the
    /// seeded benchmark noise). Default 48.
    pub size: ValidationSize,
    /// Folder of HR validation images, e.g. `"${IPT_DATA}/Set5"` (see [`DataRoots`]).
    /// Default: held-out procedural images that never appear in training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl Default for ValidationSection {
    fn default() -> Self {
        Self {
            every: 1000,
            images: 4,
            size: ValidationSize::Crop(48),
            path: None,
        }
    }
}

/// `validation.size`: an LR side in pixels, or `"whole"` images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValidationSize {
    /// Square crops (procedural images of this side, or centre crops of `side·scale`).
    Crop(usize),
    /// Whole images with the benchmark protocols (needs `validation.path`).
    Whole(WholeImages),
}

/// The word `"whole"` of [`ValidationSize::Whole`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WholeImages {
    /// Whole images.
    Whole,
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// Seed of everything random (init, data order, crops, degradations). Default 0.
    pub seed: u64,
    /// `"auto"` (CUDA when present), `"cpu"`, `"cuda"` or `"cuda:N"`. Default `"auto"`.
    pub device: DeviceSpec,
    /// bf16 autocast for the forward pass on CUDA (ignored on CPU). Default false.
    pub bf16: bool,
    /// libtorch intra-op threads. Default: libtorch's choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Write a `metrics.jsonl` row every this many steps. Default 10.
    pub log_every: usize,
    /// Stop (after a checkpoint) when this many consecutive steps had a NaN/Inf loss.
    /// Default 20.
    pub max_nonfinite_in_row: usize,
    /// Data-parallel jobs: seconds any collective may wait for the other ranks before failing
    /// (a lost rank is usually noticed at once; a hung one after this long). It must exceed
    /// rank 0's validation and checkpoint writing, which the other ranks wait for. Default 300.
    pub collective_timeout_s: u64,
    /// Data-parallel jobs: check every this many steps that all ranks hold bit-identical
    /// weights (0: only at checkpoints). Default 0.
    pub check_replicas_every: usize,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            seed: 0,
            device: DeviceSpec::Auto,
            bf16: false,
            threads: None,
            log_every: 10,
            max_nonfinite_in_row: 20,
            collective_timeout_s: 300,
            check_replicas_every: 0,
        }
    }
}

/// `[finetune]`: what turns a config into a fine-tune config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    /// The task to fine-tune (its head, tail and query row are kept).
    pub task: Task,
    /// The pre-trained checkpoint: ours (`.safetensors`) or an official `.pt`.
    pub from: PathBuf,
    /// Task list of the starting checkpoint, in head order. Default: the six official tasks
    /// when it has 6 queries, or just `task` when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_tasks: Option<Vec<Task>>,
}

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

/// Whether the run pre-trains (all tasks, contrastive on) or fine-tunes one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ipt pretrain`.
    Pretrain,
    /// `ipt finetune`.
    Finetune,
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
        let de = toml::Deserializer::new(text);
        let cfg: Self = serde_path_to_error::deserialize(de).map_err(|e| {
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
        })?;
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

    /// The contrastive weight λ for `mode`.
    pub fn lambda(&self, mode: Mode) -> f64 {
        self.loss.lambda.unwrap_or(match mode {
            Mode::Pretrain => 0.1,
            Mode::Finetune => 0.0,
        })
    }

    /// Whether crops are flipped/transposed in `mode`.
    pub fn augment(&self, mode: Mode) -> bool {
        self.data.augment.unwrap_or(mode == Mode::Finetune)
    }

    /// The tasks the model is built with, in head order: `[tasks]` for pre-training, the single
    /// fine-tune task otherwise.
    pub fn model_tasks(&self, mode: Mode) -> Vec<Task> {
        match (mode, &self.finetune) {
            (Mode::Finetune, Some(ft)) => vec![ft.task],
            _ => self.tasks.names.clone(),
        }
    }

    /// Sampling weights aligned with [`ExperimentConfig::model_tasks`].
    pub fn task_weights(&self, mode: Mode) -> Vec<f64> {
        match (mode, &self.finetune, &self.tasks.weights) {
            (Mode::Finetune, Some(_), _) => vec![1.0],
            (_, _, Some(w)) => w.clone(),
            _ => vec![1.0; self.tasks.names.len()],
        }
    }

    /// Static checks that need no file system.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if self.tasks.names.is_empty() {
            return Err(bad("tasks.names", "at least one task is needed".into()));
        }
        for (i, t) in self.tasks.names.iter().enumerate() {
            if self.tasks.names[..i].contains(t) {
                return Err(bad(
                    "tasks.names",
                    format!("task `{}` listed twice", t.name()),
                ));
            }
        }
        if let Some(w) = &self.tasks.weights {
            if w.len() != self.tasks.names.len() {
                return Err(bad(
                    "tasks.weights",
                    format!("{} weights for {} tasks", w.len(), self.tasks.names.len()),
                ));
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                return Err(bad(
                    "tasks.weights",
                    "weights must be finite, non-negative and not all zero".into(),
                ));
            }
        }
        let d = &self.data;
        if d.source != DataSourceKind::Embedded && d.path.is_none() {
            return Err(bad(
                "data.path",
                format!("data source `{:?}` needs a folder", d.source).to_lowercase(),
            ));
        }
        if d.patch == 0 || d.workers == 0 || d.queue == 0 || d.repeat == 0 {
            return Err(bad(
                "data",
                "patch, workers, queue and repeat must be ≥ 1".into(),
            ));
        }
        if d.crops_per_image == 0 || !d.repeat.is_multiple_of(d.crops_per_image) {
            return Err(bad(
                "data.crops_per_image",
                format!(
                    "{} must be ≥ 1 and divide data.repeat ({})",
                    d.crops_per_image, d.repeat
                ),
            ));
        }
        if d.source == DataSourceKind::Embedded {
            let need = self
                .tasks
                .names
                .iter()
                .chain(self.finetune.as_ref().map(|f| &f.task))
                .map(|t| t.hr_patch(d.patch))
                .max()
                .unwrap_or(d.patch);
            if d.image_size < need {
                return Err(bad(
                    "data.image_size",
                    format!(
                        "{} is smaller than the largest HR crop {need}",
                        d.image_size
                    ),
                ));
            }
            if d.images == 0 {
                return Err(bad("data.images", "must be ≥ 1".into()));
            }
        }
        if !(0.0..=1.0).contains(&d.max_bad_fraction) {
            return Err(bad("data.max_bad_fraction", "must lie in [0, 1]".into()));
        }
        if !(d.fraction > 0.0 && d.fraction <= 1.0) {
            return Err(bad(
                "data.fraction",
                format!("{} must lie in (0, 1]", d.fraction),
            ));
        }
        let o = &self.optim;
        if o.batch_size == 0 {
            return Err(bad("optim.batch_size", "must be ≥ 1".into()));
        }
        if !o.lr.is_finite() || o.lr <= 0.0 {
            return Err(bad("optim.lr", "must be positive".into()));
        }
        if !o.gamma.is_finite() || o.gamma <= 0.0 {
            return Err(bad("optim.gamma", "must be positive".into()));
        }
        if o.steps == Some(0) || (o.steps.is_none() && o.epochs == 0) {
            return Err(bad(
                "optim.steps",
                "the run must have at least one step".into(),
            ));
        }
        if o.clip_norm.is_nan() || o.clip_norm <= 0.0 {
            return Err(bad("optim.clip_norm", "must be positive".into()));
        }
        if self.loss.tau.is_nan() || self.loss.tau <= 0.0 {
            return Err(bad("loss.tau", "must be positive".into()));
        }
        if self.checkpoint.every == 0 || self.checkpoint.keep_last == 0 {
            return Err(bad(
                "checkpoint",
                "`every` and `keep_last` must be ≥ 1".into(),
            ));
        }
        if self.runtime.log_every == 0 {
            return Err(bad("runtime.log_every", "must be ≥ 1".into()));
        }
        if self.runtime.collective_timeout_s == 0 {
            return Err(bad("runtime.collective_timeout_s", "must be ≥ 1".into()));
        }
        match self.validation.size {
            ValidationSize::Whole(_) if self.validation.path.is_none() => {
                return Err(bad(
                    "validation.size",
                    "\"whole\" needs validation.path (a folder of test images)".into(),
                ));
            }
            ValidationSize::Crop(0) => {
                return Err(bad("validation.size", "must be ≥ 1 or \"whole\"".into()));
            }
            _ => {}
        }
        if d.source == DataSourceKind::RainPairs
            && self.finetune.as_ref().map(|f| f.task) != Some(Task::Derain)
        {
            return Err(bad(
                "data.source",
                "`rain_pairs` is only for fine-tuning the derain task".into(),
            ));
        }
        Ok(())
    }

    /// Every folder or file the config names, with its key and what it should hold, roots
    /// expanded ([`DataRoots`]).
    pub fn paths(&self, roots: &DataRoots, file: &Path) -> Result<Vec<NamedPath>, ConfigError> {
        let mut out = Vec::new();
        let mut add = |key: &'static str, what: &'static str, p: &Path, dir: bool| {
            let resolved = roots.expand(p).map_err(|message| ConfigError::Invalid {
                path: file.to_path_buf(),
                key: key.to_string(),
                message,
            })?;
            out.push(NamedPath {
                key,
                what,
                path: resolved,
                dir,
            });
            Ok::<(), ConfigError>(())
        };
        if let Some(p) = &self.data.path {
            if self.data.source != DataSourceKind::Embedded {
                let what = match self.data.source {
                    DataSourceKind::RainPairs => "rain-pair folder",
                    DataSourceKind::Div2k => "DIV2K-style HR folder",
                    _ => "training image folder",
                };
                add("data.path", what, p, true)?;
            }
        }
        if let Some(p) = &self.data.rain_streaks {
            add("data.rain_streaks", "rain-streak folder", p, true)?;
        }
        if let Some(p) = &self.validation.path {
            add("validation.path", "validation image folder", p, true)?;
        }
        if let Some(ft) = &self.finetune {
            add("finetune.from", "pre-trained checkpoint", &ft.from, false)?;
        }
        Ok(out)
    }

    /// The path under `key` (one of [`ExperimentConfig::paths`]), roots expanded.
    pub fn path_of(
        &self,
        key: &str,
        roots: &DataRoots,
        file: &Path,
    ) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self
            .paths(roots, file)?
            .into_iter()
            .find(|p| p.key == key)
            .map(|p| p.path))
    }

    /// Check that every folder/file the config names exists. Call before building the model so
    /// a wrong path fails at once.
    pub fn check_paths(&self, roots: &DataRoots, file: &Path) -> Result<(), ConfigError> {
        for p in self.paths(roots, file)? {
            let ok = if p.dir {
                p.path.is_dir()
            } else {
                p.path.is_file()
            };
            if !ok {
                return Err(ConfigError::MissingPath {
                    path: file.to_path_buf(),
                    key: p.key.to_string(),
                    what: p.what.to_string(),
                    missing: p.path,
                });
            }
        }
        Ok(())
    }
}

/// Seed domain of the embedded training images.
const TAG_TRAIN_IMAGES: u64 = 0x1111;

/// What the run is built from: the rules that turn the config into the model, the data source,
/// the schedule, the clipping and the loss.
impl ExperimentConfig {
    /// The network of a pre-training run ([`ModelSection::network`] for `[tasks]` on
    /// `data.patch`-pixel inputs), checked.
    pub fn network(&self, file: &Path) -> Result<IptConfig, ConfigError> {
        let cfg = self
            .model
            .network(&self.model_tasks(Mode::Pretrain), self.data.patch);
        cfg.validate().map_err(|e| ConfigError::Invalid {
            path: file.to_path_buf(),
            key: "model".into(),
            message: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// The training images named by `[data]` (folders are listed now, so a wrong or empty
    /// folder fails before anything expensive).
    pub fn data_source(
        &self,
        roots: &DataRoots,
        file: &Path,
    ) -> Result<ImageSource, DataSourceError> {
        let d = &self.data;
        let folder = || -> Result<PathBuf, ConfigError> {
            Ok(self.path_of("data.path", roots, file)?.unwrap_or_default())
        };
        let all = match d.source {
            DataSourceKind::Embedded => ImageSource::embedded(
                derive_seed(self.runtime.seed, &[TAG_TRAIN_IMAGES]),
                d.images,
                d.image_size,
            ),
            DataSourceKind::Folder | DataSourceKind::Div2k => ImageSource::folder(&folder()?)?,
            DataSourceKind::RainPairs => ImageSource::rain_pairs(&folder()?)?,
        };
        Ok(all.keep_fraction(d.fraction, d.fraction_seed))
    }

    /// The learning-rate schedule, with epoch milestones converted at `batches_per_epoch`.
    pub fn schedule(&self, batches_per_epoch: u64) -> MultiStepLr {
        let o = &self.optim;
        MultiStepLr {
            base: o.lr,
            gamma: o.gamma,
            milestones: o
                .milestones
                .iter()
                .map(|&e| e as u64 * batches_per_epoch)
                .chain(o.milestone_steps.iter().map(|&s| s as u64))
                .collect(),
        }
    }

    /// Planned optimizer steps: `optim.steps`, else `optim.epochs` epochs.
    pub fn total_steps(&self, batches_per_epoch: u64) -> u64 {
        self.optim
            .steps
            .map_or(self.optim.epochs as u64 * batches_per_epoch, |s| s as u64)
    }

    /// The gradient clipping of `[optim]`.
    pub fn clip(&self) -> Clip {
        match self.optim.clip {
            ClipMode::PerTensor => Clip::PerTensor(self.optim.clip_norm),
            ClipMode::Global => Clip::Global(self.optim.clip_norm),
            ClipMode::None => Clip::None,
        }
    }

    /// The loss of `[loss]` in `mode` (λ = 0 when fine-tuning unless set).
    pub fn loss(&self, mode: Mode) -> PretrainLoss {
        PretrainLoss {
            lambda: self.lambda(mode),
            tau: self.loss.tau,
            variant: self.loss.variant,
            chunk: self.loss.chunk.or(PretrainLoss::default().chunk),
        }
    }

    /// The parts of a config that must not change when a run is resumed, by name.
    pub fn fingerprint(&self) -> Vec<(&'static str, String)> {
        let d = &self.data;
        vec![
            ("[model]", format!("{:?}", self.model)),
            ("[tasks]", format!("{:?}", self.tasks)),
            ("[finetune]", format!("{:?}", self.finetune)),
            (
                "[data]",
                format!(
                    "{:?} {:?} {} {} {} {} {:?} {} {:?}",
                    d.source,
                    d.path,
                    d.images,
                    d.image_size,
                    d.repeat,
                    d.crops_per_image,
                    d.rain_streaks,
                    d.patch,
                    d.augment
                ),
            ),
            ("optim.batch_size", self.optim.batch_size.to_string()),
            ("runtime.seed", self.runtime.seed.to_string()),
        ]
    }
}

/// Errors of turning `[data]` into its image source.
#[derive(Debug, thiserror::Error)]
pub enum DataSourceError {
    /// A config problem (e.g. an unknown `${…}` root).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The folder cannot be listed or holds no usable files.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// A path named by a config (see [`ExperimentConfig::paths`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPath {
    /// The dotted key (`data.path`, …).
    pub key: &'static str,
    /// What it should hold, for messages.
    pub what: &'static str,
    /// The path, roots expanded.
    pub path: PathBuf,
    /// A folder (`true`) or a file.
    pub dir: bool,
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
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ExperimentConfig, ConfigError> {
        ExperimentConfig::from_toml_str(s, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_refused_and_the_defaults_are_the_paper_recipe() {
        for empty in ["", "# only a comment\n\n"] {
            let err = parse(empty).unwrap_err();
            assert!(err.to_string().contains("empty"), "{err}");
        }
        let c = parse("name = \"paper\"\n").unwrap();
        assert_eq!(c.model.preset, ModelPreset::Base);
        assert_eq!(c.optim.batch_size, 64);
        assert_eq!(c.optim.lr, 5e-5);
        assert_eq!(c.optim.milestones, vec![200]);
        assert_eq!(c.optim.gamma, 0.5);
        assert_eq!(c.optim.epochs, 300);
        assert_eq!(c.loss.tau, 0.07);
        assert_eq!(c.lambda(Mode::Pretrain), 0.1);
        assert_eq!(c.lambda(Mode::Finetune), 0.0);
        assert_eq!(c.tasks.names, Task::ALL.to_vec());
        assert_eq!(c.optim.clip, ClipMode::PerTensor);
        assert!(!c.augment(Mode::Pretrain));
        assert!(c.augment(Mode::Finetune));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[optim]\nlr = 1e-4\nbatchsize = 3\n").unwrap_err();
        let msg = err.to_string();
        match err {
            ConfigError::Parse { line, key, .. } => {
                assert_eq!(line, 3, "{msg}");
                assert!(key.starts_with("optim"), "{msg}");
            }
            other => panic!("unexpected {other}"),
        }
        assert!(msg.contains("batchsize"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse("\n[data]\nworkers = \"two\"\n").unwrap_err();
        let msg = err.to_string();
        match err {
            ConfigError::Parse { line, key, .. } => {
                assert_eq!(line, 3, "{msg}");
                assert_eq!(key, "data.workers", "{msg}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn unknown_task_is_an_error() {
        let err = parse("[tasks]\nnames = [\"sr5\"]\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 2, .. }), "{err}");
    }

    #[test]
    fn weights_must_match_tasks() {
        let err = parse("[tasks]\nnames = [\"sr2\"]\nweights = [1.0, 2.0]\n").unwrap_err();
        assert!(err.to_string().contains("tasks.weights"), "{err}");
    }

    #[test]
    fn folder_source_needs_a_path_and_missing_path_fails() {
        let err = parse("[data]\nsource = \"folder\"\n").unwrap_err();
        assert!(err.to_string().contains("data.path"), "{err}");
        let c = parse("[data]\nsource = \"folder\"\npath = \"/nonexistent/imagenet\"\n").unwrap();
        let err = c
            .check_paths(&DataRoots::default(), Path::new("x.toml"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/imagenet") && msg.contains("data.path"),
            "{msg}"
        );
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = parse(
            "name = \"x\"\n[model]\npreset = \"tiny\"\nnum_layers = 2\n\
             [tasks]\nnames = [\"sr2\", \"denoise30\"]\nweights = [1.0, 3.0]\n\
             [finetune]\ntask = \"sr2\"\nfrom = \"a.safetensors\"\n",
        )
        .unwrap();
        let text = c.to_toml();
        let back = parse(&text).unwrap();
        assert_eq!(c, back, "{text}");
    }

    #[test]
    fn model_fields_override_the_preset_and_tasks_are_recorded() {
        let c = parse(
            "[model]\npreset = \"small\"\nnum_layers = 3\n[tasks]\nnames = [\"sr3\", \"denoise30\", \"denoise50\"]\n[data]\npatch = 24\n",
        )
        .unwrap();
        let net = c.network(Path::new("t.toml")).unwrap();
        let small = IptConfig::small(&[3, 1, 1]);
        assert_eq!(net.num_layers, 3);
        assert_eq!(
            (net.n_feats, net.patch_dim),
            (small.n_feats, small.patch_dim)
        );
        assert_eq!(net.patch_size, 24);
        assert_eq!(net.scales, vec![3, 1, 1]);
        assert_eq!(
            net.tasks,
            Some(vec![Task::Sr3, Task::Denoise30, Task::Denoise50])
        );
        // Denoise 30 and 50 share scale 1: the recorded tasks tell them apart.
        assert_eq!(net.task_map().index_of(Task::Denoise50), Some(2));
        let err = parse("[model]\nnum_layer = 3\n").unwrap_err();
        assert!(err.to_string().contains("num_layer"), "{err}");
        let err = parse("[runtime]\ndevice = \"tpu\"\n").unwrap_err();
        assert!(err.to_string().contains("runtime.device"), "{err}");
    }

    #[test]
    fn data_roots_expand_only_known_prefixes() {
        let roots = DataRoots {
            bench: PathBuf::from("/b"),
            train: PathBuf::from("t"),
        };
        assert_eq!(
            roots.expand(Path::new("${IPT_DATA}/Set5")).unwrap(),
            PathBuf::from("/b/Set5")
        );
        assert_eq!(
            roots.expand(Path::new("${IPT_TRAIN_DATA}")).unwrap(),
            PathBuf::from("t")
        );
        assert_eq!(
            roots.expand(Path::new("data/x")).unwrap(),
            PathBuf::from("data/x")
        );
        assert!(roots
            .expand(Path::new("${HOME}/x"))
            .unwrap_err()
            .contains("HOME"));
        let c = parse("[validation]\npath = \"${NOPE}/Set5\"\n").unwrap();
        let err = c.check_paths(&roots, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("validation.path"), "{err}");
        let c = parse("[validation]\npath = \"${IPT_DATA}/Set5\"\nsize = \"whole\"\n").unwrap();
        assert_eq!(c.validation.size, ValidationSize::Whole(WholeImages::Whole));
        let err = c.check_paths(&roots, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("/b/Set5"), "{err}");
        assert!(parse("[validation]\nsize = \"whole\"\n").is_err());
    }

    #[test]
    fn other_ipt_roots_come_from_the_environment() {
        let roots = DataRoots {
            bench: PathBuf::from("/b"),
            train: PathBuf::from("t"),
        };
        // A variable no other test reads.
        std::env::set_var("IPT_TEST_ROOT_SET", "/imagenet");
        assert_eq!(
            roots.expand(Path::new("${IPT_TEST_ROOT_SET}/a")).unwrap(),
            PathBuf::from("/imagenet/a")
        );
        let err = roots
            .expand(Path::new("${IPT_TEST_ROOT_UNSET}/a"))
            .unwrap_err();
        assert!(err.contains("IPT_TEST_ROOT_UNSET is not set"), "{err}");
    }

    #[test]
    fn data_fraction_must_lie_in_the_unit_interval() {
        for bad in ["0.0", "-0.5", "1.5", "nan"] {
            let err = parse(&format!("[data]\nfraction = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("data.fraction"), "{bad}: {err}");
        }
        let c = parse("[data]\nfraction = 0.25\nsmall_images = \"resize\"\n").unwrap();
        assert_eq!(c.data.fraction, 0.25);
        assert_eq!(c.data.small_images, SmallImages::Resize);
        assert!(parse("[data]\nsmall_images = \"stretch\"\n").is_err());
    }

    #[test]
    fn small_embedded_images_are_rejected() {
        let err = parse("[data]\nimage_size = 100\n").unwrap_err();
        assert!(err.to_string().contains("192"), "{err}");
    }
}
