//! Luma conversions used by the metrics.

use ndarray::{Array2, ArrayView3};

/// IPT/EDSR weights applied to a difference image (RGB, 0–255 scale): (65.738, 129.057, 25.064)/256.
pub const IPT_Y_WEIGHTS: [f64; 3] = [65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0];

/// BT.601 weights of MATLAB `rgb2ycbcr` for 0–255 input: (65.481, 128.553, 24.966)/255.
pub const BT601_Y_WEIGHTS: [f64; 3] = [65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0];

/// BT.601 luma on the 0–255 scale with MATLAB's offset: 16 + Σ w_c·x_c (not rounded).
/// A single-channel image is returned as is.
pub fn y_bt601(img: ArrayView3<f32>) -> Array2<f64> {
    if img.dim().0 == 1 {
        return img.index_axis(ndarray::Axis(0), 0).mapv(f64::from);
    }
    let (r, g, b) = (
        img.index_axis(ndarray::Axis(0), 0),
        img.index_axis(ndarray::Axis(0), 1),
        img.index_axis(ndarray::Axis(0), 2),
    );
    let [wr, wg, wb] = BT601_Y_WEIGHTS;
    ndarray::Zip::from(&r)
        .and(&g)
        .and(&b)
        .map_collect(|&r, &g, &b| 16.0 + wr * f64::from(r) + wg * f64::from(g) + wb * f64::from(b))
}
