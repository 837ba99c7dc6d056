//! The IPT deraining protocol (Rain100L).
//!
//! Pairs are found by [`find_rain100l`]; each rainy image is restored whole, the output is
//! quantized, and PSNR and SSIM are computed on Y (IPT convention) with no shave.

use ipt_degrade::io::read_image;

use super::data_root::DataRoot;
use super::method::{Job, Method};
use super::progress::BenchProgress;
use super::rain_pairs::{find_rain100l, RAIN100L};
use super::report::{BenchOutcome, BenchTask, Cell};
use super::runner::{check_limit, evaluate_image, run_cell};
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
            evaluate_image(
                method,
                Job::Derain,
                (RAIN100L, &pair.name),
                &rainy,
                &clean,
                &pair.rainy.display().to_string(),
                progress,
            )
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
