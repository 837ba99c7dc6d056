//! The training loop shared by pre-training and fine-tuning: [`Trainer`] puts together the
//! start-up (`startup`: device, process group, run directory, model, resume, replica
//! sync), the step engine ([`StepEngine`]: one optimizer step per batch) and the recorder
//! (`recorder`: progress, `metrics.jsonl`, validation, checkpoints), and applies the policy in
//! [`Trainer::fit`]: NaN/Inf skips, the stop agreed over the ranks, when to validate and save.
//!
//! A NaN/Inf loss skips the step and is counted; too many in a row write a checkpoint and stop
//! with [`TrainError::Diverged`]. Before step `n` the libtorch RNG is seeded from `(seed, n)`,
//! and the batch is a function of `(seed, n)`, so a resumed run repeats the uninterrupted one.
//!
//! Launched as one rank of a data-parallel job ([`RunOptions::distributed`]), the trainer joins
//! the process group; rank 0 alone opens the run directory (resuming, writing checkpoints, logs,
//! plots and validating) and gives the other ranks its weights, optimizer state and step. Each
//! rank trains its slice of the global batch (see [`crate::data::sampler`]); the contrastive
//! term is computed per rank over its own tokens.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipt_degrade::Task;
use ipt_model::Ipt;

use crate::checkpoint::TrainState;
use crate::config::ExperimentConfig;
use crate::data::pipeline::BatchFactory;
use crate::data::{Batch, Pipeline};
use crate::engine::StepEngine;
pub use crate::engine::{LossTerms, StepOutput};
pub use crate::error::TrainError;
use crate::plan::{Recipe, RunPlan};
use crate::recorder::{Recorder, RecorderSettings};
pub use crate::run::{RunOptions, RunSummary, StopSignal};
use crate::startup::{build_validation, start, Started};
use crate::validation::{TaskScore, ValidationSet};

/// A pre-training or fine-tuning run, ready to step.
pub struct Trainer {
    plan: RunPlan,
    opts: RunOptions,
    engine: StepEngine,
    recorder: Recorder,
    data: Arc<BatchFactory>,
    state: TrainState,
    batches_per_epoch: u64,
    total_steps: u64,
    /// Consecutive NaN/Inf steps.
    nonfinite_in_row: usize,
    /// Some rank asked to stop (agreed in the last step).
    stop_agreed: bool,
    clock: Clock,
}

/// Wall-clock time of the training steps.
struct Clock {
    /// When this process's loop started.
    started: Instant,
    /// Seconds of training before this process (from the resumed checkpoint).
    elapsed_before: f64,
    /// Steps run in this process.
    steps_run: u64,
}

