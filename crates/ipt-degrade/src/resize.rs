//! MATLAB-exact bicubic `imresize` and `modcrop`.
//!
//! This reproduces MATLAB's `imresize(A, scale, 'bicubic')` (antialiasing on):
//!
//! - Keys cubic kernel with a = −0.5 (support 4); when shrinking (factor f < 1) the kernel is
//!   stretched to width 4/f and the weights become f·k(f·x);
//! - output length `ceil(f · in)`, or an explicit length (then f = out/in for that dimension);
//! - output pixel x (1-based) reads source coordinate u = x/f + 0.5·(1 − 1/f), taps
//!   `floor(u − width/2) + (0..ceil(width)+2)`, weights normalised to sum 1 — all in `f64`;
//! - out-of-range taps are folded back by MATLAB's **symmetric mirror** (`aux = [1:n, n:-1:1]`);
//!   tap columns whose weight is zero for every output are dropped;
//! - separable, the dimension with the smaller factor first (height first on ties).
//!
//! The weight tables ([`Contributions`]) are computed once per (in length, out length, factor),
//! cached, and stored sparse: each output pixel reads one contiguous, fixed-width source window
//! (mirrored taps that land on the same source pixel are merged). Rows and channels run in parallel (rayon).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::Array3;
use rayon::prelude::*;

use crate::quantize::quantize_value;
use crate::{DegradeError, Image};

/// Keys' cubic convolution kernel with a = −0.5 (MATLAB's `cubic`).
#[inline]
pub fn cubic(x: f64) -> f64 {
    let ax = x.abs();
    let ax2 = ax * ax;
    let ax3 = ax2 * ax;
    if ax <= 1.0 {
        1.5 * ax3 - 2.5 * ax2 + 1.0
    } else if ax <= 2.0 {
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    } else {
        0.0
    }
}

/// The resampling weights of one dimension, in sparse fixed-width form.
///
/// Output pixel `i` is `Σ_{k < taps} weights[i·taps + k] · src[starts[i] + k]`, and
/// `starts[i] + taps ≤ in_len` always holds, so every output reads one contiguous, in-range window
/// of the same width (zero-padded where its true span is shorter).
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions {
    /// Input length.
    pub in_len: usize,
    /// Output length.
    pub out_len: usize,
    /// Window width: the longest merged span, at most `in_len`.
    pub taps: usize,
    /// First source index (0-based) of each output pixel's window.
    pub starts: Vec<usize>,
    /// Weights, `out_len × taps`, rounded from the `f64` table.
    pub weights: Vec<f32>,
    /// The same weights in `f64`.
    pub weights_f64: Vec<f64>,
}

