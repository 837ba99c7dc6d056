//! Conversion between images (`ipt_degrade::Image`: CHW `f32` on the 0–255 scale) and tensors.
//! Restored images are quantized as images, with `ipt_degrade::quantize` (the workspace's one
//! rounding rule).

use ndarray::Array3;
use tch::{Device, Kind, Tensor};

/// Errors of image ↔ tensor conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The tensor is not `[1, C, H, W]` or `[C, H, W]`.
    #[error("expected a [1, C, H, W] or [C, H, W] tensor, got shape {0:?}")]
    Shape(Vec<i64>),
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// A CHW image (the `ipt_degrade::Image` type) as a `[1, C, H, W]` `f32` tensor on the CPU.
pub fn image_to_tensor(img: &Array3<f32>) -> Tensor {
    let (c, h, w) = img.dim();
    let data = img.as_standard_layout();
    let flat = data
        .as_slice()
        .expect("as_standard_layout yields a contiguous array");
    Tensor::from_slice(flat).view([1, c as i64, h as i64, w as i64])
}

/// A `[1, C, H, W]` (or `[C, H, W]`) tensor of any float kind, on any device, as a CHW `f32`
/// image. Values are copied unchanged (no clamping or rounding).
pub fn tensor_to_image(t: &Tensor) -> Result<Array3<f32>, ConvertError> {
    let size = t.size();
    let (c, h, w) = match size.as_slice() {
        [1, c, h, w] | [c, h, w] => (*c, *h, *w),
        _ => return Err(ConvertError::Shape(size)),
    };
    let flat = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_view([-1])?;
    let data = Vec::<f32>::try_from(&flat)?;
    Array3::from_shape_vec((c as usize, h as usize, w as usize), data)
        .map_err(|_| ConvertError::Shape(t.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tensor_round_trip_keeps_layout() {
        let img = Array3::from_shape_fn((3, 4, 5), |(c, y, x)| (c * 100 + y * 10 + x) as f32);
        let t = image_to_tensor(&img);
        assert_eq!(t.size(), vec![1, 3, 4, 5]);
        assert_eq!(t.double_value(&[0, 2, 3, 1]), 231.0);
        let back = tensor_to_image(&t).unwrap();
        assert_eq!(back, img);
        // a non-standard-layout view converts by value too
        let rev = img.clone().reversed_axes();
        let t = image_to_tensor(&rev);
        assert_eq!(t.size(), vec![1, 5, 4, 3]);
        assert_eq!(t.double_value(&[0, 1, 3, 2]), 231.0);
        assert!(matches!(
            tensor_to_image(&Tensor::zeros([2, 3, 4, 5], (Kind::Float, Device::Cpu))),
            Err(ConvertError::Shape(_))
        ));
    }
}
