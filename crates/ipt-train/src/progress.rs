//! What a run shows while it trains: the progress bar, the log lines, and the window of steps
//! that becomes one `train` row of the run log every `runtime.log_every` steps.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipt_degrade::Task;

use crate::run_log::LogRow;

/// The progress bar and log lines of one process (silent unless `verbose` and rank 0).
#[derive(Debug)]
pub(crate) struct TrainProgress {
    bar: ProgressBar,
    speak: bool,
}

impl TrainProgress {
    /// A bar over `total` steps starting at `start`, shown when `speak` and stderr is a terminal.
    pub(crate) fn new(speak: bool, start: u64, total: u64) -> Self {
        let bar = if speak {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(start);
        TrainProgress { bar, speak }
    }

    /// Print a line above the bar (plain stderr when the bar is hidden).
    pub(crate) fn say(&self, line: impl AsRef<str>) {
        if !self.speak {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Move the bar to `step`.
    pub(crate) fn at(&self, step: u64) {
        self.bar.set_position(step);
    }

    /// Show the latest window's figures: on the bar, or as a log line when there is no bar.
    pub(crate) fn show_window(&self, row: &LogRow, total: u64) {
        if let LogRow::Train {
            step,
            loss,
            lr,
            patches_per_s,
            world_size,
            ..
        } = row
        {
            let mut figures = format!("loss {loss:.4}  lr {lr:.2e}  {patches_per_s:.1} patches/s");
            if *world_size > 1 {
                let per_rank = patches_per_s / *world_size as f64;
                figures += &format!(" ({per_rank:.1} per rank)");
            }
            if self.bar.is_hidden() {
                self.say(format!("step {step}/{total}  {figures}"));
            } else {
                self.bar.set_message(figures);
            }
        }
    }

    /// Remove the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Loss means over the steps since the last `train` row.
#[derive(Debug)]
pub(crate) struct Window {
    started: Instant,
    n: u64,
    loss: f64,
    l1: f64,
    con: f64,
    /// Per task: the sums of the total, L1 and contrastive terms, and the steps.
    by_task: BTreeMap<String, ([f64; 3], u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            n: 0,
            loss: 0.0,
            l1: 0.0,
            con: 0.0,
            by_task: BTreeMap::new(),
        }
    }
}

impl Window {
    /// Add one step's loss terms.
    pub(crate) fn push(&mut self, task: Task, loss: f64, l1: f64, con: f64) {
        self.n += 1;
        self.loss += loss;
        self.l1 += l1;
        self.con += con;
        let e = self
            .by_task
            .entry(task.name().to_string())
            .or_insert(([0.0; 3], 0));
        e.0[0] += loss;
        e.0[1] += l1;
        e.0[2] += con;
        e.1 += 1;
    }

    /// The `train` row ending at `step` (`task` and `lr` of that step; throughput over the
    /// window for `world` ranks with batches of `batch` patches each).
    pub(crate) fn row(
        &self,
        step: u64,
        epoch: u64,
        task: Task,
        lr: f64,
        batch: usize,
        world: usize,
    ) -> LogRow {
        let n = self.n.max(1) as f64;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let mean_of = |term: usize| -> BTreeMap<String, f64> {
            self.by_task
                .iter()
                .map(|(k, (sums, c))| (k.clone(), sums[term] / *c as f64))
                .collect()
        };
        LogRow::Train {
            step,
            epoch,
            task: task.name().to_string(),
            loss: self.loss / n,
            l1: self.l1 / n,
            contrastive: self.con / n,
            loss_by_task: mean_of(0),
            l1_by_task: mean_of(1),
            contrastive_by_task: mean_of(2),
            lr,
            patches_per_s: self.n as f64 * (world * batch) as f64 / secs,
            window: self.n,
            world_size: world,
        }
    }
}
