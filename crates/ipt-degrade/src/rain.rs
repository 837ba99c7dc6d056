//! Rain streaks: a procedural light-rain generator and real streak layers.
//!
//! IPT adds precomputed single-channel streak layers to clean images:
//! `rainy = clip(clean + streak, 0, 255)` on all three channels, not rounded ([`add_rain`]).
//! The official layers are RainTrainL's `rainstreak-*.png` (Yang et al., CVPR 2017, the data behind
//! Rain100L); [`RainSource::from_folder`] loads them.
//!
//! When they are not available, [`generate_streaks`] draws a **non-official** light-rain layer in
//! the same spirit: sparse random seeds, each motion-blurred into a thin segment along one random
//! angle per image (a line of length L with a Gaussian cross-section of the given width and soft
//! ends), added together with random semi-transparent brightness. Defaults ([`RainParams::default`])
//! were chosen by eye to resemble Rain100L; the layer is not the official data and results
//! trained on it are not comparable with published Rain100L figures.

use std::path::{Path, PathBuf};

use ndarray::{s, Array2, Zip};
use rand::Rng;

use crate::io::{read_image_with, Channels};
use crate::{DegradeError, Image};

/// Parameters of the procedural streak generator. Lengths and widths are in pixels of the image
/// the layer is drawn for, brightness on the 0–255 scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RainParams {
    /// Expected number of streak seeds per pixel.
    pub density: f32,
    /// Streak length range (uniform per streak), pixels.
    pub length: (f32, f32),
    /// The image's streak angle is uniform in ±`angle_range` degrees from vertical.
    pub angle_range: f32,
    /// Per-streak angle jitter around the image angle, degrees (uniform ±).
    pub angle_jitter: f32,
    /// Full width at half maximum of the streak cross-section, pixels.
    pub width: f32,
    /// Peak brightness range (uniform per streak), 0–255 scale.
    pub brightness: (f32, f32),
}

impl Default for RainParams {
    /// Light rain in the style of Rain100L: thin, long, near-vertical, semi-transparent.
    fn default() -> Self {
        RainParams {
            density: 0.003,
            length: (18.0, 40.0),
            angle_range: 25.0,
            angle_jitter: 1.5,
            width: 1.1,
            brightness: (50.0, 150.0),
        }
    }
}

impl RainParams {
    /// Checks that every parameter is finite and in range.
    pub fn validate(&self) -> Result<(), DegradeError> {
        let ok = self.density.is_finite()
            && self.density >= 0.0
            && self.length.0.is_finite()
            && self.length.0 > 0.0
            && self.length.1 >= self.length.0
            && self.length.1.is_finite()
            && self.angle_range.is_finite()
            && self.angle_range >= 0.0
            && self.angle_jitter.is_finite()
            && self.angle_jitter >= 0.0
            && self.width.is_finite()
            && self.width > 0.0
            && self.brightness.0.is_finite()
            && self.brightness.1.is_finite()
            && self.brightness.1 >= self.brightness.0;
        if ok {
            Ok(())
        } else {
            Err(DegradeError::Parameter(format!(
                "invalid rain parameters {self:?}"
            )))
        }
    }
}

fn uniform(lo: f32, hi: f32, rng: &mut impl Rng) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Draws a procedural (non-official) streak layer of size `h × w`, values in 0–255.
///
/// Seeds are drawn on the image extended by half the longest streak on every side, so streaks
/// enter across the borders like in a crop of a larger layer. Invalid parameters (see
/// [`RainParams::validate`]) give an all-zero layer.
pub fn generate_streaks(
    h: usize,
    w: usize,
    params: &RainParams,
    rng: &mut impl Rng,
) -> Array2<f32> {
    let mut layer = Array2::<f32>::zeros((h, w));
    if h == 0 || w == 0 || params.validate().is_err() {
        return layer;
    }
    let margin = params.length.1 / 2.0 + 2.0 * params.width;
    let (eh, ew) = (h as f32 + 2.0 * margin, w as f32 + 2.0 * margin);
    let expected = params.density * eh * ew;
    let mut count = expected.floor() as usize;
    if rng.random::<f32>() < expected - expected.floor() {
        count += 1;
    }
    let theta0 = uniform(-params.angle_range, params.angle_range, rng).to_radians();
    let sigma = params.width / 2.354_82;
    let inv_2s2 = 1.0 / (2.0 * sigma * sigma);
    let reach = (3.0 * sigma).max(0.75);
    for _ in 0..count {
        let cy = rng.random::<f32>() * eh - margin;
        let cx = rng.random::<f32>() * ew - margin;
        let len = uniform(params.length.0, params.length.1, rng);
        let amp = uniform(params.brightness.0, params.brightness.1, rng);
        let theta = theta0 + uniform(-params.angle_jitter, params.angle_jitter, rng).to_radians();
        draw_streak(&mut layer, (cy, cx), theta, len, amp, inv_2s2, reach);
    }
    layer.mapv_inplace(|v| v.min(255.0));
    layer
}

