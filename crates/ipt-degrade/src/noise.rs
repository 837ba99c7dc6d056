//! Additive noise: white Gaussian (per value, or one grey plane shared by the channels) and
//! Poisson (shot) noise as Real-ESRGAN/BasicSR make them.
//!
//! Draw order, from the caller's generator:
//! - [`add_gaussian_noise`]: one `f32` sample of [`rand_distr::StandardNormal`] per value, in the
//!   image's logical CHW order (channel, then row, then column);
//! - [`add_gaussian_noise_grey`]: one such sample per pixel, row by row (one plane);
//! - [`add_poisson_noise`]: one `f64` sample of [`rand_distr::Poisson`] per value in CHW order
//!   (colour) or per pixel of the luma plane row by row (grey), skipping values whose rate is 0
//!   (they draw nothing and get no noise). A Poisson sample consumes a variable number of
//!   generator outputs.
//!
//! With the workspace's documented generator ([`crate::Rng8`], ChaCha8 seeded by
//! `seed_from_u64`) the noise is reproducible on every platform (for a given `rand_distr`
//! version).

use rand::Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

use crate::quantize::quantize_value;
use crate::{DegradeError, Image};

/// BT.601 luma weights (R, G, B) that BasicSR's grey noise uses: `cv2.cvtColor(img,
/// cv2.COLOR_BGR2GRAY)` (OpenCV `modules/imgproc/src/color.hpp`, `RGB2GRAY` coefficients
/// 0.299, 0.587, 0.114).
pub const LUMA_BT601: [f32; 3] = [0.299, 0.587, 0.114];

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
        *v = finish(*v + sigma * n, opts);
    }
    out
}

/// Clips and/or rounds one noisy value per `opts`.
#[inline]
fn finish(mut x: f32, opts: NoiseOptions) -> f32 {
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
    x
}

/// Returns `img + sigma · n` with one noise plane `n ~ N(0, 1)` (i.i.d. per pixel) added to
/// every channel, then clipped/rounded per `opts`: BasicSR `basicsr/data/degradations.py`,
/// `generate_gaussian_noise(img, sigma, gray_noise=True)` (`np.random.randn(h, w) · sigma / 255`
/// repeated over the channels) and `add_gaussian_noise` for the clipping/rounding. `sigma` is on
/// the 0–255 scale. Draws one `f32` standard normal per pixel, row by row, whatever the channel
/// count (see the [module documentation](self)).
pub fn add_gaussian_noise_grey(
    img: &Image,
    sigma: f32,
    opts: NoiseOptions,
    rng: &mut impl Rng,
) -> Image {
    let (c, h, w) = img.dim();
    let plane: Vec<f32> = (0..h * w)
        .map(|_| sigma * rng.sample::<f32, _>(StandardNormal))
        .collect();
    Image::from_shape_fn((c, h, w), |(ch, y, x)| {
        finish(img[[ch, y, x]] + plane[y * w + x], opts)
    })
}

/// Adds Poisson (shot) noise as BasicSR `basicsr/data/degradations.py`,
/// `generate_poisson_noise` and `add_poisson_noise(clip=True, rounds=False)` (Real-ESRGAN's
/// degradation pipeline), on the 0–255 scale:
///
/// 1. `r = round(img)` clipped to 0–255 ([`quantize_value`]; BasicSR `np.clip((img ·
///    255).round(), 0, 255)`, which rounds half to even: the two differ only on exact halves);
///    with `grey`, `r` is computed from the luma `0.299 R + 0.587 G + 0.114 B` ([`LUMA_BT601`],
///    BasicSR's `cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)`) instead of the channels;
/// 2. `vals = 2^ceil(log2(u))`, `u` the number of distinct values of `r` (over all channels);
/// 3. `noise = (Poisson(r/255 · vals) / vals − r/255) · 255 · scale` per value (grey: per pixel of
///    the luma plane, the same noise added to every channel);
/// 4. result = `img + noise` (the unrounded input), clipped to 0–255, not rounded.
///
/// `scale` 0 leaves an in-range image unchanged (the draws are still made). Grey noise needs 1
/// or 3 channels (for 1 channel the luma is the channel itself); colour noise takes any count.
///
/// # Errors
/// [`DegradeError::Parameter`] if `scale` is not finite and ≥ 0; [`DegradeError::Shape`] for
/// grey noise on an image with other than 1 or 3 channels.
pub fn add_poisson_noise(
    img: &Image,
    scale: f32,
    grey: bool,
    rng: &mut impl Rng,
) -> Result<Image, DegradeError> {
    if !(scale.is_finite() && scale >= 0.0) {
        return Err(DegradeError::Parameter(format!(
            "scale (Poisson noise scale) must be finite and ≥ 0, got {scale}"
        )));
    }
    let (c, h, w) = img.dim();
    // The rounded levels the noise is drawn from: per value, or the luma plane.
    let levels: Vec<u8> = if grey {
        match c {
            1 => img.iter().map(|&v| quantize_value(v) as u8).collect(),
            3 => {
                let [kr, kg, kb] = LUMA_BT601;
                (0..h * w)
                    .map(|i| {
                        let (y, x) = (i / w.max(1), i % w.max(1));
                        let l = kr * img[[0, y, x]] + kg * img[[1, y, x]] + kb * img[[2, y, x]];
                        quantize_value(l) as u8
                    })
                    .collect()
            }
            _ => {
                return Err(DegradeError::Shape {
                    shape: vec![c, h, w],
                    reason: "grey Poisson noise needs 1 or 3 channels".into(),
                })
            }
        }
    } else {
        img.iter().map(|&v| quantize_value(v) as u8).collect()
    };
    let noise = poisson_noise(&levels, scale, rng);
    let plane = h * w;
    let mut out = img.to_owned();
    for (i, v) in out.iter_mut().enumerate() {
        let n = if grey {
            noise[i % plane.max(1)]
        } else {
            noise[i]
        };
        *v = (*v + n).clamp(0.0, 255.0);
    }
    Ok(out)
}

