//! Periodic validation: PSNR-Y per task on held-out images.
//!
//! The held-out set is built once per run, so every validation compares the same inputs: by
//! default `images` procedural images per task from a seed stream the training images never use;
//! with `validation.path`, centre crops of the folder's first images. LR inputs are synthesised
//! with a fixed seed. The model runs in eval mode on the whole LR image (one call when the image
//! is exactly one model patch, the official `forward_chop` otherwise); the output is quantised and
//! scored with `ipt_metrics::psnr_y` (IPT convention, shave = scale).

use ipt_degrade::{Image, Task};
use ipt_model::Ipt;
use ndarray::s;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use crate::data::procedural::derive_seed;
use crate::data::source::{list_images_recursive, SourceError};
use crate::data::ProceduralImages;

const TAG_VAL_IMAGES: u64 = 0x7A11;
const TAG_VAL_DEGRADE: u64 = 0xDE6A;

/// The held-out images of one task.
#[derive(Debug)]
pub struct TaskSet {
    /// Head index of the task in the model.
    pub task_pos: usize,
    /// The task.
    pub task: Task,
    /// LR inputs, `[n, 3, h, w]` on the CPU.
    pub lr: Tensor,
    /// HR targets.
    pub hr: Vec<Image>,
}

/// Held-out images for every task.
#[derive(Debug)]
pub struct ValidationSet {
    /// One entry per task, in head order.
    pub tasks: Vec<TaskSet>,
}

fn build(hr_for: impl Fn(Task, usize) -> Vec<Image>, seed: u64, tasks: &[Task]) -> ValidationSet {
    let sets = tasks
        .iter()
        .enumerate()
        .map(|(pos, &task)| {
            let mut lrs = Vec::new();
            let mut hrs = Vec::new();
            for (i, img) in hr_for(task, task.scale()).into_iter().enumerate() {
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                    seed,
                    &[TAG_VAL_DEGRADE, task.index() as u64, i as u64],
                ));
                let (lr, hr) = ipt_degrade::synthesize(&img, task, &mut rng);
                lrs.push(ipt_model::convert::image_to_tensor(&lr));
                hrs.push(hr);
            }
            TaskSet {
                task_pos: pos,
                task,
                lr: Tensor::cat(&lrs, 0),
                hr: hrs,
            }
        })
        .collect();
    ValidationSet { tasks: sets }
}

impl ValidationSet {
    /// `images` held-out procedural images per task, LR side `size`.
    pub fn embedded(seed: u64, tasks: &[Task], images: usize, size: usize) -> Self {
        let vseed = derive_seed(seed, &[TAG_VAL_IMAGES]);
        build(
            |task, scale| {
                let g = ProceduralImages::new(vseed, size * scale, size * scale);
                (0..images)
                    .map(|i| g.image((task.index() * images + i) as u64))
                    .collect()
            },
            seed,
            tasks,
        )
    }

    /// Centre crops (HR side `size·scale`) of the first `images` images of `dir` that are large
    /// enough; an error when a file cannot be read or none is large enough.
    pub fn from_folder(
        dir: &std::path::Path,
        seed: u64,
        tasks: &[Task],
        images: usize,
        size: usize,
    ) -> Result<Self, SourceError> {
        let files = list_images_recursive(dir)?;
        let mut decoded = Vec::new();
        for f in &files {
            let img = ipt_degrade::io::read_image(f).map_err(|e| SourceError::Unreadable {
                path: f.clone(),
                reason: e.to_string(),
            })?;
            decoded.push(img);
        }
        for &t in tasks {
            let side = size * t.scale();
            let n = decoded
                .iter()
                .filter(|i| i.dim().1 >= side && i.dim().2 >= side)
                .count();
            if n == 0 {
                return Err(SourceError::Empty {
                    path: dir.to_path_buf(),
                    what: format!("validation image of at least {side}×{side} for {t}"),
                });
            }
        }
        Ok(build(
            |_, scale| {
                let side = size * scale;
                decoded
                    .iter()
                    .filter(|i| i.dim().1 >= side && i.dim().2 >= side)
                    .take(images)
                    .map(|i| {
                        let (y, x) = ((i.dim().1 - side) / 2, (i.dim().2 - side) / 2);
                        i.slice(s![.., y..y + side, x..x + side]).to_owned()
                    })
                    .collect()
            },
            seed,
            tasks,
        ))
    }

    /// Mean PSNR-Y of the model on every task, in head order. Errors only when an image is
    /// smaller than the model's patch (it cannot be tiled).
    pub fn evaluate(
        &self,
        model: &Ipt,
        device: Device,
    ) -> Result<Vec<(Task, f64)>, ipt_model::chop::ChopError> {
        let patch = model.config().patch_size as i64;
        tch::no_grad(|| {
            self.tasks
                .iter()
                .map(|set| {
                    let lr = set.lr.to_device(device);
                    let size = lr.size();
                    let sr = if size[2] == patch && size[3] == patch {
                        model.forward(&lr, set.task_pos, false)
                    } else {
                        let outs = (0..size[0])
                            .map(|i| {
                                ipt_model::chop::forward_chop(
                                    &lr.narrow(0, i, 1),
                                    set.task.scale(),
                                    patch as usize,
                                    64,
                                    |b| model.forward(b, set.task_pos, false),
                                )
                            })
                            .collect::<Result<Vec<Tensor>, _>>()?;
                        Tensor::cat(&outs, 0)
                    };
                    let sr = sr.clamp(0.0, 255.0).round().to_device(Device::Cpu);
                    let mut sum = 0.0;
                    for (i, hr) in set.hr.iter().enumerate() {
                        let img =
                            ipt_model::convert::tensor_to_image(&sr.narrow(0, i as i64, 1)).ok();
                        let p = img
                            .and_then(|img| {
                                ipt_metrics::psnr_y(img.view(), hr.view(), set.task.scale()).ok()
                            })
                            .unwrap_or(f64::NAN);
                        sum += p.min(100.0);
                    }
                    Ok((set.task, sum / set.hr.len().max(1) as f64))
                })
                .collect()
        })
    }
}
