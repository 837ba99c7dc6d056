//! MATLAB's `uint8` conversion: the workspace's one rounding rule for pixel values.
//!
//! Everything that turns floating-point pixels into 8-bit levels uses [`quantize_value`]: the
//! MATLAB-bicubic LR inputs (MATLAB `imresize` on `uint8` images rounds each pass), 8-bit PNG
//! output, and the quantization of restored images before PSNR/SSIM (benchmarks and training
//! validation alike). The rule is MATLAB's (round half away from zero, then saturate), because
//! the SR test protocol and its LR files come from MATLAB. The official IPT `utility.quantize`
//! rounds with `torch.round` (half to even); the two differ only for values exactly halfway
//! between two levels, which a network's `f32` output essentially never produces.

use crate::Image;

/// Quantizes one value as MATLAB's `uint8(x)` does: round half away from zero, saturate to 0–255.
/// NaN becomes 0 (as in MATLAB).
#[inline]
pub fn quantize_value(x: f32) -> f32 {
    if x.is_nan() {
        return 0.0;
    }
    x.round().clamp(0.0, 255.0)
}

/// Quantizes every pixel with [`quantize_value`] (MATLAB `uint8` semantics), keeping `f32`.
pub fn quantize(img: &Image) -> Image {
    img.mapv(quantize_value)
}

/// In-place variant of [`quantize`].
pub fn quantize_inplace(img: &mut Image) {
    img.mapv_inplace(quantize_value);
}
