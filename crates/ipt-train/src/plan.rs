//! The run plan: an [`ExperimentConfig`] resolved, once, into what a run is built from —
//! [`RunPlan::resolve`]. The trainer reads only the plan: the recipe ([`Recipe`]: pre-train
//! several tasks, or fine-tune one from a checkpoint), the network, the data ([`DataPlan`], the
//! image source listed now), the schedule, the clipping, the loss, validation, the typed paths
//! and the [`Fingerprint`] of what must not change when a run is resumed. Defaults that other
//! crates own (ipt-loss's λ) are taken from them here.

use std::path::{Path, PathBuf};

use ipt_degrade::seed::derive_seed;
use ipt_degrade::Task;
use ipt_loss::PretrainLoss;
use ipt_model::IptConfig;

use crate::config::paths::path;
use crate::config::{
    check_command, CheckpointSection, ClipMode, ConfigError, ConfigPaths, DataRoots,
    DataSourceKind, ExperimentConfig, FinetuneSection, HeadInit, Mode, ModelPreset, ModelSection,
    RuntimeSection, ScheduleKind, ScheduleUnit, SmallImages, TasksSection, ValidationSize,
};
use crate::data::{ImageSource, SamplerConfig, SourceError};
use crate::optim::Clip;
use crate::schedule::{Decay, LrSchedule};

/// Seed domain of the embedded training images.
const TAG_TRAIN_IMAGES: u64 = 0x1111;

/// Errors of resolving a config into a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A config problem (wrong command, unknown `${…}` root, missing path, bad network).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The training folder cannot be listed or holds no usable files.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What the run trains.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    /// `ipt pretrain`: several tasks (one head/tail/query each, in this order), sampled with
    /// these weights; contrastive term on by default.
    Pretrain {
        /// The tasks, in head order.
        tasks: Vec<Task>,
        /// Relative sampling weights, aligned with `tasks`.
        weights: Vec<f64>,
    },
    /// `ipt finetune`: one task started from a pre-trained checkpoint; augmentation on and
    /// the contrastive term off by default.
    Finetune {
        /// The task kept.
        task: Task,
        /// The pre-trained checkpoint (roots expanded).
        from: PathBuf,
        /// The checkpoint's tasks in head order, when the config names them.
        source_tasks: Option<Vec<Task>>,
        /// Where the task's head, tail and query row start (`finetune.init`; default the task).
        init: HeadInit,
    },
}

impl Recipe {
    /// The command this recipe belongs to.
    pub fn mode(&self) -> Mode {
        match self {
            Recipe::Pretrain { .. } => Mode::Pretrain,
            Recipe::Finetune { .. } => Mode::Finetune,
        }
    }

    /// The tasks the model is built with, in head order.
    pub fn tasks(&self) -> Vec<Task> {
        match self {
            Recipe::Pretrain { tasks, .. } => tasks.clone(),
            Recipe::Finetune { task, .. } => vec![*task],
        }
    }

    /// Sampling weights aligned with [`Recipe::tasks`].
    pub fn weights(&self) -> Vec<f64> {
        match self {
            Recipe::Pretrain { weights, .. } => weights.clone(),
            Recipe::Finetune { .. } => vec![1.0],
        }
    }

    /// `pre-training` or `fine-tuning`, for the opening line.
    pub fn describe(&self) -> &'static str {
        match self {
            Recipe::Pretrain { .. } => "pre-training",
            Recipe::Finetune { .. } => "fine-tuning",
        }
    }
}

impl Mode {
    /// The contrastive weight λ when `loss.lambda` is unset: ipt-loss's for pre-training, 0
    /// (off) for fine-tuning.
    pub fn default_lambda(self) -> f64 {
        match self {
            Mode::Pretrain => ipt_loss::pretrain::LAMBDA,
            Mode::Finetune => 0.0,
        }
    }

    /// Whether crops are flipped/transposed when `data.augment` is unset (fine-tuning only).
    pub fn default_augment(self) -> bool {
        self == Mode::Finetune
    }
}

/// The data side of a run: the listed image source and how batches are cut from it.
#[derive(Debug, Clone)]
pub struct DataPlan {
    /// The training images (folders already listed, `data.fraction` applied).
    pub source: ImageSource,
    /// A folder of rain-streak layers for the derain task (else procedural streaks).
    pub rain_streaks: Option<PathBuf>,
    /// LR patch side.
    pub patch: usize,
    /// Crops per image per epoch.
    pub repeat: usize,
    /// Crops cut from one decoded image.
    pub crops_per_image: usize,
    /// Random flips and transposes.
    pub augment: bool,
    /// Worker threads.
    pub workers: usize,
    /// Batches prepared ahead.
    pub queue: usize,
    /// Tolerated fraction of unreadable files.
    pub max_bad_fraction: f64,
    /// Unreadable files always tolerated.
    pub bad_file_grace: usize,
    /// The policy for images smaller than the crop.
    pub small_images: SmallImages,
}

