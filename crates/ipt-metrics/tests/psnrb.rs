//! PSNR-B against a float64 transcription of SwinIR's `calculate_psnrb` /
//! `_blocking_effect_factor` (fixture `fixtures/psnrb.json`, written by
//! `PYTHONPATH=/tmp/cvpy python3 crates/ipt-metrics/tests/fixtures/gen_psnrb.py`), plus identities.

use ipt_metrics::psnrb::{blocking_effect_factor, BLOCK_SIZE};
use ipt_metrics::{psnr_b, psnr_b_y, psnr_rgb, MetricsError};
use ndarray::{s, Array2, Array3, Axis};

// ---- closed-form images, mirrored from gen_psnrb.py --------------------------------------------

fn target_value(kind: &str, c: i64, y: i64, x: i64) -> i64 {
    match kind {
        "texture" => (3 * x * x + 7 * y + x * y + 40 * c + 13) % 256,
        "ramp" => (2 * x + 3 * y + 20 * c) % 200 + 20,
        _ => panic!("unknown target kind {kind}"),
    }
}

fn restored_value(kind: &str, t: i64, c: i64, y: i64, x: i64) -> i64 {
    let noise = (7 * x + 13 * y + 5 * c) % 11 - 5;
    let block = 6 * ((x / 8 + 3 * (y / 8) + c) % 5) - 12;
    let v = match kind {
        "noise" => t + noise,
        "block" => t + block,
        "mixed" => t + noise + block,
        _ => panic!("unknown restored kind {kind}"),
    };
    v.clamp(0, 255)
}

fn build(tkind: &str, rkind: &str, c: usize, h: usize, w: usize) -> (Array3<f32>, Array3<f32>) {
    let t = Array3::from_shape_fn((c, h, w), |(c, y, x)| {
        target_value(tkind, c as i64, y as i64, x as i64) as f32
    });
    let r = Array3::from_shape_fn((c, h, w), |(c, y, x)| {
        let tv = target_value(tkind, c as i64, y as i64, x as i64);
        restored_value(rkind, tv, c as i64, y as i64, x as i64) as f32
    });
    (r, t)
}

// ---- a minimal reader for the fixture's one-object-per-line JSON ------------------------------

struct Case {
    line: String,
}

impl Case {
    fn raw(&self, key: &str) -> Option<&str> {
        let pat = format!("\"{key}\": ");
        let start = self.line.find(&pat)? + pat.len();
        let rest = &self.line[start..];
        let end = if rest.starts_with('[') {
            rest.find(']')? + 1
        } else {
            rest.find([',', '}'])?
        };
        Some(&rest[..end])
    }
    fn str(&self, key: &str) -> String {
        self.raw(key).unwrap().trim_matches('"').to_string()
    }
    fn usize(&self, key: &str) -> usize {
        self.raw(key).unwrap().parse().unwrap()
    }
    fn f64(&self, key: &str) -> Option<f64> {
        self.raw(key).map(|v| v.parse().unwrap())
    }
    fn f64s(&self, key: &str) -> Vec<f64> {
        let v = self.raw(key).unwrap();
        v[1..v.len() - 1]
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect()
    }
}

fn cases() -> Vec<Case> {
    let text = include_str!("fixtures/psnrb.json");
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| Case {
            line: l.to_string(),
        })
        .collect();
    assert_eq!(cases.len(), 11, "fixture has 11 cases");
    cases
}

fn rel_close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1e-300) || got == want
}

