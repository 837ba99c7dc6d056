//! `imresize` against a deliberately naive f64 transcription of MATLAB's `imresize.m`.

use ipt_degrade::resize::{
    cubic, imresize_uint8, output_len, resize_with, try_imresize, Contributions, Precision,
};
use ipt_degrade::{imresize, imresize_to, modcrop, quantize, Image, Rng8};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};

/// MATLAB `contributions()` line by line (1-based indices, dense P taps, mirror, kill).
fn matlab_contributions(in_len: usize, out_len: usize, scale: f64) -> (Array2<f64>, Array2<usize>) {
    let (kernel_width, aa) = if scale < 1.0 {
        (4.0 / scale, true)
    } else {
        (4.0, false)
    };
    let p = kernel_width.ceil() as usize + 2;
    let mut weights = Array2::<f64>::zeros((out_len, p));
    let mut indices = Array2::<usize>::zeros((out_len, p));
    for o in 0..out_len {
        let x = (o + 1) as f64;
        let u = x / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (u - kernel_width / 2.0).floor();
        let mut sum = 0.0;
        for j in 0..p {
            let idx = left + j as f64;
            let wv = if aa {
                scale * cubic(scale * (u - idx))
            } else {
                cubic(u - idx)
            };
            weights[[o, j]] = wv;
            sum += wv;
            // aux = [1:n, n:-1:1]; indices = aux(mod(indices-1, length(aux)) + 1)
            let aux: Vec<usize> = (1..=in_len).chain((1..=in_len).rev()).collect();
            let m = ((idx as i64 - 1).rem_euclid(aux.len() as i64)) as usize;
            indices[[o, j]] = aux[m] - 1;
        }
        for j in 0..p {
            weights[[o, j]] /= sum;
        }
    }
    (weights, indices)
}

/// Naive separable resize in f64, height first unless the width factor is smaller.
fn naive_resize(img: &Image, out_h: usize, out_w: usize, sh: f64, sw: f64) -> Array3<f64> {
    let (c, h, w) = img.dim();
    let x: Array3<f64> = img.mapv(f64::from);
    let along_h = |x: &Array3<f64>| {
        let (wt, ix) = matlab_contributions(h, out_h, sh);
        let (_, _, ww) = x.dim();
        Array3::from_shape_fn((c, out_h, ww), |(ch, o, col)| {
            (0..wt.ncols())
                .map(|j| wt[[o, j]] * x[[ch, ix[[o, j]], col]])
                .sum()
        })
    };
    let along_w = |x: &Array3<f64>| {
        let (wt, ix) = matlab_contributions(w, out_w, sw);
        let (_, hh, _) = x.dim();
        Array3::from_shape_fn((c, hh, out_w), |(ch, row, o)| {
            (0..wt.ncols())
                .map(|j| wt[[o, j]] * x[[ch, row, ix[[o, j]]]])
                .sum()
        })
    };
    if sh <= sw {
        along_w(&along_h(&x))
    } else {
        along_h(&along_w(&x))
    }
}

fn random_image(c: usize, h: usize, w: usize, seed: u64) -> Image {
    let mut rng = Rng8::seed_from_u64(seed);
    Array3::from_shape_fn((c, h, w), |_| rng.random_range(0.0f32..255.0))
}

