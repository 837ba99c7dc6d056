//! PSNR and SSIM with the image-restoration field's exact conventions (pure Rust, no libtorch).
//!
//! Images are `ndarray` views in CHW order with values on the 0–255 scale (RGB, or a single
//! channel), the layout of `ipt_degrade::Image`. Every function takes the restored image `sr`,
//! the reference `hr` and a border `shave` (pixels removed from each side before measuring; the
//! IPT convention is `shave = scale`, 0 for denoising and deraining).
//!
//! - [`psnr_y`]: the IPT/EDSR convention (the project default): Y of the *difference* with
//!   weights (65.738, 129.057, 25.064)/256.
//! - [`psnr_y_bt601`]: BasicSR / MATLAB `rgb2ycbcr` Y (16 + (65.481 R + 128.553 G + 24.966 B)/255).
//! - [`psnr_rgb`]: over all channels.
//! - [`ssim_y`], [`ssim_rgb`]: Wang et al.'s reference SSIM (11×11 Gaussian, σ = 1.5, valid
//!   region, C1 = (0.01·255)², C2 = (0.03·255)², `f64`), on BT.601 Y or averaged over R, G, B.
//! - [`SetMean`]: per-image values averaged per set.

#![warn(missing_docs)]

pub mod color;
pub mod error;
pub mod mean;
pub mod psnr;
pub mod psnrb;
pub mod ssim;

pub use error::MetricsError;
pub use mean::SetMean;
pub use psnr::{psnr_rgb, psnr_y, psnr_y_bt601};
pub use psnrb::{psnr_b, psnr_b_y};
pub use ssim::{ssim_rgb, ssim_y};
