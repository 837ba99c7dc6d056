//! The training loop shared by pre-training and fine-tuning.
//!
//! Each step: take the next batch (one task), run the model on that task's head/tail/query,
//! loss = L1 + λ·contrastive on the decoder tokens (λ = 0 when fine-tuning), gradients →
//! [`average_gradients`] → clipping → Adam. A NaN/Inf loss skips the step and is counted; too
//! many in a row write a checkpoint and stop with [`TrainError::Diverged`]. Before step `n` the
//! libtorch RNG is seeded from `(seed, n)`, and the batch is a function of `(seed, n)`, so a
//! resumed run repeats the uninterrupted one.
//!
//! A run directory holds `config.toml` (resolved), `metrics.jsonl`, `loss.png`, `psnr.png` and
//! `checkpoints/`. Starting a run in a directory that has checkpoints resumes from the latest;
//! the resolved config must then match in everything that shapes the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipt_degrade::rain::RainSource;
use ipt_degrade::Task;
use ipt_loss::PretrainLoss;
use ipt_model::device::DeviceSpec;
use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device, Kind, Tensor};

use crate::checkpoint::{write_bytes_atomic, CheckpointDir, TrainState};
use crate::config::{ClipMode, ConfigError, DataSourceKind, ExperimentConfig, Mode, ModelPreset};
use crate::data::pipeline::{BatchFactory, DataError};
use crate::data::procedural::derive_seed;
use crate::data::{DataStats, ImageSource, Pipeline, Sampler, SamplerConfig, SourceError};
use crate::finetune::{read_pretrained, FinetuneError};
use crate::metrics::{plot, MetricsLog, MetricsRow};
use crate::optim::{
    average_gradients, clip_gradients, Adam, Clip, Distributed, MultiStepLr, OptimError,
};
use crate::validation::ValidationSet;

