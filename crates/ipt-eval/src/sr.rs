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

use super::data_root::DataRoot;
use super::layout::{discover_sets, BenchImage, BenchSet};
use super::method::{Job, Method};
use super::progress::BenchProgress;
use super::report::{BenchOutcome, BenchTask, Cell};
use super::runner::{check_limit, evaluate_image, run_cell};
use super::BenchError;

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
}

impl Default for SrOptions {
    fn default() -> Self {
        SrOptions {
            sets: DEFAULT_SR_SETS.iter().map(|s| s.to_string()).collect(),
            scales: DEFAULT_SR_SCALES.to_vec(),
            limit: None,
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
        None => {
            let hr = modcrop(&hr, scale);
            let (_, hh, hw) = hr.dim();
            if hh == 0 || hw == 0 {
                return Err(BenchError::Shape {
                    path: image.hr.clone(),
                    reason: format!("smaller than the scale {scale}"),
                });
            }
            let lr = imresize_uint8(&hr, 1.0 / scale as f64);
            Ok((lr, hr))
        }
    }
}

/// Runs the SR benchmark with `method` on the sets found under `root`.
pub fn run_sr(
    root: &DataRoot,
    opts: &SrOptions,
    method: &mut Method,
    progress: &BenchProgress,
) -> Result<BenchOutcome, BenchError> {
    for &scale in &opts.scales {
        if scale < 2 {
            return Err(BenchError::Unsupported(format!(
                "SR scale must be at least 2, got {scale}"
            )));
        }
        method.check(Job::Sr(scale))?;
    }
    check_limit(opts.limit)?;
    let discovery = discover_sets(root, &opts.sets)?;
    let sets: Vec<BenchSet> = discovery
        .found
        .into_iter()
        .map(|s| s.truncated(opts.limit))
        .collect();
    let mut cells = Vec::new();
    let mut images = Vec::new();
    for &scale in &opts.scales {
        for name in &opts.sets {
            let Some(set) = sets.iter().find(|s| &s.name == name) else {
                cells.push(Cell {
                    set: name.clone(),
                    scale,
                    sigma: None,
                    result: None,
                });
                continue;
            };
            let label = format!("{} x{scale}", set.name);
            let (result, rows) = run_cell(
                &label,
                (&set.name, scale, None),
                &set.images,
                progress,
                |image| {
                    let (lr, hr) = sr_pair(set, image, scale)?;
                    evaluate_image(
                        method,
                        Job::Sr(scale),
                        (&set.name, &image.name),
                        &lr,
                        &hr,
                        &image.hr.display().to_string(),
                        progress,
                    )
                },
            )?;
            cells.push(Cell {
                set: name.clone(),
                scale,
                sigma: None,
                result: Some(result),
            });
            images.extend(rows);
        }
    }
    progress.finish();
    Ok(BenchOutcome {
        task: BenchTask::Sr,
        model: method.name(),
        cells,
        images,
        missing: discovery.missing,
    })
}
