//! The ×8 geometric self-ensemble of the official code (`model/__init__.py`, `forward_x8`).
//!
//! The whole-image function (normally [`crate::chop::forward_chop`] around the network) runs on
//! eight versions of the input: identity, W-flip, H-flip, H+W-flip, and the same four after an
//! H↔W transpose, in the official order
//! `[x, v(x), h(x), h(v(x)), t(x), t(v(x)), t(h(x)), t(h(v(x)))]`.
//! Output `i` is mapped back (transpose if `i > 3`, then H-flip if `i mod 4 > 1`, then W-flip if
//! `i mod 4` is odd) and the eight are averaged with `cat(…).mean(0)`, as in the official code.

use tch::Tensor;

/// One of the three elementary transforms of the ensemble (the official `'v'`, `'h'`, `'t'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    /// Flip the width (last) axis: the official `'v'`.
    FlipW,
    /// Flip the height axis: the official `'h'`.
    FlipH,
    /// Swap height and width: the official `'t'`.
    Transpose,
}

impl Transform {
    fn apply(self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let n = x.dim() as i64;
        match self {
            Transform::FlipW => x.f_flip([n - 1]),
            Transform::FlipH => x.f_flip([n - 2]),
            Transform::Transpose => x.f_transpose(n - 2, n - 1)?.f_contiguous(),
        }
    }
}

/// The eight inputs of the ensemble, in the official order.
pub fn ensemble_inputs(x: &Tensor) -> Result<Vec<Tensor>, tch::TchError> {
    let mut xs = vec![x.shallow_clone()];
    for tf in [Transform::FlipW, Transform::FlipH, Transform::Transpose] {
        let more = xs
            .iter()
            .map(|v| tf.apply(v))
            .collect::<Result<Vec<_>, _>>()?;
        xs.extend(more);
    }
    Ok(xs)
}

/// Map the output of ensemble member `i` back to the orientation of the original input.
pub fn ensemble_undo(i: usize, y: &Tensor) -> Result<Tensor, tch::TchError> {
    let mut y = y.shallow_clone();
    if i > 3 {
        y = Transform::Transpose.apply(&y)?;
    }
    if i % 4 > 1 {
        y = Transform::FlipH.apply(&y)?;
    }
    if (i % 4) % 2 == 1 {
        y = Transform::FlipW.apply(&y)?;
    }
    Ok(y)
}

/// Run the whole-image function `f` on the eight flipped/transposed versions of `x`
/// (`[1, C, H, W]`) and average the back-transformed outputs.
///
/// `f` may fail with any error that a [`tch::TchError`] converts into (e.g.
/// [`crate::chop::ChopError`]).
pub fn self_ensemble<E>(
    x: &Tensor,
    mut f: impl FnMut(&Tensor) -> Result<Tensor, E>,
) -> Result<Tensor, E>
where
    E: From<tch::TchError>,
{
    let mut ys = Vec::with_capacity(8);
    for (i, xi) in ensemble_inputs(x)?.iter().enumerate() {
        let y = f(xi)?;
        ys.push(ensemble_undo(i, &y)?);
    }
    Ok(Tensor::f_cat(&ys, 0)?.f_mean_dim(0, true, None)?)
}
