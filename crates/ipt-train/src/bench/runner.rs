//! The loop shared by the three protocols: run every image of a cell, time it, average.

use std::time::Instant;

use ipt_degrade::Image;

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
