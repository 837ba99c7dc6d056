//! The methods a benchmark can evaluate: the bicubic baseline, the identity (the degraded input
//! itself) and IPT checkpoints ([`IptMethod`](super::ipt_method::IptMethod)).

use indicatif::ProgressBar;
use ipt_degrade::resize::imresize_uint8;
use ipt_degrade::Image;

use crate::ipt_method::IptMethod;
use crate::job::Job;
use crate::BenchError;

/// A restoration method.
pub enum Method {
    /// MATLAB bicubic upscaling (SR only), as MATLAB does it on a `uint8` image.
    Bicubic,
    /// The degraded input returned unchanged (denoising and deraining: the input's own PSNR).
    Identity,
    /// One or more IPT checkpoints.
    Ipt(Box<IptMethod>),
}

impl Method {
    /// The name used in the reports (`bicubic`, `identity`, or the checkpoint names).
    pub fn name(&self) -> String {
        match self {
            Method::Bicubic => "bicubic".into(),
            Method::Identity => "identity".into(),
            Method::Ipt(m) => m.name(),
        }
    }

    /// Checks, before any data is read, that the method can do `job`.
    pub fn check(&self, job: Job) -> Result<(), BenchError> {
        match (self, job.scale() > 1) {
            (Method::Bicubic, true) | (Method::Identity, false) => Ok(()),
            (Method::Bicubic, false) => Err(BenchError::Unsupported(
                "--model bicubic is for super-resolution only; use --model identity".into(),
            )),
            (Method::Identity, true) => Err(BenchError::Unsupported(
                "--model identity cannot upscale; use --model bicubic for super-resolution".into(),
            )),
            (Method::Ipt(m), _) => m.check(job),
        }
    }

    /// Restores one degraded image; `windows` receives the window count and progress of
    /// whole-image inference (methods without windows leave it alone). The result is not
    /// quantized.
    pub fn restore(
        &mut self,
        input: &Image,
        job: Job,
        windows: &ProgressBar,
    ) -> Result<Image, BenchError> {
        self.check(job)?;
        match self {
            Method::Bicubic => Ok(imresize_uint8(input, job.scale() as f64)),
            Method::Identity => Ok(input.clone()),
            Method::Ipt(m) => m.restore(input, job, windows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn bicubic_and_identity() {
        let img = Array3::from_shape_fn((3, 5, 7), |(c, y, x)| (c * 40 + y * 9 + x * 3) as f32);
        let bar = ProgressBar::hidden();
        let up = Method::Bicubic.restore(&img, Job::Sr(2), &bar).unwrap();
        assert_eq!(up.dim(), (3, 10, 14));
        // uint8 semantics: integer values.
        assert!(up
            .iter()
            .all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
        let same = Method::Identity
            .restore(&img, Job::Denoise(30), &bar)
            .unwrap();
        assert_eq!(same, img);
        assert!(Method::Bicubic.check(Job::Derain).is_err());
        assert!(Method::Identity.check(Job::Sr(2)).is_err());
    }
}
