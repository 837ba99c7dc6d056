//! The recorder: what a run shows and writes. Progress bar and log lines, `metrics.jsonl` rows
//! (a window of steps every `runtime.log_every` steps, and each validation), validation calls,
//! checkpoints and plots, the exported fine-tuned model, and the [`RunSummary`]. Rank 0 alone
//! owns the run directory; on the other ranks the recorder writes nothing.

use std::path::PathBuf;

use ipt_degrade::Task;
use tch::Tensor;

use crate::checkpoint::{write_atomic, CheckpointDir, TrainState};
use crate::engine::{StepEngine, StepOutput};
use crate::error::TrainError;
use crate::progress::{TrainProgress, Window};
use crate::run::RunSummary;
use crate::run_dir::RunDir;
use crate::run_log::LogRow;
use crate::validation::{baseline_name, TaskScore, ValidationSet};

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
}

/// Progress, run log, validation, checkpoints and the summary of one run.
pub(crate) struct Recorder {
    run: Option<RunDir>,
    settings: RecorderSettings,
    validation: Option<ValidationSet>,
    progress: TrainProgress,
    window: Window,
    summary: RunSummary,
}

impl Recorder {
    /// A recorder for a run continuing from `start_step`; `summary` holds what start-up found.
    pub fn new(
        run: Option<RunDir>,
        settings: RecorderSettings,
        validation: Option<ValidationSet>,
        start_step: u64,
        summary: RunSummary,
    ) -> Self {
        let progress = TrainProgress::new(
            settings.verbose && run.is_some(),
            start_step,
            settings.total_steps,
        );
        Recorder {
            run,
            settings,
            validation,
            progress,
            window: Window::default(),
            summary,
        }
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
            self.window = Window::default();
        }
        Ok(())
    }

    /// Score the model on the held-out images (when validation is on), log the row and the
    /// line `validation @ step N: sr2 34.90 dB (bicubic 33.70), …`.
    pub fn validate(
        &mut self,
        engine: &StepEngine,
        step: u64,
    ) -> Result<Vec<TaskScore>, TrainError> {
        let Some(vset) = &self.validation else {
            return Ok(Vec::new());
        };
        let scores = vset.evaluate(engine.model(), engine.device())?;
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
        let ostate = engine.adam().state();
        let weights = run.checkpoints().save(
            state,
            |p| engine.save_weights(p),
            |p| Tensor::write_safetensors(&ostate, p),
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
        engine: &StepEngine,
        export: Option<Task>,
    ) -> Result<&mut RunSummary, TrainError> {
        let s = &mut self.summary;
        if let (None, Some(run)) = (&s.last_checkpoint, &self.run) {
            s.last_checkpoint = run.checkpoints().latest()?.map(|c| c.weights);
        }
        if let (Some(task), Some(run)) = (export, &self.run) {
            let out = run.path().join(format!("ipt_{}.safetensors", task.name()));
            write_atomic(&out, |p| engine.save_weights(p))?;
            s.exported = Some(out);
        }
        Ok(s)
    }

    /// The summary.
    pub fn into_summary(self) -> RunSummary {
        self.summary
    }
}