impl Contributions {
    /// Computes MATLAB's `contributions(in_len, out_len, scale, @cubic, 4, true)` and stores it
    /// in sparse contiguous form. `in_len` and `out_len` must be ≥ 1 and `scale` positive.
    pub fn new(in_len: usize, out_len: usize, scale: f64) -> Contributions {
        debug_assert!(in_len >= 1 && out_len >= 1 && scale > 0.0);
        let kernel_width = if scale < 1.0 { 4.0 / scale } else { 4.0 };
        let p = kernel_width.ceil() as usize + 2;
        let h = |x: f64| {
            if scale < 1.0 {
                scale * cubic(scale * x)
            } else {
                cubic(x)
            }
        };
        // Dense MATLAB table: out_len × p weights and 1-based (unmirrored) indices.
        let mut dense_w = vec![0.0f64; out_len * p];
        let mut dense_i = vec![0i64; out_len * p];
        for o in 0..out_len {
            let x = (o + 1) as f64;
            let u = x / scale + 0.5 * (1.0 - 1.0 / scale);
            let left = (u - kernel_width / 2.0).floor() as i64;
            let row_w = &mut dense_w[o * p..(o + 1) * p];
            let row_i = &mut dense_i[o * p..(o + 1) * p];
            for j in 0..p {
                let idx = left + j as i64;
                row_i[j] = idx;
                row_w[j] = h(u - idx as f64);
            }
            let sum: f64 = row_w.iter().sum();
            for w in row_w.iter_mut() {
                *w /= sum;
            }
        }
        // Symmetric mirror: aux = [1:n, n:-1:1], index ← aux(mod(index − 1, 2n) + 1).
        let n = in_len as i64;
        let mirror = |idx: i64| -> usize {
            let m = (idx - 1).rem_euclid(2 * n);
            (if m < n { m } else { 2 * n - 1 - m }) as usize
        };
        // Drop tap columns that are zero for every output (MATLAB's `kill`).
        let keep: Vec<usize> = (0..p)
            .filter(|&j| (0..out_len).any(|o| dense_w[o * p + j] != 0.0))
            .collect();
        // Merge each output's taps into one contiguous source range.
        let mut starts = Vec::with_capacity(out_len);
        let mut spans: Vec<Vec<f64>> = Vec::with_capacity(out_len);
        for o in 0..out_len {
            let taps: Vec<(usize, f64)> = keep
                .iter()
                .map(|&j| (mirror(dense_i[o * p + j]), dense_w[o * p + j]))
                .filter(|&(_, w)| w != 0.0)
                .collect();
            let (lo, hi) = match (
                taps.iter().map(|t| t.0).min(),
                taps.iter().map(|t| t.0).max(),
            ) {
                (Some(lo), Some(hi)) => (lo, hi),
                // All weights zero cannot happen for a normalised table; read pixel 0 with weight 0.
                _ => (0, 0),
            };
            let mut span = vec![0.0f64; hi - lo + 1];
            for (i, w) in taps {
                span[i - lo] += w;
            }
            starts.push(lo);
            spans.push(span);
        }
        // Fixed-width windows that stay inside [0, in_len): merged spans lie inside it already.
        let taps = spans.iter().map(Vec::len).max().unwrap_or(1).min(in_len);
        let mut weights_f64 = vec![0.0f64; out_len * taps];
        let mut win_starts = Vec::with_capacity(out_len);
        for (o, (span, &lo)) in spans.iter().zip(&starts).enumerate() {
            let ws = lo.min(in_len - taps);
            let off = lo - ws;
            weights_f64[o * taps + off..o * taps + off + span.len()].copy_from_slice(span);
            win_starts.push(ws);
        }
        let weights = weights_f64.iter().map(|&w| w as f32).collect();
        Contributions {
            in_len,
            out_len,
            taps,
            starts: win_starts,
            weights,
            weights_f64,
        }
    }

    /// The cached table for (in_len, out_len, scale); computed on first use.
    pub fn cached(in_len: usize, out_len: usize, scale: f64) -> Arc<Contributions> {
        type Cache = Mutex<HashMap<(usize, usize, u64), Arc<Contributions>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        const MAX_ENTRIES: usize = 512;
        let key = (in_len, out_len, scale.to_bits());
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(c) = cache.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return c;
        }
        let table = Arc::new(Contributions::new(in_len, out_len, scale));
        if let Ok(mut m) = cache.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, table.clone());
        }
        table
    }
}

/// MATLAB's output length `ceil(scale · len)`. A product within 1e-9 (relative) above an
/// integer is taken as that integer, so that e.g. 1/3 · 321 gives 107 whatever the rounding of 1/3.
pub fn output_len(len: usize, scale: f64) -> usize {
    let prod = len as f64 * scale;
    let nearest = prod.round();
    if (prod - nearest).abs() <= 1e-9 * prod.max(1.0) {
        nearest as usize
    } else {
        prod.ceil() as usize
    }
}

fn check_scale(scale: f64) -> Result<(), DegradeError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(DegradeError::Parameter(format!(
            "resize factor must be finite and > 0, got {scale}"
        )))
    }
}

