//! The IPT colour-denoising protocol.
//!
//! For each set and noise level σ:
//! 1. The clean image is read as RGB at full size (no crop).
//! 2. The input is `clamp(clean + σ·n, 0, 255)`, `n ~ N(0, 1)` per value, **not rounded**
//!    (the official code), drawn from the image's own generator
//!    ([`ipt_degrade::seed::noise_rng`]: seeded from `--seed`, the set, the image name and σ, so
//!    each image's noise is the same whatever else runs).
//! 3. The method restores the whole image; the output is quantized.
//! 4. PSNR on Y (IPT convention, the paper's numbers) and PSNR on RGB (the SwinIR protocol,
//!    which re-tested IPT this way), both with shave 0; SSIM on Y.

use ipt_degrade::io::read_image;
use ipt_degrade::noise::{add_gaussian_noise, NoiseOptions};
use ipt_degrade::seed::noise_rng;
use ipt_degrade::Image;

use crate::data_root::DataRoot;
use crate::layout::find_sets;
use crate::method::Method;
use crate::progress::BenchProgress;
use crate::protocol::run_grid;
use crate::report::{BenchOutcome, BenchTask};
use crate::{BenchError, Job};

/// The default base seed (`--seed`), as in the official test script (`torch.manual_seed(1)`).
pub const DEFAULT_NOISE_SEED: u64 = 1;

/// The sets of IPT's denoising table.
pub const DEFAULT_DENOISE_SETS: &[&str] = &["CBSD68", "Urban100"];

/// The noise levels of IPT's denoising table.
pub const DEFAULT_SIGMAS: &[u32] = &[30, 50];

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenoiseOptions {
    /// Set names, in display order.
    pub sets: Vec<String>,
    /// Noise levels (0–255 scale), in display order.
    pub sigmas: Vec<u32>,
    /// At most this many images per set.
    pub limit: Option<usize>,
    /// Report missing sets as `missing` rows instead of stopping.
    pub skip_missing: bool,
    /// Base seed of the per-image noise.
    pub seed: u64,
}

impl Default for DenoiseOptions {
    fn default() -> Self {
        DenoiseOptions {
            sets: DEFAULT_DENOISE_SETS.iter().map(|s| s.to_string()).collect(),
            sigmas: DEFAULT_SIGMAS.to_vec(),
            limit: None,
            skip_missing: false,
            seed: DEFAULT_NOISE_SEED,
        }
    }
}

/// The noisy input for `clean` (step 2 of the protocol).
pub fn noisy_input(clean: &Image, set: &str, image: &str, sigma: u32, seed: u64) -> Image {
    let mut rng = noise_rng(seed, set, image, sigma);
    add_gaussian_noise(
        clean,
        sigma as f32,
        NoiseOptions {
            clip: true,
            round: false,
        },
        &mut rng,
    )
}

/// Runs the denoising benchmark with `method` on the sets found under `root`.
pub fn run_denoise(
    root: &DataRoot,
    opts: &DenoiseOptions,
    method: &mut Method,
    progress: &BenchProgress,
) -> Result<BenchOutcome, BenchError> {
    let jobs: Vec<Job> = opts.sigmas.iter().map(|&s| Job::Denoise(s)).collect();
    let found = find_sets(root, &opts.sets, opts.limit, opts.skip_missing)?;
    run_grid(
        BenchTask::Denoise,
        &jobs,
        &found.slots(),
        found.missing.clone(),
        method,
        progress,
        |set, image, job| {
            let clean = read_image(&image.hr)?;
            let sigma = job.sigma().unwrap_or_default();
            let noisy = noisy_input(&clean, &set.name, &image.name, sigma, opts.seed);
            Ok(image.pair(noisy, clean))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipt_degrade::quantize;
    use ndarray::Array3;

    /// erfc-free normal CDF: Abramowitz & Stegun 7.1.26 for erf (|error| < 1.5e-7).
    fn phi(x: f64) -> f64 {
        let z = x / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        0.5 * (1.0 + if z >= 0.0 { erf } else { -erf })
    }

    /// E[(round(clip(v + σZ, 0, 255)) − v)²] for an integer level v, summed over the output
    /// levels k with their probabilities.
    fn expected_sq_error(v: f64, sigma: f64) -> f64 {
        (0..=255)
            .map(|k| {
                let k = k as f64;
                let lo = if k == 0.0 {
                    0.0
                } else {
                    phi((k - 0.5 - v) / sigma)
                };
                let hi = if k == 255.0 {
                    1.0
                } else {
                    phi((k + 0.5 - v) / sigma)
                };
                (hi - lo) * (k - v) * (k - v)
            })
            .sum()
    }

    #[test]
    fn identity_noise_psnr_matches_the_analytic_expectation() {
        // Every level 0..255 appears equally often, so clipping matters at both ends.
        let clean = Array3::from_shape_fn((3, 192, 192), |(c, y, x)| {
            ((x + 3 * y + 85 * c) % 256) as f32
        });
        for sigma in [30u32, 50] {
            let noisy = quantize(&noisy_input(
                &clean,
                "Gen",
                "img",
                sigma,
                DEFAULT_NOISE_SEED,
            ));
            let measured = ipt_metrics::psnr_rgb(noisy.view(), clean.view(), 0).unwrap();
            let mse: f64 = clean
                .iter()
                .map(|&v| expected_sq_error(f64::from(v), f64::from(sigma)))
                .sum::<f64>()
                / clean.len() as f64;
            let expected = 10.0 * (255.0f64 * 255.0 / mse).log10();
            // 110k samples: the PSNR's standard error is about 0.02 dB.
            assert!(
                (measured - expected).abs() < 0.1,
                "sigma {sigma}: measured {measured:.3} dB, expected {expected:.3} dB"
            );
            // Clipping lowers the error below the unclipped σ² (18.59 dB at σ = 30).
            assert!(expected > 10.0 * (255.0f64.powi(2) / f64::from(sigma * sigma)).log10());
        }
    }

    #[test]
    fn noise_is_clipped_not_rounded_and_seeded_per_image() {
        let clean = Array3::from_elem((3, 16, 16), 128.0f32);
        let a = noisy_input(&clean, "S", "a", 50, 1);
        assert!(a.iter().all(|v| (0.0..=255.0).contains(v)));
        assert!(
            a.iter().any(|v| v.fract() != 0.0),
            "noise must not be rounded"
        );
        let bright = noisy_input(&Array3::from_elem((3, 16, 16), 250.0f32), "S", "a", 50, 1);
        assert!(
            bright.iter().any(|&v| v == 255.0),
            "values above 255 must be clipped"
        );
        assert_eq!(a, noisy_input(&clean, "S", "a", 50, 1));
        assert_ne!(a, noisy_input(&clean, "S", "b", 50, 1));
        assert_ne!(a, noisy_input(&clean, "S", "a", 50, 2));
    }
}
