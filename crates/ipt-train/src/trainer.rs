//! The training loop shared by pre-training and fine-tuning, as a [`Trainer`] with named stages:
//! [`Trainer::new`] (run directory, model, optimizer, data, resume), [`Trainer::step`] (one
//! optimizer step on one batch), [`Trainer::validate`], [`Trainer::save_checkpoint`] and the
//! loop itself, [`Trainer::fit`].
//!
//! Each step: the batch (one task) goes through that task's head, the body and its tail;
//! loss = L1 + λ·contrastive on the decoder tokens (λ = 0 when fine-tuning); gradients →
//! averaged over the ranks of a data-parallel job → clipping → Adam. A NaN/Inf loss skips the
//! step and is counted; too many in a row write a checkpoint and stop with
//! [`TrainError::Diverged`]. Before step `n` the libtorch RNG is seeded from `(seed, n)`, and the
//! batch is a function of `(seed, n)`, so a resumed run repeats the uninterrupted one.
//!
//! Launched as one rank of a data-parallel job ([`RunOptions::distributed`]), the trainer joins
//! the process group; rank 0 alone opens the run directory (resuming, writing checkpoints, logs,
//! plots and validating) and gives the other ranks its weights, optimizer state and step. Each
//! rank trains its slice of the global batch (see [`crate::data::sampler`]); the contrastive
//! term is computed per rank over its own tokens.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipt_degrade::rain::RainSource;
use ipt_degrade::seed::derive_seed;
use ipt_degrade::Task;
use ipt_dist::DistEnv;
use ipt_loss::PretrainLoss;
use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device, Kind, Tensor};

use crate::checkpoint::{write_atomic, CheckpointDir, CheckpointDirError, TrainState};
use crate::config::{ConfigError, DataRoots, ExperimentConfig, Mode};
use crate::data::pipeline::{BatchFactory, DataError};
use crate::data::{Batch, DataStats, Pipeline, Sampler, SourceError};
use crate::finetune::{read_pretrained, FinetuneError};
use crate::optim::{clip_gradients, Adam, Clip, MultiStepLr, OptimError};
use crate::parallel::{Agreement, Replicas};
use crate::plan::{PlanError, Recipe, RunPlan, ValidationSource};
use crate::progress::{TrainProgress, Window};
use crate::run_dir::{ResumeMismatch, RunDir};
use crate::run_log::{LogRow, RunLogError};
use crate::validation::{
    baseline_name, TaskScore, ValidationError, ValidationSet, ValidationSetError,
};

