//! The recorder: what a run shows and writes. Progress bar and log lines, `metrics.jsonl` rows
//! (a window of steps every `runtime.log_every` steps, and each validation), validation calls,
//! checkpoints and plots, the exported fine-tuned model, and the [`RunSummary`]. Rank 0 alone
//! owns the run directory; on the other ranks the recorder writes nothing.

use std::path::PathBuf;

use ipt_degrade::Task;

use crate::checkpoint::{write_atomic, BestRecord, CheckpointDir, CheckpointDirError, TrainState};
use crate::engine::{StepEngine, StepOutput};
use crate::error::TrainError;
use crate::progress::{TrainProgress, Window};
use crate::run::RunSummary;
use crate::run_dir::RunDir;
use crate::run_log::LogRow;
use crate::tensorboard::EventWriter;
use crate::validation::{baseline_name, Sample, TaskScore, ValidationSet};

/// How often and how much the recorder writes.
pub(crate) struct RecorderSettings {
    /// The run directory's path (also on the ranks that do not open it).
    pub run_dir: PathBuf,
    /// Show progress and log lines.
    pub verbose: bool,
    /// A `metrics.jsonl` row every this many steps.
    pub log_every: u64,
    /// Checkpoints kept.
    pub keep_last: usize,
    /// Batch size per process.
    pub batch_size: usize,
    /// Processes of the job.
    pub world: usize,
    /// Planned total steps.
    pub total_steps: u64,
    /// Keep the weights that score best on this task's validation.
    pub keep_best: Option<Task>,
    /// Restored validation images written per task.
    pub save_images: usize,
    /// Write TensorBoard event files.
    pub tensorboard: bool,
}

/// Progress, run log, validation, checkpoints and the summary of one run.
pub(crate) struct Recorder {
    run: Option<RunDir>,
    settings: RecorderSettings,
    validation: Option<ValidationSet>,
    progress: TrainProgress,
    window: Window,
    summary: RunSummary,
    /// The best validation so far (`checkpoint.keep_best`), as recorded in the run directory.
    best: Option<BestRecord>,
    /// TensorBoard events (rank 0, when on).
    events: Option<EventWriter>,
}

impl Recorder {
    /// A recorder for a run continuing from `start_step`; `summary` holds what start-up found.
    pub fn new(
        run: Option<RunDir>,
        settings: RecorderSettings,
        validation: Option<ValidationSet>,
        start_step: u64,
        summary: RunSummary,
    ) -> Result<Self, TrainError> {
        let progress = TrainProgress::new(
            settings.verbose && run.is_some(),
            start_step,
            settings.total_steps,
        );
        let best = match (&run, settings.keep_best) {
            (Some(run), Some(_)) => run.checkpoints().best()?,
            _ => None,
        };
        let events = match (&run, settings.tensorboard) {
            (Some(run), true) => Some(EventWriter::create(run.path())?),
            _ => None,
        };
        Ok(Recorder {
            run,
            settings,
            validation,
            progress,
            window: Window::default(),
            summary,
            best,
            events,
        })
    }

    /// Print a line (rank 0, when verbose), above the progress bar.
    pub fn say(&self, line: impl AsRef<str>) {
        self.progress.say(line);
    }

    /// Record a finished step; every `log_every` steps (and at `end`) log the window.
    pub fn log_step(&mut self, out: &StepOutput, epoch: u64, end: u64) -> Result<(), TrainError> {
        let Some(loss) = out.loss else {
            return Ok(());
        };
        self.summary.losses.push((out.step, out.task, loss.total));
        self.window
            .push(out.task, loss.total, loss.l1, loss.contrastive);
        self.progress.at(out.step);
        let s = &self.settings;
        if out.step.is_multiple_of(s.log_every) || out.step == end {
            let row = self
                .window
                .row(out.step, epoch, out.task, out.lr, s.batch_size, s.world);
            self.progress.show_window(&row, s.total_steps);
            if let Some(run) = &self.run {
                run.log().append(&row)?;
            }
            if let Some(events) = &mut self.events {
                events.scalars(out.step, &train_scalars(&row))?;
            }
            self.window = Window::default();
        }
        Ok(())
    }

