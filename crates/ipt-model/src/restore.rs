//! Restoring whole images with an [`Ipt`] network: the inference pipeline behind `ipt restore`.
//!
//! image → `[1, 3, H, W]` tensor on the chosen device → (optional ×8 self-ensemble of)
//! [`forward_chop`] with the network in evaluation mode, under `no_grad` → image on the CPU,
//! `f32`, neither clamped nor rounded (the writers quantise: 8-bit PNG, or 16-bit PNG keeping
//! `value·257`).
//!
//! With [`RestoreOptions::bf16`] on CUDA, only the transformer body (≈96 % of the
//! multiply-adds) runs under bf16 autocast; the heads, tails, mean shifts and the global residual
//! stay in `f32`, so the output keeps full precision on the 0–255 scale (bf16 carries 8
//! significant bits: a whole grey level near 255).

use ndarray::Array3;
use tch::{Device, Tensor};

use crate::chop::{forward_chop, window_count, ChopError};
use crate::convert::{image_to_tensor, tensor_to_image, ConvertError};
use crate::device::{autocast_bf16, DeviceError};
use crate::ensemble::self_ensemble;
use crate::Ipt;

/// Errors of whole-image restoration.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The task index is not in the network.
    #[error("task index {task} is not in this network, which has {num_tasks} task(s) with scales {scales:?}")]
    Task {
        /// Requested index.
        task: usize,
        /// Tasks in the network.
        num_tasks: usize,
        /// Their scales.
        scales: Vec<usize>,
    },
    /// The image does not have 3 channels.
    #[error("IPT restores RGB images; this one has {0} channel(s)")]
    Channels(usize),
    /// Tiling failed.
    #[error(transparent)]
    Chop(#[from] ChopError),
    /// Converting the result failed.
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// bf16 autocast could not be set up.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Windows per network call by default: the official `--crop_batch_size` (64).
pub const DEFAULT_CROP_BATCH: usize = 64;

/// How to run whole-image inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Windows per network call (the official `--crop_batch_size`, default 64).
    pub crop_batch: usize,
    /// Average over the ×8 flips/transposes (the official `--self_ensemble`).
    pub self_ensemble: bool,
    /// Run the network under bf16 autocast (CUDA only; no effect on the CPU).
    pub bf16: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            crop_batch: DEFAULT_CROP_BATCH,
            self_ensemble: false,
            bf16: false,
        }
    }
}

/// Network evaluations needed for an `h × w` image (window count, ×8 with the self-ensemble).
pub fn windows_for(h: usize, w: usize, patch: usize, opts: &RestoreOptions) -> usize {
    let n = window_count(h, w, patch);
    if opts.self_ensemble {
        8 * n
    } else {
        n
    }
}

/// Restore `image` (CHW, RGB, 0–255) with task `task_idx` of `model` on `device`.
///
/// `on_windows(n)` is called after every network call with the number of windows it processed
/// (for a progress bar). The network's variables must already be on `device`.
pub fn restore_image(
    model: &Ipt,
    task_idx: usize,
    image: &Array3<f32>,
    device: Device,
    opts: &RestoreOptions,
    mut on_windows: impl FnMut(usize),
) -> Result<Array3<f32>, RestoreError> {
    let config = model.config();
    let scale = config.scale(task_idx).ok_or_else(|| RestoreError::Task {
        task: task_idx,
        num_tasks: config.num_tasks(),
        scales: config.scales.clone(),
    })?;
    let channels = image.dim().0;
    if channels != 3 {
        return Err(RestoreError::Channels(channels));
    }
    let patch = config.patch_size;
    if opts.bf16 {
        // resolve libtorch's autocast switch before any work, so that failure is an error
        autocast_bf16(|| ())?;
    }
    let x = image_to_tensor(image).f_to_device(device)?;
    let mut net = |b: &Tensor| {
        let y = forward_windows(model, b, task_idx, opts.bf16);
        on_windows(b.size()[0] as usize);
        y
    };
    let y = tch::no_grad(|| {
        if opts.self_ensemble {
            self_ensemble(&x, |xi| {
                forward_chop(xi, scale, patch, opts.crop_batch, &mut net)
            })
        } else {
            forward_chop(&x, scale, patch, opts.crop_batch, &mut net)
        }
    })?;
    Ok(tensor_to_image(&y)?)
}

/// The network on a batch of windows in evaluation mode: [`Ipt::forward`], except that with
/// `bf16` (and CUDA) the transformer body runs under bf16 autocast while the heads, tails, mean
/// shifts and global residual stay in `f32` (see [`Ipt::forward_with_body`]).
pub fn forward_windows(model: &Ipt, x: &Tensor, task_idx: usize, bf16: bool) -> Tensor {
    if !bf16 {
        return model.forward(x, task_idx, false);
    }
    // the autocast switch was resolved before the first call (see `restore_image`); should it
    // fail anyway, run the body in f32
    model
        .forward_with_body(x, task_idx, false, |body| {
            autocast_bf16(body).unwrap_or_else(|_| body())
        })
        .0
}
