//! Degradation recipes: what a task does to a clean image to make the model's input.
//!
//! A [`Recipe`] is a chain of [`Step`]s; each step is one [`Op`] with a probability. Parameters
//! are fixed numbers or ranges drawn uniformly per image ([`Param`]). The six official tasks are
//! recipes too ([`crate::Task::recipe`]), written so that they draw exactly the random numbers
//! the hand-written synthesis drew before (a fixed parameter and a step of probability 1 draw
//! nothing), so seeded training data is unchanged.
//!
//! In TOML (a config's `[[tasks]]` table), a recipe is a list of inline tables keyed by `op`:
//!
//! ```toml
//! [[tasks]]
//! name = "jpeg10"
//! scale = 1
//! recipe = [{ op = "jpeg", quality = 10 }]
//!
//! [[tasks]]
//! name = "denoise-blind"
//! scale = 1
//! recipe = [{ op = "noise", sigma = [0, 55] }]
//! ```
//!
//! | op | parameters | what it does |
//! |---|---|---|
//! | `downscale` | `kernel` (`bicubic`) | resize to the clean patch's size divided by the task's scale |
//! | `resize` | `factor`, `kernel` (`bicubic`) | resize by a factor (each side rounded) |
//! | `blur` | `size`, `sigma`, `sigma_y`, `angle` (degrees) | Gaussian blur, isotropic or rotated anisotropic |
//! | `noise` | `sigma`, `grey` (probability, 0) | additive Gaussian noise, colour or grey |
//! | `poisson` | `scale`, `grey` (probability, 0) | Poisson (shot) noise |
//! | `jpeg` | `quality` | JPEG round trip through libjpeg-turbo |
//! | `rain` | | rain streaks from the run's rain source (procedural or a folder of layers) |
//! | `quantize` | | round to 8-bit integers (MATLAB `uint8`) |
//! | `chain` | `steps`, `shuffle` (false) | the steps in order, or in a random order |
//! | `one-of` | `steps`, `weights` (equal) | one of the steps, drawn by weight |
//! | `keep` | | nothing (an option of `one-of`) |
//!
//! Every step also takes `probability` (default 1): the chance that it runs. `kernel` is one
//! name or a list to draw from uniformly (`bicubic`, `bilinear`, `area`).

use std::borrow::Cow;
use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::DegradeError;
use crate::noise::{add_gaussian_noise, NoiseOptions};
use crate::rain::{add_rain, RainSource};
use crate::resize::ResizeKernel;
use crate::{imresize, modcrop, quantize, Image};

/// A number that is either fixed or drawn uniformly from `[low, high]` for each image.
///
/// In TOML: `30` or `[0, 55]`. A fixed value draws no random number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param {
    /// Always this value.
    Fixed(f64),
    /// Uniform in `[low, high]` (inclusive).
    Range(f64, f64),
}

impl Param {
    /// The smallest and largest value it can take.
    pub fn bounds(self) -> (f64, f64) {
        match self {
            Param::Fixed(v) => (v, v),
            Param::Range(lo, hi) => (lo, hi),
        }
    }

    /// A real value (uniform for a range).
    pub fn draw(self, rng: &mut impl Rng) -> f64 {
        match self {
            Param::Fixed(v) => v,
            Param::Range(lo, hi) if lo == hi => lo,
            Param::Range(lo, hi) => rng.random_range(lo..=hi),
        }
    }

    /// An integer value (uniform over the integers of a range; a fixed value is rounded).
    pub fn draw_int(self, rng: &mut impl Rng) -> i64 {
        match self {
            Param::Fixed(v) => v.round() as i64,
            Param::Range(lo, hi) => {
                let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
                if lo >= hi {
                    lo
                } else {
                    rng.random_range(lo..=hi)
                }
            }
        }
    }

