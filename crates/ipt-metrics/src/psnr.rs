//! PSNR in the IPT/EDSR, BasicSR and RGB conventions.
//!
//! PSNR = −10·log10(mse / 255²) with the mean taken after shaving `shave` pixels from each border.
//! Identical images give `f64::INFINITY` (as the reference code's `-10·log10(0)`).

use ndarray::{s, ArrayView3};

use crate::color::{y_bt601, IPT_Y_WEIGHTS};
use crate::MetricsError;

/// Checks shapes and returns (c, h, w) after shaving.
pub(crate) fn check(
    sr: &ArrayView3<f32>,
    hr: &ArrayView3<f32>,
    shave: usize,
    min_side: usize,
) -> Result<(usize, usize, usize), MetricsError> {
    if sr.shape() != hr.shape() {
        return Err(MetricsError::ShapeMismatch {
            sr: sr.shape().to_vec(),
            hr: hr.shape().to_vec(),
        });
    }
    let (c, h, w) = sr.dim();
    if c != 1 && c != 3 {
        return Err(MetricsError::Channels(sr.shape().to_vec()));
    }
    let (hs, ws) = (h.saturating_sub(2 * shave), w.saturating_sub(2 * shave));
    if hs < min_side.max(1) || ws < min_side.max(1) {
        return Err(MetricsError::TooSmall {
            shape: sr.shape().to_vec(),
            reason: format!(
                "need at least {m}x{m} pixels after shaving {shave} from each border",
                m = min_side.max(1)
            ),
        });
    }
    Ok((c, hs, ws))
}

fn psnr_from_mse(mse: f64) -> f64 {
    -10.0 * (mse / (255.0 * 255.0)).log10()
}

/// Y-channel PSNR in the IPT/EDSR convention (IPT `utility.calc_psnr`): the difference
/// (sr − hr) is converted to Y with weights (65.738, 129.057, 25.064)/256 (the +16 offset
/// cancels), `shave` pixels are cropped from each border, PSNR of the mean squared Y difference.
/// A single-channel image uses its difference directly.
pub fn psnr_y(sr: ArrayView3<f32>, hr: ArrayView3<f32>, shave: usize) -> Result<f64, MetricsError> {
    let (c, h, w) = check(&sr, &hr, shave, 1)?;
    let sr = sr.slice(s![.., shave..shave + h, shave..shave + w]);
    let hr = hr.slice(s![.., shave..shave + h, shave..shave + w]);
    let mut sum = 0.0f64;
    for y in 0..h {
        for x in 0..w {
            let d = if c == 3 {
                (0..3)
                    .map(|ch| {
                        IPT_Y_WEIGHTS[ch] * (f64::from(sr[[ch, y, x]]) - f64::from(hr[[ch, y, x]]))
                    })
                    .sum::<f64>()
            } else {
                f64::from(sr[[0, y, x]]) - f64::from(hr[[0, y, x]])
            };
            sum += d * d;
        }
    }
    Ok(psnr_from_mse(sum / (h * w) as f64))
}

/// PSNR over all channels (RGB PSNR), after shaving.
pub fn psnr_rgb(
    sr: ArrayView3<f32>,
    hr: ArrayView3<f32>,
    shave: usize,
) -> Result<f64, MetricsError> {
    let (c, h, w) = check(&sr, &hr, shave, 1)?;
    let sr = sr.slice(s![.., shave..shave + h, shave..shave + w]);
    let hr = hr.slice(s![.., shave..shave + h, shave..shave + w]);
    let sum: f64 = ndarray::Zip::from(&sr).and(&hr).fold(0.0, |acc, &a, &b| {
        let d = f64::from(a) - f64::from(b);
        acc + d * d
    });
    Ok(psnr_from_mse(sum / (c * h * w) as f64))
}

/// Y-channel PSNR in the BasicSR / MATLAB convention: Y = 16 + (65.481 R + 128.553 G +
/// 24.966 B)/255 of each image (not rounded), then PSNR after shaving.
pub fn psnr_y_bt601(
    sr: ArrayView3<f32>,
    hr: ArrayView3<f32>,
    shave: usize,
) -> Result<f64, MetricsError> {
    let (_, h, w) = check(&sr, &hr, shave, 1)?;
    let ys = y_bt601(sr);
    let yh = y_bt601(hr);
    let ys = ys.slice(s![shave..shave + h, shave..shave + w]);
    let yh = yh.slice(s![shave..shave + h, shave..shave + w]);
    let sum: f64 = ndarray::Zip::from(&ys)
        .and(&yh)
        .fold(0.0, |acc, &a, &b| acc + (a - b) * (a - b));
    Ok(psnr_from_mse(sum / (h * w) as f64))
}
