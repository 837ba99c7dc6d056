//! Attention against a naive f64 reference, the token cut/fold order against explicit loops
//! and ATen's im2col/col2im, and the initialisation rules of spec §1.10.

use ipt_model::attention::{AttentionKernel, InProjInit, MultiheadAttention};
use ipt_model::body::{fold_tokens, unfold_tokens};
use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device, Kind, Tensor};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from(
        (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
            .abs()
            .max(),
    )
    .unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// softmax(Q Kᵀ/√dh) V per batch item and head, with plain loops in f64.
fn naive_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    w_in: &Tensor,
    w_out: &Tensor,
    b_out: &Tensor,
    h: usize,
) -> Vec<f64> {
    let (lq, b, d) = q.size3().unwrap();
    let lk = k.size()[0] as usize;
    let (lq, b, d) = (lq as usize, b as usize, d as usize);
    let dh = d / h;
    let (q, k, v) = (to_vec(q), to_vec(k), to_vec(v));
    let (w, wo, bo) = (to_vec(w_in), to_vec(w_out), to_vec(b_out));
    // project: x [L, B, d] with rows of w starting at `row0`
    let proj = |x: &[f64], l: usize, row0: usize| {
        let mut out = vec![0.0; l * b * d];
        for i in 0..l {
            for bb in 0..b {
                for o in 0..d {
                    let mut s = 0.0;
                    for c in 0..d {
                        s += x[(i * b + bb) * d + c] * w[(row0 + o) * d + c];
                    }
                    out[(i * b + bb) * d + o] = s;
                }
            }
        }
        out
    };
    let (pq, pk, pv) = (proj(&q, lq, 0), proj(&k, lk, d), proj(&v, lk, 2 * d));
    let mut concat = vec![0.0; lq * b * d];
    for bb in 0..b {
        for hh in 0..h {
            for i in 0..lq {
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        (0..dh)
                            .map(|e| {
                                pq[(i * b + bb) * d + hh * dh + e]
                                    * pk[(j * b + bb) * d + hh * dh + e]
                            })
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let ex: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = ex.iter().sum();
                for e in 0..dh {
                    concat[(i * b + bb) * d + hh * dh + e] = (0..lk)
                        .map(|j| ex[j] / z * pv[(j * b + bb) * d + hh * dh + e])
                        .sum();
                }
            }
        }
    }
    let mut out = vec![0.0; lq * b * d];
    for r in 0..lq * b {
        for o in 0..d {
            out[r * d + o] = bo[o]
                + (0..d)
                    .map(|c| concat[r * d + c] * wo[o * d + c])
                    .sum::<f64>();
        }
    }
    out
}

#[test]
fn attention_kernels_match_naive_f64_attention() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let (d, h) = (24i64, 3usize);
    let mut mha = MultiheadAttention::new(
        vs.root() / "attn",
        d,
        h as i64,
        0.0,
        InProjInit::XavierUniform,
        true,
        false,
    );
    tch::no_grad(|| {
        let _ = mha
            .out_proj
            .bs
            .as_ref()
            .unwrap()
            .shallow_clone()
            .uniform_(-0.5, 0.5);
    });
    let q = Tensor::randn([5, 2, d], (Kind::Float, Device::Cpu));
    let k = Tensor::randn([7, 2, d], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([7, 2, d], (Kind::Float, Device::Cpu));
    let want = naive_attention(
        &q,
        &k,
        &v,
        &mha.in_proj_weight,
        &mha.out_proj.ws,
        mha.out_proj.bs.as_ref().unwrap(),
        h,
    );
    let want = Tensor::from_slice(&want).view([5, 2, d]);
    for kernel in [
        AttentionKernel::Explicit,
        AttentionKernel::Fused,
        AttentionKernel::Auto,
    ] {
        mha.kernel = kernel;
        let got = tch::no_grad(|| mha.forward(&q, &k, &v, false));
        let err = max_abs(&got, &want);
        eprintln!("{kernel:?} attention vs naive f64: max abs error {err:.2e}");
        assert!(err < 1e-5, "{kernel:?}: {err}");
    }
}

