//! The IPT deraining protocol (Rain100L, the paper's set; also Rain100H).
//!
//! Pairs are found by [`find_rain_set`]; each rainy image is restored whole, the output is
//! quantized, and PSNR and SSIM are computed on Y (IPT convention) with no shave.

use ipt_degrade::io::read_image;
use ipt_degrade::size_text;

use crate::data_root::DataRoot;
use crate::method::Method;
use crate::progress::BenchProgress;
use crate::protocol::{check_limit, run_grid, EvalSet, Pair};
use crate::rain_pairs::{find_rain_set, RainPair, RAIN100L};
use crate::report::{BenchOutcome, BenchTask};
use crate::{BenchError, Job};

/// The pairs of a deraining set found under the data root.
struct RainSet<'a> {
    name: &'a str,
    pairs: Vec<RainPair>,
}

impl EvalSet for RainSet<'_> {
    type Item = RainPair;

    fn name(&self) -> &str {
        self.name
    }

    fn items(&self) -> &[RainPair] {
        &self.pairs
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
    run_derain_set(root, RAIN100L, limit, method, progress)
}

/// Runs the deraining benchmark with `method` on `<root>/<set>` (e.g. `Rain100H`), at most
/// `limit` pairs.
pub fn run_derain_set(
    root: &DataRoot,
    set: &str,
    limit: Option<usize>,
    method: &mut Method,
    progress: &BenchProgress,
) -> Result<BenchOutcome, BenchError> {
    method.check(Job::Derain)?;
    check_limit(limit)?;
    let mut pairing = find_rain_set(&root.path, set)?;
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
    let rain_set = RainSet {
        name: set,
        pairs: pairing.pairs,
    };
    run_grid(
        BenchTask::Derain,
        &[Job::Derain],
        &[(set, Some(&rain_set))],
        vec![],
        method,
        progress,
        |_, pair, _| rain_pair(pair),
    )
}
