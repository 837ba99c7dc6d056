//! The `.pt` reader on files written by real PyTorch (`tests/fixtures/make_fixtures.py`),
//! strict key checking, and the safetensors round trip.

use std::io::Write;
use std::path::PathBuf;

use ipt_model::checkpoint::{self, InferOptions, StateDict};
use ipt_model::CheckpointError;
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn get<'a>(sd: &'a StateDict, k: &str) -> &'a Tensor {
    &sd.tensors
        .iter()
        .find(|(n, _)| n == k)
        .unwrap_or_else(|| panic!("no {k}"))
        .1
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn heads(h: usize) -> InferOptions {
    InferOptions {
        num_heads: Some(h),
        ..Default::default()
    }
}

#[test]
fn views_dtypes_offsets_and_strides_are_honoured() {
    let sd = checkpoint::read_state_dict(&fixture("views.pt")).unwrap();
    let base = |r: usize, c: usize| (6 * r + c) as f64;
    let t = get(&sd, "offset_rows");
    assert_eq!(t.size(), [2, 6]);
    assert_eq!(values(t), (6..18).map(f64::from).collect::<Vec<_>>());
    let t = get(&sd, "transposed");
    assert_eq!(t.size(), [6, 4]);
    let want: Vec<f64> = (0..6)
        .flat_map(|i| (0..4).map(move |j| base(j, i)))
        .collect();
    assert_eq!(values(t), want);
    let t = get(&sd, "every_other");
    assert_eq!(t.size(), [4, 3]);
    let want: Vec<f64> = (0..4)
        .flat_map(|r| (0..3).map(move |c| base(r, 1 + 2 * c)))
        .collect();
    assert_eq!(values(t), want);
    let t = get(&sd, "expanded");
    assert_eq!((t.size(), t.kind()), (vec![1, 5], Kind::Int64));
    assert_eq!(values(t), vec![0., 1., 2., 3., 4.]);
    let quarters: Vec<f64> = (0..6).map(|i| i as f64 / 4.0).collect();
    for (k, kind) in [
        ("f64", Kind::Double),
        ("bf16", Kind::BFloat16),
        ("f16", Kind::Half),
    ] {
        assert_eq!(get(&sd, k).kind(), kind, "{k}");
        assert_eq!(values(get(&sd, k)), quarters, "{k}");
    }
    assert_eq!(get(&sd, "i32").kind(), Kind::Int);
    assert_eq!(values(get(&sd, "i32")), vec![-3., -2., -1., 0., 1., 2.]);
}

#[test]
fn wrapped_and_module_prefixed_state_dicts_are_unwrapped() {
    let plain = checkpoint::read_state_dict(&fixture("dn_no_norm.pt")).unwrap();
    let wrapped = checkpoint::read_state_dict(&fixture("wrapped.pt")).unwrap();
    assert_eq!(plain.tensors.len(), wrapped.tensors.len());
    for (k, t) in &plain.tensors {
        assert_eq!(t, get(&wrapped, k), "{k}");
    }
    assert_eq!(plain.num_parameters(), 12_743);
    // the mean-shift constants: two 1×1 convolutions of 3×3 weights and 3 biases
    assert_eq!(plain.num_parameters() - plain.num_trainable(), 24);
}

#[test]
fn half_precision_checkpoint_loads_into_a_float_model() {
    let full = checkpoint::read_state_dict(&fixture("dn_no_norm.pt")).unwrap();
    let half = checkpoint::load(&fixture("dn_no_norm_half.pt"), Device::Cpu, &heads(2)).unwrap();
    let vars = half.vs.variables();
    for (k, t) in &full.tensors {
        let want = if t.is_floating_point() {
            t.to_kind(Kind::Half).to_kind(Kind::Float)
        } else {
            t.shallow_clone()
        };
        assert_eq!(vars[k].kind(), t.kind(), "{k}");
        assert_eq!(vars[k], want, "{k}");
    }
}

