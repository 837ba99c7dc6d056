//! The IPT deraining protocol (Rain100L).
//!
//! Pairs are found by [`find_rain100l`]; each rainy image is restored whole, the output is
//! quantized, and PSNR and SSIM are computed on Y (IPT convention) with no shave.

use std::time::Instant;

use ipt_degrade::io::read_image;
use ipt_degrade::quantize;

use super::data_root::DataRoot;
use super::method::{Job, Method};
use super::progress::BenchProgress;
use super::rain_pairs::{find_rain100l, RAIN100L};
use super::report::{BenchOutcome, BenchTask, Cell, ImageResult};
use super::runner::{check_limit, check_same_shape, run_cell};
use super::BenchError;

/// Runs the deraining benchmark with `method` on `<root>/Rain100L`, at most `limit` pairs.
pub fn run_derain(
    root: &DataRoot,
    limit: Option<usize>,
    method: &mut Method,
    progress: &BenchProgress,
) -> Result<BenchOutcome, BenchError> {
    method.check(Job::Derain)?;
    check_limit(limit)?;
    let mut pairing = find_rain100l(&root.path)?;
    for path in &pairing.unpaired_rainy {
        progress.println(&format!(
            "warning: {} has no clean partner; skipped",
            path.display()
        ));
    }
    for path in &pairing.unpaired_clean {
        progress.println(&format!(
            "warning: {} has no rainy partner; skipped",
            path.display()
        ));
    }
    if let Some(n) = limit {
        pairing.pairs.truncate(n);
    }
    let (result, rows) = run_cell(
        RAIN100L,
        (RAIN100L, 1, None),
        &pairing.pairs,
        progress,
        |pair| {
            let rainy = read_image(&pair.rainy)?;
            let clean = read_image(&pair.clean)?;
            if rainy.dim() != clean.dim() {
                return Err(BenchError::Shape {
                    path: pair.rainy.clone(),
                    reason: format!(
                        "shape {:?} differs from its clean image {} {:?}",
                        rainy.dim(),
                        pair.clean.display(),
                        clean.dim()
                    ),
                });
            }
            let start = Instant::now();
            let out = method.restore(&rainy, Job::Derain, &progress.windows)?;
            let seconds = start.elapsed().as_secs_f64();
            let out = quantize(&out);
            check_same_shape(&out, &clean, &pair.rainy.display().to_string())?;
            let id = format!("{RAIN100L}/{}", pair.name);
            let metric = |source| BenchError::Metric {
                image: id.clone(),
                source,
            };
            let psnr_y = ipt_metrics::psnr_y(out.view(), clean.view(), 0).map_err(metric)?;
            let ssim_y = ipt_metrics::ssim_y(out.view(), clean.view(), 0).map_err(metric)?;
            let (_, height, width) = clean.dim();
            Ok(ImageResult {
                set: RAIN100L.into(),
                scale: 1,
                sigma: None,
                image: pair.name.clone(),
                height,
                width,
                psnr_y,
                ssim_y,
                psnr_rgb: None,
                seconds,
            })
        },
    )?;
    progress.finish();
    Ok(BenchOutcome {
        task: BenchTask::Derain,
        model: method.name(),
        cells: vec![Cell {
            set: RAIN100L.into(),
            scale: 1,
            sigma: None,
            result: Some(result),
        }],
        images: rows,
        missing: vec![],
    })
}