/// Seed domain of the libtorch RNG before step `n`.
const TAG_STEP_TORCH: u64 = 0x5EED;
/// Seed domain of the weight initialisation.
const TAG_INIT: u64 = 0x1417;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building the model failed.
    #[error(transparent)]
    Model(#[from] ipt_model::ModelError),
    /// Reading or writing model weights failed.
    #[error(transparent)]
    Weights(#[from] ipt_model::CheckpointError),
    /// Checkpoint bookkeeping failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointDirError),
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
    /// The run log could not be written.
    #[error(transparent)]
    RunLog(#[from] RunLogError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// Rain layers could not be loaded.
    #[error(transparent)]
    Rain(#[from] ipt_degrade::DegradeError),
    /// A libtorch operation failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// The validation images could not be prepared.
    #[error(transparent)]
    ValidationSet(#[from] ValidationSetError),
    /// Validating failed.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The device is unavailable.
    #[error(transparent)]
    Device(#[from] ipt_model::device::DeviceError),
    /// The run directory belongs to a different experiment.
    #[error(transparent)]
    ResumeMismatch(#[from] ResumeMismatch),
    /// Another process holds the run directory.
    #[error(transparent)]
    RunDirLocked(#[from] crate::run_dir::RunDirLocked),
    /// Every checkpoint of the run directory was unreadable.
    #[error(
        "{run_dir}: no checkpoint could be resumed from:\n  {}\nThey were set aside (renamed \
         *.corrupt) and are kept; run the same command again to start over, or restore a backup",
        problems.join("\n  ")
    )]
    NoUsableCheckpoint {
        /// The run directory.
        run_dir: PathBuf,
        /// What was wrong with each checkpoint.
        problems: Vec<String>,
    },
    /// `--stop-after` at or below the step the run has already reached.
    #[error(
        "--stop-after {stop_after}: the run in {run_dir} is already at step {step}; give a larger \
         value, or leave it out to finish the run"
    )]
    NothingToDo {
        /// The run directory.
        run_dir: PathBuf,
        /// Completed steps.
        step: u64,
        /// The requested stop.
        stop_after: u64,
    },
    /// Stopped on request (Ctrl-C or SIGTERM) after writing a checkpoint.
    #[error(
        "interrupted: stopped after step {step} and wrote checkpoint {}; run the same command \
         again to resume",
        checkpoint.display()
    )]
    Interrupted {
        /// Completed steps.
        step: u64,
        /// The checkpoint written.
        checkpoint: PathBuf,
    },
    /// A collective of a data-parallel job failed (a rank was lost, hung, or never came).
    #[error("data-parallel training failed: {0}")]
    Distributed(#[from] ipt_dist::DistError),
    /// The ranks of a data-parallel job no longer hold the same weights.
    #[error(
        "step {step}: the ranks of the data-parallel job hold different weights; this is a bug \
         (or ranks running different binaries or configs): resume from the last checkpoint"
    )]
    ReplicasDiverged {
        /// The step the check ran after.
        step: u64,
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

impl From<crate::run_dir::RunDirError> for TrainError {
    fn from(e: crate::run_dir::RunDirError) -> Self {
        match e {
            crate::run_dir::RunDirError::Locked(e) => e.into(),
            crate::run_dir::RunDirError::Files(e) => e.into(),
        }
    }
}

impl From<PlanError> for TrainError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Config(e) => e.into(),
            PlanError::Source(e) => e.into(),
        }
    }
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
    /// What `${IPT_DATA}` and `${IPT_TRAIN_DATA}` in the config's paths stand for.
    pub roots: DataRoots,
    /// Raised from outside (e.g. a Ctrl-C handler) to stop after the current step with a
    /// checkpoint ([`TrainError::Interrupted`]).
    pub stop: StopSignal,
    /// This process's place in a data-parallel job (from `DistEnv::from_env`: torchrun's or
    /// SLURM's variables), or `None` for a single process.
    pub distributed: Option<DistEnv>,
}

/// A request to stop a run gracefully, shared between the trainer and whoever may ask (a
/// signal handler, a test): the run finishes its current step, writes a checkpoint and returns
/// [`TrainError::Interrupted`].
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the run to stop after its current step.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// This process's rank in a data-parallel job (0 alone). Validation, checkpoints and the
    /// exported model are rank 0's.
    pub rank: usize,
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
    /// The trivial baseline of each task on the validation images (bicubic for SR, the
    /// degraded input otherwise), PSNR-Y in dB.
    pub baselines: Vec<(Task, f64)>,
    /// Training patches per second over this process's steps.
    pub patches_per_s: f64,
    /// Seconds of training in this process.
    pub elapsed_s: f64,
    /// Unreadable files skipped (distinct).
    pub bad_files: u64,
    /// Crops skipped because the image was too small.
    pub small_skips: u64,
    /// Crops cut from an image enlarged to the crop (`data.small_images = "resize"`).
    pub small_resized: u64,
    /// Distinct images so enlarged.
    pub small_resized_images: u64,
    /// Steps skipped for a NaN/Inf loss (whole run).
    pub nonfinite_steps: u64,
    /// The last checkpoint's weights.
    pub last_checkpoint: Option<PathBuf>,
    /// Fine-tuning: the exported single-task checkpoint.
    pub exported: Option<PathBuf>,
    /// Checkpoints that could not be resumed from and were set aside, with the reason.
    pub skipped_checkpoints: Vec<String>,
    /// Temporary files of an interrupted earlier process, removed at start.
    pub removed_temporaries: Vec<PathBuf>,
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    /// Completed steps after this one.
    pub step: u64,
    /// The batch's task.
    pub task: Task,
    /// The learning rate used.
    pub lr: f64,
    /// The loss terms, or `None` when the loss was NaN/Inf and the step was skipped.
    pub loss: Option<LossTerms>,
}

