//! The embedded training data: a seeded generator of varied, natural-looking images, so that
//! training runs on a fresh machine with no data at all.
//!
//! Each image is a pure function of `(seed, index)`: a smooth two-colour gradient background
//! modulated by fractal value noise (clouds, terrain-like texture), then a random stack of
//! anti-aliased shapes (ellipses, rotated rectangles, triangles) filled with flat colour, a
//! gradient, stripes, checkers or noise texture, then a few brush strokes (thick quadratic
//! Bézier curves) and thin lines. The mix gives the statistics restoration networks care about:
//! flat regions, smooth shading, sharp edges at every orientation, periodic and stochastic
//! texture.
//!
//! Not a substitute for natural photographs (the paper pre-trains on ImageNet); it exists so the
//! pipeline, the loss and the checkpoints can be exercised anywhere.

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ipt_degrade::seed::derive_seed;

use crate::data::Image;

/// Seeded generator of procedural images of a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProceduralImages {
    /// Base seed; images with the same `(seed, index)` are identical.
    pub seed: u64,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

type Rgb = [f32; 3];

impl ProceduralImages {
    /// A generator of `height`×`width` images.
    pub fn new(seed: u64, height: usize, width: usize) -> Self {
        Self {
            seed,
            height,
            width,
        }
    }

    /// Image number `index` (CHW, RGB, 0–255, not quantised).
    pub fn image(&self, index: u64) -> Image {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.seed, &[0x1A6E, index]));
        let (h, w) = (self.height, self.width);
        let mut canvas = Canvas::new(h, w);
        let palette = Palette::random(&mut rng);

        canvas.background(&mut rng, &palette);
        let n_shapes = rng.random_range(3..14);
        for _ in 0..n_shapes {
            canvas.shape(&mut rng, &palette);
        }
        let n_strokes = rng.random_range(0..6);
        for _ in 0..n_strokes {
            canvas.stroke(&mut rng, &palette);
        }
        if rng.random_bool(0.3) {
            canvas.vignette(&mut rng);
        }
        canvas.into_image()
    }
}

/// A few related colours, so images look composed rather than confetti.
struct Palette {
    colors: Vec<Rgb>,
}