const TAG_TRAIN_IMAGES: u64 = 0x1111;
const TAG_STEP_TORCH: u64 = 0x5EED;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model config (preset + overrides) is invalid.
    #[error("{path}: [model]: {message}")]
    ModelConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Building the model failed.
    #[error(transparent)]
    Model(#[from] ipt_model::ModelError),
    /// Reading or writing model weights failed.
    #[error(transparent)]
    Weights(#[from] ipt_model::CheckpointError),
    /// Checkpoint bookkeeping failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The data source is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The sampler cannot be built.
    #[error(transparent)]
    Sampler(#[from] crate::data::sampler::SamplerError),
    /// The data pipeline failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Optimizer state problem.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Fine-tune preparation failed.
    #[error(transparent)]
    Finetune(#[from] FinetuneError),
    /// Metrics/plots failed.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// Rain layers could not be loaded.
    #[error(transparent)]
    Rain(#[from] ipt_degrade::DegradeError),
    /// A libtorch operation failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// Validation images could not be tiled.
    #[error("validation: {0}")]
    Chop(#[from] ipt_model::chop::ChopError),
    /// The device is unavailable.
    #[error(transparent)]
    Device(#[from] ipt_model::device::DeviceError),
    /// The run directory belongs to a different experiment.
    #[error(
        "{run_dir} holds a run of a different config ({what} differs); use another --run-dir \
         or delete the folder"
    )]
    ResumeMismatch {
        /// The run directory.
        run_dir: PathBuf,
        /// Which part differs.
        what: String,
    },
    /// Too many consecutive NaN/Inf losses.
    #[error(
        "{count} consecutive steps had a NaN/Inf loss (last at step {step}); stopped after \
         writing checkpoint {checkpoint}. Lower optim.lr or check the data."
    )]
    Diverged {
        /// Consecutive non-finite steps.
        count: usize,
        /// The last step.
        step: u64,
        /// The checkpoint written.
        checkpoint: PathBuf,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file (for messages).
    pub config_path: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Pre-train or fine-tune.
    pub mode: Mode,
    /// Stop after this many completed steps (writing a checkpoint), as if interrupted. For tests
    /// and time-boxed sessions.
    pub stop_after: Option<u64>,
    /// Show a progress bar (when stderr is a terminal) and log lines.
    pub verbose: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// The step the run started from (0, or the resumed checkpoint's step).
    pub start_step: u64,
    /// Completed steps at the end.
    pub end_step: u64,
    /// Planned total steps.
    pub total_steps: u64,
    /// `(step, task, loss)` of every step run in this process (step = completed steps after it).
    pub losses: Vec<(u64, Task, f64)>,
    /// Validation results `(step, [(task, psnr)])` of this process.
    pub validation: Vec<(u64, Vec<(Task, f64)>)>,
    /// Training patches per second over this process's steps.
    pub patches_per_s: f64,
    /// Seconds of training in this process.
    pub elapsed_s: f64,
    /// Unreadable files skipped (distinct).
    pub bad_files: u64,
    /// Crops skipped because the image was too small.
    pub small_skips: u64,
    /// Steps skipped for a NaN/Inf loss (whole run).
    pub nonfinite_steps: u64,
    /// The last checkpoint's weights.
    pub last_checkpoint: Option<PathBuf>,
    /// Fine-tuning: the exported single-task checkpoint.
    pub exported: Option<PathBuf>,
}

/// The model config of a pre-training run: preset for the tasks' scales, then overrides.
pub fn model_config(
    cfg: &ExperimentConfig,
    tasks: &[Task],
    path: &Path,
) -> Result<IptConfig, TrainError> {
    let scales: Vec<usize> = tasks.iter().map(|t| t.scale()).collect();
    let base = match cfg.model.preset {
        ModelPreset::Tiny => IptConfig::tiny(&scales),
        ModelPreset::Base => IptConfig::base(&scales),
    };
    let bad = |message: String| TrainError::ModelConfig {
        path: path.to_path_buf(),
        message,
    };
    let mut value = serde_json::to_value(&base).map_err(|e| bad(e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        for (k, v) in &cfg.model.overrides {
            if k == "scales" || k == "num_queries" {
                return Err(bad(format!(
                    "`overrides.{k}` comes from [tasks]; remove it"
                )));
            }
            if !obj.contains_key(k) {
                let known: Vec<&String> = obj.keys().collect();
                return Err(bad(format!("unknown override `{k}`; known: {known:?}")));
            }
            obj.insert(
                k.clone(),
                serde_json::to_value(v).map_err(|e| bad(e.to_string()))?,
            );
        }
    }
    let mc: IptConfig =
        serde_json::from_value(value).map_err(|e| bad(format!("overrides: {e}")))?;
    mc.validate().map_err(|e| bad(e.to_string()))?;
    Ok(mc)
}

/// The parts of a config that must not change when a run is resumed.
fn fingerprint(cfg: &ExperimentConfig) -> Vec<(&'static str, String)> {
    let d = &cfg.data;
    vec![
        ("[model]", format!("{:?}", cfg.model)),
        ("[tasks]", format!("{:?}", cfg.tasks)),
        ("[finetune]", format!("{:?}", cfg.finetune)),
        (
            "[data]",
            format!(
                "{:?} {:?} {} {} {} {:?} {} {:?}",
                d.source,
                d.path,
                d.images,
                d.image_size,
                d.repeat,
                d.rain_streaks,
                d.patch,
                d.augment
            ),
        ),
        ("optim.batch_size", cfg.optim.batch_size.to_string()),
        ("runtime.seed", cfg.runtime.seed.to_string()),
    ]
}

fn resolve_device(spec: &str) -> Result<Device, TrainError> {
    let s: DeviceSpec = spec.parse()?;
    Ok(s.resolve()?)
}

/// Build the training image source named by the config (fails fast on missing folders).
pub fn build_source(cfg: &ExperimentConfig) -> Result<ImageSource, TrainError> {
    let d = &cfg.data;
    let path = || d.path.clone().unwrap_or_default();
    Ok(match d.source {
        DataSourceKind::Embedded => ImageSource::embedded(
            derive_seed(cfg.runtime.seed, &[TAG_TRAIN_IMAGES]),
            d.images,
            d.image_size,
        ),
        DataSourceKind::Folder | DataSourceKind::Div2k => ImageSource::folder(&path())?,
        DataSourceKind::RainPairs => ImageSource::rain_pairs(&path())?,
    })
}

/// Run (or resume) a pre-training or fine-tuning run.
pub fn train(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let mode = opts.mode;
    let cpath = &opts.config_path;
    if mode == Mode::Finetune && cfg.finetune.is_none() {
        return Err(ConfigError::Invalid {
            path: cpath.clone(),
            key: "finetune".into(),
            message: "`ipt finetune` needs a [finetune] section (task, from)".into(),
        }
        .into());
    }
    if mode == Mode::Pretrain && cfg.finetune.is_some() {
        return Err(ConfigError::Invalid {
            path: cpath.clone(),
            key: "finetune".into(),
            message: "this is a fine-tune config; run it with `ipt finetune`".into(),
        }
        .into());
    }
    // This process's place in a data-parallel job; only rank 0 writes files.
    let dist = Distributed::SINGLE;
    let main = dist.is_main();
    // Fail fast: every path before anything expensive.
    cfg.check_paths(cpath)?;
    let source = build_source(cfg)?;
    let tasks = cfg.model_tasks(mode);
    let seed = cfg.runtime.seed;

    // Run directory and resolved config.
    std::fs::create_dir_all(&opts.run_dir).map_err(|source| {
        crate::checkpoint::CheckpointError::Io {
            path: opts.run_dir.clone(),
            source,
        }
    })?;
    let ckdir = CheckpointDir::create(&opts.run_dir)?;
    let resolved_path = opts.run_dir.join("config.toml");
    let latest = ckdir.latest()?;
    if latest.is_some() {
        if let Ok(prev) = ExperimentConfig::load(&resolved_path) {
            for ((what, a), (_, b)) in fingerprint(&prev).into_iter().zip(fingerprint(cfg)) {
                if a != b {
                    return Err(TrainError::ResumeMismatch {
                        run_dir: opts.run_dir.clone(),
                        what: what.to_string(),
                    });
                }
            }
        }
    }
    if main {
        write_bytes_atomic(&resolved_path, cfg.to_toml().as_bytes())?;
    }

    // Device and model.
    if let Some(t) = cfg.runtime.threads {
        tch::set_num_threads(t as i32);
    }
    let device = resolve_device(&cfg.runtime.device)?;
    tch::manual_seed(derive_seed(seed, &[0x1417]) as i64);
    let vs = nn::VarStore::new(device);
    let (model, mcfg) = match (mode, &cfg.finetune) {
        (Mode::Finetune, Some(ft)) => {
            let pre = read_pretrained(&ft.from, ft.task, ft.source_tasks.as_deref())?;
            let mcfg = pre.single_task_config(ft.task);
            let model = Ipt::new(&vs.root(), &mcfg)?;
            pre.copy_task_into(&vs, ft.task, &ft.from)?;
            (model, mcfg)
        }
        _ => {
            let mcfg = model_config(cfg, &tasks, cpath)?;
            (Ipt::new(&vs.root(), &mcfg)?, mcfg)
        }
    };
    if mcfg.patch_size != cfg.data.patch {
        return Err(TrainError::ModelConfig {
            path: cpath.clone(),
            message: format!(
                "the model's patch_size {} differs from data.patch {}",
                mcfg.patch_size, cfg.data.patch
            ),
        });
    }
    let mut adam = Adam::from_var_store(&vs);
    let log = MetricsLog::new(opts.run_dir.join("metrics.jsonl"));

    // Resume.
    let mut state = TrainState::fresh(seed);
    if let Some((st, weights, optim)) = latest {
        let sd = ipt_model::checkpoint::read_state_dict(&weights)?;
        ipt_model::checkpoint::copy_into(&vs, &sd, &weights)?;
        let ostate = Tensor::read_safetensors(&optim)?;
        adam.load_state(ostate)?;
        if main {
            log.truncate_after(st.step)?;
        }
        if opts.verbose {
            eprintln!(
                "resuming from {} (step {}, epoch {})",
                weights.display(),
                st.step,
                st.epoch
            );
        }
        state = st;
    } else {
        // A fresh run: no stale rows from an earlier run that never checkpointed.
        if main {
            let _ = std::fs::remove_file(log.path());
        }
    }

    // Data.
    let weights = cfg.task_weights(mode);
    let sampler = Sampler::new(
        SamplerConfig {
            seed,
            tasks: tasks.clone(),
            weights,
            batch_size: cfg.optim.batch_size,
            patch: cfg.data.patch,
            augment: cfg.augment(mode),
            repeat: cfg.data.repeat,
            rank: 0,
            world_size: 1,
        },
        source.len(),
    )?;
    let bpe = sampler.batches_per_epoch() as u64;
    let total_steps = cfg
        .optim
        .steps
        .map(|s| s as u64)
        .unwrap_or(cfg.optim.epochs as u64 * bpe);
    let schedule = MultiStepLr {
        base: cfg.optim.lr,
        gamma: cfg.optim.gamma,
        milestones: cfg
            .optim
            .milestones
            .iter()
            .map(|&e| e as u64 * bpe)
            .chain(cfg.optim.milestone_steps.iter().map(|&s| s as u64))
            .collect(),
    };
    let rain = match &cfg.data.rain_streaks {
        Some(dir) => RainSource::from_folder(dir)?,
        None => RainSource::default(),
    };
    let factory = Arc::new(BatchFactory {
        sampler,
        source,
        rain,
        max_bad_fraction: cfg.data.max_bad_fraction,
        bad_file_grace: cfg.data.bad_file_grace,
        stats: DataStats::default(),
    });
    let val_set = if cfg.validation.every > 0 {
        Some(match &cfg.validation.path {
            Some(dir) => ValidationSet::from_folder(
                dir,
                seed,
                &tasks,
                cfg.validation.images,
                cfg.validation.size,
            )?,
            None => {
                ValidationSet::embedded(seed, &tasks, cfg.validation.images, cfg.validation.size)
            }
        })
    } else {
        None
    };

    let loss_fn = PretrainLoss {
        lambda: cfg.lambda(mode),
        tau: cfg.loss.tau,
        variant: cfg.loss.variant,
        chunk: cfg.loss.chunk.or(PretrainLoss::default().chunk),
    };
    let clip = match cfg.optim.clip {
        ClipMode::PerTensor => Clip::PerTensor(cfg.optim.clip_norm),
        ClipMode::Global => Clip::Global(cfg.optim.clip_norm),
        ClipMode::None => Clip::None,
    };
    let bf16 = cfg.runtime.bf16 && device.is_cuda();

    let mut summary = RunSummary {
        start_step: state.step,
        end_step: state.step,
        total_steps,
        nonfinite_steps: state.nonfinite_steps,
        ..RunSummary::default()
    };
    let end = opts
        .stop_after
        .map_or(total_steps, |s| s.min(total_steps))
        .max(state.step);

    let pb = if opts.verbose && main {
        ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_position(state.step);
    let say = |line: String| {
        if opts.verbose && main {
            if pb.is_hidden() {
                eprintln!("{line}");
            } else {
                pb.println(line);
            }
        }
    };
    say(format!(
        "{} run `{}`: {} steps ({} per epoch), batch {}, tasks [{}], device {:?}, {} parameters",
        match mode {
            Mode::Pretrain => "pre-training",
            Mode::Finetune => "fine-tuning",
        },
        cfg.run_name(),
        total_steps,
        bpe,
        cfg.optim.batch_size,
        tasks
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
        device,
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum::<usize>()
    ));

    let validate = |step: u64, summary: &mut RunSummary| -> Result<(), TrainError> {
        if let Some(vset) = &val_set {
            let res = vset.evaluate(&model, device)?;
            let row = MetricsRow::Validation {
                step,
                psnr_y: res
                    .iter()
                    .map(|(t, p)| (t.name().to_string(), *p))
                    .collect(),
            };
            if main {
                log.append(&row)?;
            }
            say(format!(
                "validation @ step {step}: {}",
                res.iter()
                    .map(|(t, p)| format!("{t} {p:.2} dB"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            summary.validation.push((step, res));
        }
        Ok(())
    };

    let write_checkpoint =
        |adam: &Adam, state: &TrainState, stats: &DataStats| -> Result<PathBuf, TrainError> {
            let mut st = state.clone();
            st.bad_files = stats.bad_files();
            st.small_skips = stats.small_skips();
            let ostate = adam.state();
            if !main {
                return Ok(PathBuf::new());
            }
            let w = ckdir.save(
                &st,
                |p| ipt_model::checkpoint::save(p, &vs, &mcfg),
                |p| Tensor::write_safetensors(&ostate, p),
                cfg.checkpoint.keep_last,
            )?;
            plot(&opts.run_dir, &log.read())?;
            Ok(w)
        };

    if state.step == 0 && state.step < end {
        validate(0, &mut summary)?;
    }

    let mut pipeline = Pipeline::start(
        Arc::clone(&factory),
        state.step,
        cfg.data.workers,
        cfg.data.queue,
    );
    let run_start = Instant::now();
    let base_elapsed = state.elapsed_s;
    let mut window = Window::default();
    let mut consecutive_bad = 0usize;
    let batch = cfg.optim.batch_size as f64;
    let mut steps_run = 0u64;

    while state.step < end {
        let b = pipeline.next_batch()?;
        for w in pipeline.stats().take_warnings() {
            say(w);
        }
        let step = state.step;
        let lr = schedule.lr(step);
        tch::manual_seed(derive_seed(seed, &[TAG_STEP_TORCH, step]) as i64);
        let x = b.lr.to_device(device);
        let y = b.hr.to_device(device);
        let want_tokens = loss_fn.lambda > 0.0;
        let forward = || model.forward_with_tokens(&x, b.plan.task_pos, true);
        let (out, tokens) = if bf16 {
            ipt_model::device::autocast_bf16(forward)?
        } else {
            forward()
        };
        let out = out.to_kind(Kind::Float);
        let tokens = tokens.to_kind(Kind::Float);
        let parts = loss_fn.compute(&out, &y, want_tokens.then_some(&tokens));
        let total = parts.total.double_value(&[]);
        state.step += 1;
        state.epoch = state.step / bpe;
        steps_run += 1;
        if !total.is_finite() {
            state.nonfinite_steps += 1;
            consecutive_bad += 1;
            say(format!(
                "warning: step {}: loss is {total}; step skipped",
                state.step
            ));
            if consecutive_bad >= cfg.runtime.max_nonfinite_in_row {
                let ck = write_checkpoint(&adam, &state, pipeline.stats())?;
                return Err(TrainError::Diverged {
                    count: consecutive_bad,
                    step: state.step,
                    checkpoint: ck,
                });
            }
            continue;
        }
        consecutive_bad = 0;
        let mut grads = adam.gradients(&parts.total);
        average_gradients(&mut grads, &dist)?;
        let _ = clip_gradients(&mut grads, clip);
        adam.step(&mut grads, lr);

        summary.losses.push((state.step, b.plan.task, total));
        window.push(b.plan.task, total, parts.l1, parts.contrastive);
        pb.set_position(state.step);

        if state.step % cfg.runtime.log_every as u64 == 0 || state.step == end {
            let secs = window.started.elapsed().as_secs_f64().max(1e-9);
            let pps = window.n as f64 * batch / secs;
            let row = window.row(state.step, state.epoch, b.plan.task, lr, pps);
            if let MetricsRow::Train { loss, .. } = &row {
                pb.set_message(format!("loss {loss:.3}  lr {lr:.2e}  {pps:.1} patches/s"));
                if pb.is_hidden() {
                    say(format!(
                        "step {}/{}  loss {loss:.4}  lr {lr:.2e}  {pps:.1} patches/s",
                        state.step, total_steps
                    ));
                }
            }
            if main {
                log.append(&row)?;
            }
            window = Window::default();
        }
        let at_end = state.step == end;
        if cfg.validation.every > 0 && (state.step % cfg.validation.every as u64 == 0 || at_end) {
            validate(state.step, &mut summary)?;
        }
        if state.step % cfg.checkpoint.every as u64 == 0 || at_end {
            state.elapsed_s = base_elapsed + run_start.elapsed().as_secs_f64();
            let ck = write_checkpoint(&adam, &state, pipeline.stats())?;
            summary.last_checkpoint = Some(ck);
        }
    }
    drop(pipeline);
    pb.finish_and_clear();

    let elapsed = run_start.elapsed().as_secs_f64();
    summary.end_step = state.step;
    summary.elapsed_s = elapsed;
    summary.patches_per_s = steps_run as f64 * batch / elapsed.max(1e-9);
    summary.bad_files = factory.stats.bad_files();
    summary.small_skips = factory.stats.small_skips();
    summary.nonfinite_steps = state.nonfinite_steps;
    if summary.last_checkpoint.is_none() {
        summary.last_checkpoint = ckdir.latest()?.map(|(_, w, _)| w);
    }
    if let (Mode::Finetune, Some(ft), true) = (mode, &cfg.finetune, state.step == total_steps) {
        let out = opts
            .run_dir
            .join(format!("ipt_{}.safetensors", ft.task.name()));
        crate::checkpoint::write_atomic(&out, |p| ipt_model::checkpoint::save(p, &vs, &mcfg))?;
        summary.exported = Some(out);
    }
    say(format!(
        "done: step {}/{} in {:.1} s ({:.1} patches/s); skipped {} unreadable file(s), {} too-small crop(s), {} NaN/Inf step(s)",
        summary.end_step,
        total_steps,
        elapsed,
        summary.patches_per_s,
        summary.bad_files,
        summary.small_skips,
        summary.nonfinite_steps
    ));
    Ok(summary)
}

/// Loss accumulator over a logging window.
struct Window {
    started: Instant,
    n: u64,
    loss: f64,
    l1: f64,
    con: f64,
    by_task: std::collections::BTreeMap<String, (f64, u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            n: 0,
            loss: 0.0,
            l1: 0.0,
            con: 0.0,
            by_task: Default::default(),
        }
    }
}

impl Window {
    fn push(&mut self, task: Task, loss: f64, l1: f64, con: f64) {
        self.n += 1;
        self.loss += loss;
        self.l1 += l1;
        self.con += con;
        let e = self
            .by_task
            .entry(task.name().to_string())
            .or_insert((0.0, 0));
        e.0 += loss;
        e.1 += 1;
    }

    fn row(&self, step: u64, epoch: u64, task: Task, lr: f64, pps: f64) -> MetricsRow {
        let n = self.n.max(1) as f64;
        MetricsRow::Train {
            step,
            epoch,
            task: task.name().to_string(),
            loss: self.loss / n,
            l1: self.l1 / n,
            contrastive: self.con / n,
            loss_by_task: self
                .by_task
                .iter()
                .map(|(k, (s, c))| (k.clone(), s / *c as f64))
                .collect(),
            lr,
            patches_per_s: pps,
            window: self.n,
        }
    }
}
