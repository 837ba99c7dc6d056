//! The IPT super-resolution protocol.
//!
//! For each set and scale `s`:
//! 1. HR is read as RGB (grayscale replicated). When the set has the EDSR layout and
//!    `LR_bicubic/X{s}/<name>x{s}.png` exists, that file is the input and HR is cropped top-left
//!    to `(LR_h·s, LR_w·s)` (the official data loader); otherwise HR is mod-cropped to `s` and the
//!    input is MATLAB `imresize(HR, 1/s, 'bicubic')` on the `uint8` image (the way EDSR's LR files
//!    were made: antialiased, each pass rounded).
//! 2. The method restores the whole image (IPT: `forward_chop`, optional ×8 self-ensemble).
//! 3. The output is quantized (MATLAB `uint8`).
//! 4. PSNR and SSIM on Y (IPT convention, `ipt_metrics::psnr_y` / `ssim_y`) with `s` pixels
//!    shaved, per image, then averaged over the set.

use ipt_degrade::io::read_image;
use ipt_degrade::resize::imresize_uint8;
use ipt_degrade::{modcrop, Image};

use crate::data_root::DataRoot;
use crate::layout::{find_sets, BenchImage, BenchSet};
use crate::method::Method;
use crate::progress::BenchProgress;
use crate::protocol::run_grid;
use crate::report::{BenchOutcome, BenchTask};
use crate::{BenchError, Job};

/// The sets of IPT's SR table.
pub const DEFAULT_SR_SETS: &[&str] = &["Set5", "Set14", "B100", "Urban100"];

/// The scales of IPT's SR table.
pub const DEFAULT_SR_SCALES: &[usize] = &[2, 3, 4];

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrOptions {
    /// Set names, in display order.
    pub sets: Vec<String>,
    /// Scales, in display order.
    pub scales: Vec<usize>,
    /// At most this many images per set (a quick look).
    pub limit: Option<usize>,
    /// Report missing sets as `missing` rows instead of stopping.
    pub skip_missing: bool,
}

impl Default for SrOptions {
    fn default() -> Self {
        SrOptions {
            sets: DEFAULT_SR_SETS.iter().map(|s| s.to_string()).collect(),
            scales: DEFAULT_SR_SCALES.to_vec(),
            limit: None,
            skip_missing: false,
        }
    }
}

/// The (LR input, HR target) pair of `image` at `scale` (step 1 of the protocol).
pub fn sr_pair(
    set: &BenchSet,
    image: &BenchImage,
    scale: usize,
) -> Result<(Image, Image), BenchError> {
    let hr = read_image(&image.hr)?;
    match set.lr_bicubic(image, scale) {
        Some(lr_path) => {
            let lr = read_image(&lr_path)?;
            let (_, lh, lw) = lr.dim();
            let (_, hh, hw) = hr.dim();
            if lh * scale > hh || lw * scale > hw {
                return Err(BenchError::Shape {
                    path: lr_path,
                    reason: format!(
                        "LR {lw}x{lh} times {scale} exceeds its HR image {hw}x{hh} ({})",
                        image.hr.display()
                    ),
                });
            }
            let hr = hr
                .slice(ndarray::s![.., ..lh * scale, ..lw * scale])
                .to_owned();
            Ok((lr, hr))
        }
        None => bicubic_pair(&hr, scale).ok_or_else(|| BenchError::Shape {
            path: image.hr.clone(),
            reason: format!("smaller than the scale {scale}"),
        }),
    }
}

/// The protocol's pair when no LR file is given: HR mod-cropped to a multiple of `scale`, LR =
/// MATLAB `imresize(HR, 1/scale, 'bicubic')` on the `uint8` image. `None` when the image is
/// smaller than the scale.
pub fn bicubic_pair(hr: &Image, scale: usize) -> Option<(Image, Image)> {
    let hr = modcrop(hr, scale);
    let (_, hh, hw) = hr.dim();
    if hh == 0 || hw == 0 {
        return None;
    }
    let lr = imresize_uint8(&hr, 1.0 / scale as f64);
    Some((lr, hr))
}

/// Runs the SR benchmark with `method` on the sets found under `root`.
pub fn run_sr(
    root: &DataRoot,
    opts: &SrOptions,
    method: &mut Method,
    progress: &BenchProgress,
) -> Result<BenchOutcome, BenchError> {
    if let Some(&scale) = opts.scales.iter().find(|&&s| s < 2) {
        return Err(BenchError::Unsupported(format!(
            "SR scale must be at least 2, got {scale}"
        )));
    }
    let jobs: Vec<Job> = opts.scales.iter().map(|&s| Job::Sr(s)).collect();
    let found = find_sets(root, &opts.sets, opts.limit, opts.skip_missing)?;
    run_grid(
        BenchTask::Sr,
        &jobs,
        &found.slots(),
        found.missing.clone(),
        method,
        progress,
        |set, image, job| {
            let (input, target) = sr_pair(set, image, job.scale())?;
            Ok(image.pair(input, target))
        },
    )
}