    /// An odd integer value (uniform over the odd integers of a range), for kernel sizes.
    pub fn draw_odd(self, rng: &mut impl Rng) -> i64 {
        match self {
            Param::Fixed(v) => v.round() as i64,
            Param::Range(lo, hi) => {
                let first = (lo.ceil() as i64) | 1;
                let count = ((hi.floor() as i64 - first) / 2 + 1).max(1);
                first
                    + 2 * if count > 1 {
                        rng.random_range(0..count)
                    } else {
                        0
                    }
            }
        }
    }

    fn check(self, what: &str, ok: impl Fn(f64) -> bool, rule: &str) -> Result<(), String> {
        let (lo, hi) = self.bounds();
        if !lo.is_finite() || !hi.is_finite() {
            return Err(format!("{what} must be finite"));
        }
        if lo > hi {
            return Err(format!(
                "{what} range [{lo}, {hi}] has its low end above its high end"
            ));
        }
        if !ok(lo) || !ok(hi) {
            return Err(format!("{what} {self} is outside {rule}"));
        }
        Ok(())
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Fixed(v) => write!(f, "{v}"),
            Param::Range(lo, hi) => write!(f, "[{lo}, {hi}]"),
        }
    }
}

impl Serialize for Param {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Param::Fixed(v) => s.serialize_f64(v),
            Param::Range(lo, hi) => [lo, hi].serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Param;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a [low, high] range")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Param, E> {
                Ok(Param::Fixed(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Param, E> {
                Ok(Param::Fixed(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Param, E> {
                Ok(Param::Fixed(v as f64))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Param, A::Error> {
                let lo: Number = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let hi: Number = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<Number>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Param::Range(lo.0, hi.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number that may be written as an integer (TOML `0` as well as `0.0`).
struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

/// Resize kernels to draw from: one name or a list (`"bicubic"`, `["area", "bilinear", "bicubic"]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Kernels(pub Cow<'static, [ResizeKernel]>);

impl Kernels {
    /// MATLAB-exact bicubic only (the official degradation).
    pub const BICUBIC: Kernels = Kernels(Cow::Borrowed(&[ResizeKernel::Bicubic]));

    fn draw(&self, rng: &mut impl Rng) -> ResizeKernel {
        match self.0.len() {
            0 => ResizeKernel::Bicubic,
            1 => self.0[0],
            n => self.0[rng.random_range(0..n)],
        }
    }
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::BICUBIC
    }
}

impl Serialize for Kernels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &*self.0 {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Kernels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a kernel name (bicubic, bilinear, area) or a list of them"
        )]
        enum OneOrMany {
            One(ResizeKernel),
            Many(Vec<ResizeKernel>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(k) => Kernels(Cow::Owned(vec![k])),
            OneOrMany::Many(v) => Kernels(Cow::Owned(v)),
        })
    }
}

/// One degradation operation (see the module docs for the table of ops and parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Op {
    /// Resize to the clean patch's size divided by the task's scale (the model's input size).
    Downscale {
        /// Kernels to draw from (default MATLAB bicubic).
        #[serde(default)]
        kernel: Kernels,
    },
    /// Resize by a factor; each side becomes `round(side · factor)` (at least 1).
    Resize {
        /// The factor (> 0).
        factor: Param,
        /// Kernels to draw from (default MATLAB bicubic).
        #[serde(default)]
        kernel: Kernels,
    },
    /// Gaussian blur (Real-ESRGAN's isotropic and anisotropic kernels).
    Blur {
        /// Kernel side (odd; a range draws odd sizes).
        size: Param,
        /// Standard deviation along x, in pixels (> 0).
        sigma: Param,
        /// Standard deviation along y (default: equal to `sigma`, isotropic).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sigma_y: Option<Param>,
        /// Rotation of the kernel, in degrees (default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        angle: Option<Param>,
    },
    /// Additive Gaussian noise on the 0–255 scale, clipped to 0–255, not rounded.
    Noise {
        /// Standard deviation (≥ 0, 0–255 scale).
        sigma: Param,
        /// Probability that the noise is grey (one plane for all channels).
        #[serde(default, skip_serializing_if = "is_zero")]
        grey: f64,
    },
    /// Poisson (shot) noise, clipped to 0–255, not rounded.
    Poisson {
        /// Noise scale (≥ 0; Real-ESRGAN's `poisson_scale`).
        scale: Param,
        /// Probability that the noise is grey.
        #[serde(default, skip_serializing_if = "is_zero")]
        grey: f64,
    },
    /// JPEG compression and decompression through libjpeg-turbo (as OpenCV's
    /// `imencode`/`imdecode`), at an integer quality.
    Jpeg {
        /// Quality factor (1–100).
        quality: Param,
    },
    /// Rain streaks from the run's rain source, added and clipped.
    Rain,
    /// Round to 8-bit integers (MATLAB `uint8`: [`crate::quantize`]).
    Quantize,
    /// Sub-steps in order, or in a random order.
    Chain {
        /// The steps.
        steps: Cow<'static, [Step]>,
        /// Shuffle their order per image.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shuffle: bool,
    },
    /// One of the sub-steps, drawn by weight.
    OneOf {
        /// The options.
        steps: Cow<'static, [Step]>,
        /// Their weights (default equal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f64>>,
    },
    /// Leaves the image as it is.
    Keep,
}

/// What a `jpeg` step says in a build without the `jpeg` feature.
const NO_JPEG: &str =
    "this build of ipt-degrade has no JPEG codec (build it with the `jpeg` feature)";

/// Whether noise of grey probability `p` is grey this time (draws nothing when `p` is 0).
fn draw_grey(p: f64, rng: &mut impl Rng) -> bool {
    p > 0.0 && rng.random_bool(p.clamp(0.0, 1.0))
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn one() -> f64 {
    1.0
}

impl Op {
    /// The op's name as written in a recipe.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Downscale { .. } => "downscale",
            Op::Resize { .. } => "resize",
            Op::Blur { .. } => "blur",
            Op::Noise { .. } => "noise",
            Op::Poisson { .. } => "poisson",
            Op::Jpeg { .. } => "jpeg",
            Op::Rain => "rain",
            Op::Quantize => "quantize",
            Op::Chain { .. } => "chain",
            Op::OneOf { .. } => "one-of",
            Op::Keep => "keep",
        }
    }
}

/// One step of a recipe: an op and the chance that it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Probability that the step runs (default 1; a step of probability 1 draws nothing).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub probability: f64,
    /// The operation.
    #[serde(flatten)]
    pub op: Op,
}

impl Step {
    /// A step that always runs.
    pub const fn always(op: Op) -> Step {
        Step {
            probability: 1.0,
            op,
        }
    }
}

/// A task's degradation: steps applied in order to a clean patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Recipe(pub Cow<'static, [Step]>);

/// What a recipe needs besides the image.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The task's scale: `downscale` targets the clean size divided by it.
    pub scale: usize,
    /// Where `rain` takes its streaks.
    pub rain: &'a RainSource,
}

impl Recipe {
    /// Checks every parameter; the error names the step (`step 2 (jpeg): quality …`).
    pub fn check(&self) -> Result<(), String> {
        check_steps(&self.0, "")
    }