/// How the intermediate and final results of [`resize_with`] are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Floating point throughout (MATLAB on a `double` image). The default.
    #[default]
    Float,
    /// MATLAB on a `uint8` image: each 1-D pass rounds and saturates to 0–255
    /// (`imresizemex` returns the input class), so the intermediate is quantized too.
    Uint8,
}

/// Resizes by one factor for both dimensions (MATLAB `imresize(img, scale, 'bicubic')`).
///
/// Output size is `ceil(scale · h) × ceil(scale · w)` ([`output_len`]). Not quantized.
///
/// # Panics
/// If `scale` is not finite and positive; use [`try_imresize`] to get an error instead.
pub fn imresize(img: &Image, scale: f64) -> Image {
    match try_imresize(img, scale) {
        Ok(out) => out,
        Err(e) => panic!("imresize: {e}"),
    }
}

/// [`imresize`] that returns an error for a bad factor.
pub fn try_imresize(img: &Image, scale: f64) -> Result<Image, DegradeError> {
    check_scale(scale)?;
    let (_, h, w) = img.dim();
    Ok(resize_with(
        img,
        (output_len(h, scale), output_len(w, scale)),
        (scale, scale),
        Precision::Float,
    ))
}

/// Resizes to an explicit size (MATLAB `imresize(img, [out_h out_w], 'bicubic')`: the factor of
/// each dimension is out/in). Not quantized. A zero output dimension gives an empty image.
pub fn imresize_to(img: &Image, out_h: usize, out_w: usize) -> Image {
    let (_, h, w) = img.dim();
    let sh = if h == 0 { 1.0 } else { out_h as f64 / h as f64 };
    let sw = if w == 0 { 1.0 } else { out_w as f64 / w as f64 };
    resize_with(img, (out_h, out_w), (sh, sw), Precision::Float)
}

/// MATLAB `imresize` of a `uint8` image: the input is quantized, and each pass rounds and
/// saturates (see [`Precision::Uint8`]). The result holds integers in 0–255.
///
/// # Panics
/// If `scale` is not finite and positive.
pub fn imresize_uint8(img: &Image, scale: f64) -> Image {
    if let Err(e) = check_scale(scale) {
        panic!("imresize_uint8: {e}");
    }
    let (_, h, w) = img.dim();
    let q = crate::quantize(img);
    resize_with(
        &q,
        (output_len(h, scale), output_len(w, scale)),
        (scale, scale),
        Precision::Uint8,
    )
}

/// The general resize: explicit output size and per-dimension factors (height, width) used for
/// the weights, with the given [`Precision`]. Factors must be positive (not checked here beyond
/// a debug assertion; the public wrappers check them).
pub fn resize_with(
    img: &Image,
    (out_h, out_w): (usize, usize),
    (scale_h, scale_w): (f64, f64),
    precision: Precision,
) -> Image {
    let (c, h, w) = img.dim();
    if c == 0 || h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Array3::zeros((c, out_h, out_w));
    }
    let src: std::borrow::Cow<[f32]> = match img.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(img.iter().copied().collect()),
    };
    let q = precision == Precision::Uint8;
    let do_h = !(out_h == h && scale_h == 1.0);
    let do_w = !(out_w == w && scale_w == 1.0);
    let th = do_h.then(|| Contributions::cached(h, out_h, scale_h));
    let tw = do_w.then(|| Contributions::cached(w, out_w, scale_w));
    let data = match (th, tw) {
        (None, None) => src.into_owned(),
        (Some(th), None) => resize_rows(&src, c, h, w, &th, q),
        (None, Some(tw)) => resize_cols(&src, c, h, w, &tw, q),
        (Some(th), Some(tw)) => {
            if scale_h <= scale_w {
                let mid = resize_rows(&src, c, h, w, &th, q);
                resize_cols(&mid, c, out_h, w, &tw, q)
            } else {
                let mid = resize_cols(&src, c, h, w, &tw, q);
                resize_rows(&mid, c, h, out_w, &th, q)
            }
        }
    };
    match Array3::from_shape_vec((c, out_h, out_w), data) {
        Ok(a) => a,
        Err(_) => unreachable!("resize produced a buffer of the wrong length"),
    }
}

