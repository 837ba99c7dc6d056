//! Restoring whole images with an [`Ipt`] network: the inference pipeline behind `ipt restore`.
//!
//! image → `[1, 3, H, W]` tensor on the chosen device → (optional ×8 self-ensemble of) the
//! streamed window stitching of [`crate::chop`] with the network in evaluation mode, under
//! `no_grad` → image on the CPU, `f32`, neither clamped nor rounded (the writers quantise: 8-bit
//! PNG, or 16-bit PNG keeping `value·257`). Peak memory is the output image plus a few bands of
//! rows and one batch of windows, whatever the image size.
//!
//! With [`RestoreOptions::bf16`] on CUDA, only the transformer body (≈96 % of the
//! multiply-adds) runs under bf16 autocast; the heads, tails, mean shifts and the global residual
//! stay in `f32`, so the output keeps full precision on the 0–255 scale (bf16 carries 8
//! significant bits: a whole grey level near 255).

use ndarray::{s, Array3, ArrayView3};
use tch::{Device, Tensor};

use crate::chop::{Chop, ChopError, ChopGeometry, ChopMode};
use crate::convert::{image_to_tensor, ConvertError};
use crate::device::{autocast_bf16, DeviceError};
use crate::ensemble::{ensemble_input, member_view_mut, MEMBERS};
use crate::Ipt;

/// Windows per network call unless told otherwise: the official `--crop_batch_size` default.
pub const DEFAULT_CROP_BATCH: usize = 64;

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

/// How to run whole-image inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Windows per network call (the official `--crop_batch_size`, [`DEFAULT_CROP_BATCH`]).
    pub crop_batch: usize,
    /// Average over the ×8 flips/transposes (the official `--self_ensemble`).
    pub self_ensemble: bool,
    /// Run the network under bf16 autocast (CUDA only; no effect on the CPU).
    pub bf16: bool,
    /// Window layout: the official exact stitching (default) or the fast one.
    pub chop: ChopMode,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            crop_batch: DEFAULT_CROP_BATCH,
            self_ensemble: false,
            bf16: false,
            chop: ChopMode::Exact,
        }
    }
}

impl RestoreOptions {
    fn members(&self) -> usize {
        if self.self_ensemble {
            MEMBERS
        } else {
            1
        }
    }
}

/// Network evaluations needed for an `h × w` image: [`ChopGeometry::window_count`] (the same
/// for every ensemble member), ×8 with the self-ensemble; 0 if `patch` cannot be tiled in the
/// chosen mode (restoring then fails with [`ChopError::Patch`]).
pub fn windows_for(h: usize, w: usize, patch: usize, opts: &RestoreOptions) -> usize {
    ChopGeometry::new(h, w, patch, 1, opts.chop).map_or(0, |g| g.window_count()) * opts.members()
}

/// Memory that restoring one image holds at its peak, apart from the network and its
/// activations (see [`memory_estimate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The restored image: `3 · h·s · w·s` `f32` values.
    pub output: u64,
    /// Everything else that grows with the image: the input tensor and its padded copy, one
    /// ensemble input, the output rows still being summed (a few bands) and one batch of window
    /// inputs and outputs.
    pub working: u64,
}

impl MemoryEstimate {
    /// `output + working`.
    pub fn total(&self) -> u64 {
        self.output + self.working
    }
}

/// Bytes needed to restore an `h × w` RGB image at `scale` with windows of side `patch`.
pub fn memory_estimate(
    h: usize,
    w: usize,
    scale: usize,
    patch: usize,
    opts: &RestoreOptions,
) -> MemoryEstimate {
    const F32: u64 = 4;
    const CHANNELS: u64 = 3;
    let (h64, w64, s, p) = (h as u64, w as u64, scale as u64, patch as u64);
    let (hp, wp) = (h64.max(p), w64.max(p));
    let output = CHANNELS * h64 * s * w64 * s * F32;
    // the caller's image, its tensor copy (padded when smaller than a window), and one ensemble
    // member's input
    let inputs = (2 + u64::from(opts.self_ensemble)) * CHANNELS * hp * wp * F32;
    // the output rows being summed, as the band-by-band assembly bounds them; bands run along
    // the width (and along the height for the transposed ensemble members)
    let chop = Chop {
        scale,
        patch,
        mode: opts.chop,
        crop_batch: opts.crop_batch,
    };
    let (pending_rows, pending_width) = if opts.self_ensemble {
        chop.max_pending(h.max(w), h.max(w))
    } else {
        chop.max_pending(h, w)
    };
    let pending = CHANNELS * pending_rows as u64 * pending_width as u64 * F32;
    // window inputs, outputs on the device and their CPU copies
    let batch = opts.crop_batch as u64 * CHANNELS * p * p * (1 + 2 * s * s) * F32;
    MemoryEstimate {
        output,
        working: inputs + pending + batch,
    }
}

/// Restore `image` (CHW, RGB, 0–255) with task `task_idx` of `model` on `device`.
///
/// Windows are stitched as in [`crate::chop`] (mode [`RestoreOptions::chop`]) and streamed: the
/// finished output rows of each band go straight into the result (with the self-ensemble, into
/// one accumulator, in the orientation of each member), so memory is the output image plus a
/// few bands (see [`memory_estimate`]). `on_windows(n)` is called after every network call with
/// the number of windows it processed (for a progress bar; [`windows_for`] gives the total). The
/// network's variables must already be on `device`. The result is on the CPU, `f32`, neither
/// clamped nor rounded.
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
    let (channels, h, w) = image.dim();
    if channels != 3 {
        return Err(RestoreError::Channels(channels));
    }
    let chop = Chop {
        scale,
        patch: config.patch_size,
        mode: opts.chop,
        crop_batch: opts.crop_batch,
    };
    chop.geometry(h, w)?;
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
    let mut out = Array3::<f32>::zeros((3, h * scale, w * scale));
    for member in 0..opts.members() {
        let xi = if opts.self_ensemble {
            ensemble_input(&x, member)?
        } else {
            x.shallow_clone()
        };
        let mut acc = member_view_mut(out.view_mut(), member);
        chop.stream(
            &xi,
            &mut net,
            |row, block: &Tensor| -> Result<(), RestoreError> {
                let (c, n, bw) = block_dims(block)?;
                let (ac, ah, aw) = acc.dim();
                if c != ac || bw != aw || row + n > ah {
                    return Err(ConvertError::Shape(block.size()).into());
                }
                let data = Vec::<f32>::try_from(&block.f_contiguous()?.f_view([-1])?)?;
                let block = ArrayView3::from_shape((c, n, bw), &data)
                    .map_err(|_| ConvertError::Shape(vec![c as i64, n as i64, bw as i64]))?;
                let mut rows = acc.slice_mut(s![.., row..row + n, ..]);
                rows += &block;
                Ok(())
            },
        )?;
    }
    if opts.self_ensemble {
        out.mapv_inplace(|v| v / MEMBERS as f32);
    }
    Ok(out)
}

/// `(C, n, W)` of a `[C, n, W]` block.
fn block_dims(block: &Tensor) -> Result<(usize, usize, usize), ConvertError> {
    match block.size().as_slice() {
        &[c, n, w] => Ok((c as usize, n as usize, w as usize)),
        _ => Err(ConvertError::Shape(block.size())),
    }
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
