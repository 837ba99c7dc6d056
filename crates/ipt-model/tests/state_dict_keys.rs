//! The variable names and shapes of the base model equal the official state dict (enumerated from the official `model/ipt.py`),
//! and the key and parameter counts equal those of the official code (of the official `model/ipt.py`).

use std::collections::BTreeMap;

use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device};

/// The official key list, written out from the spec's table for `num_layers` = 12, d = 576.
fn official_keys(scales: &[usize], num_queries: i64) -> BTreeMap<String, Vec<i64>> {
    let mut m = BTreeMap::new();
    let mut add = |k: String, s: &[i64]| {
        m.insert(k, s.to_vec());
    };
    for mean in ["sub_mean", "add_mean"] {
        add(format!("{mean}.weight"), &[3, 3, 1, 1]);
        add(format!("{mean}.bias"), &[3]);
    }
    for (i, &s) in scales.iter().enumerate() {
        add(format!("head.{i}.0.weight"), &[64, 3, 3, 3]);
        add(format!("head.{i}.0.bias"), &[64]);
        for r in 1..=2 {
            for c in [0, 2] {
                add(format!("head.{i}.{r}.body.{c}.weight"), &[64, 64, 5, 5]);
                add(format!("head.{i}.{r}.body.{c}.bias"), &[64]);
            }
        }
        match s {
            2 => {
                add(format!("tail.{i}.0.0.weight"), &[256, 64, 3, 3]);
                add(format!("tail.{i}.0.0.bias"), &[256]);
            }
            3 => {
                add(format!("tail.{i}.0.0.weight"), &[576, 64, 3, 3]);
                add(format!("tail.{i}.0.0.bias"), &[576]);
            }
            4 => {
                for j in [0, 2] {
                    add(format!("tail.{i}.0.{j}.weight"), &[256, 64, 3, 3]);
                    add(format!("tail.{i}.0.{j}.bias"), &[256]);
                }
            }
            1 => {}
            _ => unreachable!(),
        }
        add(format!("tail.{i}.1.weight"), &[3, 64, 3, 3]);
        add(format!("tail.{i}.1.bias"), &[3]);
    }
    add("body.linear_encoding.weight".into(), &[576, 576]);
    add("body.linear_encoding.bias".into(), &[576]);
    add("body.mlp_head.0.weight".into(), &[2304, 576]);
    add("body.mlp_head.0.bias".into(), &[2304]);
    add("body.mlp_head.3.weight".into(), &[576, 2304]);
    add("body.mlp_head.3.bias".into(), &[576]);
    add("body.query_embed.weight".into(), &[num_queries, 147456]);
    add("body.position_encoding.position_ids".into(), &[1, 256]);
    add("body.position_encoding.pe.weight".into(), &[256, 576]);
    for l in 0..12 {
        for (stack, attns, norms) in [
            ("encoder", &["self_attn"][..], 2),
            ("decoder", &["self_attn", "multihead_attn"][..], 3),
        ] {
            let p = format!("body.{stack}.layers.{l}");
            for a in attns {
                add(format!("{p}.{a}.in_proj_weight"), &[1728, 576]);
                add(format!("{p}.{a}.out_proj.weight"), &[576, 576]);
            }
            add(format!("{p}.linear1.weight"), &[2304, 576]);
            add(format!("{p}.linear1.bias"), &[2304]);
            add(format!("{p}.linear2.weight"), &[576, 2304]);
            add(format!("{p}.linear2.bias"), &[576]);
            for n in 1..=norms {
                add(format!("{p}.norm{n}.weight"), &[576]);
                add(format!("{p}.norm{n}.bias"), &[576]);
            }
        }
    }
    m
}

struct Counts {
    keys: usize,
    params: i64,
    trainable: i64,
}

fn check(scales: &[usize]) -> Counts {
    let cfg = IptConfig::base(scales);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    let got: BTreeMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect();
    let want = official_keys(scales, scales.len() as i64);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{scales:?}: missing {missing:?}, extra {extra:?}"
    );
    for (k, s) in &want {
        assert_eq!(&got[k], s, "shape of {k}");
    }
    let vars = vs.variables();
    let params = vars
        .iter()
        .filter(|(k, _)| !k.ends_with("position_ids"))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    let trainable = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    assert_eq!(
        vars["body.position_encoding.position_ids"].kind(),
        tch::Kind::Int64
    );
    Counts {
        keys: got.len(),
        params,
        trainable,
    }
}

#[test]
fn base_model_keys_shapes_and_counts_equal_the_official_state_dict() {
    let c = check(&[2, 3, 4, 1, 1, 1]);
    assert_eq!(c.keys, 381);
    assert_eq!(c.params, 118_892_394);
    let c = check(&[2]);
    assert_eq!(c.keys, 315);
    assert_eq!(c.params, 115_460_443);
    assert_eq!(c.trainable, 115_460_419);
    let c = check(&[3]);
    assert_eq!((c.keys, c.params), (315, 115_645_083));
    let c = check(&[4]);
    assert_eq!((c.keys, c.params), (317, 115_608_155));
    let c = check(&[1]);
    assert_eq!((c.keys, c.params), (313, 115_312_731));
}
