//! The patch contrastive term of the pre-training loss (paper Section 3.2, Eq. 5; MindSpore `research/cv/IPT/src/loss.py`), in two forms:
//!
//! - [`ContrastiveVariant::SupCon`]: what the official MindSpore training code computes (`SupConLoss`,
//!   contrast mode "all"): every token is an anchor, the other tokens of its image are its positives, the tokens
//!   of the other images its negatives.
//! - [`ContrastiveVariant::PaperEq5`]: the paper's Eq. 5: anchor patch `i1` of image `j`, positive patch `i2` of
//!   the same image, negatives the patch at the same position `i2` in the other images.
//!
//! Both take the decoder tokens `[B, N, d]`, L2-normalise each token as MindSpore's `L2Normalize` does
//! (`x / sqrt(max(Σx², 1e-4))`), and work on the `M × M` similarity matrix of the `M = B·N` normalised tokens,
//! rows ordered image-major (`r = b·N + n`; the official code orders them patch-major, and both losses are
//! invariant to the order of the rows). See `docs/losses.md` for the formulas.
//!
//! With `chunk = None` the loss is one plain autograd expression over the whole matrix. With `chunk = Some(k)`
//! the matrix is visited in blocks of `k` anchor rows: each block yields its share of the value and the exact
//! gradient with respect to its similarities, which is folded into `∂L/∂z` at once and the block dropped; the
//! gradient is attached with the surrogate `value + (Σ z·g − (Σ z·g).detach())`, so that autograd carries it
//! through the normalisation to the tokens. Peak extra memory is then one `k × M` block plus `O(M·d)`.

mod paper_eq5;
mod supcon;

use std::fmt;
use std::str::FromStr;

use tch::{Kind, Tensor};

use crate::LossError;

/// Temperature of the official pre-training run (`SupConLoss(temperature=0.07)`).
pub const TEMPERATURE: f64 = 0.07;
/// `base_temperature` of the official `SupConLoss`: the loss is scaled by `tau / BASE_TEMPERATURE`, which is 1 at
/// the official `tau = 0.07`.
pub const BASE_TEMPERATURE: f64 = 0.07;
/// Floor on the squared norm in MindSpore's `L2Normalize` (its default `epsilon`).
pub const NORMALIZE_EPS: f64 = 1e-4;
/// Added to the SupCon denominator inside the log, as the official code does.
pub const LOG_EPS: f64 = 1e-8;

/// Which contrastive formula to use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ContrastiveVariant {
    /// Supervised-contrastive form of the official training code (the default).
    #[default]
    #[serde(rename = "supcon")]
    SupCon,
    /// The paper's Eq. 5 (same token position across images as negatives).
    #[serde(rename = "paper_eq5")]
    PaperEq5,
}

impl ContrastiveVariant {
    /// Every variant.
    pub const ALL: [ContrastiveVariant; 2] =
        [ContrastiveVariant::SupCon, ContrastiveVariant::PaperEq5];

    /// The name used in configs and on the command line: `"supcon"` or `"paper_eq5"`.
    pub fn name(self) -> &'static str {
        match self {
            ContrastiveVariant::SupCon => "supcon",
            ContrastiveVariant::PaperEq5 => "paper_eq5",
        }
    }
}

