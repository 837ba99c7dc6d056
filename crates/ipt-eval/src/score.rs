//! One restored image scored the way every benchmark and every training-time validation scores
//! it: quantized with `ipt_degrade::quantize` (the workspace's one rounding rule), checked
//! against the target's shape, then PSNR-Y and SSIM-Y (IPT convention, `shave` = the SR scale,
//! none for scale-1 tasks) and, for denoising, PSNR on RGB (the SwinIR protocol, no shave); for
//! a task's recipe also PSNR-B on Y (the JPEG benchmarks' protocol, as SwinIR reports it).

use ipt_degrade::{quantize, size_text, Image};

use crate::job::Job;
use crate::BenchError;

/// The metrics of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// PSNR on Y (IPT convention), dB.
    pub psnr_y: f64,
    /// SSIM on Y.
    pub ssim_y: f64,
    /// PSNR on RGB with no shave (denoising jobs only), dB.
    pub psnr_rgb: Option<f64>,
    /// PSNR-B on Y (recipe jobs only: the JPEG benchmarks' third figure), dB.
    pub psnr_b: Option<f64>,
}

/// Quantizes `restored` and scores it against `target` for `job`; `image` names the image in
/// errors (a shape mismatch, or an image too small for the shave or the SSIM window).
pub fn score_restored(
    restored: &Image,
    target: &Image,
    job: Job,
    image: &str,
) -> Result<Scores, BenchError> {
    let out = quantize(restored);
    if out.dim() != target.dim() {
        return Err(BenchError::Shape {
            path: image.into(),
            reason: format!(
                "the restored image is {} but the ground truth is {}",
                size_text(&out),
                size_text(target)
            ),
        });
    }
    let metric = |source| BenchError::Metric {
        image: image.to_string(),
        source,
    };
    let shave = job.shave();
    Ok(Scores {
        psnr_y: ipt_metrics::psnr_y(out.view(), target.view(), shave).map_err(metric)?,
        ssim_y: ipt_metrics::ssim_y(out.view(), target.view(), shave).map_err(metric)?,
        psnr_rgb: match job {
            Job::Denoise(_) => {
                Some(ipt_metrics::psnr_rgb(out.view(), target.view(), 0).map_err(metric)?)
            }
            _ => None,
        },
        psnr_b: match job {
            Job::Recipe(_) => {
                Some(ipt_metrics::psnr_b_y(&out.view(), &target.view(), shave).map_err(metric)?)
            }
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn quantizes_before_scoring_and_refuses_shape_mismatch() {
        let target = Array3::from_shape_fn((3, 20, 20), |(c, y, x)| {
            ((c * 50 + y * 7 + x * 3) % 256) as f32
        });
        // An offset of 0.4 rounds away: a perfect score (capped PSNR, SSIM 1).
        let s = score_restored(&(&target + 0.4), &target, Job::Sr(2), "t").unwrap();
        assert!(s.psnr_y >= 99.0 && (s.ssim_y - 1.0).abs() < 1e-12, "{s:?}");
        assert_eq!(s.psnr_rgb, None);
        let d = score_restored(&(&target + 1.0), &target, Job::Denoise(30), "t").unwrap();
        assert!((d.psnr_rgb.unwrap() - 48.13).abs() < 0.01, "{d:?}");
        let small = Array3::zeros((3, 10, 10));
        let err = score_restored(&small, &target, Job::Derain, "set/img").unwrap_err();
        assert!(err.to_string().contains("set/img"), "{err}");
    }
}