/// The run length and learning-rate schedule of `[optim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePlan {
    /// Initial (peak) learning rate.
    pub lr: f64,
    /// Decay per milestone.
    pub gamma: f64,
    /// Milestones in epochs.
    pub milestone_epochs: Vec<u64>,
    /// Milestones in steps.
    pub milestone_steps: Vec<u64>,
    /// Cosine annealing to this floor instead of milestones.
    pub cosine_floor: Option<f64>,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
    /// The decay moves at epoch starts only.
    pub by_epoch: bool,
    /// Run length in steps, when set (wins over `epochs`).
    pub steps: Option<u64>,
    /// Run length in epochs.
    pub epochs: u64,
    /// Decay of the weights' moving average, when one is kept.
    pub ema_decay: Option<f64>,
}

impl SchedulePlan {
    /// The learning-rate schedule, with epochs converted at `batches_per_epoch`.
    pub fn lr_schedule(&self, batches_per_epoch: u64) -> LrSchedule {
        let decay = match self.cosine_floor {
            Some(min_lr) => Decay::Cosine {
                total_steps: self.total_steps(batches_per_epoch),
                min_lr,
            },
            None => Decay::MultiStep {
                gamma: self.gamma,
                milestones: self
                    .milestone_epochs
                    .iter()
                    .map(|&e| e * batches_per_epoch)
                    .chain(self.milestone_steps.iter().copied())
                    .collect(),
            },
        };
        LrSchedule {
            base: self.lr,
            warmup_steps: self.warmup_steps,
            decay,
            epoch_steps: self.by_epoch.then_some(batches_per_epoch),
        }
    }

    /// Planned optimizer steps: `steps`, else `epochs` epochs.
    pub fn total_steps(&self, batches_per_epoch: u64) -> u64 {
        self.steps.unwrap_or(self.epochs * batches_per_epoch)
    }
}

/// Where the held-out validation images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidationSource {
    /// Held-out procedural images of this LR side.
    Embedded {
        /// LR side in pixels.
        size: usize,
    },
    /// The first images of a folder (crops or whole images).
    Folder {
        /// The folder (roots expanded).
        dir: PathBuf,
        /// Crops or whole images.
        size: ValidationSize,
    },
}

/// Periodic validation (absent when `validation.every = 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPlan {
    /// Images per task.
    pub images: usize,
    /// Where they come from.
    pub source: ValidationSource,
    /// Restored images written per task and validation.
    pub save_images: usize,
}

/// The parts of a config that must not change when a run is resumed, compared as values.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    model: ModelSection,
    tasks: TasksSection,
    finetune: Option<FinetuneSection>,
    data: DataIdentity,
    batch_size: usize,
    seed: u64,
}

/// The keys of `[data]` that shape the batches.
#[derive(Debug, Clone, PartialEq)]
struct DataIdentity {
    source: DataSourceKind,
    path: Option<PathBuf>,
    images: usize,
    image_size: usize,
    repeat: usize,
    crops_per_image: usize,
    rain_streaks: Option<PathBuf>,
    patch: usize,
    augment: Option<bool>,
}

impl Fingerprint {
    /// The fingerprint of `cfg`.
    pub fn of(cfg: &ExperimentConfig) -> Self {
        let d = &cfg.data;
        Fingerprint {
            model: cfg.model.clone(),
            tasks: cfg.tasks.clone(),
            finetune: cfg.finetune.clone(),
            data: DataIdentity {
                source: d.source,
                path: d.path.clone(),
                images: d.images,
                image_size: d.image_size,
                repeat: d.repeat,
                crops_per_image: d.crops_per_image,
                rain_streaks: d.rain_streaks.clone(),
                patch: d.patch,
                augment: d.augment,
            },
            batch_size: cfg.optim.batch_size,
            seed: cfg.runtime.seed,
        }
    }

    /// The first part (by its name in messages: `[model]`, …, `runtime.seed`) in which the two
    /// differ, or `None` when they are the same experiment.
    pub fn first_difference(&self, other: &Fingerprint) -> Option<&'static str> {
        [
            ("[model]", self.model == other.model),
            ("[tasks]", self.tasks == other.tasks),
            ("[finetune]", self.finetune == other.finetune),
            ("[data]", self.data == other.data),
            ("optim.batch_size", self.batch_size == other.batch_size),
            ("runtime.seed", self.seed == other.seed),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(what, _)| what)
    }
}