#[test]
fn psnr_b_matches_swinir_transcription() {
    for case in cases() {
        let (c, h, w, shave) = (
            case.usize("channels"),
            case.usize("height"),
            case.usize("width"),
            case.usize("shave"),
        );
        let (r, t) = build(&case.str("target"), &case.str("restored"), c, h, w);
        let got = psnr_b(&r.view(), &t.view(), shave).unwrap();
        let want = case.f64("psnr_b").unwrap();
        assert!(rel_close(got, want, 1e-9), "{}: {got} vs {want}", case.line);

        // Per-channel BEF of the shaved restored image on SwinIR's 0–1 scale.
        let befs = case.f64s("bef");
        assert_eq!(befs.len(), c);
        let shaved = r
            .slice(s![.., shave..h - shave, shave..w - shave])
            .mapv(|v| f64::from(v) / 255.0);
        for (ch, want) in befs.iter().enumerate() {
            let got = blocking_effect_factor(&shaved.index_axis(Axis(0), ch)).unwrap();
            assert!(
                rel_close(got, *want, 1e-9),
                "{} ch {ch}: bef {got} vs {want}",
                case.line
            );
        }

        // Y: exact against the float64 Y pipeline, close to SwinIR's float32 Y pipeline.
        if let Some(want) = case.f64("psnr_b_y_f64") {
            let got = psnr_b_y(&r.view(), &t.view(), shave).unwrap();
            assert!(
                rel_close(got, want, 1e-9),
                "{}: y {got} vs {want}",
                case.line
            );
        }
        if let Some(want) = case.f64("psnr_b_y_swinir_f32") {
            let got = psnr_b_y(&r.view(), &t.view(), shave).unwrap();
            assert!(
                (got - want).abs() < 1e-4,
                "{}: y {got} vs f32 {want}",
                case.line
            );
        }
    }
}

#[test]
fn bef_is_scale_homogeneous_of_degree_two() {
    let (r, _) = build("ramp", "block", 1, 37, 50);
    let a = r.index_axis(Axis(0), 0).mapv(f64::from);
    let b255 = blocking_effect_factor(&a.view()).unwrap();
    let b1 = blocking_effect_factor(&a.mapv(|v| v / 255.0).view()).unwrap();
    assert!(b1 > 0.0);
    assert!(rel_close(b255 / (255.0 * 255.0), b1, 1e-12));
}

#[test]
fn identical_images() {
    // No blocking in the restored image: mse + bef = 0 → +inf (as SwinIR's log10(1/0)).
    let (_, smooth) = build("ramp", "noise", 3, 40, 40);
    assert_eq!(
        blocking_effect_factor(&smooth.index_axis(Axis(0), 0).mapv(f64::from).view()).unwrap(),
        0.0
    );
    assert_eq!(
        psnr_b(&smooth.view(), &smooth.view(), 0).unwrap(),
        f64::INFINITY
    );
    assert_eq!(
        psnr_b_y(&smooth.view(), &smooth.view(), 0).unwrap(),
        f64::INFINITY
    );
    // A blocky image compared with itself: mse = 0 but the BEF of img1 remains → finite.
    let (blocky, _) = build("ramp", "block", 1, 37, 50);
    let bef = blocking_effect_factor(
        &blocky
            .index_axis(Axis(0), 0)
            .mapv(|v| f64::from(v) / 255.0)
            .view(),
    )
    .unwrap();
    let got = psnr_b(&blocky.view(), &blocky.view(), 0).unwrap();
    assert!(got.is_finite());
    assert!(rel_close(got, 10.0 * (1.0 / bef).log10(), 1e-12), "{got}");
}

#[test]
fn psnr_b_is_at_most_psnr() {
    for (tk, rk, c, h, w, shave) in [
        ("ramp", "block", 1, 37, 50, 0),
        ("ramp", "mixed", 3, 37, 50, 4),
        ("texture", "noise", 3, 64, 48, 0),
        ("texture", "block", 3, 41, 33, 2),
    ] {
        let (r, t) = build(tk, rk, c, h, w);
        // Per channel, PSNR-B ≤ PSNR (BEF ≥ 0); the colour value is their mean, so compare it
        // with the mean of the per-channel PSNRs (not with the pooled-MSE RGB PSNR).
        let mut mean_psnr = 0.0;
        for ch in 0..c {
            let (rc, tc) = (
                r.slice(s![ch..ch + 1, .., ..]),
                t.slice(s![ch..ch + 1, .., ..]),
            );
            let p = psnr_rgb(rc, tc, shave).unwrap();
            let pb = psnr_b(&rc, &tc, shave).unwrap();
            assert!(pb <= p + 1e-12, "{tk}/{rk} ch {ch}: {pb} > {p}");
            mean_psnr += p / c as f64;
        }
        let pb = psnr_b(&r.view(), &t.view(), shave).unwrap();
        assert!(pb <= mean_psnr + 1e-12, "{tk}/{rk}: {pb} > {mean_psnr}");
    }
}