#[test]
fn legacy_and_foreign_files_get_clear_errors() {
    let e = checkpoint::read_state_dict(&fixture("legacy.pt"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("legacy.pt") && e.contains("legacy (pre-1.6"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"hello, not a checkpoint").unwrap();
    let e = checkpoint::read_state_dict(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.bin") && e.contains("neither"), "{e}");
    let e = checkpoint::read_state_dict(&dir.path().join("absent.pt")).unwrap_err();
    assert!(matches!(e, CheckpointError::Io { .. }), "{e}");
}

#[test]
fn code_in_a_pickle_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.pt");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("evil/data.pkl", opts).unwrap();
    // pickle.dumps({'w': os.system('ls')}) as written by protocol 2 (without executing it)
    zip.write_all(b"\x80\x02}q\x00X\x01\x00\x00\x00wcposix\nsystem\nX\x02\x00\x00\x00ls\x85Rs.")
        .unwrap();
    zip.finish().unwrap();
    let e = checkpoint::read_state_dict(&path).unwrap_err().to_string();
    assert!(e.contains("evil.pt") && e.contains("posix.system"), "{e}");
}

#[test]
fn strict_loading_names_missing_unexpected_and_misshapen_keys() {
    let path = fixture("sr2_pd3.pt");
    let mut sd = checkpoint::read_state_dict(&path).unwrap();
    let cfg = checkpoint::infer_config(&sd, &heads(3)).unwrap();
    sd.tensors.retain(|(k, _)| k != "tail.0.1.bias");
    sd.tensors.push((
        "extra.weight".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    for (k, t) in &mut sd.tensors {
        if k == "body.linear_encoding.bias" {
            *t = Tensor::zeros([5], (Kind::Float, Device::Cpu));
        }
    }
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _m = ipt_model::Ipt::new(&vs.root(), &cfg).unwrap();
    let e = checkpoint::copy_into(&vs, &sd, &path).unwrap_err();
    match &e {
        CheckpointError::Mismatch {
            missing,
            unexpected,
            wrong_shape,
            ..
        } => {
            assert_eq!(missing, &["tail.0.1.bias"]);
            assert_eq!(unexpected, &["extra.weight"]);
            assert_eq!(
                wrong_shape,
                &[("body.linear_encoding.bias".to_string(), vec![5], vec![27])]
            );
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("sr2_pd3.pt") && msg.contains("missing keys (1): tail.0.1.bias"),
        "{msg}"
    );
}

#[test]
fn safetensors_round_trip_keeps_weights_and_config() {
    let src = fixture("six_task.pt");
    let a = checkpoint::load(&src, Device::Cpu, &heads(2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("six.safetensors");
    checkpoint::save(&out, &a.vs, &a.config).unwrap();
    // The heads come from the metadata now: no override needed.
    let b = checkpoint::load(&out, Device::Cpu, &InferOptions::default()).unwrap();
    assert_eq!(a.config, b.config);
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    assert_eq!(va.len(), 141);
    for (k, t) in &va {
        assert_eq!(t.kind(), vb[k].kind(), "{k}");
        assert_eq!(t, &vb[k], "{k}");
    }
    let x = Tensor::rand([1, 3, 12, 12], (Kind::Float, Device::Cpu)) * 255.0;
    tch::no_grad(|| assert_eq!(a.model.forward(&x, 4, false), b.model.forward(&x, 4, false)));
    let e = checkpoint::save(&dir.path().join("x.pt"), &a.vs, &a.config).unwrap_err();
    assert!(e.to_string().contains("safetensors"), "{e}");
}

#[test]
fn config_inference_without_overrides_uses_twelve_heads() {
    // Official files do not record the head count; 12 is every official model's value, and
    // a config it cannot divide is refused with the reason.
    let sd = checkpoint::read_state_dict(&fixture("six_task.pt")).unwrap();
    let e = checkpoint::infer_config(&sd, &InferOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("num_heads 12"), "{e}");
}

#[test]
fn malformed_shapes_are_errors_not_panics() {
    let base = || checkpoint::read_state_dict(&fixture("six_task.pt")).unwrap();
    let with = |key: &str, t: Tensor| {
        let mut sd = base();
        for (k, v) in &mut sd.tensors {
            if k == key {
                *v = t.shallow_clone();
            }
        }
        checkpoint::infer_config(&sd, &heads(2)).map_err(|e| e.to_string())
    };
    let f = (Kind::Float, Device::Cpu);
    let e = with(
        "body.encoder.layers.0.linear1.weight",
        Tensor::zeros([64], f),
    )
    .unwrap_err();
    assert!(e.contains("linear1.weight"), "{e}");
    let e = with("head.0.0.weight", Tensor::zeros([0, 3, 3, 3], f)).unwrap_err();
    assert!(e.contains("head.0.0.weight"), "{e}");
    let e = with("tail.0.0.0.weight", Tensor::zeros([3], f)).unwrap_err();
    assert!(e.contains("tail.0.0.0.weight"), "{e}");
    let e = with("body.query_embed.weight", Tensor::zeros([6, 0], f)).unwrap_err();
    assert!(e.contains("query_embed"), "{e}");
    let e = with("tail.1.0.0.weight", Tensor::zeros([20, 4, 3, 3], f)).unwrap_err();
    assert!(e.contains("tail.1") && e.contains("match no scale"), "{e}");
    // An unknown extra layer index (gap) is refused too.
    let mut sd = base();
    sd.tensors
        .retain(|(k, _)| !k.starts_with("body.encoder.layers.0."));
    let e = checkpoint::infer_config(&sd, &heads(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("encoder layers"), "{e}");
    assert!(checkpoint::infer_config(&base(), &heads(2)).is_ok());
}
