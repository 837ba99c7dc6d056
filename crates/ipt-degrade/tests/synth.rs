//! Noise, rain, tasks and `synthesize`.

use ipt_degrade::noise::{add_gaussian_noise, NoiseOptions};
use ipt_degrade::rain::{add_rain, generate_streaks, try_add_rain, RainParams, RainSource};
use ipt_degrade::task::TaskError;
use ipt_degrade::{imresize, quantize, synthesize, synthesize_with, Image, Rng8, Task};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn random_image(h: usize, w: usize, seed: u64) -> Image {
    let mut rng = Rng8::seed_from_u64(seed);
    Array3::from_shape_fn((3, h, w), |_| f32::from(rng.random_range(0u8..=255)))
}

#[test]
fn noise_is_the_documented_chacha8_standard_normal_stream() {
    let img = Array3::from_elem((3, 8, 9), 128.0f32);
    let out = add_gaussian_noise(
        &img,
        30.0,
        NoiseOptions {
            clip: false,
            round: false,
        },
        &mut Rng8::seed_from_u64(42),
    );
    // Re-derive: one f32 StandardNormal draw per value in CHW order.
    let mut rng = Rng8::seed_from_u64(42);
    for (&o, &i) in out.iter().zip(img.iter()) {
        let n: f32 = rng.sample(StandardNormal);
        assert_eq!(o, i + 30.0 * n);
    }
    // Same seed, same noise; different seed, different noise.
    let again = add_gaussian_noise(
        &img,
        30.0,
        NoiseOptions {
            clip: false,
            round: false,
        },
        &mut Rng8::seed_from_u64(42),
    );
    assert_eq!(out, again);
    let other = add_gaussian_noise(
        &img,
        30.0,
        NoiseOptions {
            clip: false,
            round: false,
        },
        &mut Rng8::seed_from_u64(43),
    );
    assert_ne!(out, other);
}

#[test]
fn noise_statistics_clip_and_round() {
    let img = Array3::from_elem((3, 128, 128), 128.0f32);
    let out = add_gaussian_noise(
        &img,
        30.0,
        NoiseOptions {
            clip: false,
            round: false,
        },
        &mut Rng8::seed_from_u64(1),
    );
    let n = out.len() as f64;
    let mean = out.iter().map(|&v| f64::from(v) - 128.0).sum::<f64>() / n;
    let var = out
        .iter()
        .map(|&v| (f64::from(v) - 128.0 - mean).powi(2))
        .sum::<f64>()
        / n;
    // 49152 samples: standard error of the mean 30/√n ≈ 0.14, of the std ≈ 0.1.
    assert!(mean.abs() < 0.6, "mean {mean}");
    assert!((var.sqrt() - 30.0).abs() < 0.5, "std {}", var.sqrt());
    let dark = Array3::from_elem((3, 64, 64), 5.0f32);
    let clipped = add_gaussian_noise(
        &dark,
        50.0,
        NoiseOptions::default(),
        &mut Rng8::seed_from_u64(2),
    );
    assert!(clipped.iter().all(|&v| (0.0..=255.0).contains(&v)));
    assert!(clipped.iter().any(|&v| v == 0.0));
    assert!(
        clipped.iter().any(|&v| v.fract() != 0.0),
        "default must not round"
    );
    let rounded = add_gaussian_noise(
        &dark,
        50.0,
        NoiseOptions {
            clip: true,
            round: true,
        },
        &mut Rng8::seed_from_u64(2),
    );
    assert_eq!(rounded, quantize(&clipped.mapv(|v| v)).mapv(|v| v));
    let unclipped = add_gaussian_noise(
        &dark,
        50.0,
        NoiseOptions {
            clip: false,
            round: false,
        },
        &mut Rng8::seed_from_u64(2),
    );
    assert!(unclipped.iter().any(|&v| v < 0.0));
}

