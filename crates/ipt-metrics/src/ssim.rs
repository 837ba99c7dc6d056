//! SSIM exactly as Wang et al.'s reference `ssim_index.m`.
//!
//! 11×11 Gaussian window (σ = 1.5, normalised), `filter2(..., 'valid')`, K = (0.01, 0.03),
//! L = 255, `f64` arithmetic, mean of the SSIM map. No downsampling. The window is separable and
//! symmetric, so the five local moments are computed with a horizontal then a vertical 11-tap pass
//! that adds mirrored taps before multiplying (six multiplies instead of eleven), one contiguous
//! plane per moment so that the passes vectorise, in bands of rows processed in parallel.

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
const BAND: usize = 64;

/// `dst[j] = Σ_k g[k]·src[j + k]` for every `j < dst.len()` (an 11-tap 'valid' correlation),
/// using the window's symmetry `g[k] = g[10 − k]`: five multiply-adds of pairs plus the centre
/// tap, each a pass over contiguous slices that the compiler vectorises.
#[inline(always)]
fn filter_valid(src: &[f64], dst: &mut [f64], g: &[f64; WINDOW]) {
    let n = dst.len();
    let c = WINDOW / 2;
    for (d, &v) in dst.iter_mut().zip(&src[c..c + n]) {
        *d = g[c] * v;
    }
    for (k, &gk) in g.iter().enumerate().take(c) {
        let (a, b) = (&src[k..k + n], &src[WINDOW - 1 - k..WINDOW - 1 - k + n]);
        for ((d, &u), &v) in dst.iter_mut().zip(a).zip(b) {
            *d += gk * (u + v);
        }
    }
}

/// The five local moments (x, y, x², y², xy) of one band, as five planes.
const MOMENTS: usize = 5;

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
    let band = |b: usize| ssim_band(xs, ys, w, b, oh, &g);
    let total: f64 = (0..bands).into_par_iter().map(band).sum();
    total / (oh * ow) as f64
}

/// The sum of the SSIM map over output rows `b·BAND ..` of band `b`. Uses AVX2 where the CPU has
/// it (the passes then run four lanes wide instead of SSE2's two; the arithmetic is the same).
fn ssim_band(xs: &[f64], ys: &[f64], w: usize, b: usize, oh: usize, g: &[f64; WINDOW]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the features `ssim_band_avx2` is compiled for.
            return unsafe { ssim_band_avx2(xs, ys, w, b, oh, g) };
        }
    }
    ssim_band_generic(xs, ys, w, b, oh, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn ssim_band_avx2(xs: &[f64], ys: &[f64], w: usize, b: usize, oh: usize, g: &[f64; WINDOW]) -> f64 {
    ssim_band_generic(xs, ys, w, b, oh, g)
}

#[inline(always)]
fn ssim_band_generic(
    xs: &[f64],
    ys: &[f64],
    w: usize,
    b: usize,
    oh: usize,
    g: &[f64; WINDOW],
) -> f64 {
    let ow = w - WINDOW + 1;
    let r0 = b * BAND;
    let r1 = (r0 + BAND).min(oh);
    let rows = r1 - r0 + WINDOW - 1;
    // Horizontal pass: each moment of input rows r0 .. r1 + 10, valid columns, one
    // plane per moment (structure of arrays).
    let mut planes: [Vec<f64>; MOMENTS] = std::array::from_fn(|_| vec![0.0; rows * ow]);
    let mut products: [Vec<f64>; 3] = std::array::from_fn(|_| vec![0.0; w]);
    for i in 0..rows {
        let xr = &xs[(r0 + i) * w..(r0 + i + 1) * w];
        let yr = &ys[(r0 + i) * w..(r0 + i + 1) * w];
        let [xx, yy, xy] = &mut products;
        for j in 0..w {
            xx[j] = xr[j] * xr[j];
            yy[j] = yr[j] * yr[j];
            xy[j] = xr[j] * yr[j];
        }
        let sources: [&[f64]; MOMENTS] = [xr, yr, xx, yy, xy];
        for (plane, src) in planes.iter_mut().zip(sources) {
            filter_valid(src, &mut plane[i * ow..(i + 1) * ow], g);
        }
    }
    // Vertical pass (the same symmetric filter down the columns) and the SSIM map.
    let mut sum = 0.0f64;
    let mut m: [Vec<f64>; MOMENTS] = std::array::from_fn(|_| vec![0.0; ow]);
    let c = WINDOW / 2;
    for r in 0..r1 - r0 {
        for (acc, plane) in m.iter_mut().zip(&planes) {
            let row = |k: usize| &plane[(r + k) * ow..(r + k + 1) * ow];
            for (a, &v) in acc.iter_mut().zip(row(c)) {
                *a = g[c] * v;
            }
            for (k, &gk) in g.iter().enumerate().take(c) {
                for ((a, &u), &v) in acc.iter_mut().zip(row(k)).zip(row(WINDOW - 1 - k)) {
                    *a += gk * (u + v);
                }
            }
        }
        let [mu1, mu2, xx, yy, xy] = &m;
        for j in 0..ow {
            let (mu1, mu2) = (mu1[j], mu2[j]);
            let (mu1_sq, mu2_sq, mu1_mu2) = (mu1 * mu1, mu2 * mu2, mu1 * mu2);
            let sigma1_sq = xx[j] - mu1_sq;
            let sigma2_sq = yy[j] - mu2_sq;
            let sigma12 = xy[j] - mu1_mu2;
            sum += ((2.0 * mu1_mu2 + C1) * (2.0 * sigma12 + C2))
                / ((mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2));
        }
    }
    sum
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
