//! The ×8 geometric self-ensemble of the official code (`model/__init__.py::forward_x8`).
//!
//! The whole-image function (the window stitching of [`crate::chop`] around the network) runs
//! on eight versions of the input: identity, W-flip, H-flip, H+W-flip, and the same four after
//! an H↔W transpose, in the official order
//! `[x, v(x), h(x), h(v(x)), t(x), t(v(x)), t(h(x)), t(h(v(x)))]`: member `i` applies the W-flip
//! `v` if bit 0 of `i` is set, then the H-flip `h` if bit 1 is, then the transpose `t` if bit 2
//! is. The official code maps output `i` back (transpose if `i > 3`, then H-flip if
//! `i mod 4 > 1`, then W-flip if `i mod 4` is odd) and averages the eight with
//! `cat(…).mean(0)`.
//!
//! Here the inputs are made one at a time ([`ensemble_input`]) and each member's output rows are
//! added, as they are finished, into one accumulator seen in the member's orientation
//! ([`member_view_mut`], a strided view: no copy of the image), which is divided by
//! [`MEMBERS`] at the end. Memory is one output image, not nine.

use ndarray::{ArrayViewMut3, Axis};
use tch::Tensor;

/// Number of ensemble members.
pub const MEMBERS: usize = 8;

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
    /// The transforms of member `i`, in the order they are applied to the input.
    fn of_member(i: usize) -> impl Iterator<Item = Transform> {
        [
            (1, Transform::FlipW),
            (2, Transform::FlipH),
            (4, Transform::Transpose),
        ]
        .into_iter()
        .filter(move |(bit, _)| i & bit != 0)
        .map(|(_, tf)| tf)
    }

    fn apply(self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let n = x.dim() as i64;
        match self {
            Transform::FlipW => x.f_flip([n - 1]),
            Transform::FlipH => x.f_flip([n - 2]),
            Transform::Transpose => x.f_transpose(n - 2, n - 1)?.f_contiguous(),
        }
    }
}

/// The input of ensemble member `i` (`0..8`, official order) for an image tensor `x`
/// (`[…, H, W]`).
pub fn ensemble_input(x: &Tensor, i: usize) -> Result<Tensor, tch::TchError> {
    let mut y = x.shallow_clone();
    for tf in Transform::of_member(i % MEMBERS) {
        y = tf.apply(&y)?;
    }
    Ok(y)
}

/// A CHW image seen in the orientation of ensemble member `i`: the view `V` with
/// `V = t(h(v(img)))` (as far as member `i` applies them), so that adding member `i`'s output
/// into `V` adds its back-transformed output into `img`.
pub fn member_view_mut(img: ArrayViewMut3<'_, f32>, i: usize) -> ArrayViewMut3<'_, f32> {
    let mut v = img;
    for tf in Transform::of_member(i % MEMBERS) {
        match tf {
            Transform::FlipW => v.invert_axis(Axis(2)),
            Transform::FlipH => v.invert_axis(Axis(1)),
            Transform::Transpose => v.swap_axes(1, 2),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{image_to_tensor, tensor_to_image};
    use ndarray::Array3;

    #[test]
    fn inputs_follow_the_official_order() {
        // 1×2×3 image with distinct values: check member 3 = h(v(x)) and member 6 = t(h(x))
        let img = Array3::from_shape_fn((1, 2, 3), |(_, y, x)| (10 * y + x) as f32);
        let x = image_to_tensor(&img);
        let m3 = tensor_to_image(&ensemble_input(&x, 3).unwrap()).unwrap();
        assert_eq!(
            m3.iter().copied().collect::<Vec<_>>(),
            [12., 11., 10., 2., 1., 0.]
        );
        let m6 = tensor_to_image(&ensemble_input(&x, 6).unwrap()).unwrap();
        assert_eq!(m6.dim(), (1, 3, 2));
        assert_eq!(
            m6.iter().copied().collect::<Vec<_>>(),
            [10., 0., 11., 1., 12., 2.]
        );
    }

    #[test]
    fn member_views_are_the_member_inputs() {
        let mut img = Array3::from_shape_fn((2, 3, 5), |(c, y, x)| (100 * c + 10 * y + x) as f32);
        let x = image_to_tensor(&img);
        for i in 0..MEMBERS {
            let want = tensor_to_image(&ensemble_input(&x, i).unwrap()).unwrap();
            let view = member_view_mut(img.view_mut(), i);
            assert_eq!(view.to_owned(), want, "member {i}");
        }
        // writing through the view lands where the official back-transform puts it
        let mut acc = Array3::<f32>::zeros((2, 3, 5));
        for i in 0..MEMBERS {
            let member = tensor_to_image(&ensemble_input(&x, i).unwrap()).unwrap();
            let mut v = member_view_mut(acc.view_mut(), i);
            v += &member;
        }
        img.mapv_inplace(|v| v * 8.0);
        assert_eq!(acc, img);
    }
}