    /// Whether a step of the recipe changes the image's size (`downscale`, `resize`).
    pub fn resizes(&self) -> bool {
        fn any(steps: &[Step]) -> bool {
            steps.iter().any(|s| match &s.op {
                Op::Downscale { .. } | Op::Resize { .. } => true,
                Op::Chain { steps, .. } | Op::OneOf { steps, .. } => any(steps),
                _ => false,
            })
        }
        any(&self.0)
    }

    /// Degrades a clean patch: returns `(input, target)`. With `scale > 1` the target is the
    /// patch [`modcrop`]ped to a multiple of the scale and the input must come out at the target's
    /// size divided by the scale (else an error saying so); with scale 1 at the target's size.
    pub fn degrade(
        &self,
        hr: &Image,
        ctx: Context<'_>,
        rng: &mut impl Rng,
    ) -> Result<(Image, Image), DegradeError> {
        let scale = ctx.scale.max(1);
        let hr = if scale > 1 {
            modcrop(hr, scale)
        } else {
            hr.to_owned()
        };
        let (_, h, w) = hr.dim();
        let target = (h / scale, w / scale);
        let lr = run_steps(&self.0, false, hr.clone(), &hr, ctx, rng)?;
        let (_, lh, lw) = lr.dim();
        if (lh, lw) != target {
            return Err(DegradeError::Parameter(format!(
                "the recipe turned a {w}×{h} patch into {lw}×{lh}, but a task of scale {scale} needs \
                 {}×{} (end the recipe with a `downscale` step)",
                target.1, target.0
            )));
        }
        Ok((lr, hr))
    }
}

fn check_steps(steps: &[Step], prefix: &str) -> Result<(), String> {
    if steps.is_empty() {
        return Err(format!("{prefix}has no steps"));
    }
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{prefix}step {} ({})", i + 1, step.op.name());
        check_step(step).map_err(|e| format!("{at}: {e}"))?;
        if let Op::Chain { steps, .. } | Op::OneOf { steps, .. } = &step.op {
            check_steps(steps, &format!("{at}, "))?;
        }
    }
    Ok(())
}

