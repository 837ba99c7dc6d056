//! The initialisation rules of the official `model/ipt.py` (PyTorch module defaults), checked
//! on a built network. (Attention and the token cut are unit-tested in `src/attention.rs` and
//! `src/body.rs`.)

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
