//! The contrastive losses against naive f64 references, finite differences, a closed form, symmetry, and the
//! chunked computation against the one-shot one.

mod reference;

use ipt_loss::{contrastive_loss, f_contrastive_loss, ContrastiveVariant, LossError};
use reference::{loops_eq5, loops_supcon, mindspore_supcon, naive_eq5, rel_max_err, to_vec3};
use tch::{Device, Kind, Tensor};

const TAU: f64 = 0.07;
const CPU: Device = Device::Cpu;

/// Value and gradient w.r.t. the tokens of the crate's loss.
fn value_and_grad(
    tokens: &Tensor,
    tau: f64,
    variant: ContrastiveVariant,
    chunk: Option<usize>,
) -> (f64, Tensor) {
    let x = tokens.detach().set_requires_grad(true);
    let loss = contrastive_loss(&x, tau, variant, chunk);
    loss.backward();
    (loss.double_value(&[]), x.grad().detach())
}

/// Value and gradient of the naive f64 reference.
fn reference_value_and_grad(
    tokens: &Tensor,
    tau: f64,
    variant: ContrastiveVariant,
) -> (f64, Tensor) {
    let x = tokens
        .to_kind(Kind::Double)
        .detach()
        .set_requires_grad(true);
    let loss = match variant {
        ContrastiveVariant::SupCon => mindspore_supcon(&x, tau),
        ContrastiveVariant::PaperEq5 => naive_eq5(&x, tau),
    };
    loss.backward();
    (loss.double_value(&[]), x.grad().detach())
}

/// (B, N, d) with B ≤ 4, N ≤ 16, 2 ≤ d ≤ 8, valid for the variant (d = 1 is degenerate: normalised scalars are
/// ±1 and the gradient is identically 0).
fn shapes(variant: ContrastiveVariant) -> Vec<(i64, i64, i64)> {
    let mut s = vec![(2, 3, 4), (4, 16, 8), (3, 7, 2), (4, 5, 8), (2, 16, 3)];
    match variant {
        ContrastiveVariant::SupCon => s.extend([(1, 6, 5), (4, 2, 2)]),
        ContrastiveVariant::PaperEq5 => s.push((4, 1, 6)),
    }
    s
}

#[test]
fn loop_references_agree_with_tensor_references() {
    tch::manual_seed(11);
    for (b, n, d) in [(3, 5, 4), (2, 7, 8)] {
        let x = Tensor::randn([b, n, d], (Kind::Double, CPU));
        let v = to_vec3(&x);
        let ms = mindspore_supcon(&x, TAU).double_value(&[]);
        let eq5 = naive_eq5(&x, TAU).double_value(&[]);
        assert!(
            (ms - loops_supcon(&v, TAU)).abs() <= 1e-12 * ms.abs(),
            "supcon {ms}"
        );
        assert!(
            (eq5 - loops_eq5(&v, TAU)).abs() <= 1e-12 * eq5.abs(),
            "eq5 {eq5}"
        );
    }
}

#[test]
fn value_and_gradient_match_naive_f64_within_1e5() {
    tch::manual_seed(0);
    let (mut worst_v, mut worst_g) = (0f64, 0f64);
    for variant in ContrastiveVariant::ALL {
        for (b, n, d) in shapes(variant) {
            for tau in [TAU, 0.5] {
                // Tokens of different scales: the normalisation must remove them.
                let scale = Tensor::rand([b, n, 1], (Kind::Float, CPU)) * 20.0 + 0.5;
                let x = Tensor::randn([b, n, d], (Kind::Float, CPU)) * scale;
                let (v_ref, g_ref) = reference_value_and_grad(&x, tau, variant);
                let m = (b * n) as usize;
                for chunk in [None, Some(1), Some(5), Some(m)] {
                    let (v, g) = value_and_grad(&x, tau, variant, chunk);
                    let ev = (v - v_ref).abs() / v_ref.abs();
                    let eg = rel_max_err(&g, &g_ref);
                    assert!(
                        ev <= 1e-5,
                        "{variant} B{b} N{n} d{d} tau {tau} chunk {chunk:?}: value {v} vs {v_ref}"
                    );
                    assert!(
                        eg <= 1e-5,
                        "{variant} B{b} N{n} d{d} tau {tau} chunk {chunk:?}: grad rel err {eg}"
                    );
                    (worst_v, worst_g) = (worst_v.max(ev), worst_g.max(eg));
                }
            }
        }
    }
    eprintln!("worst relative error vs naive f64: value {worst_v:.2e}, gradient {worst_g:.2e}");
}

