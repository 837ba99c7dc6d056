//! The `torch.save` writer against files written by real PyTorch (`tests/fixtures`, made by
//! `make_fixtures.py` with torch 2.11.0): the same pickle bytes up to PyTorch's `_metadata`
//! attribute, the same records, 64-byte aligned storages, and a lossless round trip.

use std::io::Read;
use std::path::{Path, PathBuf};

use ipt_model::checkpoint::{self, pytorch, InferOptions};
use tch::Device;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every record of a zip: name, the offset of its data, its bytes.
fn records(path: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            assert_eq!(
                f.compression(),
                zip::CompressionMethod::Stored,
                "{}",
                f.name()
            );
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().to_string(), f.data_start(), bytes)
        })
        .collect()
}

/// The record names without the archive's folder.
fn short(name: &str) -> &str {
    name.split_once('/').map_or(name, |(_, rest)| rest)
}

#[test]
fn written_state_dicts_match_torch_save() {
    for name in ["dn_no_norm", "six_task", "sr2_pd3"] {
        let original = fixture(&format!("{name}.pt"));
        let sd = checkpoint::read_state_dict(&original).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join(format!("{name}.pt"));
        pytorch::write_pt(&written, &sd.tensors).unwrap();

        let theirs = records(&original);
        let ours = records(&written);
        // the pickle: PyTorch's bytes, except that PyTorch then adds `_metadata` (BUILD) before
        // STOP where ours stops at once
        let pkl = |r: &[(String, u64, Vec<u8>)]| {
            r.iter()
                .find(|(n, _, _)| short(n) == "data.pkl")
                .unwrap()
                .2
                .clone()
        };
        let (ours_pkl, theirs_pkl) = (pkl(&ours), pkl(&theirs));
        let body = &ours_pkl[..ours_pkl.len() - 1];
        assert_eq!(ours_pkl.last(), Some(&b'.'));
        assert!(
            theirs_pkl.starts_with(body),
            "{name}: pickles differ from byte {}",
            body.iter()
                .zip(&theirs_pkl)
                .position(|(a, b)| a != b)
                .unwrap_or(body.len())
        );
        // the same records in the same order (PyTorch adds a random serialization id), the
        // same storages, each 64-byte aligned
        let names = |r: &[(String, u64, Vec<u8>)]| -> Vec<String> {
            r.iter()
                .map(|(n, _, _)| short(n).to_string())
                .filter(|n| n != ".data/serialization_id")
                .collect()
        };
        assert_eq!(names(&ours), names(&theirs), "{name}");
        for ((n, offset, bytes), (_, _, want)) in ours.iter().zip(&theirs) {
            assert_eq!(offset % 64, 0, "{n} is not 64-byte aligned");
            if short(n) != "data.pkl" {
                assert_eq!(bytes, want, "{n}");
            }
        }
        // and it reads back as the same tensors, in the same order
        let back = checkpoint::read_state_dict(&written).unwrap();
        assert_eq!(back.tensors.len(), sd.tensors.len());
        for ((k1, t1), (k2, t2)) in back.tensors.iter().zip(&sd.tensors) {
            assert_eq!(k1, k2);
            assert_eq!(t1, t2, "{k1}");
        }
    }
}

#[test]
fn export_writes_the_official_layout_of_an_ipt_rs_model() {
    let cfg = ipt_model::IptConfig::tiny(&[2, 1]);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _model = ipt_model::Ipt::new(&vs.root(), &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("tiny.pt");
    checkpoint::export_pt(&pt, &vs).unwrap();
    let opts = InferOptions {
        num_heads: Some(cfg.num_heads),
        ..Default::default()
    };
    let loaded = checkpoint::load(&pt, Device::Cpu, &opts).unwrap();
    assert_eq!(loaded.config.scales, cfg.scales);
    assert_eq!(loaded.config.n_feats, cfg.n_feats);
    let sd = checkpoint::read_state_dict(&pt).unwrap();
    assert!(
        sd.tensors
            .iter()
            .any(|(k, _)| k == "body.position_encoding.position_ids"),
        "the position_ids buffer is in the file, as in the official checkpoints"
    );
    assert!(checkpoint::export_pt(&dir.path().join("x/y.pt"), &vs).is_err());
}

#[test]
fn a_missing_tensor_is_named() {
    let opts = InferOptions {
        num_heads: Some(2),
        ..Default::default()
    };
    let loaded = checkpoint::load(&fixture("six_task.pt"), Device::Cpu, &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.safetensors");
    checkpoint::save(&full, &loaded.vs, &loaded.config).unwrap();
    let sd = checkpoint::read_state_dict(&full).unwrap();
    for drop in [
        "head.1.1.body.0.weight",
        "tail.2.1.weight",
        "tail.0.0.0.weight",
        "tail.5.1.bias",
        "body.encoder.layers.1.linear1.weight",
        "body.query_embed.weight",
    ] {
        let kept: Vec<_> = sd
            .tensors
            .iter()
            .filter(|(k, _)| k != drop)
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        assert_eq!(kept.len() + 1, sd.tensors.len(), "{drop} is in the file");
        // without a recorded config (.pt) and with one (safetensors written by ipt-rs)
        let pt = dir.path().join("missing.pt");
        pytorch::write_pt(&pt, &kept).unwrap();
        let st = dir.path().join("missing.safetensors");
        checkpoint::safetensors_file::write_safetensors(&st, &kept, sd.metadata.clone()).unwrap();
        for path in [&pt, &st] {
            let err = checkpoint::load(path, Device::Cpu, &opts)
                .unwrap_err()
                .to_string();
            assert!(err.contains(drop), "{}: {err}", path.display());
        }
    }
    // a whole head and tail gone from a file whose recorded config has them
    let kept: Vec<_> = sd
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("tail.5.") && !k.starts_with("head.5."))
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    let st = dir.path().join("five.safetensors");
    checkpoint::safetensors_file::write_safetensors(&st, &kept, sd.metadata.clone()).unwrap();
    let err = checkpoint::load(&st, Device::Cpu, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("head.5.*, tail.5.*"), "{err}");
}
