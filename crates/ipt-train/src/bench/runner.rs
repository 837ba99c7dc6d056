//! The loop shared by the three protocols: run every image of a cell, time it, average.

use std::time::Instant;

use ipt_degrade::{quantize, Image};

use super::method::{Job, Method};
use super::progress::BenchProgress;
use super::report::{ImageResult, SetResult};
use super::BenchError;

/// Runs `one` over `items` (one image each) with progress, and averages the results.
///
/// Returns the averaged cell (its `seconds` is the wall time of the whole loop) and the
/// per-image rows.
pub fn run_cell<T>(
    label: &str,
    key: (&str, usize, Option<u32>),
    items: &[T],
    progress: &BenchProgress,
    mut one: impl FnMut(&T) -> Result<ImageResult, BenchError>,
) -> Result<(SetResult, Vec<ImageResult>), BenchError> {
    let (set, scale, sigma) = key;
    progress.start_cell(label, items.len());
    let start = Instant::now();
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        rows.push(one(item)?);
        progress.images.inc(1);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok((SetResult::average(set, scale, sigma, &rows, seconds), rows))
}

/// Errors on `--limit 0` (it would average nothing).
pub fn check_limit(limit: Option<usize>) -> Result<(), BenchError> {
    if limit == Some(0) {
        return Err(BenchError::Unsupported("--limit must be at least 1".into()));
    }
    Ok(())
}

/// Errors unless `out` and `target` have the same shape.
pub fn check_same_shape(out: &Image, target: &Image, what: &str) -> Result<(), BenchError> {
    if out.dim() == target.dim() {
        Ok(())
    } else {
        Err(BenchError::Shape {
            path: what.into(),
            reason: format!(
                "restored image has shape {:?} but the ground truth has {:?}",
                out.dim(),
                target.dim()
            ),
        })
    }
}

/// One image of any protocol: `method` restores `input` for `job` (timed), the output is quantized,
/// checked against the shape of `target` (`path` names the file in errors) and scored: PSNR-Y and
/// SSIM-Y with the IPT shave (the scale for SR, none otherwise), plus PSNR-RGB without shave for
/// denoising. `(set, image)` label the row.
pub fn evaluate_image(
    method: &mut Method,
    job: Job,
    (set, image): (&str, &str),
    input: &Image,
    target: &Image,
    path: &str,
    progress: &BenchProgress,
) -> Result<ImageResult, BenchError> {
    let start = Instant::now();
    let out = method.restore(input, job, &progress.windows)?;
    let seconds = start.elapsed().as_secs_f64();
    let out = quantize(&out);
    check_same_shape(&out, target, path)?;
    let metric = |source| BenchError::Metric {
        image: format!("{set}/{image}"),
        source,
    };
    let (scale, sigma) = match job {
        Job::Sr(s) => (s, None),
        Job::Denoise(sigma) => (1, Some(sigma)),
        Job::Derain => (1, None),
    };
    let shave = if scale > 1 { scale } else { 0 };
    let psnr_y = ipt_metrics::psnr_y(out.view(), target.view(), shave).map_err(metric)?;
    let ssim_y = ipt_metrics::ssim_y(out.view(), target.view(), shave).map_err(metric)?;
    let psnr_rgb = match sigma {
        Some(_) => Some(ipt_metrics::psnr_rgb(out.view(), target.view(), 0).map_err(metric)?),
        None => None,
    };
    let (_, height, width) = target.dim();
    Ok(ImageResult {
        set: set.to_string(),
        scale,
        sigma,
        image: image.to_string(),
        height,
        width,
        psnr_y,
        ssim_y,
        psnr_rgb,
        seconds,
    })
}