#[test]
fn gradient_matches_finite_differences_in_f64() {
    tch::manual_seed(1);
    let h = 1e-6;
    for variant in ContrastiveVariant::ALL {
        let x = Tensor::randn([3, 4, 5], (Kind::Double, CPU));
        for chunk in [None, Some(5)] {
            let (_, g) = value_and_grad(&x, TAU, variant, chunk);
            let flat = x.reshape([-1]);
            let mut fd = vec![0.0; flat.numel()];
            for (i, slot) in fd.iter_mut().enumerate() {
                let at = |delta: f64| {
                    let y = flat.copy();
                    let _ = y
                        .get(i as i64)
                        .fill_(flat.double_value(&[i as i64]) + delta);
                    contrastive_loss(&y.view([3, 4, 5]), TAU, variant, chunk).double_value(&[])
                };
                *slot = (at(h) - at(-h)) / (2.0 * h);
            }
            let fd = Tensor::from_slice(&fd).view([3, 4, 5]);
            let err = rel_max_err(&g, &fd);
            eprintln!("{variant} chunk {chunk:?}: finite-difference rel err {err:.2e}");
            assert!(
                err <= 1e-7,
                "{variant} chunk {chunk:?}: finite-difference rel err {err}"
            );
        }
    }
}

#[test]
fn invariant_to_permuting_the_images() {
    tch::manual_seed(2);
    let perm = Tensor::from_slice(&[2i64, 0, 3, 1]);
    for variant in ContrastiveVariant::ALL {
        let x = Tensor::randn([4, 6, 5], (Kind::Double, CPU));
        let xp = x.index_select(0, &perm);
        for chunk in [None, Some(7)] {
            let (v, g) = value_and_grad(&x, TAU, variant, chunk);
            let (vp, gp) = value_and_grad(&xp, TAU, variant, chunk);
            assert!((v - vp).abs() <= 1e-12 * v.abs(), "{variant}: {v} vs {vp}");
            assert!(
                rel_max_err(&gp, &g.index_select(0, &perm)) <= 1e-12,
                "{variant}: gradient not permuted"
            );
        }
    }
}

/// B images whose N tokens are all `c_b·u_b` with `u_b` orthonormal: cosine 1 within an image, 0 across.
fn orthogonal_images(b: i64, n: i64, d: i64) -> (Tensor, Tensor, Vec<f64>) {
    let (q, _) = Tensor::linalg_qr(&Tensor::randn([d, d], (Kind::Double, CPU)), "reduced");
    let u = q.tr().narrow(0, 0, b); // [B, d] orthonormal rows
    let c: Vec<f64> = (0..b).map(|i| 0.5 + 1.5 * i as f64).collect();
    let x = u.unsqueeze(1).expand([b, n, d], false) * Tensor::from_slice(&c).view([b, 1, 1]);
    (x.contiguous(), u, c)
}

/// Expected gradient of the closed form: every token of image b gets `k/c_b · Σ_{b'≠b} u_b'`.
fn closed_form_gradient(u: &Tensor, c: &[f64], n: i64, k: f64) -> Tensor {
    let b = c.len() as i64;
    let others = u.sum_dim_intlist([0i64].as_slice(), true, Kind::Double) - u; // [B, d]
    let inv_c = Tensor::from_slice(&c.iter().map(|c| k / c).collect::<Vec<_>>()).view([b, 1]);
    (others * inv_c)
        .unsqueeze(1)
        .expand([b, n, u.size()[1]], false)
        .contiguous()
}

#[test]
fn closed_form_orthogonal_images() {
    tch::manual_seed(3);
    let (b, n, d) = (3i64, 4i64, 5i64);
    let (x, u, c) = orthogonal_images(b, n, d);
    let m = (b * n) as f64;
    let (bf, nf) = (b as f64, n as f64);
    for tau in [TAU, 0.5] {
        // SupCon: every anchor sees N−1 positives at logit 1/τ (= the row max) and (B−1)·N negatives at 0.
        let e = (-1.0 / tau).exp();
        let s = (nf - 1.0) + (bf - 1.0) * nf * e;
        let supcon = (tau / 0.07) * (s + 1e-8).ln();
        // Gradient: only the negatives survive the normalisation's projection, 2·N·β/τ per other image,
        // β = (τ/0.07)·e/(M·(S + 1e-8)).
        let beta = (tau / 0.07) * e / (m * (s + 1e-8));
        let g_supcon = closed_form_gradient(&u, &c, n, 2.0 * nf * beta / tau);
        // Eq. 5: every term is log(B−1) − 1/τ; gradient 2/(τ·M·(B−1)) per other image.
        let eq5 = (bf - 1.0).ln() - 1.0 / tau;
        let g_eq5 = closed_form_gradient(&u, &c, n, 2.0 / (tau * m * (bf - 1.0)));
        for chunk in [None, Some(1), Some(5)] {
            let (v, g) = value_and_grad(&x, tau, ContrastiveVariant::SupCon, chunk);
            assert!(
                (v - supcon).abs() <= 1e-12 * supcon.abs(),
                "supcon tau {tau}: {v} vs {supcon}"
            );
            assert!(
                rel_max_err(&g, &g_supcon) <= 1e-8,
                "supcon tau {tau} chunk {chunk:?} gradient"
            );
            let (v, g) = value_and_grad(&x, tau, ContrastiveVariant::PaperEq5, chunk);
            assert!(
                (v - eq5).abs() <= 1e-12 * eq5.abs(),
                "eq5 tau {tau}: {v} vs {eq5}"
            );
            assert!(
                rel_max_err(&g, &g_eq5) <= 1e-8,
                "eq5 tau {tau} chunk {chunk:?} gradient"
            );
        }
    }
}

