//! The IPT deraining protocol (Rain100L).
//!
//! Pairs are found by [`find_rain100l`]; each rainy image is restored whole, the output is
//! quantized, and PSNR and SSIM are computed on Y (IPT convention) with no shave.

use ipt_degrade::io::read_image;
use ipt_degrade::size_text;

use crate::data_root::DataRoot;
use crate::method::Method;
use crate::progress::BenchProgress;
use crate::protocol::{check_limit, run_grid, EvalSet, Pair};
use crate::rain_pairs::{find_rain100l, RainPair, RAIN100L};
use crate::report::{BenchOutcome, BenchTask};
use crate::{BenchError, Job};

/// The Rain100L pairs found under the data root.
struct Rain100L(Vec<RainPair>);

impl EvalSet for Rain100L {
    type Item = RainPair;

    fn name(&self) -> &str {
        RAIN100L
    }

    fn items(&self) -> &[RainPair] {
        &self.0
    }
}

/// The (rainy, clean) images of `pair`, which must have the same size.
pub fn rain_pair(pair: &RainPair) -> Result<Pair, BenchError> {
    let rainy = read_image(&pair.rainy)?;
    let clean = read_image(&pair.clean)?;
    if rainy.dim() != clean.dim() {
        return Err(BenchError::Shape {
            path: pair.rainy.clone(),
            reason: format!(
                "is {}, its clean image {} is {}",
                size_text(&rainy),
                pair.clean.display(),
                size_text(&clean)
            ),
        });
    }
    Ok(Pair {
        name: pair.name.clone(),
        path: pair.rainy.display().to_string(),
        input: rainy,
        target: clean,
    })
}

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
    let set = Rain100L(pairing.pairs);
    run_grid(
        BenchTask::Derain,
        &[Job::Derain],
        &[(RAIN100L, Some(&set))],
        vec![],
        method,
        progress,
        |_, pair, _| rain_pair(pair),
    )
}
