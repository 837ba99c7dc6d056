//! PSNR / SSIM. Filled in by its own issue.