/// Minimum number of output values per rayon task.
const MIN_PAR_VALUES: usize = 1 << 14;

/// Resizes along the height: out[ch, y, :] = Σ_k w_k · src[ch, start_y + k, :].
fn resize_rows(src: &[f32], c: usize, h: usize, w: usize, t: &Contributions, q: bool) -> Vec<f32> {
    debug_assert_eq!(t.in_len, h);
    let out_h = t.out_len;
    let mut out = vec![0.0f32; c * out_h * w];
    let min_rows = (MIN_PAR_VALUES / w).max(1);
    out.par_chunks_mut(w)
        .with_min_len(min_rows)
        .enumerate()
        .for_each(|(row, dst)| {
            let ch = row / out_h;
            let y = row % out_h;
            let start = t.starts[y];
            let wts = &t.weights[y * t.taps..(y + 1) * t.taps];
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            dst.fill(0.0);
            for (k, &wk) in wts.iter().enumerate() {
                if wk == 0.0 {
                    continue;
                }
                let srow = &plane[(start + k) * w..(start + k + 1) * w];
                for (d, &s) in dst.iter_mut().zip(srow) {
                    *d += wk * s;
                }
            }
            if q {
                dst.iter_mut().for_each(|v| *v = quantize_value(*v));
            }
        });
    out
}

/// Rows processed together by the width pass (one SIMD-friendly `[f32; ROWS]` per source column).
const ROWS: usize = 8;

/// Resizes along the width: out[ch, y, x] = Σ_k w_k · src[ch, y, start_x + k].
///
/// Rows are processed in blocks of [`ROWS`]: the block is transposed into a `[f32; ROWS]` per
/// source column, so each tap is one vector multiply-add over the block's rows.
fn resize_cols(src: &[f32], c: usize, h: usize, w: usize, t: &Contributions, q: bool) -> Vec<f32> {
    debug_assert_eq!(t.in_len, w);
    let out_w = t.out_len;
    let mut out = vec![0.0f32; c * h * out_w];
    let min_blocks = (MIN_PAR_VALUES / (out_w * ROWS)).max(1);
    out.par_chunks_mut(out_w * ROWS)
        .with_min_len(min_blocks)
        .zip(src.par_chunks(w * ROWS))
        .for_each_init(
            || vec![[0.0f32; ROWS]; w],
            |tile, (dst, srows)| {
                let rows = srows.len() / w;
                for (x, col) in tile.iter_mut().enumerate() {
                    for (r, v) in col.iter_mut().enumerate() {
                        *v = if r < rows { srows[r * w + x] } else { 0.0 };
                    }
                }
                match t.taps {
                    1 => cols_block::<1>(tile, dst, rows, t, q),
                    2 => cols_block::<2>(tile, dst, rows, t, q),
                    3 => cols_block::<3>(tile, dst, rows, t, q),
                    4 => cols_block::<4>(tile, dst, rows, t, q),
                    5 => cols_block::<5>(tile, dst, rows, t, q),
                    6 => cols_block::<6>(tile, dst, rows, t, q),
                    7 => cols_block::<7>(tile, dst, rows, t, q),
                    8 => cols_block::<8>(tile, dst, rows, t, q),
                    _ => cols_block_any(tile, dst, rows, t, q),
                }
            },
        );
    out
}

/// Output columns computed into a small transposed buffer before being written out row by row.
const XCHUNK: usize = 256;

