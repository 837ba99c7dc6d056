//! Periodic validation: mean PSNR-Y per task on held-out images, next to the task's trivial
//! baseline (bicubic upscaling for SR, the degraded input itself otherwise).
//!
//! The held-out set is built once per run, so every validation compares the same inputs:
//!
//! - by default `images` procedural images per task of LR side `size`, from a seed stream the
//!   training images never use, degraded like training crops (`ipt_degrade::synthesize`, seeded);
//! - with `validation.path` and a numeric `size`: centre crops (HR side `size·scale`) of the
//!   folder's first images that are large enough, degraded the same way;
//! - with `validation.path` and `size = "whole"`: the folder's first `images` images whole,
//!   degraded by the benchmark protocol of the task (SR: mod-crop and MATLAB bicubic ↓s, as
//!   `ipt_eval::sr`; denoising: the seeded benchmark noise of `ipt_eval::denoise`; deraining:
//!   seeded synthetic streaks).
//!
//! Every image then takes the benchmarks' path: whole-image restoration
//! (`ipt_model::restore::restore_image`, the official window stitching) and
//! `ipt_eval::score_restored` (quantized, PSNR-Y with the IPT shave). A perfect image counts as
//! [`PSNR_CAP`] dB so that one identical image does not make the mean infinite. An image that
//! cannot be restored or scored is an error that names it, never a silent number.

use std::path::Path;

use ipt_degrade::files::{list_images, Depth};
use ipt_degrade::seed::derive_seed;
use ipt_degrade::{Image, Rng8, Task};
use ipt_eval::denoise::{noisy_input, DEFAULT_NOISE_SEED};
use ipt_eval::protocol::Pair;
use ipt_eval::sr::bicubic_pair;
use ipt_eval::{score_restored, BenchError, Job, Method};
use ipt_model::restore::{restore_image, RestoreOptions};
use ipt_model::Ipt;
use ndarray::s;
use rand::SeedableRng;
use tch::Device;

use crate::config::ValidationSize;
use crate::data::{ProceduralImages, SourceError};

const TAG_VAL_IMAGES: u64 = 0x7A11;
const TAG_VAL_DEGRADE: u64 = 0xDE6A;

/// The PSNR a perfect (identical) image counts as, dB.
pub const PSNR_CAP: f64 = 100.0;

/// Errors of validation.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// Restoring an image failed (e.g. the network cannot tile it).
    #[error("validation image {image} ({task}): {source}")]
    Restore {
        /// The image.
        image: String,
        /// Its task.
        task: Task,
        /// What failed.
        source: ipt_model::restore::RestoreError,
    },
    /// Scoring an image failed (e.g. it is too small for the shave).
    #[error("validation image {image} ({task}): {source}")]
    Score {
        /// The image.
        image: String,
        /// Its task.
        task: Task,
        /// What failed.
        source: BenchError,
    },
}

/// The held-out images of one task.
#[derive(Debug)]
pub struct TaskSet {
    /// Head index of the task in the model.
    pub task_pos: usize,
    /// The task.
    pub task: Task,
    /// (degraded input, clean target) pairs.
    pub pairs: Vec<Pair>,
    /// Mean PSNR-Y of the trivial baseline on these pairs (bicubic for SR, the input itself
    /// otherwise).
    pub baseline: f64,
}

/// The result of one validation of one task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskScore {
    /// The task.
    pub task: Task,
    /// Mean PSNR-Y of the model, dB.
    pub psnr_y: f64,
    /// Mean SSIM-Y of the model.
    pub ssim_y: f64,
    /// Mean PSNR-Y of the trivial baseline on the same images, dB.
    pub baseline: f64,
}

/// A restored validation image kept to be looked at (`validation/step-N/<task>/<name>.png`).
#[derive(Debug, Clone)]
pub struct Sample {
    /// The task.
    pub task: Task,
    /// The image's name (its file stem, or `procedural-<i>`).
    pub name: String,
    /// The degraded input.
    pub input: Image,
    /// The model's output.
    pub output: Image,
    /// The clean target.
    pub target: Image,
}

/// Held-out images for every task.
#[derive(Debug)]
pub struct ValidationSet {
    /// One entry per task, in head order.
    pub tasks: Vec<TaskSet>,
}

/// The trivial method of a task: bicubic upscaling for SR, the degraded input otherwise.
pub fn baseline_method(task: Task) -> Method {
    if task.scale() > 1 {
        Method::Bicubic
    } else {
        Method::Identity
    }
}

/// The baseline's name in log lines (`bicubic`, `input`).
pub fn baseline_name(task: Task) -> &'static str {
    if task.scale() > 1 {
        "bicubic"
    } else {
        "input"
    }
}

/// Mean of capped PSNRs.
fn mean_psnr(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len().max(1) as f64;
    values.map(|p| p.min(PSNR_CAP)).sum::<f64>() / n
}

