//! The pre-training objective: `L = L1(output, target) + λ·L_contrastive(decoder tokens)` (paper Section 3.2, λ = 0.1; MindSpore `src/utils.py`, `MyTrain`).

use tch::Tensor;

use crate::contrastive::{f_contrastive_loss, ContrastiveVariant, TEMPERATURE};
use crate::l1::f_l1_loss;
use crate::LossError;

/// Weight of the contrastive term in the official pre-training (`0.1·SupCon`).
pub const LAMBDA: f64 = 0.1;

/// Default anchor rows per contrastive block: at B = 64, N = 256 this keeps the loss's extra memory near
/// 0.3 GiB instead of ~4.5 GiB one-shot, at equal or better speed on CPU (`docs/losses.md`).
pub const DEFAULT_CHUNK: usize = 2048;

/// The combined pre-training loss. `Default` is the official setting (λ = 0.1, τ = 0.07, SupCon), computed in
/// blocks of [`DEFAULT_CHUNK`] anchor rows (same value and gradient as one shot).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainLoss {
    /// Weight λ of the contrastive term.
    pub lambda: f64,
    /// Contrastive temperature τ.
    pub tau: f64,
    /// Which contrastive formula.
    pub variant: ContrastiveVariant,
    /// Anchor rows per block of the contrastive matrix (`None`: all `B·N` at once). Same value and gradient
    /// either way; a chunk bounds the extra memory to about `chunk·B·N` elements.
    pub chunk: Option<usize>,
}

impl Default for PretrainLoss {
    fn default() -> Self {
        PretrainLoss {
            lambda: LAMBDA,
            tau: TEMPERATURE,
            variant: ContrastiveVariant::SupCon,
            chunk: Some(DEFAULT_CHUNK),
        }
    }
}

/// The loss to back-propagate and its parts for logging.
#[derive(Debug)]
pub struct LossParts {
    /// `l1 + λ·contrastive`, a scalar tensor attached to the graph.
    pub total: Tensor,
    /// Value of the L1 term.
    pub l1: f64,
    /// Value of the contrastive term before the weight λ (0 when no tokens were given).
    pub contrastive: f64,
}

impl PretrainLoss {
    /// The loss of a training step: L1 between `out` and `target`, plus λ·contrastive of `tokens` (`[B, N, d]`
    /// decoder tokens) when given. Pass `None` for fine-tuning, where the official code turns the term off.
    ///
    /// # Panics
    /// On invalid input; see [`PretrainLoss::f_compute`].
    pub fn compute(&self, out: &Tensor, target: &Tensor, tokens: Option<&Tensor>) -> LossParts {
        match self.f_compute(out, target, tokens) {
            Ok(parts) => parts,
            Err(e) => panic!("{e}"),
        }
    }

    /// Fallible [`PretrainLoss::compute`]: the checks of [`f_l1_loss`] and of
    /// [`f_contrastive_loss`].
    pub fn f_compute(
        &self,
        out: &Tensor,
        target: &Tensor,
        tokens: Option<&Tensor>,
    ) -> Result<LossParts, LossError> {
        let l1 = f_l1_loss(out, target)?;
        let l1_value = l1.f_double_value(&[])?;
        let Some(tokens) = tokens else {
            return Ok(LossParts {
                total: l1,
                l1: l1_value,
                contrastive: 0.0,
            });
        };
        let contrastive = f_contrastive_loss(tokens, self.tau, self.variant, self.chunk)?;
        let contrastive_value = contrastive.f_double_value(&[])?;
        let total = l1 + contrastive.to_kind(out.kind()) * self.lambda;
        Ok(LossParts {
            total,
            l1: l1_value,
            contrastive: contrastive_value,
        })
    }
}
