//! Luma conversions used by the metrics.

use ndarray::parallel::prelude::*;
use ndarray::{s, Array2, ArrayView3, Axis, Zip};

/// IPT/EDSR weights applied to a difference image (RGB, 0–255 scale): (65.738, 129.057, 25.064)/256.
pub const IPT_Y_WEIGHTS: [f64; 3] = [65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0];

/// BT.601 weights of MATLAB `rgb2ycbcr` for 0–255 input: (65.481, 128.553, 24.966)/255.
pub const BT601_Y_WEIGHTS: [f64; 3] = [65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0];

/// BT.601 luma on the 0–255 scale with MATLAB's offset: 16 + Σ w_c·x_c (not rounded).
/// A single-channel image is returned as is. Rows are converted in parallel.
pub fn y_bt601(img: ArrayView3<f32>) -> Array2<f64> {
    if img.dim().0 == 1 {
        return img.index_axis(Axis(0), 0).mapv(f64::from);
    }
    let (_, h, w) = img.dim();
    let [wr, wg, wb] = BT601_Y_WEIGHTS;
    let luma =
        |r: f32, g: f32, b: f32| 16.0 + wr * f64::from(r) + wg * f64::from(g) + wb * f64::from(b);
    let mut out = Array2::<f64>::zeros((h, w));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            let (r, g, b) = (
                img.slice(s![0, i, ..]),
                img.slice(s![1, i, ..]),
                img.slice(s![2, i, ..]),
            );
            match (r.as_slice(), g.as_slice(), b.as_slice(), row.as_slice_mut()) {
                (Some(r), Some(g), Some(b), Some(o)) => {
                    for (((o, &r), &g), &b) in o.iter_mut().zip(r).zip(g).zip(b) {
                        *o = luma(r, g, b);
                    }
                }
                _ => Zip::from(&mut row)
                    .and(&r)
                    .and(&g)
                    .and(&b)
                    .for_each(|o, &r, &g, &b| *o = luma(r, g, b)),
            }
        });
    out
}