#[test]
fn token_cut_follows_the_official_unfold_order() {
    let (b, c, pd, gh, gw) = (2i64, 3i64, 3i64, 2i64, 4i64);
    let x = Tensor::randn([b, c, gh * pd, gw * pd], (Kind::Float, Device::Cpu));
    let t = unfold_tokens(&x, pd);
    assert_eq!(t.size(), vec![gh * gw, b, c * pd * pd]);
    // token = py·gw + px, feature = c·pd² + ky·pd + kx
    let xv = to_vec(&x);
    let tv = to_vec(&t);
    let (w, hh) = (gw * pd, gh * pd);
    for py in 0..gh {
        for px in 0..gw {
            for bb in 0..b {
                for cc in 0..c {
                    for ky in 0..pd {
                        for kx in 0..pd {
                            let tok = py * gw + px;
                            let f = cc * pd * pd + ky * pd + kx;
                            let got = tv[((tok * b + bb) * c * pd * pd + f) as usize];
                            let want = xv
                                [(((bb * c + cc) * hh + py * pd + ky) * w + px * pd + kx) as usize];
                            assert_eq!(got, want);
                        }
                    }
                }
            }
        }
    }
    // Equal to F.unfold(x, pd, stride=pd).transpose(1, 2).transpose(0, 1) ...
    let im2col = x
        .im2col([pd, pd], [1, 1], [0, 0], [pd, pd])
        .transpose(1, 2)
        .transpose(0, 1);
    assert_eq!(max_abs(&t, &im2col), 0.0);
    // ... and folding back is F.fold, the exact inverse.
    let back = fold_tokens(&t, gh, gw, pd);
    assert_eq!(max_abs(&back, &x), 0.0);
    let col2im = t.transpose(0, 1).transpose(1, 2).col2im(
        [gh * pd, gw * pd],
        [pd, pd],
        [1, 1],
        [0, 0],
        [pd, pd],
    );
    assert_eq!(max_abs(&back, &col2im), 0.0);
}

#[test]
fn initialisation_follows_the_official_code() {
    tch::manual_seed(11);
    let mut cfg = IptConfig::tiny(&[2, 3, 1]);
    cfg.num_layers = 3;
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Ipt::new(&vs.root(), &cfg).unwrap();
    let v = vs.variables();
    let d = cfg.embedding_dim() as f64;
    let same = |a: &str, b: &str| max_abs(&v[a], &v[b]) == 0.0;
    // Encoder and decoder layers start as copies of one layer (DETR's _get_clones).
    for stack in ["encoder", "decoder"] {
        for l in 1..3 {
            for (k, _) in v
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("body.{stack}.layers.0.")))
            {
                let other = k.replace(".layers.0.", &format!(".layers.{l}."));
                assert!(same(k, &other), "{other} differs from {k}");
            }
        }
    }
    // ... but heads, tails and the two stacks are initialised independently.
    assert!(!same("head.0.0.weight", "head.1.0.weight"));
    assert!(!same("tail.0.1.weight", "tail.2.1.weight"));
    assert!(!same(
        "body.encoder.layers.0.self_attn.in_proj_weight",
        "body.decoder.layers.0.self_attn.in_proj_weight"
    ));
    // Encoder in_proj: kaiming_uniform(a=√5) = U(±1/√d); decoder: xavier U(±√(6/4d)).
    let amax = |k: &str| f64::try_from(v[k].abs().max()).unwrap();
    let enc = amax("body.encoder.layers.0.self_attn.in_proj_weight");
    let dec = amax("body.decoder.layers.0.multihead_attn.in_proj_weight");
    assert!(enc <= 1.0 / d.sqrt() && enc > 0.95 / d.sqrt(), "{enc}");
    assert!(
        dec <= (6.0 / (4.0 * d)).sqrt() && dec > 1.1 / d.sqrt(),
        "{dec}"
    );
    // Convolutions and linears: U(±1/√fan_in) for weights and biases.
    let fan = (cfg.n_feats * 25) as f64;
    let c = amax("head.0.1.body.0.weight");
    assert!(c <= 1.0 / fan.sqrt() && c > 0.9 / fan.sqrt(), "{c}");
    assert!(amax("head.0.1.body.0.bias") <= 1.0 / fan.sqrt());
    // Embeddings N(0, 1); LayerNorm ones/zeros; MeanShift exact; position_ids = arange.
    let std = f64::try_from(v["body.query_embed.weight"].std(true)).unwrap();
    assert!((std - 1.0).abs() < 0.05, "{std}");
    assert_eq!(
        to_vec(&v["body.encoder.layers.0.norm1.weight"]),
        vec![1.0; d as usize]
    );
    assert_eq!(
        to_vec(&v["body.decoder.layers.2.norm3.bias"]),
        vec![0.0; d as usize]
    );
    let bias: Vec<f64> = to_vec(&v["sub_mean.bias"]);
    let want = [-114.444, -111.4605, -103.02];
    for (g, w) in bias.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{g} vs {w}");
    }
    assert_eq!(
        to_vec(&v["add_mean.weight"].view([3, 3])),
        vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]
    );
    let ids = &v["body.position_encoding.position_ids"];
    assert_eq!(ids.kind(), Kind::Int64);
    assert_eq!(to_vec(ids), (0..144).map(f64::from).collect::<Vec<_>>());
    // MeanShift is frozen: not among the trainable variables.
    let n_trainable: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    let n_all: i64 = v
        .iter()
        .filter(|(k, _)| !k.ends_with("position_ids"))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    assert_eq!(n_all - n_trainable, 24);
    eprintln!("tiny 3-task, 3 layers: {n_all} parameters");
}