impl TaskSet {
    /// The set of `task` (head `task_pos`) over `pairs`, its baseline scored now.
    fn new(task_pos: usize, task: Task, pairs: Vec<Pair>) -> Result<Self, ValidationError> {
        let job = Job::of(task);
        let mut method = baseline_method(task);
        let bar = indicatif::ProgressBar::hidden();
        let scores = pairs
            .iter()
            .map(|p| {
                let score = |source| ValidationError::Score {
                    image: p.path.clone(),
                    task,
                    source,
                };
                let out = method.restore(&p.input, job, &bar).map_err(score)?;
                Ok(score_restored(&out, &p.target, job, &p.path)
                    .map_err(score)?
                    .psnr_y)
            })
            .collect::<Result<Vec<f64>, ValidationError>>()?;
        Ok(TaskSet {
            task_pos,
            task,
            pairs,
            baseline: mean_psnr(scores.into_iter()),
        })
    }

    /// Mean PSNR-Y of `model` on this task's pairs; the outputs of the first `keep` images are
    /// added to `samples`.
    fn evaluate(
        &self,
        model: &Ipt,
        device: Device,
        keep: usize,
        samples: &mut Vec<Sample>,
    ) -> Result<TaskScore, ValidationError> {
        let job = Job::of(self.task);
        let opts = RestoreOptions::default();
        let scores = self
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let out = restore_image(model, self.task_pos, &p.input, device, &opts, |_| {})
                    .map_err(|source| ValidationError::Restore {
                        image: p.path.clone(),
                        task: self.task,
                        source,
                    })?;
                let s = score_restored(&out, &p.target, job, &p.path).map_err(|source| {
                    ValidationError::Score {
                        image: p.path.clone(),
                        task: self.task,
                        source,
                    }
                })?;
                if i < keep {
                    samples.push(Sample {
                        task: self.task,
                        name: sample_name(&p.name),
                        input: p.input.clone(),
                        output: out,
                        target: p.target.clone(),
                    });
                }
                Ok((s.psnr_y, s.ssim_y))
            })
            .collect::<Result<Vec<(f64, f64)>, ValidationError>>()?;
        let n = scores.len().max(1) as f64;
        Ok(TaskScore {
            task: self.task,
            psnr_y: mean_psnr(scores.iter().map(|s| s.0)),
            ssim_y: scores.iter().map(|s| s.1).sum::<f64>() / n,
            baseline: self.baseline,
        })
    }
}

/// A file name for an image named `name` (a path's stem; `#` and other non-name characters
/// become `-`).
fn sample_name(name: &str) -> String {
    let stem = Path::new(name)
        .file_stem()
        .map_or_else(|| name.to_string(), |s| s.to_string_lossy().into_owned());
    stem.chars()
        .map(
            |c| match c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                true => c,
                false => '-',
            },
        )
        .collect()
}

/// `(lr, hr)` of a clean crop degraded like a training crop, seeded per (task, image).
fn synthesized(
    seed: u64,
    task: Task,
    i: usize,
    name: String,
    hr: &Image,
) -> Result<Pair, SourceError> {
    let mut rng = Rng8::seed_from_u64(derive_seed(
        seed,
        &[TAG_VAL_DEGRADE, task.seed_key(), i as u64],
    ));
    let (lr, hr) =
        ipt_degrade::synthesize(hr, task, &mut rng).map_err(|e| SourceError::Degrade {
            path: name.clone().into(),
            task,
            reason: e.to_string(),
        })?;
    Ok(Pair {
        path: name.clone(),
        name,
        input: lr,
        target: hr,
    })
}

impl ValidationSet {
    fn build(
        tasks: &[Task],
        pairs_for: impl Fn(Task) -> Result<Vec<Pair>, SourceError>,
    ) -> Result<Self, ValidationSetError> {
        let tasks = tasks
            .iter()
            .enumerate()
            .map(|(pos, &task)| Ok(TaskSet::new(pos, task, pairs_for(task)?)?))
            .collect::<Result<Vec<_>, ValidationSetError>>()?;
        Ok(ValidationSet { tasks })
    }

    /// `images` held-out procedural images per task, LR side `size`.
    pub fn embedded(
        seed: u64,
        tasks: &[Task],
        images: usize,
        size: usize,
    ) -> Result<Self, ValidationSetError> {
        let vseed = derive_seed(seed, &[TAG_VAL_IMAGES]);
        Self::build(tasks, |task| {
            let side = size * task.scale();
            let g = ProceduralImages::new(vseed, side, side);
            (0..images)
                .map(|i| {
                    let key = task.seed_key().wrapping_mul(images as u64);
                    let hr = g.image(key.wrapping_add(i as u64));
                    synthesized(seed, task, i, format!("procedural#{i}"), &hr)
                })
                .collect()
        })
    }

