//! The serde schema of an experiment config: one struct per TOML section, each key with its
//! default (documented on the field). The defaults are the paper's pre-training recipe on the
//! embedded procedural data; λ and τ come from ipt-loss. Checks are in [`super::check`], paths in
//! [`super::paths`], and what a run is built from in [`crate::plan`].

use std::path::PathBuf;

use ipt_degrade::task::TaskDef;
use ipt_degrade::Task;
use ipt_loss::ContrastiveVariant;
use ipt_model::device::DeviceSpec;
use serde::{Deserialize, Serialize};

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
    /// [`ipt_model::IptConfig::tiny`]: a few-layer model for tests and the CPU demo.
    Tiny,
    /// [`ipt_model::IptConfig::small`]: the largest model a 2-core CPU trains usefully in half an hour.
    Small,
    /// [`ipt_model::IptConfig::base`]: the paper's model (12+12 layers, d = 576).
    Base,
}

/// `[model]`: a preset, and any of its architecture fields changed (the names and meanings of
/// [`ipt_model::IptConfig`]'s fields, the official `option.py` flags). The task heads and the task
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

/// `[tasks]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksSection {
    /// Task names: `sr2`, `sr3`, `sr4`, `derain`, `denoise30`, `denoise50`, or a task of
    /// [`define`](Self::define). The model gets one
    /// head/tail/query per entry, in this order; list them in the official order (as the default
    /// does) so that head `i` is official task `i`. Default: all six.
    pub names: Vec<Task>,
    /// Relative sampling weight per task (same length as `names`). Default: uniform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// New tasks (`[[tasks.define]]`: `name`, `scale`, `recipe`; see `ipt_degrade::recipe`),
    /// which `names`, `finetune.task` and `checkpoint.keep_best` may then name. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub define: Vec<TaskDef>,
}

impl Default for TasksSection {
    fn default() -> Self {
        Self {
            names: Task::OFFICIAL.to_vec(),
            weights: None,
            define: Vec::new(),
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

impl DataSourceKind {
    /// The name a config writes (`"rain_pairs"`, …).
    pub fn name(self) -> &'static str {
        match self {
            DataSourceKind::Embedded => "embedded",
            DataSourceKind::Folder => "folder",
            DataSourceKind::Div2k => "div2k",
            DataSourceKind::RainPairs => "rain_pairs",
        }
    }
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
    /// Optional folder of rain-streak layers used for the derain task in pre-training: its
    /// `rainstreak-*` images (RainTrainL), or every image when none has that name. Default: ipt-degrade's procedural (non-official) streaks.
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
    /// `"multistep"` (`gamma` at each milestone, the official recipe; default) or `"cosine"`
    /// (half a cosine from `lr` to `min_lr` over the steps after the warm-up).
    pub schedule: ScheduleKind,
    /// The floor of the cosine schedule. Default 0.
    pub min_lr: f64,
    /// Steps of linear warm-up before the schedule (BasicSR's `warmup_iter`). Default 0.
    pub warmup_steps: usize,
    /// `"step"` (default): the schedule moves every step; `"epoch"`: at each epoch's start.
    pub schedule_by: ScheduleUnit,
    /// Decay of an exponential moving average of the weights (0.999 in BasicSR's and HAT's
    /// recipes); when set, validation, `checkpoint.keep_best` and the exported model use the
    /// averaged weights. Default: unset (off, as the paper).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
}

/// `optim.schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `lr · gamma^(milestones passed)`.
    #[default]
    Multistep,
    /// Cosine annealing down to `min_lr`.
    Cosine,
}

/// `optim.schedule_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleUnit {
    /// Every optimizer step.
    #[default]
    Step,
    /// At the first step of each epoch.
    Epoch,
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
            schedule: ScheduleKind::Multistep,
            min_lr: 0.0,
            warmup_steps: 0,
            schedule_by: ScheduleUnit::Step,
            ema_decay: None,
        }
    }
}

/// `[loss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossSection {
    /// Weight λ of the contrastive term. Default: ipt-loss's `LAMBDA` (0.1) for pre-training,
    /// 0 (off) for fine-tuning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// Temperature τ. Default ipt-loss's (`TEMPERATURE`, 0.07).
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
            tau: ipt_loss::contrastive::TEMPERATURE,
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
    /// Also keep the weights that scored best so far on this task's validation PSNR-Y
    /// (`checkpoints/best.safetensors` + `best.json`, never deleted by `keep_last`), e.g.
    /// `"sr2"`. Needs validation. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_best: Option<Task>,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every: 1000,
            keep_last: 3,
            keep_best: None,
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
    /// Folder of HR validation images, e.g. `"${IPT_DATA}/Set5"` (see [`super::DataRoots`]).
    /// Default: held-out procedural images that never appear in training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Restored images written at each validation, per task
    /// (`validation/step-N/<task>/<name>.png`, as BasicSR's `save_img`); 0: none. Default 2.
    pub save_images: usize,
}

impl Default for ValidationSection {
    fn default() -> Self {
        Self {
            every: 1000,
            images: 4,
            size: ValidationSize::Crop(48),
            path: None,
            save_images: 2,
        }
    }
}

/// `validation.size`: an LR side in pixels, or `"whole"` images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ValidationSize {
    /// Square crops (procedural images of this side, or centre crops of `side·scale`).
    Crop(usize),
    /// Whole images with the benchmark protocols (needs `validation.path`).
    Whole(WholeImages),
}

impl<'de> Deserialize<'de> for ValidationSize {
    /// A non-negative integer or the word `"whole"`; anything else is an error that says so
    /// (serde's untagged enums only say "data did not match any variant").
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ValidationSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a crop side in pixels (e.g. 64) or \"whole\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ValidationSize, E> {
                usize::try_from(v)
                    .map(ValidationSize::Crop)
                    .map_err(|_| E::custom(format!("{v} pixels is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ValidationSize, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!(
                            "{v}: expected a crop side in pixels (e.g. 64) or \"whole\""
                        ))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ValidationSize, E> {
                match v {
                    "whole" => Ok(ValidationSize::Whole(WholeImages::Whole)),
                    other => Err(E::custom(format!(
                        "\"{other}\": expected a crop side in pixels (e.g. 64) or \"whole\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
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
    /// Write TensorBoard event files (`events.out.tfevents.*`) into the run directory: the
    /// training and validation scalars and the validation images. Default true.
    pub tensorboard: bool,
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
            tensorboard: true,
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
    /// Where the task's head, tail and query row start: a task of the checkpoint of the same
    /// scale (`"denoise30"`: a JPEG head from a denoising head) or `"random"`. Default: the
    /// task itself, which the checkpoint must then hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<HeadInit>,
}

/// Where a fine-tuned task's head, tail and query row start (`finetune.init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadInit {
    /// Copied from this task's head, tail and query row in the pre-trained checkpoint.
    Task(Task),
    /// Freshly initialised (the body alone is pre-trained).
    Random,
}

impl Serialize for HeadInit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HeadInit::Task(t) => t.serialize(s),
            HeadInit::Random => s.serialize_str("random"),
        }
    }
}

impl<'de> Deserialize<'de> for HeadInit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name == "random" {
            return Ok(HeadInit::Random);
        }
        ipt_degrade::task::lookup(&name)
            .map(HeadInit::Task)
            .map_err(|e| serde::de::Error::custom(format!("{e}, or \"random\"")))
    }
}