impl Palette {
    fn random(rng: &mut ChaCha8Rng) -> Self {
        let base_hue: f32 = rng.random_range(0.0..1.0);
        let n = rng.random_range(3..7);
        let colors = (0..n)
            .map(|_| {
                let hue = if rng.random_bool(0.7) {
                    base_hue + rng.random_range(-0.12..0.12)
                } else {
                    rng.random_range(0.0..1.0)
                };
                let sat = rng.random_range(0.05..0.9f32);
                let val = rng.random_range(0.08..1.0f32);
                hsv_to_rgb(hue.rem_euclid(1.0), sat, val)
            })
            .collect();
        Self { colors }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> Rgb {
        let c = self.colors[rng.random_range(0..self.colors.len())];
        let j = rng.random_range(-18.0..18.0f32);
        [c[0] + j, c[1] + j, c[2] + j]
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> Rgb {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r * 255.0, g * 255.0, b * 255.0]
}

/// Fractal value noise: octaves of smoothly interpolated lattice noise, values in about [-1, 1].
struct FractalNoise {
    octaves: Vec<(f32, f32, usize, Vec<f32>)>, // (frequency in cells per pixel, amplitude, lattice side, values)
}

impl FractalNoise {
    fn new(
        rng: &mut ChaCha8Rng,
        size: usize,
        base_cell: f32,
        n_oct: usize,
        persistence: f32,
    ) -> Self {
        let mut octaves = Vec::with_capacity(n_oct);
        let mut cell = base_cell;
        let mut amp = 1.0;
        let mut total = 0.0;
        for _ in 0..n_oct {
            let side = (size as f32 / cell).ceil() as usize + 3;
            let values = (0..side * side)
                .map(|_| rng.random_range(-1.0..1.0f32))
                .collect();
            octaves.push((1.0 / cell, amp, side, values));
            total += amp;
            amp *= persistence;
            cell = (cell / 2.0).max(1.5);
        }
        for o in &mut octaves {
            o.1 /= total;
        }
        Self { octaves }
    }

    fn at(&self, y: f32, x: f32) -> f32 {
        let mut sum = 0.0;
        for (freq, amp, side, values) in &self.octaves {
            let (fy, fx) = (y * freq, x * freq);
            let (iy, ix) = (fy.floor() as usize, fx.floor() as usize);
            let (ty, tx) = (smooth(fy - iy as f32), smooth(fx - ix as f32));
            let v = |yy: usize, xx: usize| values[(yy % side) * side + (xx % side)];
            let a = v(iy, ix) + (v(iy, ix + 1) - v(iy, ix)) * tx;
            let b = v(iy + 1, ix) + (v(iy + 1, ix + 1) - v(iy + 1, ix)) * tx;
            sum += amp * (a + (b - a) * ty);
        }
        sum
    }
}

fn smooth(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// How a shape is filled.
enum Fill {
    Flat(Rgb),
    Gradient {
        a: Rgb,
        b: Rgb,
        dir: (f32, f32),
        origin: (f32, f32),
        len: f32,
    },
    Stripes {
        a: Rgb,
        b: Rgb,
        dir: (f32, f32),
        period: f32,
        sharp: bool,
    },
    Checker {
        a: Rgb,
        b: Rgb,
        cell: f32,
        rot: (f32, f32),
    },
    Noise {
        a: Rgb,
        b: Rgb,
        noise: FractalNoise,
    },
}

impl Fill {
    fn random(rng: &mut ChaCha8Rng, palette: &Palette, size: usize) -> Self {
        let a = palette.pick(rng);
        let b = palette.pick(rng);
        let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let dir = (angle.sin(), angle.cos());
        match rng.random_range(0..10) {
            0..=3 => Fill::Flat(a),
            4 | 5 => Fill::Gradient {
                a,
                b,
                dir,
                origin: (
                    rng.random_range(0.0..size as f32),
                    rng.random_range(0.0..size as f32),
                ),
                len: rng.random_range(10.0..size as f32),
            },
            6 => Fill::Stripes {
                a,
                b,
                dir,
                period: rng.random_range(2.5..24.0),
                sharp: rng.random_bool(0.5),
            },
            7 => Fill::Checker {
                a,
                b,
                cell: rng.random_range(3.0..20.0),
                rot: dir,
            },
            _ => Fill::Noise {
                a,
                b,
                noise: {
                    let cell = rng.random_range(4.0..30.0);
                    FractalNoise::new(rng, size, cell, 4, 0.55)
                },
            },
        }
    }

    fn color(&self, y: f32, x: f32) -> Rgb {
        match self {
            Fill::Flat(c) => *c,
            Fill::Gradient {
                a,
                b,
                dir,
                origin,
                len,
            } => {
                let t = (((y - origin.0) * dir.0 + (x - origin.1) * dir.1) / len).clamp(0.0, 1.0);
                lerp(*a, *b, t)
            }
            Fill::Stripes {
                a,
                b,
                dir,
                period,
                sharp,
            } => {
                let s = ((y * dir.0 + x * dir.1) / period * std::f32::consts::TAU).sin();
                let t = if *sharp {
                    (s * 4.0).clamp(-1.0, 1.0)
                } else {
                    s
                };
                lerp(*a, *b, 0.5 + 0.5 * t)
            }
            Fill::Checker { a, b, cell, rot } => {
                let u = (y * rot.0 + x * rot.1) / cell;
                let v = (-y * rot.1 + x * rot.0) / cell;
                if (u.floor() as i64 + v.floor() as i64).rem_euclid(2) == 0 {
                    *a
                } else {
                    *b
                }
            }
            Fill::Noise { a, b, noise } => {
                lerp(*a, *b, (0.5 + 0.9 * noise.at(y, x)).clamp(0.0, 1.0))
            }
        }
    }
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Shape outlines as signed distance functions (negative inside, in pixels).
enum Outline {
    Ellipse {
        c: (f32, f32),
        r: (f32, f32),
        rot: (f32, f32),
    },
    Rect {
        c: (f32, f32),
        half: (f32, f32),
        rot: (f32, f32),
    },
    Triangle {
        p: [(f32, f32); 3],
    },
}

impl Outline {
    fn random(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Self {
        let size = h.min(w) as f32;
        let c = (
            rng.random_range(-0.1..1.1) * h as f32,
            rng.random_range(-0.1..1.1) * w as f32,
        );
        let angle: f32 = rng.random_range(0.0..std::f32::consts::PI);
        let rot = (angle.sin(), angle.cos());
        let r = |rng: &mut ChaCha8Rng| rng.random_range(0.03..0.45) * size;
        match rng.random_range(0..3) {
            0 => Outline::Ellipse {
                c,
                r: (r(rng), r(rng)),
                rot,
            },
            1 => Outline::Rect {
                c,
                half: (r(rng), r(rng)),
                rot,
            },
            _ => {
                let mut p = [(0.0, 0.0); 3];
                for q in &mut p {
                    *q = (
                        c.0 + rng.random_range(-0.4..0.4) * size,
                        c.1 + rng.random_range(-0.4..0.4) * size,
                    );
                }
                Outline::Triangle { p }
            }
        }
    }

    fn sdf(&self, y: f32, x: f32) -> f32 {
        match self {
            Outline::Ellipse { c, r, rot } => {
                let (dy, dx) = (y - c.0, x - c.1);
                let u = dy * rot.1 - dx * rot.0;
                let v = dy * rot.0 + dx * rot.1;
                let k = ((u / r.0).powi(2) + (v / r.1).powi(2)).sqrt();
                (k - 1.0) * r.0.min(r.1)
            }
            Outline::Rect { c, half, rot } => {
                let (dy, dx) = (y - c.0, x - c.1);
                let u = (dy * rot.1 - dx * rot.0).abs() - half.0;
                let v = (dy * rot.0 + dx * rot.1).abs() - half.1;
                let outside = (u.max(0.0).powi(2) + v.max(0.0).powi(2)).sqrt();
                outside + u.max(v).min(0.0)
            }
            Outline::Triangle { p } => {
                let mut d = f32::INFINITY;
                let mut sign_sum: i32 = 0;
                for i in 0..3 {
                    let (a, b) = (p[i], p[(i + 1) % 3]);
                    d = d.min(segment_distance((y, x), a, b));
                    let cross = (b.1 - a.1) * (y - a.0) - (b.0 - a.0) * (x - a.1);
                    sign_sum += if cross >= 0.0 { 1 } else { -1 };
                }
                if sign_sum.abs() == 3 {
                    -d
                } else {
                    d
                }
            }
        }
    }
}

fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (vy, vx) = (b.0 - a.0, b.1 - a.1);
    let (wy, wx) = (p.0 - a.0, p.1 - a.1);
    let len2 = vy * vy + vx * vx;
    let t = if len2 > 0.0 {
        ((wy * vy + wx * vx) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (dy, dx) = (wy - t * vy, wx - t * vx);
    (dy * dy + dx * dx).sqrt()
}

/// Row-major HWC float canvas.
struct Canvas {
    h: usize,
    w: usize,
    px: Vec<Rgb>,
}

impl Canvas {
    fn new(h: usize, w: usize) -> Self {
        Self {
            h,
            w,
            px: vec![[0.0; 3]; h * w],
        }
    }

    fn background(&mut self, rng: &mut ChaCha8Rng, palette: &Palette) {
        let size = self.h.max(self.w);
        let grad = Fill::Gradient {
            a: palette.pick(rng),
            b: palette.pick(rng),
            dir: {
                let a: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                (a.sin(), a.cos())
            },
            origin: (0.0, 0.0),
            len: size as f32 * rng.random_range(0.5..1.5),
        };
        let cell = rng.random_range(16.0..80.0);
        let persistence = rng.random_range(0.4..0.65);
        let noise = FractalNoise::new(rng, size, cell, 5, persistence);
        let tint = palette.pick(rng);
        let strength = rng.random_range(0.1..0.7f32);
        for y in 0..self.h {
            for x in 0..self.w {
                let (fy, fx) = (y as f32, x as f32);
                let base = grad.color(fy, fx);
                let n = noise.at(fy, fx);
                self.px[y * self.w + x] = lerp(base, tint, (strength * (0.5 + n)).clamp(0.0, 1.0));
            }
        }
    }

    /// Alpha-blend `fill` where `coverage(y, x)` > 0 inside the box `[y0, y1) × [x0, x1)`.
    fn blend(
        &mut self,
        bbox: (f32, f32, f32, f32),
        alpha: f32,
        fill: &Fill,
        coverage: impl Fn(f32, f32) -> f32,
    ) {
        let clamp = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi);
        let (y0, y1) = (
            clamp(bbox.0.floor(), self.h),
            clamp(bbox.1.ceil() + 1.0, self.h),
        );
        let (x0, x1) = (
            clamp(bbox.2.floor(), self.w),
            clamp(bbox.3.ceil() + 1.0, self.w),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let (fy, fx) = (y as f32 + 0.5, x as f32 + 0.5);
                let a = alpha * coverage(fy, fx);
                if a > 0.0 {
                    let c = fill.color(fy, fx);
                    let p = &mut self.px[y * self.w + x];
                    for k in 0..3 {
                        p[k] += (c[k] - p[k]) * a;
                    }
                }
            }
        }
    }

    fn shape(&mut self, rng: &mut ChaCha8Rng, palette: &Palette) {
        let outline = Outline::random(rng, self.h, self.w);
        let fill = Fill::random(rng, palette, self.h.max(self.w));
        let alpha = if rng.random_bool(0.75) {
            1.0
        } else {
            rng.random_range(0.3..0.9)
        };
        // Edge softness: mostly crisp (anti-aliased), sometimes blurred like out-of-focus objects.
        let soft = if rng.random_bool(0.7) {
            1.0
        } else {
            rng.random_range(1.5..8.0)
        };
        let big = (self.h + self.w) as f32;
        let bbox = match &outline {
            Outline::Ellipse { c, r, .. } => {
                let m = r.0.max(r.1) + soft;
                (c.0 - m, c.0 + m, c.1 - m, c.1 + m)
            }
            Outline::Rect { c, half, .. } => {
                let m = (half.0 * half.0 + half.1 * half.1).sqrt() + soft;
                (c.0 - m, c.0 + m, c.1 - m, c.1 + m)
            }
            Outline::Triangle { p } => {
                let ys = p.iter().map(|q| q.0);
                let xs = p.iter().map(|q| q.1);
                (
                    ys.clone().fold(big, f32::min) - soft,
                    ys.fold(-big, f32::max) + soft,
                    xs.clone().fold(big, f32::min) - soft,
                    xs.fold(-big, f32::max) + soft,
                )
            }
        };
        self.blend(bbox, alpha, &fill, |y, x| {
            (0.5 - outline.sdf(y, x) / soft).clamp(0.0, 1.0)
        });
    }

    fn stroke(&mut self, rng: &mut ChaCha8Rng, palette: &Palette) {
        let (h, w) = (self.h as f32, self.w as f32);
        let pt = |rng: &mut ChaCha8Rng| (rng.random_range(0.0..h), rng.random_range(0.0..w));
        let (p0, p1, p2) = (pt(rng), pt(rng), pt(rng));
        let width = if rng.random_bool(0.5) {
            rng.random_range(0.6..2.0)
        } else {
            rng.random_range(2.0..9.0)
        };
        let n = 24;
        let pts: Vec<(f32, f32)> = (0..=n)
            .map(|i| {
                let t = i as f32 / n as f32;
                let u = 1.0 - t;
                (
                    u * u * p0.0 + 2.0 * u * t * p1.0 + t * t * p2.0,
                    u * u * p0.1 + 2.0 * u * t * p1.1 + t * t * p2.1,
                )
            })
            .collect();
        let fill = Fill::Flat(palette.pick(rng));
        let m = width + 1.0;
        let bbox = pts.iter().fold((h, 0.0f32, w, 0.0f32), |b, p| {
            (
                b.0.min(p.0 - m),
                b.1.max(p.0 + m),
                b.2.min(p.1 - m),
                b.3.max(p.1 + m),
            )
        });
        let alpha = rng.random_range(0.6..1.0);
        self.blend(bbox, alpha, &fill, |y, x| {
            let d = pts
                .windows(2)
                .map(|s| segment_distance((y, x), s[0], s[1]))
                .fold(f32::INFINITY, f32::min);
            (width / 2.0 + 0.5 - d).clamp(0.0, 1.0)
        });
    }

    fn vignette(&mut self, rng: &mut ChaCha8Rng) {
        let strength = rng.random_range(0.1..0.45f32);
        let (cy, cx) = (self.h as f32 / 2.0, self.w as f32 / 2.0);
        let r2 = cy * cy + cx * cx;
        for y in 0..self.h {
            for x in 0..self.w {
                let d2 = ((y as f32 - cy).powi(2) + (x as f32 - cx).powi(2)) / r2;
                let f = 1.0 - strength * d2;
                for v in &mut self.px[y * self.w + x] {
                    *v *= f;
                }
            }
        }
    }

    fn into_image(self) -> Image {
        let mut img = Array3::<f32>::zeros((3, self.h, self.w));
        for y in 0..self.h {
            for x in 0..self.w {
                let p = self.px[y * self.w + x];
                for c in 0..3 {
                    img[[c, y, x]] = p[c].clamp(0.0, 255.0);
                }
            }
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_index_and_distinct_between_indices() {
        let g = ProceduralImages::new(7, 64, 80);
        let a = g.image(3);
        assert_eq!(a.shape(), &[3, 64, 80]);
        assert_eq!(a, g.image(3));
        assert_ne!(a, g.image(4));
        assert_ne!(a, ProceduralImages::new(8, 64, 80).image(3));
    }

    #[test]
    fn images_are_in_range_and_varied() {
        let g = ProceduralImages::new(0, 96, 96);
        let mut means = Vec::new();
        for i in 0..16 {
            let img = g.image(i);
            assert!(img
                .iter()
                .all(|v| (0.0..=255.0).contains(v) && v.is_finite()));
            let mean = img.mean().unwrap();
            let var = img.mapv(|v| (v - mean).powi(2)).mean().unwrap();
            // Not flat: some structure in every image.
            assert!(var.sqrt() > 3.0, "image {i} std {}", var.sqrt());
            // Edges: a fair share of strong horizontal gradients somewhere.
            let grads = (0..96)
                .flat_map(|y| (1..96).map(move |x| (y, x)))
                .filter(|&(y, x)| {
                    (0..3)
                        .map(|c| (img[[c, y, x]] - img[[c, y, x - 1]]).abs())
                        .sum::<f32>()
                        > 30.0
                })
                .count();
            assert!(grads > 0, "image {i} has no edges");
            means.push(mean);
        }
        let lo = means.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = means.iter().cloned().fold(0.0, f32::max);
        assert!(hi - lo > 30.0, "brightness varies too little: {lo}..{hi}");
    }
}