/// Writes `buf` (`[f32; ROWS]` per output column `x0..x0 + buf.len()`) to the block's rows.
#[inline]
fn flush(dst: &mut [f32], out_w: usize, x0: usize, rows: usize, buf: &[[f32; ROWS]], q: bool) {
    for r in 0..rows {
        let row = &mut dst[r * out_w + x0..r * out_w + x0 + buf.len()];
        for (d, v) in row.iter_mut().zip(buf) {
            *d = if q { quantize_value(v[r]) } else { v[r] };
        }
    }
}

/// One block of the width pass with a compile-time window width (unrolled).
#[inline]
fn cols_block<const K: usize>(
    tile: &[[f32; ROWS]],
    dst: &mut [f32],
    rows: usize,
    t: &Contributions,
    q: bool,
) {
    let out_w = t.out_len;
    let mut buf = [[0.0f32; ROWS]; XCHUNK];
    for (ci, (wchunk, schunk)) in t
        .weights
        .chunks(K * XCHUNK)
        .zip(t.starts.chunks(XCHUNK))
        .enumerate()
    {
        let n = schunk.len();
        for ((b, wts), &start) in buf.iter_mut().zip(wchunk.chunks_exact(K)).zip(schunk) {
            let (Ok(wts), Some(Ok(cols))) = (
                <&[f32; K]>::try_from(wts),
                tile.get(start..start + K)
                    .map(<&[[f32; ROWS]; K]>::try_from),
            ) else {
                continue; // unreachable: windows are K wide and in range by construction
            };
            let mut acc = [0.0f32; ROWS];
            for k in 0..K {
                for r in 0..ROWS {
                    acc[r] += wts[k] * cols[k][r];
                }
            }
            *b = acc;
        }
        flush(dst, out_w, ci * XCHUNK, rows, &buf[..n], q);
    }
}

/// One block of the width pass for any window width.
fn cols_block_any(tile: &[[f32; ROWS]], dst: &mut [f32], rows: usize, t: &Contributions, q: bool) {
    let (out_w, taps) = (t.out_len, t.taps);
    let mut buf = [[0.0f32; ROWS]; XCHUNK];
    for (ci, (wchunk, schunk)) in t
        .weights
        .chunks(taps * XCHUNK)
        .zip(t.starts.chunks(XCHUNK))
        .enumerate()
    {
        let n = schunk.len();
        for ((b, wts), &start) in buf.iter_mut().zip(wchunk.chunks_exact(taps)).zip(schunk) {
            let mut acc = [0.0f32; ROWS];
            for (&wk, col) in wts.iter().zip(&tile[start..start + taps]) {
                for r in 0..ROWS {
                    acc[r] += wk * col[r];
                }
            }
            *b = acc;
        }
        flush(dst, out_w, ci * XCHUNK, rows, &buf[..n], q);
    }
}

/// Crops the bottom/right so that height and width are multiples of `s` (MATLAB `modcrop`).
/// `s = 0` is treated as 1.
pub fn modcrop(img: &Image, s: usize) -> Image {
    let s = s.max(1);
    let (_, h, w) = img.dim();
    img.slice(ndarray::s![.., ..h - h % s, ..w - w % s])
        .to_owned()
}

/// The resampling kernels of [`resize_kernel`] (names in recipes: `bicubic`, `bilinear`, `area`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeKernel {
    /// MATLAB-exact bicubic `imresize` to an explicit size ([`imresize_to`]: Keys a = −0.5,
    /// antialiased when shrinking, symmetric borders).
    Bicubic,
    /// PyTorch `F.interpolate(mode='bilinear', align_corners=False, antialias=False)`
    /// (`aten/src/ATen/native/UpSample.h`, `area_pixel_compute_source_index` and
    /// `guard_index_and_lambda`; `UpSampleKernel.cpp`): two taps per dimension, no antialiasing
    /// when shrinking.
    Bilinear,
    /// PyTorch `F.interpolate(mode='area')`, i.e. `F.adaptive_avg_pool2d`
    /// (`aten/src/ATen/native/AdaptiveAveragePooling.cpp`, `start_index`/`end_index`): each
    /// output pixel is the mean of its input window.
    Area,
}