/// An experiment resolved for one command: everything a run is built from, typed.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The config file (for messages).
    pub file: PathBuf,
    /// The resolved config (written to the run directory and recorded in checkpoints).
    pub config: ExperimentConfig,
    /// What is trained.
    pub recipe: Recipe,
    /// The network of a pre-training run (`[model]` for the tasks, checked); `None` when
    /// fine-tuning (the pre-trained checkpoint's architecture).
    pub network: Option<IptConfig>,
    /// The training data.
    pub data: DataPlan,
    /// Batch size per process.
    pub batch_size: usize,
    /// Run length and learning rate.
    pub schedule: SchedulePlan,
    /// Gradient clipping.
    pub clip: Clip,
    /// The loss.
    pub loss: PretrainLoss,
    /// Validate every this many steps (0: never).
    pub validate_every: usize,
    /// The validation images, when validation is on.
    pub validation: Option<ValidationPlan>,
    /// Checkpoint interval and retention.
    pub checkpoint: CheckpointSection,
    /// Seed, device, precision, logging, data-parallel settings.
    pub runtime: RuntimeSection,
    /// Every path of the config, roots expanded (and checked to exist).
    pub paths: ConfigPaths,
    /// What must not change on resume.
    pub fingerprint: Fingerprint,
}

impl RunPlan {
    /// Resolve `cfg` for `mode`: check it (again, for a config not read from a file), check
    /// that it suits the command and that every path exists, list the training images and
    /// check the network — all before anything expensive.
    pub fn resolve(
        cfg: &ExperimentConfig,
        mode: Mode,
        roots: &DataRoots,
        file: &Path,
    ) -> Result<RunPlan, PlanError> {
        cfg.validate(file)?;
        check_command(cfg, mode, file)?;
        let paths = ConfigPaths::resolve(cfg, roots, file)?;
        paths.check(file)?;
        let recipe = recipe(cfg, mode, &paths);
        let data = data_plan(cfg, mode, &paths)?;
        let network = match &recipe {
            Recipe::Pretrain { .. } => Some(cfg.network(file)?),
            Recipe::Finetune { .. } => None,
        };
        let validation = validation_plan(cfg, &paths);
        Ok(RunPlan {
            file: file.to_path_buf(),
            recipe,
            network,
            data,
            batch_size: cfg.optim.batch_size,
            schedule: schedule_plan(cfg),
            clip: clip(cfg),
            loss: loss(cfg, mode),
            validate_every: cfg.validation.every,
            validation,
            checkpoint: cfg.checkpoint.clone(),
            runtime: cfg.runtime.clone(),
            paths,
            fingerprint: Fingerprint::of(cfg),
            config: cfg.clone(),
        })
    }

    /// The run name (`name`, else `"run"`).
    pub fn name(&self) -> &str {
        self.config.run_name()
    }

    /// The sampler's settings for rank `rank` of `world`.
    pub fn sampler_config(&self, rank: usize, world: usize) -> SamplerConfig {
        SamplerConfig {
            seed: self.runtime.seed,
            tasks: self.recipe.tasks(),
            weights: self.recipe.weights(),
            batch_size: self.batch_size,
            patch: self.data.patch,
            augment: self.data.augment,
            repeat: self.data.repeat,
            crops_per_image: self.data.crops_per_image,
            rank,
            world_size: world,
        }
    }
}

/// The recipe of `cfg` for `mode` (checked to match by [`check_command`]).
fn recipe(cfg: &ExperimentConfig, mode: Mode, paths: &ConfigPaths) -> Recipe {
    match (mode, &cfg.finetune) {
        (Mode::Finetune, Some(ft)) => Recipe::Finetune {
            task: ft.task,
            from: path(&paths.finetune_from).unwrap_or_else(|| ft.from.clone()),
            source_tasks: ft.source_tasks.clone(),
            init: ft.init.unwrap_or(HeadInit::Task(ft.task)),
        },
        _ => Recipe::Pretrain {
            tasks: cfg.tasks.names.clone(),
            weights: cfg
                .tasks
                .weights
                .clone()
                .unwrap_or_else(|| vec![1.0; cfg.tasks.names.len()]),
        },
    }
}

