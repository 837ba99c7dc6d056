//! Additive white Gaussian noise.
//!
//! One `f32` sample of [`rand_distr::StandardNormal`] is drawn per value, in the image's logical
//! CHW order (channel, then row, then column), from the caller's generator. With the workspace's
//! documented generator ([`crate::Rng8`], ChaCha8 seeded by `seed_from_u64`) the noise is
//! reproducible on every platform.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::quantize::quantize_value;
use crate::Image;

/// What happens after the noise is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseOptions {
    /// Clip to 0–255 (default on, as IPT: `clamp(hr + σ·n, 0, 255)`).
    pub clip: bool,
    /// Round to integers, MATLAB `uint8` style (default off, as IPT).
    pub round: bool,
}

impl Default for NoiseOptions {
    fn default() -> Self {
        NoiseOptions {
            clip: true,
            round: false,
        }
    }
}

/// Returns `img + sigma · n`, `n ~ N(0, 1)` i.i.d. per value, then clipped/rounded per `opts`.
/// `sigma` is on the 0–255 scale.
pub fn add_gaussian_noise(
    img: &Image,
    sigma: f32,
    opts: NoiseOptions,
    rng: &mut impl Rng,
) -> Image {
    let mut out = img.to_owned();
    for v in out.iter_mut() {
        let n: f32 = rng.sample(StandardNormal);
        let mut x = *v + sigma * n;
        if opts.round {
            // quantize_value also saturates; without `clip` keep the unclipped rounded value.
            x = if opts.clip {
                quantize_value(x)
            } else {
                x.round()
            };
        } else if opts.clip {
            x = x.clamp(0.0, 255.0);
        }
        *v = x;
    }
    out
}
