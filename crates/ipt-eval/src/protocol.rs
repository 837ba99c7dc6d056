//! The loop every protocol shares: for each job (scale or σ) and each requested set, restore
//! every image of the set, score it ([`crate::score`]), time it and average it into one cell.
//!
//! A protocol only says how an item of a set becomes an (input, target) pair for a job (see
//! [`crate::sr::sr_pair`], [`crate::denoise::noisy_input`], the Rain100L pairs).

use std::time::Instant;

use ipt_degrade::Image;

use crate::job::Job;
use crate::method::Method;
use crate::progress::BenchProgress;
use crate::report::{BenchOutcome, BenchTask, Cell, ImageResult, MissingSet, SetResult};
use crate::score::score_restored;
use crate::BenchError;

/// A set of items a protocol evaluates (benchmark images, or Rain100L pairs).
pub trait EvalSet {
    /// One item (an image, a pair of files).
    type Item;
    /// The set's name in reports.
    fn name(&self) -> &str;
    /// Its items, in evaluation order.
    fn items(&self) -> &[Self::Item];
}

/// The degraded input and clean target of one item for one job.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The item's name in reports (file stem or pair key).
    pub name: String,
    /// The file that names the item in error messages.
    pub path: String,
    /// What the method restores.
    pub input: Image,
    /// What the output is scored against.
    pub target: Image,
}

/// A requested set: found (`Some`), or missing under its requested name.
pub type SetSlot<'a, S> = (&'a str, Option<&'a S>);

/// Runs `method` on every `(job, set)` cell in that order (jobs outer, sets inner, as the
/// paper's tables read), making each item's pair with `pair`. Missing sets give a `missing` cell.
pub fn run_grid<S: EvalSet>(
    task: BenchTask,
    jobs: &[Job],
    sets: &[SetSlot<'_, S>],
    missing: Vec<MissingSet>,
    method: &mut Method,
    progress: &BenchProgress,
    pair: impl Fn(&S, &S::Item, Job) -> Result<Pair, BenchError>,
) -> Result<BenchOutcome, BenchError> {
    for &job in jobs {
        method.check(job)?;
    }
    let mut cells = Vec::new();
    let mut images = Vec::new();
    for &job in jobs {
        for &(requested, set) in sets {
            let cell = |result| Cell {
                set: requested.to_string(),
                scale: job.scale(),
                sigma: job.sigma(),
                task: job.recipe_task().map(|t| t.name().to_string()),
                result,
            };
            let Some(set) = set else {
                cells.push(cell(None));
                continue;
            };
            progress.start_cell(&cell_label(set.name(), job), set.items().len());
            let start = Instant::now();
            let mut rows = Vec::with_capacity(set.items().len());
            for item in set.items() {
                let p = pair(set, item, job)?;
                rows.push(evaluate_image(method, job, set.name(), &p, progress)?);
                progress.images.inc(1);
            }
            let seconds = start.elapsed().as_secs_f64();
            let result = SetResult::average(set.name(), job.scale(), job.sigma(), &rows, seconds);
            cells.push(cell(Some(result)));
            images.extend(rows);
        }
    }
    progress.finish();
    Ok(BenchOutcome {
        task,
        model: method.name(),
        cells,
        images,
        missing,
    })
}

/// `Set5 x2`, `CBSD68 s30`, `Rain100L`, `classic5 jpeg10`.
fn cell_label(set: &str, job: Job) -> String {
    match job {
        Job::Sr(s) => format!("{set} x{s}"),
        Job::Denoise(sigma) => format!("{set} s{sigma}"),
        Job::Derain => set.to_string(),
        Job::Recipe(task) => format!("{set} {task}"),
    }
}

/// Errors on `--limit 0` (it would average nothing).
pub fn check_limit(limit: Option<usize>) -> Result<(), BenchError> {
    if limit == Some(0) {
        return Err(BenchError::Unsupported("--limit must be at least 1".into()));
    }
    Ok(())
}

/// One image of any protocol: `method` restores `pair.input` for `job` (timed), and the output
/// is scored against `pair.target` ([`score_restored`]).
pub fn evaluate_image(
    method: &mut Method,
    job: Job,
    set: &str,
    pair: &Pair,
    progress: &BenchProgress,
) -> Result<ImageResult, BenchError> {
    let start = Instant::now();
    let out = method.restore(&pair.input, job, &progress.windows)?;
    let seconds = start.elapsed().as_secs_f64();
    let s = score_restored(&out, &pair.target, job, &pair.path)?;
    let (_, height, width) = pair.target.dim();
    Ok(ImageResult {
        set: set.to_string(),
        scale: job.scale(),
        sigma: job.sigma(),
        image: pair.name.clone(),
        height,
        width,
        psnr_y: s.psnr_y,
        ssim_y: s.ssim_y,
        psnr_rgb: s.psnr_rgb,
        seconds,
        task: job.recipe_task().map(|t| t.name().to_string()),
        psnr_b: s.psnr_b,
    })
}