    /// The first `images` images of `dir` (see the module docs for `size`); an error when a
    /// file cannot be read, or no image is large enough for some task.
    pub fn from_folder(
        dir: &Path,
        seed: u64,
        tasks: &[Task],
        images: usize,
        size: ValidationSize,
    ) -> Result<Self, ValidationSetError> {
        let decoded = decode_folder(dir)?;
        let set_name = dir
            .file_name()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Self::build(tasks, |task| {
            let pairs: Vec<Pair> = match size {
                ValidationSize::Crop(lr_side) => {
                    let side = lr_side * task.scale();
                    decoded
                        .iter()
                        .filter(|(_, _, i)| i.dim().1 >= side && i.dim().2 >= side)
                        .take(images)
                        .enumerate()
                        .map(|(i, (_, path, img))| {
                            let (y, x) = ((img.dim().1 - side) / 2, (img.dim().2 - side) / 2);
                            let crop = img.slice(s![.., y..y + side, x..x + side]).to_owned();
                            synthesized(seed, task, i, path.clone(), &crop)
                        })
                        .collect::<Result<_, _>>()?
                }
                ValidationSize::Whole(_) => decoded
                    .iter()
                    .take(images)
                    .enumerate()
                    .map(|(i, (name, path, img))| {
                        let (input, target) = match Job::of(task) {
                            Job::Sr(s) => match bicubic_pair(img, s) {
                                Some(pair) => pair,
                                None => return Ok(None),
                            },
                            Job::Denoise(sigma) => (
                                noisy_input(img, &set_name, name, sigma, DEFAULT_NOISE_SEED),
                                img.clone(),
                            ),
                            Job::Derain | Job::Recipe(_) => {
                                let p = synthesized(seed, task, i, path.clone(), img)?;
                                (p.input, p.target)
                            }
                        };
                        Ok(Some(Pair {
                            name: name.clone(),
                            path: path.clone(),
                            input,
                            target,
                        }))
                    })
                    .filter_map(Result::transpose)
                    .collect::<Result<_, SourceError>>()?,
            };
            if pairs.is_empty() {
                return Err(SourceError::Empty {
                    path: dir.to_path_buf(),
                    what: match size {
                        ValidationSize::Crop(lr_side) => format!(
                            "validation image of at least {s}×{s} for {task}",
                            s = lr_side * task.scale()
                        ),
                        ValidationSize::Whole(_) => format!("validation image for {task}"),
                    },
                });
            }
            Ok(pairs)
        })
    }

    /// The baseline of every task, in head order.
    pub fn baselines(&self) -> Vec<(Task, f64)> {
        self.tasks.iter().map(|t| (t.task, t.baseline)).collect()
    }

    /// Mean PSNR-Y of `model` on every task, in head order.
    pub fn evaluate(&self, model: &Ipt, device: Device) -> Result<Vec<TaskScore>, ValidationError> {
        Ok(self.evaluate_keeping(model, device, 0)?.0)
    }

    /// [`ValidationSet::evaluate`], also returning the outputs of the first `keep` images of
    /// each task.
    pub fn evaluate_keeping(
        &self,
        model: &Ipt,
        device: Device,
        keep: usize,
    ) -> Result<(Vec<TaskScore>, Vec<Sample>), ValidationError> {
        let mut samples = Vec::new();
        let scores = tch::no_grad(|| {
            self.tasks
                .iter()
                .map(|t| t.evaluate(model, device, keep, &mut samples))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok((scores, samples))
    }
}

/// Errors of building a validation set.
#[derive(Debug, thiserror::Error)]
pub enum ValidationSetError {
    /// The folder cannot be read or has no usable image.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A baseline could not be scored on an image.
    #[error(transparent)]
    Baseline(#[from] ValidationError),
}

/// Every image of `dir` (recursively, sorted), decoded: `(file stem, path, image)`.
fn decode_folder(dir: &Path) -> Result<Vec<(String, String, Image)>, SourceError> {
    let files = list_images(dir, Depth::Recursive).map_err(|e| SourceError::List {
        path: e.path,
        reason: e.source.to_string(),
    })?;
    let mut decoded = Vec::new();
    for f in &files {
        let img = ipt_degrade::io::read_image(f).map_err(|e| SourceError::Unreadable {
            path: f.clone(),
            reason: e.to_string(),
        })?;
        let name = f
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        decoded.push((name, f.display().to_string(), img));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_names_are_file_names() {
        assert_eq!(sample_name("procedural#1"), "procedural-1");
        assert_eq!(sample_name("/data/Set5/baby.png"), "baby");
        assert_eq!(sample_name("a b"), "a-b");
    }

    #[test]
    fn unscorable_image_is_an_error_not_a_perfect_score() {
        // A 2×2 target cannot be scored with the ×2 shave: an error naming the image, where the
        // old code counted it as 100 dB (`NaN.min(100.0)`).
        let tiny = Image::from_elem((3, 2, 2), 100.0);
        let pair = Pair {
            name: "t".into(),
            path: "folder/t.png".into(),
            input: Image::from_elem((3, 1, 1), 100.0),
            target: tiny,
        };
        let err = TaskSet::new(0, Task::Sr2, vec![pair]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("folder/t.png") && msg.contains("sr2"), "{msg}");
        assert!(mean_psnr([f64::INFINITY, 30.0].into_iter()) == (PSNR_CAP + 30.0) / 2.0);
    }
}
