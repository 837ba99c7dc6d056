//! PSNR and SSIM against naive f64 references and closed forms.

use ipt_metrics::color::{y_bt601, BT601_Y_WEIGHTS, IPT_Y_WEIGHTS};
use ipt_metrics::ssim::{gaussian_window, C1, C2};
use ipt_metrics::{psnr_rgb, psnr_y, psnr_y_bt601, ssim_rgb, ssim_y, MetricsError, SetMean};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_image(c: usize, h: usize, w: usize, seed: u64) -> Array3<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array3::from_shape_fn((c, h, w), |_| f32::from(rng.random_range(0u8..=255)))
}

fn noisy(img: &Array3<f32>, amp: f32, seed: u64) -> Array3<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    img.mapv(|v| (v + rng.random_range(-amp..amp)).clamp(0.0, 255.0))
}

/// IPT `calc_psnr` transcribed: diff / 255, Y-weighted sum, shave, mse, −10·log10.
fn naive_psnr_ipt(sr: &Array3<f32>, hr: &Array3<f32>, shave: usize) -> f64 {
    let (_, h, w) = sr.dim();
    let mut sum = 0.0;
    let mut n = 0usize;
    for y in shave..h - shave {
        for x in shave..w - shave {
            let mut d = 0.0;
            for c in 0..3 {
                // IPT: diff / rgb_range, then Σ w_c·diff_c with w = (65.738, 129.057, 25.064)/256.
                let diff = (f64::from(sr[[c, y, x]]) - f64::from(hr[[c, y, x]])) / 255.0;
                d += diff * [65.738, 129.057, 25.064][c] / 256.0;
            }
            sum += d * d;
            n += 1;
        }
    }
    -10.0 * (sum / n as f64).log10()
}

#[test]
fn psnr_y_matches_ipt_transcription() {
    for &(h, w, shave) in &[
        (37usize, 29usize, 2usize),
        (48, 48, 4),
        (31, 40, 0),
        (20, 33, 3),
    ] {
        let hr = random_image(3, h, w, h as u64);
        let sr = noisy(&hr, 20.0, w as u64);
        let got = psnr_y(sr.view(), hr.view(), shave).unwrap();
        let want = naive_psnr_ipt(&sr, &hr, shave);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
}

#[test]
fn psnr_closed_forms() {
    let hr = random_image(3, 20, 24, 1);
    let sr = hr.mapv(|v| v + 10.0);
    // RGB: every difference is 10 → 20·log10(255/10).
    let rgb = psnr_rgb(sr.view(), hr.view(), 0).unwrap();
    assert!((rgb - 20.0 * (25.5f64).log10()).abs() < 1e-9, "{rgb}");
    // IPT Y: the Y difference is 10·Σw.
    let sw: f64 = IPT_Y_WEIGHTS.iter().sum();
    let y = psnr_y(sr.view(), hr.view(), 2).unwrap();
    assert!(
        (y - 20.0 * (255.0 / (10.0 * sw)).log10()).abs() < 1e-9,
        "{y}"
    );
    // BT.601 Y: the offset cancels, Y difference is 10·Σw'.
    let sb: f64 = BT601_Y_WEIGHTS.iter().sum();
    let yb = psnr_y_bt601(sr.view(), hr.view(), 2).unwrap();
    assert!(
        (yb - 20.0 * (255.0 / (10.0 * sb)).log10()).abs() < 1e-9,
        "{yb}"
    );
    // The two Y conventions differ by < 0.001 dB here.
    assert!((y - yb).abs() < 1e-3);
    // Identical images: infinite PSNR.
    assert_eq!(psnr_y(hr.view(), hr.view(), 0).unwrap(), f64::INFINITY);
}

#[test]
fn shave_removes_the_border() {
    let hr = random_image(3, 30, 30, 2);
    let mut sr = hr.clone();
    for c in 0..3 {
        for i in 0..30 {
            sr[[c, 0, i]] = 0.0;
            sr[[c, i, 29]] = 255.0;
        }
    }
    assert!(psnr_y(sr.view(), hr.view(), 0).unwrap().is_finite());
    assert_eq!(psnr_y(sr.view(), hr.view(), 1).unwrap(), f64::INFINITY);
    assert_eq!(psnr_rgb(sr.view(), hr.view(), 1).unwrap(), f64::INFINITY);
}

#[test]
fn gray_images_use_the_channel_directly() {
    let hr = random_image(1, 16, 16, 3);
    let sr = hr.mapv(|v| v + 5.0);
    let p = psnr_y(sr.view(), hr.view(), 0).unwrap();
    assert!((p - 20.0 * (51.0f64).log10()).abs() < 1e-9);
}

#[test]
fn errors_are_typed() {
    let a = random_image(3, 16, 16, 4);
    let b = random_image(3, 16, 15, 4);
    assert!(matches!(
        psnr_y(a.view(), b.view(), 0),
        Err(MetricsError::ShapeMismatch { .. })
    ));
    let two = random_image(2, 16, 16, 4);
    assert!(matches!(
        psnr_rgb(two.view(), two.view(), 0),
        Err(MetricsError::Channels(_))
    ));
    assert!(matches!(
        psnr_y(a.view(), a.view(), 8),
        Err(MetricsError::TooSmall { .. })
    ));
    // SSIM needs 11×11 after shaving.
    assert!(matches!(
        ssim_y(a.view(), a.view(), 3),
        Err(MetricsError::TooSmall { .. })
    ));
    assert!(ssim_y(a.view(), a.view(), 2).is_ok());
}

/// Wang et al.'s `ssim_index.m` transcribed: 2-D window, filter2 'valid', f64.
fn naive_ssim(x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let g = gaussian_window();
    let (h, w) = x.dim();
    let mut total = 0.0;
    for i in 0..h - 10 {
        for j in 0..w - 10 {
            let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for a in 0..11 {
                for b in 0..11 {
                    let k = g[a] * g[b];
                    let (u, v) = (x[[i + a, j + b]], y[[i + a, j + b]]);
                    mx += k * u;
                    my += k * v;
                    xx += k * u * u;
                    yy += k * v * v;
                    xy += k * u * v;
                }
            }
            let (s1, s2, s12) = (xx - mx * mx, yy - my * my, xy - mx * my);
            total += ((2.0 * mx * my + C1) * (2.0 * s12 + C2))
                / ((mx * mx + my * my + C1) * (s1 + s2 + C2));
        }
    }
    total / ((h - 10) * (w - 10)) as f64
}

#[test]
fn window_is_matlab_fspecial() {
    // fspecial('gaussian', 11, 1.5): h = exp(−(x² + y²)/(2σ²)) on −5..5, divided by its sum.
    let g = gaussian_window();
    let mut k = [[0.0f64; 11]; 11];
    let mut sum = 0.0;
    for (i, row) in k.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let (x, y) = (i as f64 - 5.0, j as f64 - 5.0);
            *v = (-(x * x + y * y) / (2.0 * 1.5 * 1.5)).exp();
            sum += *v;
        }
    }
    for i in 0..11 {
        for j in 0..11 {
            assert!((g[i] * g[j] - k[i][j] / sum).abs() < 1e-16);
        }
    }
    // Centre value 1/(Σ exp(−i²/4.5))² = 0.0707622 (hand computed).
    assert!((g[5] * g[5] - 0.070_762_2).abs() < 1e-7, "{}", g[5] * g[5]);
}