/// Resizes to `out_h × out_w` with the given [`ResizeKernel`], per channel. Not clipped, not
/// rounded.
///
/// - [`ResizeKernel::Bicubic`]: [`imresize_to`] (MATLAB `imresize(img, [out_h out_w],
///   'bicubic')`).
/// - [`ResizeKernel::Bilinear`]: PyTorch `F.interpolate(x, size=(out_h, out_w),
///   mode='bilinear', align_corners=False, antialias=False)`. Along each dimension (input
///   length `n`, output length `m`, `scale = n / m`), output `o` reads the source coordinate
///   `s = max(scale · (o + 0.5) − 0.5, 0)`, taps `i0 = floor(s)` and
///   `i1 = min(i0 + 1, n − 1)`, weights `1 − λ` and `λ = s − i0`. Height first, then width.
/// - [`ResizeKernel::Area`]: PyTorch `F.interpolate(x, size=(out_h, out_w), mode='area')` =
///   `F.adaptive_avg_pool2d`: output `o` is the mean of inputs `floor(o · n / m)` to
///   `ceil((o + 1) · n / m) − 1` (windows overlap when `m` does not divide `n`; nearest
///   neighbour when enlarging). Separable: the mean over the rectangle is the mean of the row
///   means.
///
/// Bilinear and area compute in `f64` (PyTorch in `f32` for `f32` tensors), so they agree with
/// PyTorch to `f32` rounding (about 1e-5 on the 0–255 scale), not bit for bit.
///
/// # Errors
/// [`DegradeError::Parameter`] if `out_h` or `out_w` is zero; [`DegradeError::Shape`] if the
/// image has a zero height or width.
pub fn resize_kernel(
    img: &Image,
    kernel: ResizeKernel,
    out_h: usize,
    out_w: usize,
) -> Result<Image, DegradeError> {
    if out_h == 0 || out_w == 0 {
        return Err(DegradeError::Parameter(format!(
            "out_h and out_w (output size) must be ≥ 1, got {out_h}×{out_w} (height×width)"
        )));
    }
    let (c, h, w) = img.dim();
    if h == 0 || w == 0 {
        return Err(DegradeError::Shape {
            shape: vec![c, h, w],
            reason: "cannot resize an image with a zero height or width".into(),
        });
    }
    let (th, tw) = match kernel {
        ResizeKernel::Bicubic => return Ok(imresize_to(img, out_h, out_w)),
        ResizeKernel::Bilinear => (bilinear_taps(h, out_h), bilinear_taps(w, out_w)),
        ResizeKernel::Area => (area_taps(h, out_h), area_taps(w, out_w)),
    };
    Ok(separable(img, &th, &tw, out_h, out_w))
}

/// One output pixel's taps along one dimension: (source index, weight).
type Taps = Vec<Vec<(usize, f64)>>;

/// PyTorch's bilinear taps (`align_corners=False`, no antialiasing) for `n → m`.
fn bilinear_taps(n: usize, m: usize) -> Taps {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|o| {
            let s = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n - 1);
            let i1 = if i0 < n - 1 { i0 + 1 } else { i0 };
            let l1 = (s - i0 as f64).clamp(0.0, 1.0);
            vec![(i0, 1.0 - l1), (i1, l1)]
        })
        .collect()
}

/// PyTorch's adaptive-average-pooling windows for `n → m`, equal weights.
fn area_taps(n: usize, m: usize) -> Taps {
    (0..m)
        .map(|o| {
            let start = o * n / m;
            let end = ((o + 1) * n).div_ceil(m);
            let wt = 1.0 / (end - start) as f64;
            (start..end).map(|i| (i, wt)).collect()
        })
        .collect()
}