#[test]
fn chunked_equals_one_shot_in_f32() {
    tch::manual_seed(4);
    let x = Tensor::randn([4, 16, 8], (Kind::Float, CPU)) * 3.0;
    for variant in ContrastiveVariant::ALL {
        let (v, g) = value_and_grad(&x, TAU, variant, None);
        for chunk in [1, 3, 7, 16, 33, 63, 64, 1000] {
            let (vc, gc) = value_and_grad(&x, TAU, variant, Some(chunk));
            let ev = (vc - v).abs() / v.abs();
            let eg = rel_max_err(&gc, &g);
            eprintln!(
                "{variant} chunk {chunk}: chunked vs one-shot value {ev:.1e}, gradient {eg:.1e}"
            );
            assert!(ev <= 1e-6, "{variant} chunk {chunk}: value {vc} vs {v}");
            assert!(eg <= 2e-6, "{variant} chunk {chunk}: gradient rel err {eg}");
        }
    }
}

#[test]
fn gradient_flows_through_an_upstream_op_and_kind_is_kept() {
    tch::manual_seed(5);
    let w = Tensor::randn([6, 6], (Kind::Float, CPU)).set_requires_grad(true);
    let x = Tensor::randn([2, 5, 6], (Kind::Float, CPU));
    let tokens = x.matmul(&w);
    let loss = contrastive_loss(&tokens, TAU, ContrastiveVariant::SupCon, Some(4));
    assert_eq!(loss.kind(), Kind::Float);
    assert_eq!(loss.size(), Vec::<i64>::new());
    loss.backward();
    let g = w.grad();
    assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0);
    // Same as the one-shot gradient.
    let w2 = w.detach().set_requires_grad(true);
    contrastive_loss(&x.matmul(&w2), TAU, ContrastiveVariant::SupCon, None).backward();
    assert!(rel_max_err(&g, &w2.grad()) <= 1e-5);
}

#[test]
fn invalid_inputs_are_typed_errors() {
    let ok = Tensor::randn([2, 3, 4], (Kind::Float, CPU));
    let sc = ContrastiveVariant::SupCon;
    let eq5 = ContrastiveVariant::PaperEq5;
    let two_d = Tensor::randn([6, 4], (Kind::Float, CPU));
    assert!(matches!(
        f_contrastive_loss(&two_d, TAU, sc, None),
        Err(LossError::TokensShape { .. })
    ));
    let empty = Tensor::zeros([2, 0, 4], (Kind::Float, CPU));
    assert!(matches!(
        f_contrastive_loss(&empty, TAU, sc, None),
        Err(LossError::TokensShape { .. })
    ));
    let one_token = Tensor::randn([3, 1, 4], (Kind::Float, CPU));
    assert!(matches!(
        f_contrastive_loss(&one_token, TAU, sc, None),
        Err(LossError::TooFewTokens { .. })
    ));
    assert!(f_contrastive_loss(&one_token, TAU, eq5, None).is_ok());
    let one_image = Tensor::randn([1, 5, 4], (Kind::Float, CPU));
    assert!(matches!(
        f_contrastive_loss(&one_image, TAU, eq5, None),
        Err(LossError::TooFewTokens { .. })
    ));
    assert!(f_contrastive_loss(&one_image, TAU, sc, None).is_ok());
    for tau in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            f_contrastive_loss(&ok, tau, sc, None),
            Err(LossError::Temperature(_))
        ));
    }
    assert!(matches!(
        f_contrastive_loss(&ok, TAU, sc, Some(0)),
        Err(LossError::ZeroChunk)
    ));
    let ints = Tensor::ones([2, 3, 4], (Kind::Int64, CPU));
    assert!(matches!(
        f_contrastive_loss(&ints, TAU, sc, None),
        Err(LossError::NotFloat { .. })
    ));
    let msg = f_contrastive_loss(&two_d, TAU, sc, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("[6, 4]"), "{msg}");
}

#[test]
fn variant_names_round_trip() {
    for v in ContrastiveVariant::ALL {
        assert_eq!(v.name().parse::<ContrastiveVariant>(), Ok(v));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            format!("\"{}\"", v.name())
        );
        assert_eq!(
            serde_json::from_str::<ContrastiveVariant>(&format!("\"{v}\"")).unwrap(),
            v
        );
    }
    assert!("simclr".parse::<ContrastiveVariant>().is_err());
    assert_eq!(ContrastiveVariant::default(), ContrastiveVariant::SupCon);
}
