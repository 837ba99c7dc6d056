//! SSIM exactly as Wang et al.'s reference `ssim_index.m`.
//!
//! 11×11 Gaussian window (σ = 1.5, normalised), `filter2(..., 'valid')`, K = (0.01, 0.03),
//! L = 255, `f64` arithmetic, mean of the SSIM map. No downsampling. The window is separable, so
//! the five local moments are computed with a horizontal then a vertical 11-tap pass, in bands of
//! rows processed in parallel.

use ndarray::{s, Array2, ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

use crate::color::y_bt601;
use crate::psnr::check;
use crate::MetricsError;

/// Window side.
pub const WINDOW: usize = 11;
/// Window standard deviation.
pub const SIGMA: f64 = 1.5;
/// C1 = (0.01·255)².
pub const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
/// C2 = (0.03·255)².
pub const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// The normalised 1-D Gaussian whose outer product is MATLAB's `fspecial('gaussian', 11, 1.5)`.
pub fn gaussian_window() -> [f64; WINDOW] {
    let mut g = [0.0; WINDOW];
    let r = (WINDOW / 2) as f64;
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - r;
        *v = (-(x * x) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let sum: f64 = g.iter().sum();
    g.iter_mut().for_each(|v| *v /= sum);
    g
}

/// Output rows per parallel band.
const BAND: usize = 32;

/// Mean SSIM of two equally sized planes (0–255 scale); each side must be ≥ 11.
pub fn ssim_plane(x: ArrayView2<f64>, y: ArrayView2<f64>) -> f64 {
    let (h, w) = x.dim();
    debug_assert_eq!(x.dim(), y.dim());
    debug_assert!(h >= WINDOW && w >= WINDOW);
    let g = gaussian_window();
    let (oh, ow) = (h - WINDOW + 1, w - WINDOW + 1);
    let x = x.as_standard_layout();
    let y = y.as_standard_layout();
    let (xs, ys) = (x.as_slice().unwrap_or(&[]), y.as_slice().unwrap_or(&[]));
    let bands = oh.div_ceil(BAND);
    let total: f64 = (0..bands)
        .into_par_iter()
        .map(|b| {
            let r0 = b * BAND;
            let r1 = (r0 + BAND).min(oh);
            let rows = r1 - r0 + WINDOW - 1;
            // Horizontal pass: five moments for input rows r0 .. r1 + 10, valid columns.
            let mut hm = vec![[0.0f64; 5]; rows * ow];
            for i in 0..rows {
                let xr = &xs[(r0 + i) * w..(r0 + i + 1) * w];
                let yr = &ys[(r0 + i) * w..(r0 + i + 1) * w];
                let dst = &mut hm[i * ow..(i + 1) * ow];
                for (j, d) in dst.iter_mut().enumerate() {
                    let mut m = [0.0f64; 5];
                    for (k, &gk) in g.iter().enumerate() {
                        let a = xr[j + k];
                        let b = yr[j + k];
                        m[0] += gk * a;
                        m[1] += gk * b;
                        m[2] += gk * a * a;
                        m[3] += gk * b * b;
                        m[4] += gk * a * b;
                    }
                    *d = m;
                }
            }
            // Vertical pass and the SSIM map.
            let mut sum = 0.0f64;
            let mut acc = vec![[0.0f64; 5]; ow];
            for r in 0..r1 - r0 {
                acc.iter_mut().for_each(|a| *a = [0.0; 5]);
                for (k, &gk) in g.iter().enumerate() {
                    let src = &hm[(r + k) * ow..(r + k + 1) * ow];
                    for (a, m) in acc.iter_mut().zip(src) {
                        for q in 0..5 {
                            a[q] += gk * m[q];
                        }
                    }
                }
                for a in &acc {
                    let (mu1, mu2) = (a[0], a[1]);
                    let (mu1_sq, mu2_sq, mu1_mu2) = (mu1 * mu1, mu2 * mu2, mu1 * mu2);
                    let sigma1_sq = a[2] - mu1_sq;
                    let sigma2_sq = a[3] - mu2_sq;
                    let sigma12 = a[4] - mu1_mu2;
                    sum += ((2.0 * mu1_mu2 + C1) * (2.0 * sigma12 + C2))
                        / ((mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2));
                }
            }
            sum
        })
        .sum();
    total / (oh * ow) as f64
}

/// SSIM on BT.601 Y (MATLAB `rgb2ycbcr`, 16–235 range, not rounded) after shaving `shave` pixels
/// from each border. A single-channel image is used as is.
pub fn ssim_y(sr: ArrayView3<f32>, hr: ArrayView3<f32>, shave: usize) -> Result<f64, MetricsError> {
    let (_, h, w) = check(&sr, &hr, shave, WINDOW)?;
    let window = s![.., shave..shave + h, shave..shave + w];
    let ys = y_bt601(sr.slice(window));
    let yh = y_bt601(hr.slice(window));
    Ok(ssim_plane(ys.view(), yh.view()))
}

/// SSIM computed per channel and averaged (RGB SSIM), after shaving.
pub fn ssim_rgb(
    sr: ArrayView3<f32>,
    hr: ArrayView3<f32>,
    shave: usize,
) -> Result<f64, MetricsError> {
    let (c, h, w) = check(&sr, &hr, shave, WINDOW)?;
    let window = s![.., shave..shave + h, shave..shave + w];
    let (sr, hr) = (sr.slice(window), hr.slice(window));
    let total: f64 = (0..c)
        .map(|ch| {
            let a: Array2<f64> = sr.index_axis(Axis(0), ch).mapv(f64::from);
            let b: Array2<f64> = hr.index_axis(Axis(0), ch).mapv(f64::from);
            ssim_plane(a.view(), b.view())
        })
        .sum();
    Ok(total / c as f64)
}