impl Trainer {
    /// Prepare a run: resolve the config into a [`RunPlan`] (checking it and its paths before
    /// anything expensive), then [`Trainer::from_plan`].
    pub fn new(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<Trainer, TrainError> {
        let plan = RunPlan::resolve(cfg, opts.mode, &opts.roots, &opts.config_path)?;
        Trainer::from_plan(plan, opts)
    }

    /// Start a planned run: open the run directory, build the model (fresh, or from the
    /// pre-trained checkpoint when fine-tuning), the optimizer and the data, and resume from
    /// the directory's latest checkpoint if it has one.
    pub fn from_plan(plan: RunPlan, opts: &RunOptions) -> Result<Trainer, TrainError> {
        let Started {
            run,
            engine,
            state,
            skipped,
            data,
        } = start(&plan, opts)?;
        let tasks = plan.recipe.tasks();
        // Rank 0 validates while the others wait in the next step's collectives.
        let validation = match run.is_some() {
            true => build_validation(&plan, &tasks)?,
            false => None,
        };
        let batches_per_epoch = data.sampler.batches_per_epoch() as u64;
        let total_steps = plan.schedule.total_steps(batches_per_epoch);
        let summary = RunSummary {
            rank: engine.replicas().rank(),
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
            validation_source: plan.validation.as_ref().map(|v| v.source.clone()),
            ..RunSummary::default()
        };
        let settings = RecorderSettings {
            run_dir: opts.run_dir.clone(),
            verbose: opts.verbose,
            log_every: plan.runtime.log_every as u64,
            keep_last: plan.checkpoint.keep_last,
            batch_size: plan.batch_size,
            world: engine.replicas().world(),
            total_steps,
            keep_best: plan.checkpoint.keep_best,
            save_images: plan.validation.as_ref().map_or(0, |v| v.save_images),
            tensorboard: plan.runtime.tensorboard,
        };
        let recorder = Recorder::new(run, settings, validation, state.step, summary)?;
        let trainer = Trainer {
            clock: Clock {
                started: Instant::now(),
                elapsed_before: state.elapsed_s,
                steps_run: 0,
            },
            plan,
            opts: opts.clone(),
            engine,
            recorder,
            data,
            batches_per_epoch,
            total_steps,
            state,
            nonfinite_in_row: 0,
            stop_agreed: false,
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
        let (workers, queue) = (self.plan.data.workers, self.plan.data.queue);
        let mut batches = Pipeline::start(Arc::clone(&self.data), self.state.step, workers, queue);
        self.clock.started = Instant::now();
        while self.state.step < end {
            let batch = batches.next_batch()?;
            for warning in batches.stats().take_warnings() {
                self.recorder.say(warning);
            }
            let out = self.step(&batch)?;
            if out.loss.is_some() {
                self.recorder.log_step(&out, self.state.epoch, end)?;
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
                self.recorder.finish_progress();
                return Err(TrainError::Interrupted {
                    step: self.state.step,
                    checkpoint,
                });
            }
        }
        drop(batches);
        self.finish()
    }

    /// One optimizer step on `batch` ([`StepEngine::step`]) with the run's policy: the step
    /// counters advance, a NaN/Inf loss is counted (too many in a row write a checkpoint and
    /// return [`TrainError::Diverged`]), and the replicas are checked when due.
    pub fn step(&mut self, batch: &Batch) -> Result<StepOutput, TrainError> {
        let out = self
            .engine
            .step(batch, self.state.step, self.opts.stop.requested())?;
        self.stop_agreed = out.stop;
        self.state.step = out.step;
        self.state.epoch = self.state.step / self.batches_per_epoch;
        self.clock.steps_run += 1;
        if let Some(total) = out.nonfinite_loss {
            self.skip_nonfinite(total)?;
            return Ok(out);
        }
        self.nonfinite_in_row = 0;
        if self.due(self.plan.runtime.check_replicas_every, false) {
            self.engine.check_replicas(self.state.step)?;
        }
        Ok(out)
    }

    /// Count a step skipped for its NaN/Inf loss `total`; stop after too many in a row.
    fn skip_nonfinite(&mut self, total: f64) -> Result<(), TrainError> {
        self.state.nonfinite_steps += 1;
        self.nonfinite_in_row += 1;
        self.recorder.say(format!(
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
        Ok(())
    }

    /// Score the model on the held-out images (when validation is on), log the row and the
    /// line `validation @ step N: sr2 34.90 dB (bicubic 33.70), …`.
    pub fn validate(&mut self) -> Result<Vec<TaskScore>, TrainError> {
        self.recorder.validate(&mut self.engine, self.state.step)
    }

    /// Write a checkpoint of the current step (weights, optimizer, state; rank 0 only) and
    /// redraw the plots. Returns the weights file (on the other ranks of a data-parallel job,
    /// the file rank 0 writes, after checking that every rank holds the same weights).
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        self.engine.check_replicas(self.state.step)?; // no collective for a single process
        self.state.elapsed_s =
            self.clock.elapsed_before + self.clock.started.elapsed().as_secs_f64();
        let stats = &self.data.stats;
        let state = TrainState {
            bad_files: stats.bad_files(),
            small_skips: stats.small_skips(),
            small_resized: stats.resized(),
            config: Some(self.plan.config.to_toml()),
            ..self.state.clone()
        };
        self.recorder.save_checkpoint(&self.engine, &state)
    }

    /// The model being trained.
    pub fn model(&self) -> &Ipt {
        self.engine.model()
    }

    /// The step engine.
    pub fn engine(&self) -> &StepEngine {
        &self.engine
    }

    /// Completed optimizer steps.
    pub fn steps_done(&self) -> u64 {
        self.state.step
    }

    /// Trainable parameters of the model.
    pub fn parameter_count(&self) -> usize {
        self.engine.parameter_count()
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

    /// Patches per optimizer step over all ranks.
    fn global_batch(&self) -> usize {
        self.engine.replicas().world() * self.plan.batch_size
    }

    /// The opening line: what runs, how long, on what.
    fn announce(&self, tasks: &[Task]) {
        let batch = self.plan.batch_size;
        self.recorder.say(format!(
            "{} run `{}`: {} steps ({} per epoch), batch {}, tasks [{}], device {:?}, {} parameters",
            self.plan.recipe.describe(),
            self.plan.name(),
            self.total_steps,
            self.batches_per_epoch,
            match self.engine.replicas().world() {
                1 => batch.to_string(),
                w => format!("{} ({w} ranks × {batch} per rank)", self.global_batch()),
            },
            tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            self.engine.device(),
            self.parameter_count()
        ));
    }

    /// Close the run: totals, the exported fine-tuned model, the closing line.
    fn finish(mut self) -> Result<RunSummary, TrainError> {
        self.recorder.finish_progress();
        let elapsed = self.clock.started.elapsed().as_secs_f64();
        let (global, world) = (self.global_batch(), self.engine.replicas().world());
        let export = match &self.plan.recipe {
            Recipe::Finetune { task, .. } if self.state.step == self.total_steps => Some(*task),
            _ => None,
        };
        let stats = &self.data.stats;
        let s = self.recorder.close(&mut self.engine, export)?;
        s.end_step = self.state.step;
        s.elapsed_s = elapsed;
        s.patches_per_s = (self.clock.steps_run as f64 * global as f64) / elapsed.max(1e-9);
        s.bad_files = stats.bad_files();
        s.small_skips = stats.small_skips();
        s.small_resized = stats.resized();
        s.small_resized_images = stats.resized_images();
        s.nonfinite_steps = self.state.nonfinite_steps;
        let line = closing_line(s, world);
        self.recorder.say(line);
        Ok(self.recorder.into_summary())
    }
}

/// `done: step N/M in … s (… patches/s); skipped …`.
fn closing_line(s: &RunSummary, world: usize) -> String {
    format!(
        "done: step {}/{} in {:.1} s ({:.1} patches/s{}); skipped {} unreadable file(s), {} too-small crop(s), {} NaN/Inf step(s){}",
        s.end_step,
        s.total_steps,
        s.elapsed_s,
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
    )
}

/// Run (or resume) a pre-training or fine-tuning run: [`Trainer::new`] then [`Trainer::fit`].
pub fn train(cfg: &ExperimentConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    Trainer::new(cfg, opts)?.fit()
}