/// Adds one streak: a segment of length `len` centred at `(cy, cx)`, direction `theta` from
/// vertical, Gaussian cross-section, smooth ends, peak `amp`.
fn draw_streak(
    layer: &mut Array2<f32>,
    (cy, cx): (f32, f32),
    theta: f32,
    len: f32,
    amp: f32,
    inv_2s2: f32,
    reach: f32,
) {
    let (h, w) = layer.dim();
    let (dy, dx) = (theta.cos(), theta.sin()); // unit vector along the streak
    let half = len / 2.0;
    let ext_y = half * dy.abs() + reach;
    let ext_x = half * dx.abs() + reach;
    let y0 = ((cy - ext_y).floor().max(0.0)) as usize;
    let x0 = ((cx - ext_x).floor().max(0.0)) as usize;
    let y1 = (cy + ext_y).ceil().min(h as f32 - 1.0);
    let x1 = (cx + ext_x).ceil().min(w as f32 - 1.0);
    if y1 < 0.0 || x1 < 0.0 {
        return;
    }
    let (y1, x1) = (y1 as usize, x1 as usize);
    // Soft ends: full brightness in the middle, smoothstep fall-off over the outer quarter.
    let fade = (len / 4.0).max(1.0);
    for y in y0..=y1 {
        let ry = y as f32 - cy;
        for x in x0..=x1 {
            let rx = x as f32 - cx;
            let along = ry * dy + rx * dx;
            let across = -ry * dx + rx * dy;
            if along.abs() > half || across.abs() > reach {
                continue;
            }
            let e = ((half - along.abs()) / fade).min(1.0);
            let taper = e * e * (3.0 - 2.0 * e);
            layer[[y, x]] += amp * taper * (-across * across * inv_2s2).exp();
        }
    }
}

/// Adds a single-channel streak layer to every channel and clips to 0–255 (not rounded).
///
/// # Panics
/// If the layer's size differs from the image's; [`try_add_rain`] returns an error instead.
pub fn add_rain(img: &Image, streak: &Array2<f32>) -> Image {
    match try_add_rain(img, streak) {
        Ok(out) => out,
        Err(e) => panic!("add_rain: {e}"),
    }
}

/// [`add_rain`] that returns an error when the sizes differ.
pub fn try_add_rain(img: &Image, streak: &Array2<f32>) -> Result<Image, DegradeError> {
    let (_, h, w) = img.dim();
    if streak.dim() != (h, w) {
        return Err(DegradeError::Shape {
            shape: streak.shape().to_vec(),
            reason: format!("rain layer does not match the {w}×{h} image"),
        });
    }
    let mut out = img.to_owned();
    for mut plane in out.outer_iter_mut() {
        Zip::from(&mut plane)
            .and(streak)
            .for_each(|p, &r| *p = (*p + r).clamp(0.0, 255.0));
    }
    Ok(out)
}

/// One streak layer loaded from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct StreakLayer {
    /// Where it came from.
    pub path: PathBuf,
    /// The layer, 0–255.
    pub data: Array2<f32>,
}

/// Where rain layers come from.
#[derive(Debug, Clone, PartialEq)]
pub enum RainSource {
    /// The procedural (non-official) generator.
    Procedural(RainParams),
    /// Real layers (e.g. RainTrainL `rainstreak-*.png`); a random crop of a random layer is used.
    Layers(Vec<StreakLayer>),
}

impl Default for RainSource {
    fn default() -> Self {
        RainSource::Procedural(RainParams::default())
    }
}

impl RainSource {
    /// Loads the streak layers directly inside `dir` (PNG, JPEG, BMP, TIFF, WebP), sorted by
    /// name, as single-channel layers: the files named `rainstreak-*` when there are any
    /// (RainTrainL's folders also hold its rainy and clean images), else every image (a folder of
    /// layers only, such as the rendered Garg–Nayar streaks). Errors name the folder or the bad
    /// file.
    pub fn from_folder(dir: &Path) -> Result<RainSource, DegradeError> {
        let files = crate::files::list_images(dir, crate::files::Depth::Flat).map_err(|e| {
            DegradeError::Io {
                path: e.path,
                source: e.source,
            }
        })?;
        let is_streak = |path: &PathBuf| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rainstreak"))
        };
        let named: Vec<&PathBuf> = files.iter().filter(|p| is_streak(p)).collect();
        let chosen = if named.is_empty() {
            files.iter().collect()
        } else {
            named
        };
        let mut layers = Vec::new();
        for path in chosen {
            let img = read_image_with(path, Channels::Gray)?;
            let data = img.index_axis_move(ndarray::Axis(0), 0);
            layers.push(StreakLayer {
                path: path.clone(),
                data,
            });
        }
        if layers.is_empty() {
            return Err(DegradeError::NoRainLayers {
                path: dir.to_path_buf(),
            });
        }
        Ok(RainSource::Layers(layers))
    }

    /// A streak layer of size `h × w`.
    ///
    /// Procedural: [`generate_streaks`]. Layers: a uniformly chosen layer, uniformly random crop;
    /// a layer smaller than the request in a dimension gives its whole extent there, resized to
    /// the requested size with [`crate::imresize_to`] and clipped to 0–255.
    pub fn streak(&self, h: usize, w: usize, rng: &mut impl Rng) -> Array2<f32> {
        match self {
            RainSource::Procedural(p) => generate_streaks(h, w, p, rng),
            RainSource::Layers(layers) if !layers.is_empty() => {
                let layer = &layers[rng.random_range(0..layers.len())].data;
                let (lh, lw) = layer.dim();
                let (ch, cw) = (h.min(lh), w.min(lw));
                let y = rng.random_range(0..=lh - ch);
                let x = rng.random_range(0..=lw - cw);
                let crop = layer.slice(s![y..y + ch, x..x + cw]).to_owned();
                if (ch, cw) == (h, w) {
                    crop
                } else {
                    let img = crop.insert_axis(ndarray::Axis(0));
                    let resized = crate::imresize_to(&img, h, w);
                    resized
                        .index_axis_move(ndarray::Axis(0), 0)
                        .mapv(|v| v.clamp(0.0, 255.0))
                }
            }
            RainSource::Layers(_) => Array2::zeros((h, w)),
        }
    }
}