fn check_probability(what: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{what} {p} is outside 0..=1"))
    }
}

fn check_step(step: &Step) -> Result<(), String> {
    check_probability("probability", step.probability)?;
    match &step.op {
        Op::Downscale { kernel } | Op::Resize { kernel, .. } if kernel.0.is_empty() => {
            Err("kernel list is empty".into())
        }
        Op::Resize { factor, .. } => factor.check("factor", |v| v > 0.0, "(0, ∞)"),
        Op::Blur {
            size,
            sigma,
            sigma_y,
            angle,
        } => {
            size.check("size", |v| (1.0..=101.0).contains(&v), "1..=101")?;
            if let Param::Fixed(v) = size {
                if v.fract() != 0.0 || (*v as i64) % 2 == 0 {
                    return Err(format!("size {v} must be an odd integer"));
                }
            }
            sigma.check("sigma", |v| v > 0.0, "(0, ∞)")?;
            if let Some(sy) = sigma_y {
                sy.check("sigma_y", |v| v > 0.0, "(0, ∞)")?;
            }
            if let Some(a) = angle {
                a.check("angle", |_| true, "the real numbers")?;
            }
            Ok(())
        }
        Op::Noise { sigma, grey } => {
            sigma.check("sigma", |v| v >= 0.0, "[0, ∞)")?;
            check_probability("grey", *grey)
        }
        Op::Poisson { scale, grey } => {
            scale.check("scale", |v| v >= 0.0, "[0, ∞)")?;
            check_probability("grey", *grey)
        }
        Op::Jpeg { quality } => {
            quality.check("quality", |v| (1.0..=100.0).contains(&v), "1..=100")?;
            if cfg!(feature = "jpeg") {
                Ok(())
            } else {
                Err(NO_JPEG.into())
            }
        }
        Op::OneOf {
            steps,
            weights: Some(w),
        } => {
            if w.len() != steps.len() {
                return Err(format!("{} weights for {} steps", w.len(), steps.len()));
            }
            if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                return Err("weights must be non-negative with a positive sum".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn run_steps(
    steps: &[Step],
    shuffle: bool,
    mut x: Image,
    hr: &Image,
    ctx: Context<'_>,
    rng: &mut impl Rng,
) -> Result<Image, DegradeError> {
    let mut order: Vec<usize> = (0..steps.len()).collect();
    if shuffle {
        order.shuffle(rng);
    }
    for i in order {
        let step = &steps[i];
        if step.probability < 1.0 && !rng.random_bool(step.probability.clamp(0.0, 1.0)) {
            continue;
        }
        x = run_op(&step.op, x, hr, ctx, rng)?;
    }
    Ok(x)
}

fn sized(len: usize, factor: f64) -> usize {
    ((len as f64 * factor).round() as usize).max(1)
}

fn run_op(
    op: &Op,
    x: Image,
    hr: &Image,
    ctx: Context<'_>,
    rng: &mut impl Rng,
) -> Result<Image, DegradeError> {
    let (_, h, w) = x.dim();
    Ok(match op {
        Op::Downscale { kernel } => {
            let scale = ctx.scale.max(1);
            let (_, hh, hw) = hr.dim();
            let (th, tw) = (hh / scale, hw / scale);
            match kernel.draw(rng) {
                // The official degradation: MATLAB imresize by 1/s of the modcropped patch.
                ResizeKernel::Bicubic if (h, w) == (hh, hw) => imresize(&x, 1.0 / scale as f64),
                k => crate::resize::resize_kernel(&x, k, th, tw)?,
            }
        }
        Op::Resize { factor, kernel } => {
            let f = factor.draw(rng);
            let k = kernel.draw(rng);
            crate::resize::resize_kernel(&x, k, sized(h, f), sized(w, f))?
        }
        Op::Blur {
            size,
            sigma,
            sigma_y,
            angle,
        } => {
            let n = size.draw_odd(rng).max(1) as usize;
            let sx = sigma.draw(rng);
            let sy = match sigma_y {
                Some(p) => p.draw(rng),
                None => sx,
            };
            let theta = angle.map_or(0.0, |a| a.draw(rng)).to_radians();
            let k = crate::blur::gaussian_kernel(n, sx, sy, theta)?;
            crate::blur::filter2d(&x, &k)?
        }
        Op::Noise { sigma, grey } => {
            let s = sigma.draw(rng) as f32;
            if draw_grey(*grey, rng) {
                crate::noise::add_gaussian_noise_grey(&x, s, NoiseOptions::default(), rng)
            } else {
                add_gaussian_noise(&x, s, NoiseOptions::default(), rng)
            }
        }
        Op::Poisson { scale, grey } => {
            let s = scale.draw(rng) as f32;
            crate::noise::add_poisson_noise(&x, s, draw_grey(*grey, rng), rng)?
        }
        Op::Jpeg { quality } => {
            let q = quality.draw_int(rng).clamp(1, 100) as u8;
            jpeg(&x, q)?
        }
        Op::Rain => {
            let streak = ctx.rain.streak(h, w, rng);
            add_rain(&x, &streak)
        }
        Op::Quantize => quantize(&x),
        Op::Chain { steps, shuffle } => run_steps(steps, *shuffle, x, hr, ctx, rng)?,
        Op::OneOf { steps, weights } => {
            let i = match weights {
                Some(w) => {
                    let total: f64 = w.iter().sum();
                    let mut u = rng.random_range(0.0..total);
                    let mut pick = w.len() - 1;
                    for (j, v) in w.iter().enumerate() {
                        if u < *v {
                            pick = j;
                            break;
                        }
                        u -= v;
                    }
                    pick
                }
                None => rng.random_range(0..steps.len()),
            };
            run_steps(&steps[i..=i], false, x, hr, ctx, rng)?
        }
        Op::Keep => x,
    })
}

#[cfg(feature = "jpeg")]
fn jpeg(x: &Image, quality: u8) -> Result<Image, DegradeError> {
    crate::jpeg::jpeg_round_trip(x, quality)
}

#[cfg(not(feature = "jpeg"))]
fn jpeg(_: &Image, _: u8) -> Result<Image, DegradeError> {
    Err(DegradeError::Parameter(NO_JPEG.into()))
}