/// `[data]` with its image source listed.
fn data_plan(
    cfg: &ExperimentConfig,
    mode: Mode,
    paths: &ConfigPaths,
) -> Result<DataPlan, SourceError> {
    let d = &cfg.data;
    let folder = path(&paths.data).unwrap_or_default();
    let all = match d.source {
        DataSourceKind::Embedded => ImageSource::embedded(
            derive_seed(cfg.runtime.seed, &[TAG_TRAIN_IMAGES]),
            d.images,
            d.image_size,
        ),
        DataSourceKind::Folder | DataSourceKind::Div2k => ImageSource::folder(&folder)?,
        DataSourceKind::RainPairs => ImageSource::rain_pairs(&folder)?,
    };
    Ok(DataPlan {
        source: all.keep_fraction(d.fraction, d.fraction_seed),
        rain_streaks: path(&paths.rain_streaks),
        patch: d.patch,
        repeat: d.repeat,
        crops_per_image: d.crops_per_image,
        augment: cfg.augment(mode),
        workers: d.workers,
        queue: d.queue,
        max_bad_fraction: d.max_bad_fraction,
        bad_file_grace: d.bad_file_grace,
        small_images: d.small_images,
    })
}

/// `[optim]`'s run length and schedule.
fn schedule_plan(cfg: &ExperimentConfig) -> SchedulePlan {
    let o = &cfg.optim;
    SchedulePlan {
        lr: o.lr,
        gamma: o.gamma,
        milestone_epochs: o.milestones.iter().map(|&e| e as u64).collect(),
        milestone_steps: o.milestone_steps.iter().map(|&s| s as u64).collect(),
        cosine_floor: (o.schedule == ScheduleKind::Cosine).then_some(o.min_lr),
        warmup_steps: o.warmup_steps as u64,
        by_epoch: o.schedule_by == ScheduleUnit::Epoch,
        steps: o.steps.map(|s| s as u64),
        epochs: o.epochs as u64,
        ema_decay: o.ema_decay,
    }
}

/// The gradient clipping of `[optim]`.
fn clip(cfg: &ExperimentConfig) -> Clip {
    match cfg.optim.clip {
        ClipMode::PerTensor => Clip::PerTensor(cfg.optim.clip_norm),
        ClipMode::Global => Clip::Global(cfg.optim.clip_norm),
        ClipMode::None => Clip::None,
    }
}

/// The loss of `[loss]` in `mode` (λ from [`ExperimentConfig::lambda`]).
fn loss(cfg: &ExperimentConfig, mode: Mode) -> PretrainLoss {
    PretrainLoss {
        lambda: cfg.lambda(mode),
        tau: cfg.loss.tau,
        variant: cfg.loss.variant,
        chunk: cfg.loss.chunk.or(PretrainLoss::default().chunk),
    }
}

/// The validation images of `[validation]`, when validation is on. Whole images always have a
/// folder ([`ExperimentConfig::validate`], run first by [`RunPlan::resolve`]).
fn validation_plan(cfg: &ExperimentConfig, paths: &ConfigPaths) -> Option<ValidationPlan> {
    let v = &cfg.validation;
    if v.every == 0 {
        return None;
    }
    let source = match (path(&paths.validation), v.size) {
        (Some(dir), size) => ValidationSource::Folder { dir, size },
        (None, ValidationSize::Crop(size)) => ValidationSource::Embedded { size },
        (None, ValidationSize::Whole(_)) => unreachable!("refused by ExperimentConfig::validate"),
    };
    Some(ValidationPlan {
        images: v.images,
        source,
        save_images: v.save_images,
    })
}

/// Rules that derive one value of a run from the config.
impl ExperimentConfig {
    /// The contrastive weight λ for `mode`: `loss.lambda`, else [`Mode::default_lambda`].
    pub fn lambda(&self, mode: Mode) -> f64 {
        self.loss.lambda.unwrap_or(mode.default_lambda())
    }

    /// Whether crops are flipped/transposed in `mode`: `data.augment`, else
    /// [`Mode::default_augment`].
    pub fn augment(&self, mode: Mode) -> bool {
        self.data.augment.unwrap_or(mode.default_augment())
    }

    /// The network of a pre-training run ([`ModelSection::network`] for `[tasks]` on
    /// `data.patch`-pixel inputs), checked.
    pub fn network(&self, file: &Path) -> Result<IptConfig, ConfigError> {
        let cfg = self.model.network(&self.tasks.names, self.data.patch);
        cfg.validate().map_err(|e| ConfigError::Invalid {
            path: file.to_path_buf(),
            key: "model".into(),
            message: e.to_string(),
        })?;
        Ok(cfg)
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
