//! Naive references shared by the tests: literal f64 transcriptions, deliberately unoptimised.
#![allow(dead_code)]

use tch::{Kind, Tensor};

/// MindSpore `L2Normalize` epsilon and the SupCon log epsilon, restated here (not imported) on purpose.
pub const NORM_EPS: f64 = 1e-4;
pub const LOG_EPS: f64 = 1e-8;

/// Tokens `[B, N, d]` as nested f64 vectors.
pub fn to_vec3(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
    Vec::<Vec<Vec<f64>>>::try_from(t.to_kind(Kind::Double)).expect("3-D tensor")
}

fn normalise(v: &[f64]) -> Vec<f64> {
    let sq: f64 = v.iter().map(|x| x * x).sum();
    let norm = sq.max(NORM_EPS).sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// SupCon value by plain loops (official form: row max over the whole row, anchor excluded from the
/// denominator, `+1e-8` inside the log, mean over positives, mean over anchors, factor τ/0.07).
pub fn loops_supcon(x: &[Vec<Vec<f64>>], tau: f64) -> f64 {
    let b = x.len();
    let n = x[0].len();
    let z: Vec<(usize, Vec<f64>)> = (0..b)
        .flat_map(|i| (0..n).map(move |p| (i, p)))
        .map(|(i, p)| (i, normalise(&x[i][p])))
        .collect();
    let mut total = 0.0;
    for (r, (img_r, zr)) in z.iter().enumerate() {
        let logits: Vec<f64> = z.iter().map(|(_, zs)| dot(zr, zs) / tau).collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let denom: f64 = (0..z.len())
            .filter(|&s| s != r)
            .map(|s| (logits[s] - max).exp())
            .sum::<f64>()
            + LOG_EPS;
        let mut pos = 0.0;
        let mut count = 0.0;
        for (s, (img_s, _)) in z.iter().enumerate() {
            if s != r && img_s == img_r {
                pos += logits[s] - max - denom.ln();
                count += 1.0;
            }
        }
        total += -(tau / 0.07) * pos / count;
    }
    total / z.len() as f64
}

/// Paper Eq. 5 value by plain loops, with `d(a, b) = cos(a, b) / τ` (plain cosine, no epsilon).
pub fn loops_eq5(x: &[Vec<Vec<f64>>], tau: f64) -> f64 {
    let b = x.len();
    let n = x[0].len();
    let cos = |a: &[f64], c: &[f64]| dot(a, c) / (dot(a, a).sqrt() * dot(c, c).sqrt()) / tau;
    let mut total = 0.0;
    for j in 0..b {
        for i1 in 0..n {
            for i2 in 0..n {
                let pos = cos(&x[j][i1], &x[j][i2]).exp();
                let neg: f64 = (0..b)
                    .filter(|&k| k != j)
                    .map(|k| cos(&x[j][i1], &x[k][i2]).exp())
                    .sum();
                total += -(pos / neg).ln();
            }
        }
    }
    total / (b * n * n) as f64
}

/// Literal transcription of the MindSpore `SupConLoss.construct` (contrast mode "all") in tch f64, for autograd:
/// patch-major rows built by unstacking the token axis, the `eye(B)` mask tiled `N × N`, float masks everywhere.
pub fn mindspore_supcon(features: &Tensor, tau: f64) -> Tensor {
    let (b, n, _d) = features.size3().expect("[B, N, d]");
    let sq = features
        .square()
        .sum_dim_intlist([2i64].as_slice(), true, Kind::Double);
    let features = features / sq.clamp_min(NORM_EPS).sqrt();
    let mask = Tensor::eye(b, (Kind::Double, features.device()));
    let contrast_feature = Tensor::cat(&features.unbind(1), 0); // [N·B, d], row = n·B + b
    let anchor_feature = &contrast_feature;
    let anchor_dot_contrast = anchor_feature.mm(&contrast_feature.tr()) / tau;
    let (logits_max, _) = anchor_dot_contrast.max_dim(1, true);
    let logits = &anchor_dot_contrast - logits_max;
    let mask = mask.repeat([n, n]);
    let logits_mask = 1.0 - Tensor::eye(b * n, (Kind::Double, features.device()));
    let mask = mask * &logits_mask;
    let exp_logits = logits.exp() * &logits_mask;
    let log_prob = &logits
        - (exp_logits.sum_dim_intlist([1i64].as_slice(), true, Kind::Double) + LOG_EPS).log();
    let mean_log_prob_pos =
        (&mask * log_prob).sum_dim_intlist([1i64].as_slice(), true, Kind::Double)
            / mask.sum_dim_intlist([1i64].as_slice(), true, Kind::Double);
    let loss = mean_log_prob_pos * (-(tau / 0.07));
    loss.reshape([n, b]).mean(Kind::Double)
}

/// Paper Eq. 5 in tch f64 with explicit loops over (j, i1, i2), plain cosine similarity, for autograd.
pub fn naive_eq5(features: &Tensor, tau: f64) -> Tensor {
    let (b, n, _d) = features.size3().expect("[B, N, d]");
    let norms = features
        .square()
        .sum_dim_intlist([2i64].as_slice(), true, Kind::Double)
        .sqrt();
    let f = features / norms;
    let mut total = Tensor::zeros([], (Kind::Double, features.device()));
    for j in 0..b {
        for i1 in 0..n {
            let a = f.get(j).get(i1);
            for i2 in 0..n {
                let pos = (a.dot(&f.get(j).get(i2)) / tau).exp();
                let mut neg = Tensor::zeros([], (Kind::Double, features.device()));
                for k in (0..b).filter(|&k| k != j) {
                    neg += (a.dot(&f.get(k).get(i2)) / tau).exp();
                }
                total -= (pos / neg).log();
            }
        }
    }
    total / (b * n * n) as f64
}

/// `‖a − b‖∞ / ‖b‖∞` (the scale of the gradient, not of each element).
pub fn rel_max_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let err = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]);
    err / scale
}
