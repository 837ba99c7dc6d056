//! MATLAB's `uint8` conversion.

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
