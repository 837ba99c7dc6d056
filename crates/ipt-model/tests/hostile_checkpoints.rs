//! Hostile checkpoint files: each is refused with a typed error naming the file, without
//! crashing the process, overflowing the stack or exhausting memory.

use std::io::Write;
use std::path::Path;

use ipt_model::checkpoint::{self, InferError, InferOptions, PickleError};
use ipt_model::{CheckpointError, Ipt, IptConfig};
use tch::{nn, Device};

/// Pickle opcodes for a short UTF-8 string.
fn pstr(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// Pickle opcodes for a tuple of ints.
fn pints(xs: &[u32]) -> Vec<u8> {
    let mut out = vec![b'('];
    for &x in xs {
        out.push(b'J');
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.push(b't');
    out
}

/// The pickle `torch.save({'w': t})` writes for a float tensor `t` viewing storage `0` with
/// the given size and stride.
fn state_dict_pickle(size: &[u32], stride: &[u32]) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(pstr("w"));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    p.extend(pstr("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(pstr("0"));
    p.extend(pstr("cpu"));
    p.extend_from_slice(b"K\x01tQ"); // numel, TUPLE, BINPERSID
    p.extend_from_slice(b"K\x00"); // storage offset
    p.extend(pints(size));
    p.extend(pints(stride));
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)Rt"); // requires_grad, hooks
    p.extend_from_slice(b"Ru.");
    p
}

/// A `torch.save`-style zip: `archive/data.pkl`, `archive/byteorder` and the given storages,
/// each entry stored or deflated.
fn write_pt(path: &Path, pickle: &[u8], storages: &[(&str, &[u8])], deflate: bool) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::FileOptions::default().compression_method(method);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/byteorder", opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn a_million_nested_lists_in_data_pkl_are_refused_by_name() {
    // The probe that overflowed the stack of `ipt info` and `ipt restore`: a 2 MB data.pkl.
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', 1_000_000));
    p.extend(std::iter::repeat_n(b'a', 999_999));
    p.push(b'.');
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.pt");
    write_pt(&path, &p, &[], false);
    let e = checkpoint::read_state_dict(&path).unwrap_err();
    assert!(
        matches!(
            &e,
            CheckpointError::Pickle { path: p, entry, source: PickleError::TooDeep { .. } }
                if p == &path && entry == "archive/data.pkl"
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("deep.pt") && msg.contains("levels deep"),
        "{msg}"
    );
    // The same from memory.
    let bytes = std::fs::read(&path).unwrap();
    let e = checkpoint::read_state_dict_bytes(&bytes, Path::new("mem.pt")).unwrap_err();
    assert!(e.to_string().contains("mem.pt"), "{e}");
}

#[test]
fn views_that_repeat_their_storage_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let one_float = 1.5f32.to_le_bytes();
    // A regular view loads: this is the file format the bomb below uses.
    let ok = dir.path().join("ok.pt");
    write_pt(
        &ok,
        &state_dict_pickle(&[1], &[1]),
        &[("0", &one_float)],
        false,
    );
    let sd = checkpoint::read_state_dict(&ok).unwrap();
    assert_eq!(sd.tensors.len(), 1);
    assert_eq!(sd.tensors[0].1.size(), [1]);
    assert_eq!(sd.tensors[0].1.double_value(&[0]), 1.5);
    // 100000 × 100000 zero-stride view of one float: 40 GB once made contiguous.
    let bomb = dir.path().join("strided.pt");
    write_pt(
        &bomb,
        &state_dict_pickle(&[100_000, 100_000], &[0, 0]),
        &[("0", &one_float)],
        false,
    );
    let msg = checkpoint::read_state_dict(&bomb).unwrap_err().to_string();
    assert!(
        msg.contains("strided.pt") && msg.contains("overlapping strides"),
        "{msg}"
    );
}

#[test]
fn a_storage_that_inflates_far_beyond_the_file_is_refused() {
    // 64 MiB of zeros deflate to about 64 KiB: a legitimate-looking float tensor of 16 Mi
    // elements in a file a thousand times smaller.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inflating.pt");
    let n = 16u32 << 20;
    let zeros = vec![0u8; 64 << 20];
    write_pt(
        &path,
        &state_dict_pickle(&[n], &[1]),
        &[("0", &zeros)],
        true,
    );
    drop(zeros);
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let msg = checkpoint::read_state_dict(&path).unwrap_err().to_string();
    assert!(
        msg.contains("inflating.pt") && msg.contains("archive/data/0") && msg.contains("memory"),
        "{msg}"
    );
    // Deflated entries as such are fine.
    let small = dir.path().join("small_deflated.pt");
    write_pt(
        &small,
        &state_dict_pickle(&[4], &[1]),
        &[("0", &[0u8; 16])],
        true,
    );
    assert_eq!(
        checkpoint::read_state_dict(&small).unwrap().tensors[0]
            .1
            .size(),
        [4]
    );
}

/// A safetensors file with its header's `ipt_config` metadata edited (the tensors' checksum
/// does not cover the metadata, so it still holds).
fn with_metadata(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    with_header(src, dst, |header| {
        let meta = header["__metadata__"]["ipt_config"].as_str().unwrap();
        let mut config: serde_json::Value = serde_json::from_str(meta).unwrap();
        edit(&mut config);
        header["__metadata__"]["ipt_config"] = serde_json::Value::String(config.to_string());
    });
}

#[test]
fn metadata_claiming_a_larger_network_than_the_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("tiny.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = IptConfig::tiny(&[2]);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(&good, &vs, &cfg).unwrap();
    assert_eq!(
        checkpoint::load(&good, Device::Cpu, &InferOptions::default())
            .unwrap()
            .config,
        cfg
    );

    // A network of 2^40 feed-forward weights if it were built from the metadata.
    let lying = dir.path().join("lying.safetensors");
    with_metadata(&good, &lying, |c| {
        c["n_feats"] = 65536.into();
        c["num_layers"] = 64.into();
    });
    match checkpoint::load(&lying, Device::Cpu, &InferOptions::default()) {
        Err(
            e @ CheckpointError::Config {
                source: InferError::MetadataMismatch(_),
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("lying.safetensors")
                    && msg.contains("n_feats is 65536 in the metadata but 8 in the tensors")
                    && msg.contains("num_layers is 64"),
                "{msg}"
            );
        }
        other => panic!("expected a metadata mismatch, got {other:?}"),
    }

    // Sizes that overflow are an invalid config, not a panic.
    let huge = dir.path().join("huge.safetensors");
    with_metadata(&good, &huge, |c| c["n_feats"] = u64::MAX.into());
    let msg = checkpoint::load(&huge, Device::Cpu, &InferOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("huge.safetensors") && msg.contains("beyond what can be stored"),
        "{msg}"
    );
}

/// A safetensors file with its header edited (JSON value) and the data kept.
fn with_header(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut head = serde_json::to_vec(&header).unwrap();
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend(head);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

/// A tiny one-task model saved by `checkpoint::save` in `dir`.
fn saved_tiny(dir: &Path) -> std::path::PathBuf {
    let good = dir.join("tiny.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = IptConfig::tiny(&[2]);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(&good, &vs, &cfg).unwrap();
    good
}

#[test]
fn a_flipped_byte_in_the_weights_fails_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let good = saved_tiny(dir.path());
    let sd = checkpoint::read_state_dict(&good).unwrap();
    assert_eq!(
        sd.metadata.get(checkpoint::CHECKSUM_KEY).map(String::len),
        Some(8),
        "save records a checksum"
    );
    let mut bytes = std::fs::read(&good).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    let bad = dir.path().join("flipped.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let e = checkpoint::load(&bad, Device::Cpu, &InferOptions::default()).unwrap_err();
    assert!(matches!(e, CheckpointError::Checksum { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("flipped.safetensors") && msg.contains("checksum") && msg.contains("damaged"),
        "{msg}"
    );
}

#[test]
fn an_integer_tensor_where_a_weight_belongs_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = saved_tiny(dir.path());
    // Another tool's file: no checksum, one float32 weight relabelled int32 (same byte size),
    // which libtorch would happily cast into saturated weights.
    let bad = dir.path().join("i32.safetensors");
    let key = "head.0.0.weight";
    with_header(&good, &bad, |h| {
        h["__metadata__"]
            .as_object_mut()
            .unwrap()
            .remove(checkpoint::CHECKSUM_KEY);
        h[key]["dtype"] = "I32".into();
    });
    let e = checkpoint::load(&bad, Device::Cpu, &InferOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, CheckpointError::WrongKind { tensor, .. } if tensor == key),
        "{e:?}"
    );
    assert!(
        msg.contains("i32.safetensors") && msg.contains("int32") && msg.contains("floating-point"),
        "{msg}"
    );
    // With the checksum kept, the relabelled type is caught before anything is built.
    let bad2 = dir.path().join("i32-sum.safetensors");
    with_header(&good, &bad2, |h| h[key]["dtype"] = "I32".into());
    let e = checkpoint::read_state_dict(&bad2).unwrap_err();
    assert!(matches!(e, CheckpointError::Checksum { .. }), "{e:?}");
}

#[test]
fn non_finite_weights_are_neither_read_nor_written() {
    let dir = tempfile::tempdir().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = IptConfig::tiny(&[2]);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    let key = "tail.0.1.weight";
    tch::no_grad(|| {
        let vars = vs.variables();
        let _ = vars[key].get(0).get(0).fill_(f64::NAN);
    });
    let path = dir.path().join("nan.safetensors");
    let e = checkpoint::save(&path, &vs, &cfg).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::NonFinite { tensor, .. } if tensor == key),
        "{e:?}"
    );
    assert!(!path.exists(), "nothing is written");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );

    // The same weights written by another tool (no checksum) are refused when read.
    let tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    tch::Tensor::write_safetensors(&tensors, &path).unwrap();
    let e = checkpoint::load(&path, Device::Cpu, &InferOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("nan.safetensors") && msg.contains(key) && msg.contains("non-finite"),
        "{msg}"
    );

    // And in a `.pt` file: one float storage holding an infinity.
    let pt = dir.path().join("inf.pt");
    let mut storage = Vec::new();
    for v in [1.0f32, f32::INFINITY] {
        storage.extend_from_slice(&v.to_le_bytes());
    }
    let mut pickle = state_dict_pickle(&[2], &[1]);
    // the storage holds 2 values (the helper's numel byte is 1)
    let numel = pickle.windows(3).position(|w| w == b"K\x01t").unwrap();
    pickle[numel + 1] = 2;
    write_pt(&pt, &pickle, &[("0", &storage)], false);
    let e = checkpoint::read_state_dict(&pt).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::NonFinite { tensor, count: 1, numel: 2, .. } if tensor == "w"),
        "{e:?}"
    );
}

#[test]
fn a_tensor_whose_shape_does_not_fit_its_bytes_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = saved_tiny(dir.path());
    let bad = dir.path().join("shape.safetensors");
    let key = "head.0.0.weight";
    with_header(&good, &bad, |h| {
        let mut shape = h[key]["shape"].clone();
        shape[0] = (shape[0].as_u64().unwrap() * 2).into();
        h[key]["shape"] = shape;
    });
    let msg = checkpoint::read_state_dict(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("shape.safetensors") && msg.contains(key) && msg.contains("needs"),
        "{msg}"
    );
    assert!(!msg.contains("TensorInvalidInfo"), "{msg}");
    // Truncated: said in words.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let msg = checkpoint::read_state_dict(&cut).unwrap_err().to_string();
    assert!(
        msg.contains("cut.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}