#[test]
fn rain_layer_is_sparse_thin_and_seeded() {
    let p = RainParams::default();
    let a = generate_streaks(200, 300, &p, &mut Rng8::seed_from_u64(5));
    let b = generate_streaks(200, 300, &p, &mut Rng8::seed_from_u64(5));
    let c = generate_streaks(200, 300, &p, &mut Rng8::seed_from_u64(6));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|&v| (0.0..=255.0).contains(&v)));
    let covered = a.iter().filter(|&&v| v > 10.0).count() as f64 / a.len() as f64;
    assert!((0.03..0.5).contains(&covered), "streak coverage {covered}");
    assert!(a.iter().cloned().fold(0.0f32, f32::max) > 50.0);
    // Zero density gives a zero layer; invalid parameters too.
    let none = RainParams { density: 0.0, ..p };
    assert!(generate_streaks(50, 50, &none, &mut Rng8::seed_from_u64(1))
        .iter()
        .all(|&v| v == 0.0));
    let bad = RainParams { width: -1.0, ..p };
    assert!(bad.validate().is_err());
}

/// Angle from vertical (degrees) and elongation (major/minor std) of the bright pixels.
fn principal_axis(layer: &Array2<f32>, thresh: f32) -> (f64, f64, usize) {
    let pts: Vec<(f64, f64, f64)> = layer
        .indexed_iter()
        .filter(|(_, &v)| v > thresh)
        .map(|((y, x), &v)| (y as f64, x as f64, f64::from(v)))
        .collect();
    let wsum: f64 = pts.iter().map(|p| p.2).sum();
    let my = pts.iter().map(|p| p.0 * p.2).sum::<f64>() / wsum;
    let mx = pts.iter().map(|p| p.1 * p.2).sum::<f64>() / wsum;
    let (mut vyy, mut vxx, mut vxy) = (0.0, 0.0, 0.0);
    for &(y, x, v) in &pts {
        vyy += v * (y - my) * (y - my);
        vxx += v * (x - mx) * (x - mx);
        vxy += v * (x - mx) * (y - my);
    }
    let angle = 0.5 * (2.0 * vxy).atan2(vyy - vxx);
    let tr = vyy + vxx;
    let det = vyy * vxx - vxy * vxy;
    let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
    let (l1, l2) = (tr / 2.0 + disc, (tr / 2.0 - disc).max(1e-9));
    (angle.to_degrees(), (l1 / l2).sqrt(), pts.len())
}

#[test]
fn rain_streaks_are_thin_segments_within_the_angle_range() {
    let range = 30.0f32;
    let (h, w) = (120usize, 120usize);
    let base = RainParams {
        length: (40.0, 40.0),
        angle_range: range,
        angle_jitter: 0.0,
        width: 1.0,
        brightness: (100.0, 100.0),
        ..RainParams::default()
    };
    // Exactly one seed: density · extended area = 1.
    let margin = base.length.1 / 2.0 + 2.0 * base.width;
    let density = 1.0 / ((h as f32 + 2.0 * margin) * (w as f32 + 2.0 * margin));
    let p = RainParams { density, ..base };
    let (mut neg, mut pos, mut measured) = (0, 0, 0);
    for seed in 0..40 {
        let layer = generate_streaks(h, w, &p, &mut Rng8::seed_from_u64(seed));
        let (angle, elongation, n) = principal_axis(&layer, 20.0);
        if n < 40 {
            continue; // the streak fell mostly outside the image
        }
        measured += 1;
        assert!(
            angle.abs() <= f64::from(range) + 3.0,
            "seed {seed}: angle {angle}"
        );
        assert!(
            elongation > 6.0,
            "seed {seed}: elongation {elongation} (not a thin streak)"
        );
        if angle < -5.0 {
            neg += 1;
        }
        if angle > 5.0 {
            pos += 1;
        }
    }
    assert!(
        measured >= 10 && neg > 0 && pos > 0,
        "measured {measured}, neg {neg}, pos {pos}"
    );
    // One angle per image: with zero jitter, every streak of a dense layer is parallel, so the
    // whole layer is as elongated along that angle as a single streak is.
    let dense = RainParams {
        density: 0.002,
        ..base
    };
    let layer = generate_streaks(200, 200, &dense, &mut Rng8::seed_from_u64(77));
    let corr = |deg: f64, across: bool| {
        let (sin, cos) = (deg.to_radians().sin(), deg.to_radians().cos());
        let (dy, dx) = if across {
            (-6.0 * sin, 6.0 * cos)
        } else {
            (6.0 * cos, 6.0 * sin)
        };
        let mut acc = 0.0f64;
        for y in 20..180usize {
            for x in 20..180usize {
                let ys = (y as f64 + dy).round() as usize;
                let xs = (x as f64 + dx).round() as usize;
                acc += f64::from(layer[[y, x]]) * f64::from(layer[[ys, xs]]);
            }
        }
        acc
    };
    let best = (-30..=30)
        .map(f64::from)
        .max_by(|a, b| corr(*a, false).total_cmp(&corr(*b, false)))
        .unwrap();
    let (along, shifted) = (corr(best, false), corr(best, true));
    assert!(along > 4.0 * shifted, "along {along} vs across {shifted}");
}