fn max_abs_diff(a: &Image, b: &Array3<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn matches_naive_matlab_transcription() {
    let factors = [0.5, 1.0 / 3.0, 0.25, 2.0, 3.0, 4.0, 0.7, 1.3];
    let sizes = [
        (3usize, 37usize, 23usize),
        (3, 48, 48),
        (1, 13, 31),
        (3, 9, 64),
    ];
    let mut worst = 0.0f64;
    for (si, &(c, h, w)) in sizes.iter().enumerate() {
        let img = random_image(c, h, w, 100 + si as u64);
        for &f in &factors {
            let out = imresize(&img, f);
            let (oh, ow) = (output_len(h, f), output_len(w, f));
            assert_eq!(out.dim(), (c, oh, ow), "size for {h}x{w} by {f}");
            let reference = naive_resize(&img, oh, ow, f, f);
            let d = max_abs_diff(&out, &reference);
            worst = worst.max(d);
            assert!(d <= 1e-3, "{c}x{h}x{w} by {f}: max abs diff {d}");
        }
    }
    println!("imresize vs naive f64 MATLAB: worst max abs diff {worst:.2e}");
}

#[test]
fn explicit_size_uses_per_dimension_factors() {
    let img = random_image(3, 29, 41, 7);
    for &(oh, ow) in &[(10usize, 50usize), (58, 20), (29, 13), (7, 41)] {
        let out = imresize_to(&img, oh, ow);
        let reference = naive_resize(&img, oh, ow, oh as f64 / 29.0, ow as f64 / 41.0);
        let d = max_abs_diff(&out, &reference);
        assert!(d <= 1e-3, "to {oh}x{ow}: {d}");
    }
}

#[test]
fn uint8_mode_rounds_each_pass() {
    let img = quantize(&random_image(3, 30, 22, 9));
    for &f in &[0.5, 0.25, 3.0] {
        let out = imresize_uint8(&img, f);
        let (h, w) = (30, 22);
        let (oh, ow) = (output_len(h, f), output_len(w, f));
        // Naive: height pass, round, width pass, round (equal factors: height first).
        let (wt, ix) = matlab_contributions(h, oh, f);
        let mid = Array3::from_shape_fn((3, oh, w), |(c, o, x)| {
            let v: f64 = (0..wt.ncols())
                .map(|j| wt[[o, j]] * f64::from(img[[c, ix[[o, j]], x]]))
                .sum();
            v.round().clamp(0.0, 255.0)
        });
        let (wt, ix) = matlab_contributions(w, ow, f);
        let reference = Array3::from_shape_fn((3, oh, ow), |(c, y, o)| {
            let v: f64 = (0..wt.ncols())
                .map(|j| wt[[o, j]] * mid[[c, y, ix[[o, j]]]])
                .sum();
            v.round().clamp(0.0, 255.0)
        });
        let mismatches = out
            .iter()
            .zip(reference.iter())
            .filter(|(&a, &b)| f64::from(a) != b)
            .count();
        // f32 accumulation may flip a value that lands within ~1e-4 of a .5 boundary.
        assert!(
            mismatches <= out.len() / 1000,
            "factor {f}: {mismatches} mismatches"
        );
    }
}

#[test]
fn constant_images_stay_constant() {
    for &f in &[0.5, 1.0 / 3.0, 0.25, 2.0, 3.0, 4.0, 0.7] {
        let img = Array3::from_elem((3, 17, 26), 123.25f32);
        let out = imresize(&img, f);
        let d = out
            .iter()
            .map(|&v| (v - 123.25).abs())
            .fold(0.0f32, f32::max);
        assert!(d <= 1e-3, "factor {f}: constant image changed by {d}");
    }
}

#[test]
fn factor_one_is_identity() {
    let img = random_image(3, 19, 27, 3);
    assert_eq!(imresize(&img, 1.0), img);
    assert_eq!(imresize_to(&img, 19, 27), img);
}

/// Hand-worked mirror example: 4 pixels [10, 20, 30, 40] upscaled ×2.
///
/// Output 1 (1-based): u = 1/2 + 0.25 = 0.75, left = floor(0.75 − 2) = −2, P = 6 taps at
/// indices −2..3 with distances u − idx = 2.75, 1.75, 0.75, −0.25, −1.25, −2.25 and cubic weights
/// 0, −0.0234375, 0.2265625, 0.8671875, −0.0703125, 0 (sum 1). Mirror aux = [1 2 3 4 4 3 2 1]:
/// index −1 → 2, 0 → 1, 1 → 1, 2 → 2. So
/// out1 = −0.0234375·20 + 0.2265625·10 + 0.8671875·10 − 0.0703125·20 = 9.0625.
/// (Clamping, index −1 → 1, would give 9.296875.)
/// Output 8: u = 4.25, taps 2..7 with weights 0, −0.0703125, 0.8671875, 0.2265625, −0.0234375, 0
/// at indices 3, 4, 5 → 4, 6 → 3: out8 = −0.0703125·30 + 0.8671875·40 + 0.2265625·40 − 0.0234375·30
/// = 40.9375 (= 50 − 9.0625 by symmetry; clamping would give 40.703125).
#[test]
fn mirror_border_hand_worked_4x4() {
    let row = [10.0f32, 20.0, 30.0, 40.0];
    let img = Array3::from_shape_fn((1, 4, 4), |(_, _, x)| row[x]);
    let out = resize_with(&img, (4, 8), (1.0, 2.0), Precision::Float);
    let expect_first = -0.0234375 * 20.0 + 0.2265625 * 10.0 + 0.8671875 * 10.0 - 0.0703125 * 20.0;
    let expect_last = -0.0703125 * 30.0 + 0.8671875 * 40.0 + 0.2265625 * 40.0 - 0.0234375 * 30.0;
    assert!((expect_first - 9.0625f64).abs() < 1e-12);
    assert!((expect_last - 40.9375f64).abs() < 1e-12);
    for y in 0..4 {
        assert!(
            (f64::from(out[[0, y, 0]]) - 9.0625).abs() < 1e-4,
            "{}",
            out[[0, y, 0]]
        );
        assert!(
            (f64::from(out[[0, y, 7]]) - 40.9375).abs() < 1e-4,
            "{}",
            out[[0, y, 7]]
        );
    }
    // The same along the height of the transposed image (full 2-D ×2 of a 4x4 image).
    let t = Array3::from_shape_fn((1, 4, 4), |(_, y, _)| row[y]);
    let out = imresize(&t, 2.0);
    assert!((f64::from(out[[0, 0, 3]]) - 9.0625).abs() < 1e-4);
    assert!((f64::from(out[[0, 7, 3]]) - 40.9375).abs() < 1e-4);
    // Shrinking 4x4 by 1/2: kernel width 8, taps reach 3 pixels past each border.
    let (wt, ix) = matlab_contributions(4, 2, 0.5);
    let out = imresize(&img, 0.5);
    for o in 0..2 {
        let v: f64 = (0..wt.ncols())
            .map(|j| wt[[o, j]] * f64::from(row[ix[[o, j]]]))
            .sum();
        assert!((f64::from(out[[0, 0, o]]) - v).abs() < 1e-4);
    }
}

#[test]
fn table_equals_dense_matlab_table() {
    for &(n, f) in &[
        (48usize, 0.25f64),
        (48, 4.0),
        (7, 1.0 / 3.0),
        (1, 2.0),
        (2, 0.5),
        (5, 0.7),
        (3, 0.25),
    ] {
        let out_len = output_len(n, f);
        let t = Contributions::new(n, out_len, f);
        assert!(t.taps <= n);
        let (wt, ix) = matlab_contributions(n, out_len, f);
        for o in 0..out_len {
            assert!(t.starts[o] + t.taps <= n);
            // Per-source-pixel weights of the dense table vs the sparse window.
            let mut dense = vec![0.0f64; n];
            for j in 0..wt.ncols() {
                dense[ix[[o, j]]] += wt[[o, j]];
            }
            let mut sparse = vec![0.0f64; n];
            for k in 0..t.taps {
                sparse[t.starts[o] + k] += t.weights_f64[o * t.taps + k];
            }
            for i in 0..n {
                assert!(
                    (dense[i] - sparse[i]).abs() < 1e-15,
                    "n={n} f={f} o={o} i={i}"
                );
            }
            let sum: f64 = sparse.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn output_size_is_ceil() {
    assert_eq!(output_len(321, 1.0 / 3.0), 107);
    assert_eq!(output_len(10, 0.25), 3);
    assert_eq!(output_len(5, 0.7), 4);
    assert_eq!(output_len(7, 2.0), 14);
    assert!(try_imresize(&random_image(3, 4, 4, 1), 0.0).is_err());
    assert!(try_imresize(&random_image(3, 4, 4, 1), f64::NAN).is_err());
}

#[test]
fn tiny_and_empty_images() {
    let one = Array3::from_elem((3, 1, 1), 77.0f32);
    let up = imresize(&one, 3.0);
    assert_eq!(up.dim(), (3, 3, 3));
    assert!(up.iter().all(|&v| (v - 77.0).abs() < 1e-4));
    let down = imresize(&one, 0.5);
    assert_eq!(down.dim(), (3, 1, 1));
    let empty = Array3::<f32>::zeros((3, 0, 5));
    assert_eq!(imresize(&empty, 2.0).dim(), (3, 0, 10));
}

#[test]
fn modcrop_crops_bottom_right() {
    let img = random_image(3, 23, 17, 5);
    let m = modcrop(&img, 4);
    assert_eq!(m.dim(), (3, 20, 16));
    assert_eq!(m[[2, 19, 15]], img[[2, 19, 15]]);
    assert_eq!(modcrop(&img, 1), img);
    assert_eq!(modcrop(&img, 0), img);
}

#[test]
fn quantize_is_matlab_uint8() {
    let img = Array3::from_shape_vec(
        (1, 1, 8),
        vec![-3.0, 0.49, 0.5, 1.5, 2.5, 254.5, 300.0, f32::NAN],
    )
    .unwrap();
    let q = quantize(&img);
    assert_eq!(
        q.iter().copied().collect::<Vec<_>>(),
        vec![0.0, 0.0, 1.0, 2.0, 3.0, 255.0, 255.0, 0.0]
    );
}