#[test]
fn ssim_matches_reference_transcription() {
    for &(h, w, shave, amp) in &[
        (23usize, 31usize, 0usize, 30.0f32),
        (48, 48, 4, 10.0),
        (75, 50, 2, 60.0),
    ] {
        let hr = random_image(3, h, w, (h * w) as u64);
        let sr = noisy(&hr, amp, 9);
        let crop = |a: &Array3<f32>| {
            a.slice(ndarray::s![.., shave..h - shave, shave..w - shave])
                .to_owned()
        };
        let (cs, ch) = (crop(&sr), crop(&hr));
        let want_y = naive_ssim(&y_bt601(cs.view()), &y_bt601(ch.view()));
        let got_y = ssim_y(sr.view(), hr.view(), shave).unwrap();
        assert!((got_y - want_y).abs() < 1e-10, "Y: {got_y} vs {want_y}");
        let want_rgb = (0..3)
            .map(|c| {
                naive_ssim(
                    &cs.index_axis(ndarray::Axis(0), c).mapv(f64::from),
                    &ch.index_axis(ndarray::Axis(0), c).mapv(f64::from),
                )
            })
            .sum::<f64>()
            / 3.0;
        let got_rgb = ssim_rgb(sr.view(), hr.view(), shave).unwrap();
        assert!(
            (got_rgb - want_rgb).abs() < 1e-10,
            "RGB: {got_rgb} vs {want_rgb}"
        );
    }
}

#[test]
fn ssim_closed_forms() {
    let a = random_image(3, 40, 40, 5);
    assert!((ssim_rgb(a.view(), a.view(), 0).unwrap() - 1.0).abs() < 1e-12);
    assert!((ssim_y(a.view(), a.view(), 0).unwrap() - 1.0).abs() < 1e-12);
    // Constant images a and b: SSIM = (2ab + C1)/(a² + b² + C1).
    let x = Array3::from_elem((1, 20, 20), 100.0f32);
    let y = Array3::from_elem((1, 20, 20), 140.0f32);
    let want = (2.0 * 100.0 * 140.0 + C1) / (100.0f64 * 100.0 + 140.0 * 140.0 + C1);
    let got = ssim_rgb(x.view(), y.view(), 0).unwrap();
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
}

#[test]
fn set_mean_averages() {
    let m: SetMean = [30.0, 32.0, 34.0].into_iter().collect();
    assert_eq!(m.count(), 3);
    assert_eq!(m.mean(), Some(32.0));
    assert_eq!(SetMean::new().mean(), None);
}