impl fmt::Display for ContrastiveVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`ContrastiveVariant::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown contrastive variant {0:?} (expected \"supcon\" or \"paper_eq5\")")]
pub struct ParseVariantError(pub String);

impl FromStr for ContrastiveVariant {
    type Err = ParseVariantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContrastiveVariant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| ParseVariantError(s.to_string()))
    }
}

/// The contrastive loss of the decoder tokens `[B, N, d]`, a scalar of kind `Float` (or `Double` for `Double`
/// tokens; `Half` and `BFloat16` tokens are computed in `Float`).
///
/// `tau` is the temperature (official: [`TEMPERATURE`]; the paper's Eq. 5 has none, i.e. `tau = 1`), `chunk`
/// the number of anchor rows per block (`None`: the whole `M × M` matrix at once).
///
/// # Panics
/// On invalid input; see [`f_contrastive_loss`] for the checks.
pub fn contrastive_loss(
    tokens: &Tensor,
    tau: f64,
    variant: ContrastiveVariant,
    chunk: Option<usize>,
) -> Tensor {
    match f_contrastive_loss(tokens, tau, variant, chunk) {
        Ok(loss) => loss,
        Err(e) => panic!("{e}"),
    }
}

/// Fallible [`contrastive_loss`]. Fails when `tokens` is not a floating-point `[B, N, d]` tensor, when `tau` is
/// not finite and positive, when `chunk` is `Some(0)`, when SupCon gets `N < 2` (no positives) or Eq. 5 gets
/// `B < 2` (no negatives).
pub fn f_contrastive_loss(
    tokens: &Tensor,
    tau: f64,
    variant: ContrastiveVariant,
    chunk: Option<usize>,
) -> Result<Tensor, LossError> {
    let layout = Layout::of(tokens)?;
    if !(tau.is_finite() && tau > 0.0) {
        return Err(LossError::Temperature(tau));
    }
    if chunk == Some(0) {
        return Err(LossError::ZeroChunk);
    }
    if !tokens.is_floating_point() {
        return Err(LossError::NotFloat {
            what: "contrastive tokens",
            kind: tokens.kind(),
        });
    }
    layout.check(variant)?;
    let tokens = match tokens.kind() {
        Kind::Half | Kind::BFloat16 => tokens.to_kind(Kind::Float),
        _ => tokens.shallow_clone(),
    };
    let z = l2_normalize(&tokens).reshape([layout.rows(), -1]);
    let chunk = chunk.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
    Ok(match (variant, chunk) {
        (ContrastiveVariant::SupCon, None) => supcon::one_shot(&z, layout, tau),
        (ContrastiveVariant::SupCon, Some(k)) => chunked(&z, layout, tau, k, supcon::block),
        (ContrastiveVariant::PaperEq5, None) => paper_eq5::one_shot(&z, layout, tau),
        (ContrastiveVariant::PaperEq5, Some(k)) => chunked(&z, layout, tau, k, paper_eq5::block),
    })
}

/// L2-normalise along the last dimension as MindSpore's `L2Normalize` does: `x / sqrt(max(Σx², 1e-4))`.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let sq = x
        .square()
        .sum_dim_intlist([-1i64].as_slice(), true, x.kind());
    x / sq.clamp_min(NORMALIZE_EPS).sqrt()
}

/// How the `M = B·N` rows of the similarity matrix are grouped: row `r` is token `r % N` of image `r / N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Images in the batch (B).
    pub batch: i64,
    /// Tokens per image (N).
    pub tokens: i64,
}

impl Layout {
    fn of(tokens: &Tensor) -> Result<Layout, LossError> {
        match tokens.size().as_slice() {
            &[b, n, d] if b >= 1 && n >= 1 && d >= 1 => Ok(Layout {
                batch: b,
                tokens: n,
            }),
            shape => Err(LossError::TokensShape {
                shape: shape.to_vec(),
            }),
        }
    }

    fn check(self, variant: ContrastiveVariant) -> Result<(), LossError> {
        let need = match variant {
            ContrastiveVariant::SupCon if self.tokens < 2 => "N >= 2 tokens per image (positives)",
            ContrastiveVariant::PaperEq5 if self.batch < 2 => "B >= 2 images (negatives)",
            _ => return Ok(()),
        };
        Err(LossError::TooFewTokens {
            variant: variant.name(),
            need,
            batch: self.batch,
            tokens: self.tokens,
        })
    }

    /// M = B·N.
    pub fn rows(self) -> i64 {
        self.batch * self.tokens
    }

    /// Image index of each row in `[r0, r0 + k)`, as an int64 tensor `[k]`.
    pub fn images_of_rows(self, r0: i64, k: i64, device: tch::Device) -> Tensor {
        Tensor::arange_start(r0, r0 + k, (Kind::Int64, device)).floor_divide_scalar(self.tokens)
    }
}

/// Share of one block of anchor rows: `(value, g)` where `value` is the block's contribution to the loss (a
/// `Double` scalar) and `g = ∂L/∂sim` for the block's raw similarities `sim = z_R · zᵀ` (`[k, M]`).
type BlockFn = fn(sim: Tensor, r0: i64, layout: Layout, tau: f64) -> (Tensor, Tensor);

/// Row-blocked loss with the exact gradient attached by the surrogate trick (see the module docs).
fn chunked(z: &Tensor, layout: Layout, tau: f64, chunk: i64, block: BlockFn) -> Tensor {
    let m = layout.rows();
    let (value, grad) = tch::no_grad(|| {
        let z = z.detach();
        let zt = z.tr();
        let mut dz = z.zeros_like();
        let mut value = Tensor::zeros([], (Kind::Double, z.device()));
        let mut r0 = 0;
        while r0 < m {
            let k = chunk.min(m - r0);
            let zr = z.narrow(0, r0, k);
            let (v, g) = block(zr.mm(&zt), r0, layout, tau);
            value += v;
            // ∂sim_rs/∂z: sim_rs = z_r·z_s, so the block feeds its anchor rows (g·z) and every column (gᵀ·z_R).
            let _ = dz.narrow(0, r0, k).addmm_(&g, &z);
            let _ = dz.addmm_(&g.tr(), &zr);
            r0 += k;
        }
        (value.to_kind(z.kind()), dz)
    });
    let s = (z * grad).sum(z.kind());
    value + (&s - s.detach())
}
