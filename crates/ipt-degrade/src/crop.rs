//! Random crops.

use ndarray::s;
use rand::Rng;

use crate::{DegradeError, Image};

/// Top-left corner of a uniformly random `ph × pw` window inside an `h × w` image.
pub fn random_origin(
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    rng: &mut impl Rng,
) -> Result<(usize, usize), DegradeError> {
    if ph > h || pw > w {
        return Err(DegradeError::Shape {
            shape: vec![h, w],
            reason: format!("image is smaller than the {ph}x{pw} crop"),
        });
    }
    Ok((rng.random_range(0..=h - ph), rng.random_range(0..=w - pw)))
}

/// A uniformly random `size × size` crop of `img` (error when the image is smaller).
pub fn random_crop(img: &Image, size: usize, rng: &mut impl Rng) -> Result<Image, DegradeError> {
    let (_, h, w) = img.dim();
    let (y, x) = random_origin(h, w, size, size, rng)?;
    Ok(img.slice(s![.., y..y + size, x..x + size]).to_owned())
}