    /// Score the model on the held-out images (when validation is on), log the row and the
    /// line `validation @ step N: sr2 34.90 dB (bicubic 33.70), …`.
    pub fn validate(
        &mut self,
        engine: &mut StepEngine,
        step: u64,
    ) -> Result<Vec<TaskScore>, TrainError> {
        let Some(vset) = &self.validation else {
            return Ok(Vec::new());
        };
        let (keep_best, run) = (self.settings.keep_best, self.run.as_ref());
        let keep = run.map_or(0, |_| self.settings.save_images);
        let best_so_far = self.best.as_ref().map(|b| b.psnr_y);
        let (scores, samples, new_best) =
            engine.with_evaluated_weights(|e| -> Result<_, TrainError> {
                let (scores, samples) = vset.evaluate_keeping(e.model(), e.device(), keep)?;
                let better = keep_best
                    .and_then(|task| scores.iter().find(|s| s.task == task))
                    .filter(|s| best_so_far.is_none_or(|b| s.psnr_y > b));
                let new_best = match (better, run) {
                    (Some(s), Some(run)) => {
                        let record = BestRecord {
                            step,
                            task: s.task.name().to_string(),
                            psnr_y: s.psnr_y,
                            averaged: e.has_average(),
                            weights: String::new(),
                        };
                        Some(
                            run.checkpoints()
                                .save_best(&record, |p| e.save_weights(p))?,
                        )
                    }
                    _ => None,
                };
                Ok((scores, samples, new_best))
            })?;
        if let Some(run) = &self.run {
            write_samples(run, step, &samples)?;
        }
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
                ssim_y: by_name(|s| s.ssim_y),
            })?;
        }
        if let Some(events) = &mut self.events {
            events.scalars(step, &validation_scalars(&scores))?;
            let images: Vec<(String, &ipt_degrade::Image)> = samples
                .iter()
                .flat_map(|s| {
                    let tag = |what: &str| format!("val/{}/{}/{what}", s.task.name(), s.name);
                    [
                        (tag("input"), &s.input),
                        (tag("output"), &s.output),
                        (tag("target"), &s.target),
                    ]
                })
                .collect();
            if !images.is_empty() {
                events.images(step, &images)?;
            }
        }
        self.say(format!(
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
        if let Some((record, file)) = new_best {
            self.say(format!(
                "best {} so far: {:.2} dB at step {step} -> {}",
                record.task,
                record.psnr_y,
                file.display()
            ));
            self.summary.best_checkpoint = Some(file);
            self.best = Some(record);
        }
        Ok(scores)
    }

    /// Write the checkpoint of `state` (weights, optimizer, state; rank 0) and redraw the
    /// plots. Returns the weights file (on the other ranks, the file rank 0 writes).
    pub fn save_checkpoint(
        &mut self,
        engine: &StepEngine,
        state: &TrainState,
    ) -> Result<PathBuf, TrainError> {
        let Some(run) = &self.run else {
            return Ok(CheckpointDir::at(&self.settings.run_dir)
                .files(state.step)
                .0);
        };
        let ostate = engine.optimizer_state();
        let weights = run.checkpoints().save(
            state,
            |p| engine.save_weights(p),
            |p| {
                ipt_model::checkpoint::safetensors_file::write_safetensors(
                    p,
                    &ostate,
                    Default::default(),
                )
            },
            self.settings.keep_last,
        )?;
        run.plot()?;
        self.summary.last_checkpoint = Some(weights.clone());
        Ok(weights)
    }

    /// Close the progress bar.
    pub fn finish_progress(&self) {
        self.progress.finish();
    }

    /// The summary so far, to complete at the end: the latest checkpoint filled in, and the
    /// fine-tuned model of `export` written (rank 0).
    pub fn close(
        &mut self,
        engine: &mut StepEngine,
        export: Option<Task>,
    ) -> Result<&mut RunSummary, TrainError> {
        let s = &mut self.summary;
        if let (None, Some(run)) = (&s.last_checkpoint, &self.run) {
            s.last_checkpoint = run.checkpoints().latest()?.map(|c| c.weights);
        }
        if let (Some(task), Some(run)) = (export, &self.run) {
            let out = run.path().join(format!("ipt_{}.safetensors", task.name()));
            engine.with_evaluated_weights(|e| write_atomic(&out, |p| e.save_weights(p)))?;
            s.exported = Some(out);
        }
        Ok(s)
    }

    /// The summary.
    pub fn into_summary(self) -> RunSummary {
        self.summary
    }
}

/// Write each sample as `validation/step-N/<task>/<name>.png` in the run directory (atomically).
fn write_samples(run: &RunDir, step: u64, samples: &[Sample]) -> Result<(), TrainError> {
    for s in samples {
        let dir = run
            .path()
            .join("validation")
            .join(format!("step-{step:08}"))
            .join(s.task.name());
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointDirError::Io {
            path: dir.clone(),
            source,
        })?;
        let file = dir.join(format!("{}.png", s.name));
        write_atomic(&file, |p| ipt_degrade::io::write_png(p, &s.output))?;
    }
    Ok(())
}

/// The TensorBoard scalars of a training row: `train/loss`, `train/l1`, `train/contrastive`,
/// `train/lr`, `train/patches_per_s` and `train/{loss,l1,contrastive}_by_task/<task>`.
fn train_scalars(row: &LogRow) -> Vec<(String, f64)> {
    let LogRow::Train {
        loss,
        l1,
        contrastive,
        loss_by_task,
        l1_by_task,
        contrastive_by_task,
        lr,
        patches_per_s,
        ..
    } = row
    else {
        return Vec::new();
    };
    let mut out = vec![
        ("train/loss".to_string(), *loss),
        ("train/l1".to_string(), *l1),
        ("train/contrastive".to_string(), *contrastive),
        ("train/lr".to_string(), *lr),
        ("train/patches_per_s".to_string(), *patches_per_s),
    ];
    for (name, by_task) in [
        ("loss", loss_by_task),
        ("l1", l1_by_task),
        ("contrastive", contrastive_by_task),
    ] {
        out.extend(
            by_task
                .iter()
                .map(|(t, l)| (format!("train/{name}_by_task/{t}"), *l)),
        );
    }
    out
}

/// The TensorBoard scalars of a validation: `val/psnr_y/<task>`, `val/ssim_y/<task>` and
/// `val/baseline_psnr_y/<task>`.
fn validation_scalars(scores: &[TaskScore]) -> Vec<(String, f64)> {
    scores
        .iter()
        .flat_map(|s| {
            let t = s.task.name();
            [
                (format!("val/psnr_y/{t}"), s.psnr_y),
                (format!("val/ssim_y/{t}"), s.ssim_y),
                (format!("val/baseline_psnr_y/{t}"), s.baseline),
            ]
        })
        .collect()
}
