//! `ipt info` and `ipt convert` on a checkpoint written by PyTorch (the six-task fixture of
//! ipt-model): the converted file carries the config and holds identical tensors.

use std::path::PathBuf;
use std::process::Command;

use ipt_model::checkpoint;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ipt-model/tests/fixtures")
        .join(name)
}

fn ipt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn convert_then_info_round_trip() {
    let pt = fixture("six_task.pt");
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("six.safetensors");
    let (pt_s, st_s) = (pt.to_str().unwrap(), st.to_str().unwrap());

    // Without the head count the 12-head default cannot divide d = 16: a clear refusal.
    let (ok, _, err) = ipt(&["info", pt_s]);
    assert!(!ok && err.contains("num_heads 12"), "{err}");

    let (ok, out, err) = ipt(&["info", pt_s, "--num-heads", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("inferred from tensor shapes"), "{out}");
    assert!(
        out.contains("0: scale 2, sr2") && out.contains("5: scale 1, denoise50"),
        "{out}"
    );
    assert!(out.contains("tensors: 141, parameters: 35574"), "{out}");
    assert!(out.contains("trainable: 35550"), "{out}");

    let (ok, out, err) = ipt(&["convert", pt_s, st_s, "--num-heads", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("6 tasks"), "{out}");

    let (ok, out, err) = ipt(&["info", st_s, "--keys"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("from metadata") && out.contains("\"num_heads\": 2"),
        "{out}"
    );
    assert!(
        out.contains("body.position_encoding.position_ids [1, 36] Int64"),
        "{out}"
    );

    // and back to the official PyTorch layout, with the official code's flags and what
    // spandrel would make of it
    let back = dir.path().join("back.pt");
    let (ok, out, err) = ipt(&["convert", st_s, back.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("--scale 2+3+4+1+1+1 --n_feats 4 --patch_size 12 --patch_dim 2 --num_heads 2"),
        "{out}"
    );
    assert!(out.contains("spandrel assumes 12 attention heads"), "{out}");
    let (ok, _, err) = ipt(&["convert", st_s, dir.path().join("x.onnx").to_str().unwrap()]);
    assert!(!ok && err.contains(".pt/.pth"), "{err}");

    let a = checkpoint::read_state_dict(&pt).unwrap();
    for other in [&st, &back] {
        let b = checkpoint::read_state_dict(other).unwrap();
        assert_eq!(a.tensors.len(), b.tensors.len());
        for (k, t) in &a.tensors {
            let u = &b.tensors.iter().find(|(n, _)| n == k).unwrap().1;
            assert_eq!(t, u, "{k}");
        }
    }
}

#[test]
fn convert_records_tasks_and_refuses_bad_ones() {
    let pt = fixture("dn_no_norm.pt");
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("dn.safetensors");
    let (pt_s, st_s) = (pt.to_str().unwrap(), st.to_str().unwrap());
    let (ok, _, err) = ipt(&["convert", pt_s, st_s, "--num-heads", "2", "--tasks", "sr2"]);
    assert!(!ok && err.contains("tasks"), "{err}");
    let (ok, _, err) = ipt(&[
        "convert",
        pt_s,
        st_s,
        "--num-heads",
        "2",
        "--tasks",
        "denoise50",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = ipt(&["info", st_s]);
    assert!(ok, "{err}");
    assert!(out.contains("0: scale 1, denoise50"), "{out}");
    let bad = dir.path().join("out.bin");
    let (ok, _, err) = ipt(&["convert", pt_s, bad.to_str().unwrap(), "--num-heads", "2"]);
    assert!(!ok && err.contains(".safetensors"), "{err}");
    assert!(!bad.exists());
}
