//! The supervised term: mean absolute error, as the official code computes it.

use tch::{Reduction, Tensor};

use crate::LossError;

/// Mean absolute error between `out` and `target`, averaged over every element.
///
/// IPT applies it on the 0–255 scale (the official code's `nn.L1Loss()` on images in [0, 255], after the
/// mean shift, which cancels in the difference), so the values are ~255× those of a [0, 1] pipeline.
///
/// # Panics
/// When the shapes or devices differ, or the tensors are not floating point; see [`f_l1_loss`].
pub fn l1_loss(out: &Tensor, target: &Tensor) -> Tensor {
    match f_l1_loss(out, target) {
        Ok(loss) => loss,
        Err(e) => panic!("{e}"),
    }
}

/// Fallible [`l1_loss`]: checks that `out` and `target` have the same shape, device and a float kind.
pub fn f_l1_loss(out: &Tensor, target: &Tensor) -> Result<Tensor, LossError> {
    if out.size() != target.size() {
        return Err(LossError::ShapeMismatch {
            output: out.size(),
            target: target.size(),
        });
    }
    if out.device() != target.device() {
        return Err(LossError::DeviceMismatch {
            what: "L1 loss",
            a: out.device(),
            b: target.device(),
        });
    }
    for (what, t) in [("L1 output", out), ("L1 target", target)] {
        if !t.is_floating_point() {
            return Err(LossError::NotFloat {
                what,
                kind: t.kind(),
            });
        }
    }
    Ok(out.f_l1_loss(target, Reduction::Mean)?)
}
