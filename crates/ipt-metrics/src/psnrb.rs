//! PSNR-B: PSNR including the blocking effect factor (Yu, Zeng and Au, "Quality Assessment of
//! Deblocked Images", IEEE TIP 2011), the JPEG-artefact-removal metric, computed exactly as
//! SwinIR's evaluation does: `utils/util_calculate_psnr_ssim.py` in JingyunLiang/SwinIR,
//! functions `calculate_psnrb(img1, img2, crop_border, input_order='HWC',
//! test_y_channel=False)` and `_blocking_effect_factor(im)` (a port of
//! Queuecumber/quantization-guided-ac `metrics/psnrb.py`; KAIR's `utils/utils_image.py` has the
//! same two functions).
//!
//! What SwinIR's code does, and what is reproduced here (in `f64`, as SwinIR's `np.float64` /
//! `torch.float64` tensors):
//!
//! 1. `crop_border` pixels are removed from each side (`img[crop_border:-crop_border, ...]`);
//!    the 8×8 grid is then anchored at the top-left corner of the *cropped* image.
//! 2. Both images are divided by 255 (`torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0) /
//!    255.`), so the peak is 1.
//! 3. For each channel `c`: `mse` is the mean squared difference of that channel, `bef` is
//!    [`blocking_effect_factor`] of that channel of **`img1` only** (SwinIR calls
//!    `calculate_psnrb(output, img_gt, ...)`, so `img1` is the restored image) and
//!    `total += 10 * torch.log10(1 / (mse + bef))`.
//! 4. `return float(total) / img1.shape[1]`: the **mean over channels of the per-channel
//!    PSNR-B values** (dB), not the PSNR of an averaged MSE. There is no cap: `mse + bef == 0`
//!    gives `log10(1/0) = +inf`, so the result is `f64::INFINITY` as soon as one channel has
//!    `mse + bef == 0` (the crate's `psnr.rs` convention for identical images is the same).
//!
//! Consequences worth knowing: identical images give `+inf` only when the restored image has no
//! blocking (`bef == 0`); a blocky image compared with itself gives the finite
//! `10·log10(1/bef)`. For one channel PSNR-B ≤ PSNR (the BEF is ≥ 0), but for three channels the
//! mean of per-channel values can exceed the RGB PSNR of the pooled MSE (Jensen).
//!
//! SwinIR uses it for `jpeg_car` on grey images (one channel) and for `color_jpeg_car` on the
//! three BGR channels (`test_y_channel=False`, "PSNRB") and on BT.601 Y
//! (`test_y_channel=True`, "PSNRB_Y"), always with `crop_border = 0`. [`psnr_b`] is the first
//! two; [`psnr_b_y`] is the third (see its note on SwinIR's `float32` Y path). Channel order
//! (RGB here, BGR in SwinIR) does not change the mean over channels.

use ndarray::{s, Array2, ArrayView2, ArrayView3, Axis};

use crate::color::y_bt601;
use crate::psnr::check;
use crate::MetricsError;

/// JPEG block size of SwinIR's `_blocking_effect_factor` (`block_size = 8`).
pub const BLOCK_SIZE: usize = 8;

/// Why an `h`×`w` plane has no well-defined BEF, if it has none.
///
/// SwinIR divides by `h·(w//8 − 1) + w·(h//8 − 1)` boundary pairs and by `log2(min(h, w))`:
/// a side under 8 makes a count negative, and with both sides under 16 there is no boundary
/// (0/0 = NaN in torch). Those sizes are refused instead.
fn bef_size_problem(h: usize, w: usize) -> Option<String> {
    if h < BLOCK_SIZE || w < BLOCK_SIZE {
        Some(format!(
            "PSNR-B needs at least {BLOCK_SIZE}x{BLOCK_SIZE} pixels after shaving, got {h}x{w}"
        ))
    } else if h.max(w) < 2 * BLOCK_SIZE {
        Some(format!(
            "PSNR-B needs one side of at least {} pixels after shaving (one 8x8 block boundary), \
             got {h}x{w}",
            2 * BLOCK_SIZE
        ))
    } else {
        None
    }
}