/// `(Poisson(r/255 · vals) / vals − r/255) · 255 · scale` for each level `r`, in order.
fn poisson_noise(levels: &[u8], scale: f32, rng: &mut impl Rng) -> Vec<f32> {
    let mut seen = [false; 256];
    for &r in levels {
        seen[usize::from(r)] = true;
    }
    let unique = seen.iter().filter(|&&s| s).count().max(1);
    // 2^ceil(log2(u)) for u in 1..=256: the next power of two.
    let vals = unique.next_power_of_two() as f64;
    // One distribution per level (rate r/255 · vals > 0); level 0 has rate 0 and no noise.
    let dists: Vec<Option<Poisson<f64>>> = (0..256)
        .map(|r| Poisson::new(r as f64 / 255.0 * vals).ok())
        .collect();
    levels
        .iter()
        .map(|&r| {
            let p = r as f64 / 255.0;
            match &dists[usize::from(r)] {
                Some(d) => {
                    let k: f64 = d.sample(rng);
                    // BasicSR: np.float32(poisson / vals) − img, times scale (0–1 scale).
                    let noise01 = (k / vals) as f32 - p as f32;
                    noise01 * 255.0 * scale
                }
                None => 0.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng8;
    use rand::SeedableRng;

    fn test_image(c: usize, h: usize, w: usize) -> Image {
        Image::from_shape_fn((c, h, w), |(ch, y, x)| {
            (20 + (x * 7 + y * 3 + ch * 50) % 200) as f32 + 0.3
        })
    }

    #[test]
    fn poisson_scale_zero_is_identity() {
        let img = test_image(3, 16, 20);
        for grey in [false, true] {
            let mut rng = Rng8::seed_from_u64(1);
            let out = add_poisson_noise(&img, 0.0, grey, &mut rng).expect("noise");
            assert_eq!(out, img);
        }
    }

    #[test]
    fn poisson_noise_has_mean_near_zero_and_the_right_variance() {
        // Constant level r = 100 (u = 1 distinct value, vals = 1): noise·255/… is
        // (Poisson(r/255) − r/255) · 255 · scale, mean 0, variance (r/255) · 255² · scale².
        let img = Image::from_elem((1, 200, 200), 100.0);
        let mut rng = Rng8::seed_from_u64(7);
        let scale = 0.1f32;
        // Keep the noise from clipping: at most ~ 4 events · 25.5 per value above 100.
        let out = add_poisson_noise(&img, scale, false, &mut rng).expect("noise");
        let n = (&out - &img).mapv(f64::from);
        let mean = n.mean().unwrap_or(f64::NAN);
        let var = n
            .mapv(|v| (v - mean) * (v - mean))
            .mean()
            .unwrap_or(f64::NAN);
        let want_var = (100.0 / 255.0) * 255.0f64.powi(2) * f64::from(scale).powi(2);
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!(
            (var / want_var - 1.0).abs() < 0.05,
            "var {var} want {want_var}"
        );
        // A rich image: 8 bits of levels, vals = 256; mean noise ~ 0.
        let img = test_image(3, 64, 64);
        let out = add_poisson_noise(&img, 1.0, false, &mut rng).expect("noise");
        let mean = (&out - &img).mapv(f64::from).mean().unwrap_or(f64::NAN);
        assert!(mean.abs() < 0.2, "mean {mean}");
    }

    #[test]
    fn poisson_vals_follow_the_number_of_levels() {
        // Two levels (0 and 255): vals = 2, so the noisy 255 is k/2 · 255 with k ~ Poisson(2).
        let img = Image::from_shape_fn(
            (1, 1, 64),
            |(_, _, x)| if x.is_multiple_of(2) { 0.0 } else { 255.0 },
        );
        let mut rng = Rng8::seed_from_u64(3);
        let noise = poisson_noise(
            &img.iter().map(|&v| v as u8).collect::<Vec<_>>(),
            1.0,
            &mut rng,
        );
        for (i, n) in noise.iter().enumerate() {
            if i.is_multiple_of(2) {
                assert_eq!(*n, 0.0); // rate 0: no noise
            } else {
                let k = (n / 255.0 + 1.0) * 2.0;
                assert!((k - k.round()).abs() < 1e-5 && k >= -1e-5, "{n}");
            }
        }
    }

    #[test]
    fn poisson_grey_noise_is_equal_across_channels_and_output_is_clipped() {
        let img = test_image(3, 12, 14);
        let mut rng = Rng8::seed_from_u64(11);
        let out = add_poisson_noise(&img, 3.0, true, &mut rng).expect("noise");
        let d = &out - &img;
        let mut clipped = 0;
        for y in 0..12 {
            for x in 0..14 {
                let vals: Vec<f32> = (0..3).map(|c| out[[c, y, x]]).collect();
                if vals.iter().any(|&v| v == 0.0 || v == 255.0) {
                    clipped += 1;
                    continue;
                }
                assert!((d[[0, y, x]] - d[[1, y, x]]).abs() < 1e-3);
                assert!((d[[0, y, x]] - d[[2, y, x]]).abs() < 1e-3);
            }
        }
        assert!(clipped < 12 * 14 / 2);
        assert!(out.iter().all(|&v| (0.0..=255.0).contains(&v)));
        // Large noise clips to 0–255 and is not rounded.
        let mut rng = Rng8::seed_from_u64(12);
        let out = add_poisson_noise(&img, 20.0, false, &mut rng).expect("noise");
        assert!(out.iter().all(|&v| (0.0..=255.0).contains(&v)));
        assert!(out.iter().any(|&v| v == 0.0) && out.iter().any(|&v| v == 255.0));
        assert!(out.iter().any(|&v| v != v.round()));
    }

    #[test]
    fn poisson_is_reproducible_and_checks_parameters() {
        let img = test_image(3, 8, 8);
        let a = add_poisson_noise(&img, 1.0, false, &mut Rng8::seed_from_u64(5)).expect("noise");
        let b = add_poisson_noise(&img, 1.0, false, &mut Rng8::seed_from_u64(5)).expect("noise");
        assert_eq!(a, b);
        for s in [-1.0, f32::NAN, f32::INFINITY] {
            match add_poisson_noise(&img, s, false, &mut Rng8::seed_from_u64(5)) {
                Err(DegradeError::Parameter(m)) => assert!(m.contains("scale"), "{m}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert!(matches!(
            add_poisson_noise(&test_image(2, 4, 4), 1.0, true, &mut Rng8::seed_from_u64(5)),
            Err(DegradeError::Shape { .. })
        ));
        // Grey on one channel: the luma is the channel itself.
        let g = test_image(1, 8, 8);
        let a = add_poisson_noise(&g, 1.0, true, &mut Rng8::seed_from_u64(5)).expect("noise");
        let b = add_poisson_noise(&g, 1.0, false, &mut Rng8::seed_from_u64(5)).expect("noise");
        assert_eq!(a, b);
    }

    #[test]
    fn grey_gaussian_noise_is_one_plane() {
        let img = Image::from_elem((3, 32, 32), 128.0);
        let mut rng = Rng8::seed_from_u64(9);
        let out = add_gaussian_noise_grey(&img, 10.0, NoiseOptions::default(), &mut rng);
        let d = &out - &img;
        for c in 1..3 {
            assert_eq!(
                d.index_axis(ndarray::Axis(0), c),
                d.index_axis(ndarray::Axis(0), 0)
            );
        }
        let n = d.index_axis(ndarray::Axis(0), 0).mapv(f64::from);
        let mean = n.mean().unwrap_or(f64::NAN);
        let sd = n
            .mapv(|v| (v - mean).powi(2))
            .mean()
            .unwrap_or(f64::NAN)
            .sqrt();
        assert!(mean.abs() < 1.5, "mean {mean}");
        assert!((sd - 10.0).abs() < 1.0, "sd {sd}");
        // The plane is the first h·w standard normals of the generator, row by row.
        let mut rng = Rng8::seed_from_u64(9);
        let first: f32 = rng.sample(StandardNormal);
        assert_eq!(d[[2, 0, 0]], 128.0 + 10.0 * first - 128.0);
        // sigma 0 is identity; clipping and rounding follow the options.
        let z = add_gaussian_noise_grey(&img, 0.0, NoiseOptions::default(), &mut rng);
        assert_eq!(z, img);
        let opts = NoiseOptions {
            clip: true,
            round: true,
        };
        let q = add_gaussian_noise_grey(&img, 300.0, opts, &mut rng);
        assert!(q
            .iter()
            .all(|&v| v == v.round() && (0.0..=255.0).contains(&v)));
        assert!(q.iter().any(|&v| v == 0.0) && q.iter().any(|&v| v == 255.0));
        let opts = NoiseOptions {
            clip: false,
            round: false,
        };
        let u = add_gaussian_noise_grey(&img, 300.0, opts, &mut rng);
        assert!(u.iter().any(|&v| !(0.0..=255.0).contains(&v)));
    }
}