/// Applies `th` along the height then `tw` along the width, per channel, in `f64`.
fn separable(img: &Image, th: &Taps, tw: &Taps, out_h: usize, out_w: usize) -> Image {
    let (c, _, w) = img.dim();
    let mut out = Array3::<f32>::zeros((c, out_h, out_w));
    out.axis_iter_mut(ndarray::Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(ch, mut plane_out)| {
            let plane = img.index_axis(ndarray::Axis(0), ch);
            // Height pass: out_h × w.
            let mut mid = vec![0.0f64; out_h * w];
            for (y, taps) in th.iter().enumerate() {
                let row = &mut mid[y * w..(y + 1) * w];
                for &(sy, wt) in taps {
                    for (d, &s) in row.iter_mut().zip(plane.row(sy).iter()) {
                        *d += wt * f64::from(s);
                    }
                }
            }
            // Width pass.
            for (y, mut row_out) in plane_out.outer_iter_mut().enumerate() {
                let row = &mid[y * w..(y + 1) * w];
                for (o, taps) in row_out.iter_mut().zip(tw) {
                    *o = taps.iter().map(|&(sx, wt)| wt * row[sx]).sum::<f64>() as f32;
                }
            }
        });
    out
}

#[cfg(test)]
mod kernel_tests {
    use super::*;

    fn from_rows(rows: &[&[f32]]) -> Image {
        let (h, w) = (rows.len(), rows[0].len());
        Image::from_shape_fn((1, h, w), |(_, y, x)| rows[y][x])
    }