/// SwinIR's `_blocking_effect_factor(im)` for one channel (an `h`×`w` plane).
///
/// Squared differences of horizontally and vertically adjacent pixels are split into
/// *boundary* pairs (the left/top pixel at a position `p` with `p % 8 == 7`, i.e.
/// `torch.arange(7, im.shape[3] - 1, 8)`) and the others (`np.setdiff1d(...)`). Their sums are
/// divided by SwinIR's counts, verbatim:
///
/// ```text
/// n_boundary_horiz = H * (W // 8 - 1);   n_boundary_vert = W * (H // 8 - 1)
/// n_nonboundary_horiz = H * (W - 1) - n_boundary_horiz   (likewise vert)
/// scaler = log2(8) / log2(min(H, W))
/// bef = scaler * (boundary_difference - nonboundary_difference), 0 where boundary <= nonboundary
/// ```
///
/// Note that when a side is not a multiple of 8 the last boundary pair is summed (e.g.
/// `p = 47` for `W = 50`) although the count `W // 8 − 1` leaves it out; this is reproduced.
///
/// The BEF is homogeneous of degree 2: it is in the squared units of `img` (SwinIR passes
/// values divided by 255). Sizes SwinIR cannot handle (a side < 8, or both sides < 16) give
/// [`MetricsError::TooSmall`].
pub fn blocking_effect_factor(img: &ArrayView2<f64>) -> Result<f64, MetricsError> {
    let (h, w) = img.dim();
    if let Some(reason) = bef_size_problem(h, w) {
        return Err(MetricsError::TooSmall {
            shape: vec![h, w],
            reason,
        });
    }
    let is_boundary = |p: usize| p % BLOCK_SIZE == BLOCK_SIZE - 1;
    let (mut boundary_sum, mut nonboundary_sum) = (0.0f64, 0.0f64);
    // Horizontal neighbours (x, x + 1).
    for row in img.axis_iter(Axis(0)) {
        for (p, (a, b)) in row.iter().zip(row.iter().skip(1)).enumerate() {
            let d = (a - b) * (a - b);
            if is_boundary(p) {
                boundary_sum += d;
            } else {
                nonboundary_sum += d;
            }
        }
    }
    // Vertical neighbours (y, y + 1).
    for p in 0..h - 1 {
        let d: f64 = img
            .row(p)
            .iter()
            .zip(img.row(p + 1).iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        if is_boundary(p) {
            boundary_sum += d;
        } else {
            nonboundary_sum += d;
        }
    }
    // SwinIR's counts (h, w >= 8 so nothing is negative; h or w >= 16 so n_boundary > 0).
    let n_boundary_horiz = h * (w / BLOCK_SIZE - 1);
    let n_boundary_vert = w * (h / BLOCK_SIZE - 1);
    let boundary_difference = boundary_sum / (n_boundary_horiz + n_boundary_vert) as f64;
    let n_nonboundary_horiz = h * (w - 1) - n_boundary_horiz;
    let n_nonboundary_vert = w * (h - 1) - n_boundary_vert;
    let nonboundary_difference =
        nonboundary_sum / (n_nonboundary_horiz + n_nonboundary_vert) as f64;
    if boundary_difference <= nonboundary_difference {
        return Ok(0.0);
    }
    let scaler = (BLOCK_SIZE as f64).log2() / (h.min(w) as f64).log2();
    Ok(scaler * (boundary_difference - nonboundary_difference))
}

/// `10·log10(1 / (mse + bef))` of one plane pair on the 0–1 scale (one iteration of SwinIR's
/// channel loop).
fn channel_psnr_b(restored: ArrayView2<f64>, target: ArrayView2<f64>) -> Result<f64, MetricsError> {
    let n = restored.len() as f64;
    let sum: f64 = ndarray::Zip::from(&restored)
        .and(&target)
        .fold(0.0, |acc, &a, &b| acc + (a - b) * (a - b));
    let mse = sum / n;
    let bef = blocking_effect_factor(&restored)?;
    Ok(10.0 * (1.0 / (mse + bef)).log10())
}

fn size_check(shape: &[usize], h: usize, w: usize) -> Result<(), MetricsError> {
    match bef_size_problem(h, w) {
        Some(reason) => Err(MetricsError::TooSmall {
            shape: shape.to_vec(),
            reason,
        }),
        None => Ok(()),
    }
}

/// PSNR-B as SwinIR's `calculate_psnrb(restored, target, crop_border=shave,
/// test_y_channel=False)` (`utils/util_calculate_psnr_ssim.py`): per channel
/// `10·log10(1 / (mse + bef))` on images divided by 255, with the BEF of the **restored**
/// image, averaged over channels (dB). See the [module docs](self) for the quoted code.
///
/// `restored` and `target` are CHW with values on the 0–255 scale, 1 or 3 channels, same
/// shape; `shave` pixels are removed from each border first (SwinIR uses 0 for JPEG). Returns
/// `f64::INFINITY` when a channel has `mse + bef == 0` (e.g. identical, unblocky images).
///
/// Errors: [`MetricsError::ShapeMismatch`], [`MetricsError::Channels`], and
/// [`MetricsError::TooSmall`] when the shaved image has a side < 8 or both sides < 16 (where
/// SwinIR's counts are ≤ 0 and its result is NaN or meaningless).
pub fn psnr_b(
    restored: &ArrayView3<f32>,
    target: &ArrayView3<f32>,
    shave: usize,
) -> Result<f64, MetricsError> {
    let (c, h, w) = check(restored, target, shave, BLOCK_SIZE)?;
    size_check(restored.shape(), h, w)?;
    let window = s![.., shave..shave + h, shave..shave + w];
    let r = restored.slice(window).mapv(|v| f64::from(v) / 255.0);
    let t = target.slice(window).mapv(|v| f64::from(v) / 255.0);
    let mut total = 0.0f64;
    for ch in 0..c {
        total += channel_psnr_b(r.index_axis(Axis(0), ch), t.index_axis(Axis(0), ch))?;
    }
    Ok(total / c as f64)
}

/// PSNR-B on BT.601 Y, as SwinIR's `calculate_psnrb(..., test_y_channel=True)` ("PSNRB_Y" of
/// `color_jpeg_car`): Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255 of each image (the
/// crate's [`y_bt601`], the same Y as [`crate::psnr_y_bt601`]; a single channel is used as
/// is), then [`psnr_b`]'s single-channel computation after shaving.
///
/// Note: SwinIR's `to_y_channel` rounds Y to `float32`, so its Y path then runs in torch
/// `float32`; this function stays in `f64`, which differs from SwinIR's numbers by float32
/// rounding only (≈1e-5 dB), unlike [`psnr_b`], which matches SwinIR's float64 path to ~1e-12.
pub fn psnr_b_y(
    restored: &ArrayView3<f32>,
    target: &ArrayView3<f32>,
    shave: usize,
) -> Result<f64, MetricsError> {
    let (_, h, w) = check(restored, target, shave, BLOCK_SIZE)?;
    size_check(restored.shape(), h, w)?;
    let to01 = |img: &ArrayView3<f32>| -> Array2<f64> {
        y_bt601(img.view())
            .slice(s![shave..shave + h, shave..shave + w])
            .mapv(|v| v / 255.0)
    };
    let (r, t) = (to01(restored), to01(target));
    channel_psnr_b(r.view(), t.view())
}