#[test]
fn add_rain_adds_to_every_channel_and_clips() {
    let img = Array3::from_shape_fn((3, 2, 2), |(c, _, _)| [10.0f32, 100.0, 250.0][c]);
    let layer = Array2::from_shape_vec((2, 2), vec![0.0f32, 10.5, 20.0, 0.0]).unwrap();
    let out = add_rain(&img, &layer);
    assert_eq!(out[[0, 0, 1]], 20.5);
    assert_eq!(out[[1, 1, 0]], 120.0);
    assert_eq!(out[[2, 1, 0]], 255.0);
    assert_eq!(out[[2, 0, 0]], 250.0);
    assert!(try_add_rain(&img, &Array2::zeros((3, 2))).is_err());
}

#[test]
fn rain_layers_from_folder() {
    let dir = tempfile::tempdir().unwrap();
    let layer = image::ImageBuffer::from_fn(60, 40, |x, y| image::Luma([((x + y) % 7 * 30) as u8]));
    layer.save(dir.path().join("rainstreak-1.png")).unwrap();
    layer.save(dir.path().join("norain-1.png")).unwrap();
    let src = RainSource::from_folder(dir.path()).unwrap();
    match &src {
        RainSource::Layers(l) => assert_eq!(l.len(), 1),
        other => panic!("{other:?}"),
    }
    let mut rng = Rng8::seed_from_u64(3);
    let crop = src.streak(16, 24, &mut rng);
    assert_eq!(crop.dim(), (16, 24));
    // The crop is a window of the layer: check the (x + y) % 7 pattern is preserved.
    let v00 = crop[[0, 0]];
    let off = (0..7).find(|o| ((o % 7) * 30) as f32 == v00).unwrap();
    for y in 0..16 {
        for x in 0..24 {
            assert_eq!(crop[[y, x]], (((x + y + off) % 7) * 30) as f32);
        }
    }
    // Larger than the layer: resized, right size, in range.
    let big = src.streak(80, 90, &mut rng);
    assert_eq!(big.dim(), (80, 90));
    assert!(big.iter().all(|&v| (0.0..=255.0).contains(&v)));
    // A folder without layers is an error naming the folder.
    let empty = tempfile::tempdir().unwrap();
    let e = RainSource::from_folder(empty.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&empty.path().display().to_string()) && e.contains("no rain-streak layers"),
        "{e}"
    );
    // A folder of layers only (any names): every image is a layer.
    let plain = tempfile::tempdir().unwrap();
    layer.save(plain.path().join("1-4.png")).unwrap();
    layer.save(plain.path().join("2-7.png")).unwrap();
    match RainSource::from_folder(plain.path()).unwrap() {
        RainSource::Layers(l) => assert_eq!(l.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tasks_have_official_indices_names_and_scales() {
    let names = ["sr2", "sr3", "sr4", "derain", "denoise30", "denoise50"];
    let scales = [2, 3, 4, 1, 1, 1];
    for (i, t) in Task::OFFICIAL.iter().enumerate() {
        assert_eq!(t.official_index(), Some(i));
        assert_eq!(Task::from_index(i).unwrap(), *t);
        assert_eq!(t.name(), names[i]);
        assert_eq!(t.scale(), scales[i]);
        assert_eq!(names[i].parse::<Task>().unwrap(), *t);
        assert_eq!(t.hr_patch(48), 48 * scales[i]);
    }
    assert_eq!(Task::from_index(6), Err(TaskError::BadIndex(6)));
    assert!("sr5".parse::<Task>().is_err());
}

#[test]
fn synthesize_sr_is_rounded_bicubic_of_modcropped_hr() {
    let hr = random_image(145, 98, 11);
    let mut rng = Rng8::seed_from_u64(0);
    for (task, s) in [(Task::Sr2, 2usize), (Task::Sr3, 3), (Task::Sr4, 4)] {
        let (lr, hr_out) = synthesize(&hr, task, &mut rng).unwrap();
        assert_eq!(hr_out.dim(), (3, 145 / s * s, 98 / s * s));
        assert_eq!(lr.dim(), (3, 145 / s, 98 / s));
        assert_eq!(lr, quantize(&imresize(&hr_out, 1.0 / s as f64)));
    }
    // The official patch sizes: 48·s HR → 48 LR.
    for task in [Task::Sr2, Task::Sr3, Task::Sr4] {
        let p = random_image(task.hr_patch(48), task.hr_patch(48), 2);
        let (lr, hr) = synthesize(&p, task, &mut rng).unwrap();
        assert_eq!(lr.dim(), (3, 48, 48));
        assert_eq!(hr, p);
    }
}

#[test]
fn synthesize_noise_and_rain_are_not_rounded() {
    let hr = random_image(48, 48, 12);
    for (task, sigma) in [(Task::Denoise30, 30.0f32), (Task::Denoise50, 50.0)] {
        let (lr, hr_out) = synthesize(&hr, task, &mut Rng8::seed_from_u64(4)).unwrap();
        assert_eq!(hr_out, hr);
        let expect = add_gaussian_noise(
            &hr,
            sigma,
            NoiseOptions::default(),
            &mut Rng8::seed_from_u64(4),
        );
        assert_eq!(lr, expect);
    }
    let (lr, hr_out) = synthesize(&hr, Task::Derain, &mut Rng8::seed_from_u64(5)).unwrap();
    assert_eq!(hr_out, hr);
    let layer = generate_streaks(48, 48, &RainParams::default(), &mut Rng8::seed_from_u64(5));
    assert_eq!(lr, add_rain(&hr, &layer));
    assert!(lr.iter().zip(hr.iter()).all(|(a, b)| a >= b));
    let src = RainSource::Procedural(RainParams {
        density: 0.0,
        ..RainParams::default()
    });
    let (lr0, _) = synthesize_with(&hr, Task::Derain, &src, &mut Rng8::seed_from_u64(5)).unwrap();
    assert_eq!(lr0, hr);
}

#[test]
fn tasks_serialize_as_their_names() {
    let json = serde_json::to_string(&Task::OFFICIAL).unwrap();
    assert_eq!(
        json,
        r#"["sr2","sr3","sr4","derain","denoise30","denoise50"]"#
    );
    let back: Vec<Task> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, Task::OFFICIAL.to_vec());
    assert!(serde_json::from_str::<Task>(r#""sr9""#).is_err());
}