/// Target: a constant grey 64×64 image; error ±d arranged three ways with the same MSE d².
fn error_image(sign: impl Fn(usize, usize) -> f32, d: f32) -> (Array3<f32>, Array3<f32>) {
    let t = Array3::from_elem((1, 64, 64), 128.0f32);
    let r = Array3::from_shape_fn((1, 64, 64), |(_, y, x)| 128.0 + d * sign(y, x));
    (r, t)
}

fn pm(b: bool) -> f32 {
    if b {
        1.0
    } else {
        -1.0
    }
}

#[test]
fn blocky_error_scores_lower_than_the_same_mse_without_blocks() {
    let d = 6.0;
    let b = BLOCK_SIZE;
    // Constant per 8×8 JPEG block (checkerboard of blocks).
    let (rb, t) = error_image(|y, x| pm((y / b + x / b).is_multiple_of(2)), d);
    // The same pattern shifted by half a block: as many edges, none on the 8×8 grid.
    let (rs, _) = error_image(|y, x| pm(((y + 4) / b + (x + 4) / b).is_multiple_of(2)), d);
    // Spread per pixel (pixel checkerboard): no block structure.
    let (rp, _) = error_image(|y, x| pm((y + x).is_multiple_of(2)), d);

    let psnr = 20.0 * (255.0f64 / f64::from(d)).log10();
    for r in [&rb, &rs, &rp] {
        let p = psnr_rgb(r.view(), t.view(), 0).unwrap();
        assert!((p - psnr).abs() < 1e-9, "same MSE: {p} vs {psnr}");
    }
    let blocky = psnr_b(&rb.view(), &t.view(), 0).unwrap();
    let shifted = psnr_b(&rs.view(), &t.view(), 0).unwrap();
    let spread = psnr_b(&rp.view(), &t.view(), 0).unwrap();
    // Off-grid and per-pixel errors have BEF 0: PSNR-B = PSNR.
    assert!((shifted - psnr).abs() < 1e-9, "{shifted} vs {psnr}");
    assert!((spread - psnr).abs() < 1e-9, "{spread} vs {psnr}");
    assert!(blocky < psnr - 1.0, "blocky {blocky} vs psnr {psnr}");

    // Closed form for the blocky case: boundary pairs all differ by 2d, interior pairs by 0.
    // 64×64: 7 boundary columns and rows summed, SwinIR's count 64·7 each; scaler log2 8/log2 64.
    let boundary = (2.0 * f64::from(d) / 255.0).powi(2);
    let bef = (3.0 / 6.0) * boundary;
    let mse = (f64::from(d) / 255.0).powi(2);
    let want = 10.0 * (1.0 / (mse + bef)).log10();
    assert!(rel_close(blocky, want, 1e-12), "{blocky} vs {want}");
}

#[test]
fn errors_are_typed() {
    let a = Array3::<f32>::zeros((3, 32, 32));
    let b = Array3::<f32>::zeros((3, 32, 31));
    assert!(matches!(
        psnr_b(&a.view(), &b.view(), 0),
        Err(MetricsError::ShapeMismatch { .. })
    ));
    let two = Array3::<f32>::zeros((2, 32, 32));
    assert!(matches!(
        psnr_b(&two.view(), &two.view(), 0),
        Err(MetricsError::Channels(_))
    ));
    // Shaving 10 from 32 leaves 12×12: no 8×8 boundary inside.
    assert!(matches!(
        psnr_b(&a.view(), &a.view(), 10),
        Err(MetricsError::TooSmall { .. })
    ));
    // A side under 8.
    let thin = Array3::<f32>::zeros((1, 7, 64));
    assert!(matches!(
        psnr_b_y(&thin.view(), &thin.view(), 0),
        Err(MetricsError::TooSmall { .. })
    ));
    // Shaving everything.
    assert!(matches!(
        psnr_b(&a.view(), &a.view(), 16),
        Err(MetricsError::TooSmall { .. })
    ));
    assert!(matches!(
        blocking_effect_factor(&Array2::<f64>::zeros((8, 15)).view()),
        Err(MetricsError::TooSmall { .. })
    ));
    // Smallest accepted sizes.
    assert!(blocking_effect_factor(&Array2::<f64>::zeros((8, 16)).view()).is_ok());
    assert!(psnr_b(
        &Array3::<f32>::zeros((1, 16, 8)).view(),
        &Array3::<f32>::zeros((1, 16, 8)).view(),
        0
    )
    .is_ok());
}
