//! The protocol for any task: clean images degraded by the task's recipe at a fixed seed.
//!
//! For each task and set:
//! 1. The clean image is read at full size, keeping a grey file grey (one channel; also a file
//!    stored as colour or palette whose three channels are equal, such as Classic5's BMPs): a grey
//!    image is degraded in grey (a grey JPEG for the `jpeg` op, as OpenCV's `imencode` of a
//!    one-channel image in the published JPEG benchmarks), restored by IPT as three equal
//!    channels and scored on its luma ([`crate::IptMethod::restore`]).
//! 2. The input is the task's recipe applied to it with [`degrade_named`]: the draws depend on
//!    `--seed`, the task and `<set>/<image file name>` only. A task of scale `s` crops the clean
//!    image to a multiple of `s` first (the target).
//! 3. The method restores the whole image; the output is quantized and scored: PSNR-Y and
//!    SSIM-Y (IPT convention, shave = the task's scale for scale > 1, else none) and PSNR-B on Y
//!    (SwinIR's JPEG protocol).
//!
//! `bench-jpeg` is this protocol with the shipped `jpeg10`…`jpeg40` tasks on Classic5.

use ipt_degrade::io::{read_image_with, Channels};
use ipt_degrade::rain::RainSource;
use ipt_degrade::synthesize::degrade_named;
use ipt_degrade::Task;

use crate::data_root::DataRoot;
use crate::layout::find_sets;
use crate::method::Method;
use crate::progress::BenchProgress;
use crate::protocol::run_grid;
use crate::report::{BenchOutcome, BenchTask};
use crate::{BenchError, Job};

/// The default base seed of the recipes' draws (`--seed`).
pub const DEFAULT_RECIPE_SEED: u64 = 0;

/// The JPEG benchmark's set (grey; SwinIR's and ARCNN's table).
pub const DEFAULT_JPEG_SETS: &[&str] = &["classic5"];

/// The JPEG benchmark's tasks (qualities 10, 20, 30, 40).
pub const DEFAULT_JPEG_TASKS: &[&str] = &["jpeg10", "jpeg20", "jpeg30", "jpeg40"];

/// What to run.
#[derive(Debug, Clone)]
pub struct RecipeOptions {
    /// Set names, in display order.
    pub sets: Vec<String>,
    /// Tasks, in display order.
    pub tasks: Vec<Task>,
    /// At most this many images per set.
    pub limit: Option<usize>,
    /// Report missing sets as `missing` rows instead of stopping.
    pub skip_missing: bool,
    /// Base seed of the recipes' draws.
    pub seed: u64,
    /// Where the `rain` op takes its streaks.
    pub rain: RainSource,
}

/// Runs the recipe benchmark with `method` on the sets found under `root`.
pub fn run_recipe(
    root: &DataRoot,
    opts: &RecipeOptions,
    method: &mut Method,
    progress: &BenchProgress,
) -> Result<BenchOutcome, BenchError> {
    let jobs: Vec<Job> = opts.tasks.iter().map(|&t| Job::Recipe(t)).collect();
    let found = find_sets(root, &opts.sets, opts.limit, opts.skip_missing)?;
    run_grid(
        BenchTask::Recipe,
        &jobs,
        &found.slots(),
        found.missing.clone(),
        method,
        progress,
        |set, image, job| {
            let clean = grey_if_equal(read_image_with(&image.hr, Channels::Native)?);
            let task = job.recipe_task().unwrap_or(Task::Denoise30);
            let file = image
                .hr
                .file_name()
                .map_or_else(|| image.name.clone(), |n| n.to_string_lossy().into_owned());
            let key = format!("{}/{file}", set.name);
            let (input, target) = degrade_named(&clean, task, &opts.rain, opts.seed, &key)
                .map_err(|e| BenchError::Shape {
                    path: image.hr.clone(),
                    reason: format!("task {task}: {e}"),
                })?;
            Ok(image.pair(input, target))
        },
    )
}

/// One channel when all three are equal (a grey image stored as colour or with a palette).
fn grey_if_equal(img: ipt_degrade::Image) -> ipt_degrade::Image {
    let (c, _, _) = img.dim();
    let equal = c == 3 && {
        let (r, g, b) = (
            img.index_axis(ndarray::Axis(0), 0),
            img.index_axis(ndarray::Axis(0), 1),
            img.index_axis(ndarray::Axis(0), 2),
        );
        r == g && g == b
    };
    if equal {
        img.index_axis(ndarray::Axis(0), 0)
            .to_owned()
            .insert_axis(ndarray::Axis(0))
    } else {
        img
    }
}
