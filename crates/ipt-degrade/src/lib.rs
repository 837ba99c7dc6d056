//! Data synthesis for IPT (pure Rust, no libtorch).
//!
//! Everything that turns a clean image into a low-quality input lives here:
//!
//! - [`Image`]: the one image representation of the workspace, `ndarray::Array3<f32>` in CHW order,
//!   RGB, values on the 0–255 scale (not quantized unless a function says so).
//! - [`io`]: reading PNG/JPEG/BMP/TIFF/WebP (8- and 16-bit, grayscale replicated, alpha dropped,
//!   EXIF orientation applied) and writing 8- and 16-bit PNG.
//! - [`photo`]: image files with everything a restorer carries over (alpha, grey, 16-bit, ICC
//!   profile, EXIF) and the output formats (PNG, JPEG, lossless WebP).
//! - [`resize`]: MATLAB-exact bicubic `imresize` (antialiased when shrinking, symmetric mirror
//!   borders), `modcrop`.
//! - [`files`]: which files are images ([`files::IMAGE_EXTENSIONS`]), listing them, and writing
//!   files atomically.
//! - [`quantize()`]: MATLAB's `uint8` conversion (round half away from zero, saturate to 0–255),
//!   the workspace's one rounding rule for pixel values.
//! - [`seed`]: deriving independent seeds from a base seed.
//! - [`noise`]: seeded additive Gaussian noise.
//! - [`rain`]: procedural light-rain streak layers (non-official) and real `rainstreak-*.png` layers.
//! - [`Task`] and [`synthesize()`]: the six IPT pre-training degradations with their official indices.
//!
//! The documented random generator for everything seeded is [`rand_chacha::ChaCha8Rng`]
//! (re-exported as [`Rng8`]): `Rng8::seed_from_u64(seed)` gives the same data on every platform.

#![warn(missing_docs)]

pub mod blur;
pub mod crop;
pub mod data;
pub mod error;
pub mod files;
pub mod io;
#[cfg(feature = "jpeg")]
pub mod jpeg;
pub mod noise;
pub mod photo;
pub mod png_metadata;
pub mod quantize;
pub mod rain;
pub mod recipe;
pub mod resize;
pub mod seed;
pub mod synthesize;
pub mod task;

pub use error::DegradeError;
pub use quantize::quantize;
pub use resize::{imresize, imresize_to, modcrop};
pub use synthesize::{synthesize, synthesize_with};
pub use task::Task;

/// An image: CHW, RGB (3 channels; 1 only where a function says so), `f32` on the 0–255 scale.
pub type Image = ndarray::Array3<f32>;

/// An image's size as users read it in messages: `width×height` (`480×320`), with the channel
/// count when it is not 3 (`480×320, 1 channel`).
pub fn size_text(img: &Image) -> String {
    let (c, h, w) = img.dim();
    match c {
        3 => format!("{w}×{h}"),
        1 => format!("{w}×{h}, 1 channel"),
        _ => format!("{w}×{h}, {c} channels"),
    }
}

/// The documented seeded random generator of the workspace (ChaCha with 8 rounds).
pub type Rng8 = rand_chacha::ChaCha8Rng;