/// The loss of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossTerms {
    /// L1 + λ·contrastive.
    pub total: f64,
    /// The L1 term.
    pub l1: f64,
    /// The (unweighted) contrastive term.
    pub contrastive: f64,
}

/// A pre-training or fine-tuning run, ready to step.
pub struct Trainer {
    plan: RunPlan,
    opts: RunOptions,
    /// The run directory: rank 0 only.
    run: Option<RunDir>,
    replicas: Replicas,
    device: Device,
    vs: nn::VarStore,
    model: Ipt,
    network: IptConfig,
    adam: Adam,
    schedule: MultiStepLr,
    clip: Clip,
    loss: PretrainLoss,
    bf16: bool,
    data: Arc<BatchFactory>,
    batches_per_epoch: u64,
    total_steps: u64,
    validation: Option<ValidationSet>,
    state: TrainState,
    nonfinite_in_row: usize,
    stop_agreed: bool,
    progress: TrainProgress,
    window: Window,
    summary: RunSummary,
    started: Instant,
    elapsed_before: f64,
    steps_run: u64,
}

impl Trainer {
    /// Prepare a run: check the config and its paths, open the run directory, build the model
    /// (fresh, or from the pre-trained checkpoint when fine-tuning), the optimizer and the data
    /// source, and resume from the directory's latest checkpoint if it has one.
    pub fn new(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<Trainer, TrainError> {
        // Fail fast: every path before anything expensive.
        let plan = RunPlan::resolve(cfg, opts.mode, &opts.roots, &opts.config_path)?;
        let file = &plan.file;

        if let Some(t) = plan.runtime.threads {
            tch::set_num_threads(t as i32);
        }
        let device = match (plan.runtime.device.resolve()?, &opts.distributed) {
            // One GPU per rank, as torchrun and srun lay them out.
            (Device::Cuda(_), Some(env)) => Device::Cuda(env.local_rank),
            (d, _) => d,
        };
        let replicas = match &opts.distributed {
            Some(env) => Replicas::join(
                env,
                device,
                Duration::from_secs(plan.runtime.collective_timeout_s),
            )?,
            None => Replicas::single(),
        };
        // Only rank 0 touches the run directory; the others get what it resumes.
        let run = match replicas.is_main() {
            true => Some(RunDir::open(&opts.run_dir)?),
            false => None,
        };
        tch::manual_seed(derive_seed(plan.runtime.seed, &[TAG_INIT]) as i64);
        let vs = nn::VarStore::new(device);
        let (model, network) = build_model(&plan, &vs)?;
        if network.patch_size != plan.data.patch {
            return Err(ConfigError::Invalid {
                path: file.clone(),
                key: "data.patch".into(),
                message: format!(
                    "{} differs from the checkpoint's input size {}",
                    plan.data.patch, network.patch_size
                ),
            }
            .into());
        }
        let mut adam = Adam::from_var_store(&vs);
        let (state, skipped) = match &run {
            Some(run) => open_state(run, &plan, &vs, &mut adam, opts.verbose)?,
            None => (TrainState::fresh(plan.runtime.seed), Vec::new()),
        };
        let state = sync_replicas(&replicas, &vs, &mut adam, state, device)?;
        if let Some(stop) = opts
            .stop_after
            .filter(|&s| s <= state.step && state.step > 0)
        {
            return Err(TrainError::NothingToDo {
                run_dir: opts.run_dir.clone(),
                step: state.step,
                stop_after: stop,
            });
        }

        let tasks = plan.recipe.tasks();
        let sampler = Sampler::new(
            plan.sampler_config(replicas.rank(), replicas.world()),
            plan.data.source.len(),
        )?;
        let batches_per_epoch = sampler.batches_per_epoch() as u64;
        let rain = match &plan.data.rain_streaks {
            Some(dir) => RainSource::from_folder(dir)?,
            None => RainSource::default(),
        };
        let data = Arc::new(BatchFactory {
            sampler,
            source: plan.data.source.clone(),
            rain,
            max_bad_fraction: plan.data.max_bad_fraction,
            bad_file_grace: plan.data.bad_file_grace,
            small_images: plan.data.small_images,
            stats: DataStats::default(),
        });
        // Rank 0 validates while the others wait in the next step's collectives.
        let validation = match replicas.is_main() {
            true => build_validation(&plan, &tasks)?,
            false => None,
        };
        let total_steps = plan.schedule.total_steps(batches_per_epoch);
        let progress =
            TrainProgress::new(opts.verbose && replicas.is_main(), state.step, total_steps);
        let summary = RunSummary {
            rank: replicas.rank(),
            start_step: state.step,
            end_step: state.step,
            total_steps,
            nonfinite_steps: state.nonfinite_steps,
            skipped_checkpoints: skipped,
            removed_temporaries: run
                .as_ref()
                .map(|r| r.removed_temporaries().to_vec())
                .unwrap_or_default(),
            baselines: validation
                .as_ref()
                .map(ValidationSet::baselines)
                .unwrap_or_default(),
            ..RunSummary::default()
        };
        let trainer = Trainer {
            schedule: plan.schedule.lr_schedule(batches_per_epoch),
            clip: plan.clip,
            loss: plan.loss,
            bf16: plan.runtime.bf16 && device.is_cuda(),
            elapsed_before: state.elapsed_s,
            plan,
            opts: opts.clone(),
            run,
            replicas,
            device,
            vs,
            model,
            network,
            adam,
            data,
            batches_per_epoch,
            total_steps,
            validation,
            state,
            nonfinite_in_row: 0,
            stop_agreed: false,
            progress,
            window: Window::default(),
            summary,
            started: Instant::now(),
            steps_run: 0,
        };
        trainer.announce(&tasks);
        Ok(trainer)
    }

    /// Run until the planned number of steps (or `--stop-after`), validating and checkpointing
    /// on schedule, and return what the run did.
    pub fn fit(mut self) -> Result<RunSummary, TrainError> {
        let end = self.end_step();
        if self.state.step == 0 && end > 0 {
            self.validate()?;
        }
        let mut batches = Pipeline::start(
            Arc::clone(&self.data),
            self.state.step,
            self.plan.data.workers,
            self.plan.data.queue,
        );
        self.started = Instant::now();
        while self.state.step < end {
            let batch = batches.next_batch()?;
            for warning in batches.stats().take_warnings() {
                self.progress.say(warning);
            }
            let out = self.step(&batch)?;
            if out.loss.is_some() {
                self.log_step(&out, end)?;
                let at_end = out.step == end;
                if self.due(self.plan.validate_every, at_end) {
                    self.validate()?;
                }
                if self.due(self.plan.checkpoint.every, at_end) {
                    self.save_checkpoint()?;
                }
            }
            if self.stop_agreed && self.state.step < end {
                let checkpoint = self.save_checkpoint()?;
                self.progress.finish();
                return Err(TrainError::Interrupted {
                    step: self.state.step,
                    checkpoint,
                });
            }
        }
        drop(batches);
        self.finish()
    }

    /// One optimizer step on `batch`: forward, loss, backward, gradient averaging, clipping,
    /// Adam. A NaN/Inf loss skips the update (`loss: None`); too many in a row write a
    /// checkpoint and return [`TrainError::Diverged`].
    pub fn step(&mut self, batch: &Batch) -> Result<StepOutput, TrainError> {
        let step = self.state.step;
        let lr = self.schedule.lr(step);
        tch::manual_seed(derive_seed(self.plan.runtime.seed, &[TAG_STEP_TORCH, step]) as i64);
        let x = batch.lr.to_device(self.device);
        let y = batch.hr.to_device(self.device);
        let want_tokens = self.loss.lambda > 0.0;
        let forward = || {
            self.model
                .forward_with_tokens(&x, batch.plan.task_pos, true)
        };
        let (out, tokens) = if self.bf16 {
            ipt_model::device::autocast_bf16(forward)?
        } else {
            forward()
        };
        let out = out.to_kind(Kind::Float);
        let tokens = tokens.to_kind(Kind::Float);
        let parts = self.loss.compute(&out, &y, want_tokens.then_some(&tokens));
        // The global batch's loss (the mean of the ranks'), and whether any rank must stop.
        let agreed = self.replicas.agree(Agreement {
            total: parts.total.double_value(&[]),
            l1: parts.l1,
            contrastive: parts.contrastive,
            stop: self.opts.stop.requested(),
        })?;
        self.stop_agreed = agreed.stop;
        let total = agreed.total;
        self.state.step += 1;
        self.state.epoch = self.state.step / self.batches_per_epoch;
        self.steps_run += 1;
        let task = batch.plan.task;
        if !total.is_finite() {
            self.state.nonfinite_steps += 1;
            self.nonfinite_in_row += 1;
            self.progress.say(format!(
                "warning: step {}: loss is {total}; step skipped",
                self.state.step
            ));
            if self.nonfinite_in_row >= self.plan.runtime.max_nonfinite_in_row {
                let checkpoint = self.save_checkpoint()?;
                return Err(TrainError::Diverged {
                    count: self.nonfinite_in_row,
                    step: self.state.step,
                    checkpoint,
                });
            }
            return Ok(StepOutput {
                step: self.state.step,
                task,
                lr,
                loss: None,
            });
        }
        self.nonfinite_in_row = 0;
        let mut grads = self.adam.gradients(&parts.total);
        self.replicas.average_gradients(&mut grads)?;
        let _ = clip_gradients(&mut grads, self.clip);
        self.adam.step(&mut grads, lr);
        if self.due(self.plan.runtime.check_replicas_every, false) {
            self.check_replicas()?;
        }
        Ok(StepOutput {
            step: self.state.step,
            task,
            lr,
            loss: Some(LossTerms {
                total,
                l1: agreed.l1,
                contrastive: agreed.contrastive,
            }),
        })
    }

    /// Score the model on the held-out images (when validation is on), log the row and the
    /// line `validation @ step N: sr2 34.90 dB (bicubic 33.70), …`.
    pub fn validate(&mut self) -> Result<Vec<TaskScore>, TrainError> {
        let Some(vset) = &self.validation else {
            return Ok(Vec::new());
        };
        let scores = vset.evaluate(&self.model, self.device)?;
        let step = self.state.step;
        let by_name = |f: fn(&TaskScore) -> f64| {
            scores
                .iter()
                .map(|s| (s.task.name().to_string(), f(s)))
                .collect()
        };
        if let Some(run) = &self.run {
            run.log().append(&LogRow::Validation {
                step,
                psnr_y: by_name(|s| s.psnr_y),
                baseline: by_name(|s| s.baseline),
            })?;
        }
        self.progress.say(format!(
            "validation @ step {step}: {}",
            scores
                .iter()
                .map(|s| format!(
                    "{} {:.2} dB ({} {:.2})",
                    s.task,
                    s.psnr_y,
                    baseline_name(s.task),
                    s.baseline
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        self.summary
            .validation
            .push((step, scores.iter().map(|s| (s.task, s.psnr_y)).collect()));
        Ok(scores)
    }

    /// Write a checkpoint of the current step (weights, optimizer, state; rank 0 only) and
    /// redraw the plots. Returns the weights file (on the other ranks of a data-parallel job,
    /// the file rank 0 writes, after checking that every rank holds the same weights).
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        self.check_replicas()?; // no collective for a single process
        self.state.elapsed_s = self.elapsed_before + self.started.elapsed().as_secs_f64();
        let stats = &self.data.stats;
        let state = TrainState {
            bad_files: stats.bad_files(),
            small_skips: stats.small_skips(),
            small_resized: stats.resized(),
            config: Some(self.plan.config.to_toml()),
            ..self.state.clone()
        };
        let Some(run) = &self.run else {
            return Ok(CheckpointDir::at(&self.opts.run_dir)
                .files(self.state.step)
                .0);
        };
        let ostate = self.adam.state();
        let weights = run.checkpoints().save(
            &state,
            |p| ipt_model::checkpoint::save(p, &self.vs, &self.network),
            |p| Tensor::write_safetensors(&ostate, p),
            self.plan.checkpoint.keep_last,
        )?;
        run.plot()?;
        self.summary.last_checkpoint = Some(weights.clone());
        Ok(weights)
    }

    /// Errors unless every rank holds bit-identical weights.
    fn check_replicas(&self) -> Result<(), TrainError> {
        match self.replicas.identical(self.adam.params())? {
            true => Ok(()),
            false => Err(TrainError::ReplicasDiverged {
                step: self.state.step,
            }),
        }
    }

    /// The model being trained.
    pub fn model(&self) -> &Ipt {
        &self.model
    }

    /// Completed optimizer steps.
    pub fn steps_done(&self) -> u64 {
        self.state.step
    }

    /// The step the run stops at: the planned total, or `--stop-after`.
    fn end_step(&self) -> u64 {
        self.opts
            .stop_after
            .map_or(self.total_steps, |s| s.min(self.total_steps))
            .max(self.state.step)
    }

    /// Whether a periodic action with period `every` (0 = never) is due after this step.
    fn due(&self, every: usize, at_end: bool) -> bool {
        every > 0 && (self.state.step.is_multiple_of(every as u64) || at_end)
    }

    /// Record a finished step; every `log_every` steps (and at the end) log the window.
    fn log_step(&mut self, out: &StepOutput, end: u64) -> Result<(), TrainError> {
        let Some(loss) = out.loss else {
            return Ok(());
        };
        self.summary.losses.push((out.step, out.task, loss.total));
        self.window
            .push(out.task, loss.total, loss.l1, loss.contrastive);
        self.progress.at(out.step);
        if out.step.is_multiple_of(self.plan.runtime.log_every as u64) || out.step == end {
            let row = self.window.row(
                out.step,
                self.state.epoch,
                out.task,
                out.lr,
                self.plan.batch_size,
                self.replicas.world(),
            );
            self.progress.show_window(&row, self.total_steps);
            if let Some(run) = &self.run {
                run.log().append(&row)?;
            }
            self.window = Window::default();
        }
        Ok(())
    }

    /// Patches per optimizer step over all ranks.
    fn global_batch(&self) -> usize {
        self.replicas.world() * self.plan.batch_size
    }

    /// The opening line: what runs, how long, on what.
    fn announce(&self, tasks: &[Task]) {
        self.progress.say(format!(
            "{} run `{}`: {} steps ({} per epoch), batch {}, tasks [{}], device {:?}, {} parameters",
            self.plan.recipe.describe(),
            self.plan.name(),
            self.total_steps,
            self.batches_per_epoch,
            match self.replicas.world() {
                1 => self.plan.batch_size.to_string(),
                w => format!(
                    "{} ({w} ranks × {} per rank)",
                    self.global_batch(),
                    self.plan.batch_size
                ),
            },
            tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            self.device,
            self.parameter_count()
        ));
    }

    /// Trainable parameters of the model.
    pub fn parameter_count(&self) -> usize {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum()
    }

    /// Close the run: totals, the exported fine-tuned model, the closing line.
    fn finish(mut self) -> Result<RunSummary, TrainError> {
        self.progress.finish();
        let elapsed = self.started.elapsed().as_secs_f64();
        let (global, world) = (self.global_batch(), self.replicas.world());
        let s = &mut self.summary;
        s.end_step = self.state.step;
        s.elapsed_s = elapsed;
        s.patches_per_s = (self.steps_run as f64 * global as f64) / elapsed.max(1e-9);
        s.bad_files = self.data.stats.bad_files();
        s.small_skips = self.data.stats.small_skips();
        s.small_resized = self.data.stats.resized();
        s.small_resized_images = self.data.stats.resized_images();
        s.nonfinite_steps = self.state.nonfinite_steps;
        if let (None, Some(run)) = (&s.last_checkpoint, &self.run) {
            s.last_checkpoint = run.checkpoints().latest()?.map(|c| c.weights);
        }
        if let (Recipe::Finetune { task, .. }, Some(run)) = (&self.plan.recipe, &self.run) {
            if self.state.step == self.total_steps {
                let out = run.path().join(format!("ipt_{}.safetensors", task.name()));
                write_atomic(&out, |p| {
                    ipt_model::checkpoint::save(p, &self.vs, &self.network)
                })?;
                s.exported = Some(out);
            }
        }
        self.progress.say(format!(
            "done: step {}/{} in {:.1} s ({:.1} patches/s{}); skipped {} unreadable file(s), {} too-small crop(s), {} NaN/Inf step(s){}",
            s.end_step,
            s.total_steps,
            elapsed,
            s.patches_per_s,
            match world {
                1 => String::new(),
                w => format!(", {:.1} per rank × {w} ranks", s.patches_per_s / w as f64),
            },
            s.bad_files,
            s.small_skips,
            s.nonfinite_steps,
            match s.small_resized {
                0 => String::new(),
                n => format!(
                    "; {n} crop(s) from {} small image(s) enlarged to the crop",
                    s.small_resized_images
                ),
            }
        ));
        Ok(self.summary)
    }
}

/// Run (or resume) a pre-training or fine-tuning run: [`Trainer::new`] then [`Trainer::fit`].
pub fn train(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    Trainer::new(cfg, opts)?.fit()
}

/// Rank 0's start: resume from the run directory's latest usable checkpoint (or start fresh),
/// record the config, and trim the log to the resumed step. Returns the state and the
/// checkpoints set aside.
fn open_state(
    run: &RunDir,
    plan: &RunPlan,
    vs: &nn::VarStore,
    adam: &mut Adam,
    verbose: bool,
) -> Result<(TrainState, Vec<String>), TrainError> {
    let resumed = resume(run, plan, vs, adam, verbose)?;
    run.write_config(&plan.config)?;
    let state = match resumed.state {
        Some(st) => {
            run.log().truncate_after(st.step)?;
            st
        }
        None => {
            // A fresh run: no stale rows from an earlier run that never checkpointed.
            let _ = std::fs::remove_file(run.log().path());
            TrainState::fresh(plan.runtime.seed)
        }
    };
    Ok((state, resumed.skipped))
}

/// Give every rank rank 0's weights (all variables, by name), optimizer state and step
/// counters; returns the state to continue from. A single process keeps its own.
fn sync_replicas(
    replicas: &Replicas,
    vs: &nn::VarStore,
    adam: &mut Adam,
    state: TrainState,
    device: Device,
) -> Result<TrainState, TrainError> {
    if replicas.world() == 1 {
        return Ok(state);
    }
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tensors: Vec<Tensor> = vars.into_iter().map(|(_, t)| t).collect();
    let ostate: Vec<(String, Tensor)> = adam
        .state()
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect();
    tensors.extend(ostate.iter().map(|(_, t)| t.shallow_clone()));
    let counters = Tensor::from_slice(&[
        state.step as i64,
        state.epoch as i64,
        state.nonfinite_steps as i64,
        state.elapsed_s.to_bits() as i64,
    ])
    .to_device(device);
    tensors.push(counters.shallow_clone());
    replicas.sync_from_main(&tensors)?;
    if replicas.is_main() {
        return Ok(state);
    }
    adam.load_state(ostate)?;
    let c = Vec::<i64>::try_from(counters.to_device(Device::Cpu))?;
    Ok(TrainState {
        step: c[0] as u64,
        epoch: c[1] as u64,
        nonfinite_steps: c[2] as u64,
        elapsed_s: f64::from_bits(c[3] as u64),
        ..state
    })
}

/// What [`resume`] found.
struct Resumed {
    /// The state of the checkpoint resumed from (`None`: a fresh run).
    state: Option<TrainState>,
    /// Checkpoints set aside, with the reason.
    skipped: Vec<String>,
}

/// Load the newest checkpoint of `run` that can be read completely (state, weights, optimizer)
/// into `vs` and `adam`. A checkpoint that cannot is set aside (renamed `*.corrupt`, kept) with a
/// warning and the next older one is tried; one of a different experiment stops the run.
fn resume(
    run: &RunDir,
    plan: &RunPlan,
    vs: &nn::VarStore,
    adam: &mut Adam,
    verbose: bool,
) -> Result<Resumed, TrainError> {
    let steps = run.checkpoints().steps()?;
    let mut skipped = Vec::new();
    for &step in steps.iter().rev() {
        let loaded = (|| -> Result<TrainState, TrainError> {
            let ck = run.checkpoints().read(step)?;
            run.check_same_experiment(&plan.fingerprint, ck.state.config.as_deref())?;
            let sd = ipt_model::checkpoint::read_state_dict(&ck.weights)?;
            ipt_model::checkpoint::copy_into(vs, &sd, &ck.weights)?;
            let optim =
                Tensor::read_safetensors(&ck.optim).map_err(|e| CheckpointDirError::Invalid {
                    path: ck.optim.clone(),
                    message: e.to_string(),
                })?;
            adam.load_state(optim)?;
            Ok(ck.state)
        })();
        match loaded {
            Ok(state) => {
                if verbose {
                    eprintln!(
                        "resuming from {} (step {}, epoch {})",
                        run.checkpoints().files(step).0.display(),
                        state.step,
                        state.epoch
                    );
                }
                return Ok(Resumed {
                    state: Some(state),
                    skipped,
                });
            }
            Err(e @ TrainError::ResumeMismatch(_)) => return Err(e),
            Err(e) => {
                let moved = run.checkpoints().set_aside(step)?;
                let why = format!(
                    "step {step}: {e} (set aside as {})",
                    moved
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                eprintln!("warning: cannot resume from checkpoint {why}; trying the previous one");
                skipped.push(why);
            }
        }
    }
    if steps.is_empty() {
        Ok(Resumed {
            state: None,
            skipped,
        })
    } else {
        Err(TrainError::NoUsableCheckpoint {
            run_dir: run.path().to_path_buf(),
            problems: skipped,
        })
    }
}

/// The network: from `[model]` for pre-training, from the pre-trained checkpoint's task when
/// fine-tuning (body, head, tail and query row copied in).
fn build_model(plan: &RunPlan, vs: &nn::VarStore) -> Result<(Ipt, IptConfig), TrainError> {
    match (&plan.recipe, &plan.network) {
        (
            Recipe::Finetune {
                task,
                from,
                source_tasks,
            },
            _,
        ) => {
            let pre = read_pretrained(from, *task, source_tasks.as_deref())?;
            let network = pre.single_task_config(*task);
            let model = Ipt::new(&vs.root(), &network)?;
            pre.copy_task_into(vs, *task, from)?;
            Ok((model, network))
        }
        (Recipe::Pretrain { .. }, network) => {
            let network = network.clone().ok_or_else(|| ConfigError::Invalid {
                path: plan.file.clone(),
                key: "model".into(),
                message: "no network was planned".into(),
            })?;
            Ok((Ipt::new(&vs.root(), &network)?, network))
        }
    }
}

/// The held-out images of the plan, when validation is on.
fn build_validation(plan: &RunPlan, tasks: &[Task]) -> Result<Option<ValidationSet>, TrainError> {
    let Some(v) = &plan.validation else {
        return Ok(None);
    };
    let seed = plan.runtime.seed;
    Ok(Some(match &v.source {
        ValidationSource::Folder { dir, size } => {
            ValidationSet::from_folder(dir, seed, tasks, v.images, *size)?
        }
        ValidationSource::Embedded { size } => {
            ValidationSet::embedded(seed, tasks, v.images, *size)?
        }
    }))
}