    fn assert_close(got: &Image, want: &Image) {
        assert_eq!(got.dim(), want.dim());
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{got:?}\n!=\n{want:?}");
        }
    }

    #[test]
    fn bilinear_2x2_to_4x4() {
        // 1-D: [a, b] → [a, ¾a + ¼b, ¼a + ¾b, b] (source coordinates −0.25→0, 0.25, 0.75, 1.25).
        let img = from_rows(&[&[0.0, 4.0], &[8.0, 12.0]]);
        let out = resize_kernel(&img, ResizeKernel::Bilinear, 4, 4).expect("resize");
        let want = from_rows(&[
            &[0.0, 1.0, 3.0, 4.0],
            &[2.0, 3.0, 5.0, 6.0],
            &[6.0, 7.0, 9.0, 10.0],
            &[8.0, 9.0, 11.0, 12.0],
        ]);
        assert_close(&out, &want);
    }

    #[test]
    fn bilinear_shrink_has_no_antialiasing() {
        // 4 → 2: source coordinates 0.5 and 2.5, the mean of two neighbours each.
        let img = from_rows(&[&[0.0, 10.0, 20.0, 30.0]]);
        let out = resize_kernel(&img, ResizeKernel::Bilinear, 1, 2).expect("resize");
        assert_close(&out, &from_rows(&[&[5.0, 25.0]]));
        // 5 → 2: scale 2.5, coordinates 0.75 and 3.25.
        let img = from_rows(&[&[0.0, 10.0, 20.0, 30.0, 40.0]]);
        let out = resize_kernel(&img, ResizeKernel::Bilinear, 1, 2).expect("resize");
        assert_close(&out, &from_rows(&[&[7.5, 32.5]]));
        // 3 → 5: scale 0.6, coordinates 0 (clamped), 0.4, 1, 1.6, 2.2 (right tap clamped).
        let img = from_rows(&[&[0.0, 10.0, 30.0]]);
        let out = resize_kernel(&img, ResizeKernel::Bilinear, 1, 5).expect("resize");
        assert_close(&out, &from_rows(&[&[0.0, 4.0, 10.0, 22.0, 30.0]]));
    }

    #[test]
    fn area_4x4_to_2x2_is_block_means() {
        let img = Image::from_shape_fn((2, 4, 4), |(c, y, x)| (c * 100 + y * 4 + x) as f32);
        let out = resize_kernel(&img, ResizeKernel::Area, 2, 2).expect("resize");
        for c in 0..2 {
            for (by, bx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let mean: f32 = (0..2)
                    .flat_map(|dy| (0..2).map(move |dx| (dy, dx)))
                    .map(|(dy, dx)| img[[c, 2 * by + dy, 2 * bx + dx]])
                    .sum::<f32>()
                    / 4.0;
                assert_eq!(out[[c, by, bx]], mean);
            }
        }
    }

    #[test]
    fn area_to_non_divisor_sizes() {
        // 4 → 3: windows [0, 2), [1, 3), [2, 4) (overlapping).
        let img = from_rows(&[&[0.0, 1.0, 2.0, 3.0]]);
        let out = resize_kernel(&img, ResizeKernel::Area, 1, 3).expect("resize");
        assert_close(&out, &from_rows(&[&[0.5, 1.5, 2.5]]));
        // 5 → 3: windows [0, 2), [1, 4), [3, 5).
        let img = from_rows(&[&[0.0, 10.0, 20.0, 30.0, 40.0]]);
        let out = resize_kernel(&img, ResizeKernel::Area, 1, 3).expect("resize");
        assert_close(&out, &from_rows(&[&[5.0, 20.0, 35.0]]));
        // 2-D, 3×5 → 2×3: rows [0, 2), [1, 3); columns as above.
        let img = Image::from_shape_fn((1, 3, 5), |(_, y, x)| (y * 100 + x * 10) as f32);
        let out = resize_kernel(&img, ResizeKernel::Area, 2, 3).expect("resize");
        assert_close(
            &out,
            &from_rows(&[&[55.0, 70.0, 85.0], &[155.0, 170.0, 185.0]]),
        );
        // Enlarging is nearest neighbour: 2 → 4 windows [0,1), [0,1), [1,2), [1,2).
        let img = from_rows(&[&[3.0, 7.0]]);
        let out = resize_kernel(&img, ResizeKernel::Area, 1, 4).expect("resize");
        assert_close(&out, &from_rows(&[&[3.0, 3.0, 7.0, 7.0]]));
    }

    #[test]
    fn bicubic_is_imresize_to_and_same_size_is_identity() {
        let img = Image::from_shape_fn((3, 7, 9), |(c, y, x)| {
            ((c * 31 + y * 17 + x * 5) % 256) as f32
        });
        assert_eq!(
            resize_kernel(&img, ResizeKernel::Bicubic, 4, 5).expect("resize"),
            imresize_to(&img, 4, 5)
        );
        for k in [ResizeKernel::Bilinear, ResizeKernel::Area] {
            assert_eq!(resize_kernel(&img, k, 7, 9).expect("resize"), img, "{k:?}");
        }
    }

    #[test]
    fn zero_sizes_are_errors() {
        let img = Image::zeros((3, 4, 4));
        for k in [
            ResizeKernel::Bicubic,
            ResizeKernel::Bilinear,
            ResizeKernel::Area,
        ] {
            for (h, w) in [(0, 4), (4, 0), (0, 0)] {
                match resize_kernel(&img, k, h, w) {
                    Err(DegradeError::Parameter(m)) => assert!(m.contains("out_h"), "{m}"),
                    other => panic!("{k:?} {h}×{w}: {other:?}"),
                }
            }
            assert!(matches!(
                resize_kernel(&Image::zeros((3, 0, 4)), k, 2, 2),
                Err(DegradeError::Shape { .. })
            ));
        }
    }

    #[test]
    fn kernel_names_are_lowercase() {
        let names: Vec<ResizeKernel> =
            serde_json::from_str(r#"["bicubic", "bilinear", "area"]"#).expect("parse");
        assert_eq!(
            names,
            [
                ResizeKernel::Bicubic,
                ResizeKernel::Bilinear,
                ResizeKernel::Area
            ]
        );
        assert_eq!(
            serde_json::to_string(&ResizeKernel::Area).expect("json"),
            "\"area\""
        );
        assert!(serde_json::from_str::<ResizeKernel>("\"Bicubic\"").is_err());
    }
}
