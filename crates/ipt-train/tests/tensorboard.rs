//! TensorBoard event files of a real run, read back two ways and compared with `metrics.jsonl`:
//! by the Python `tensorboard` package's own reader (`EventAccumulator`, the code behind
//! `tensorboard --logdir`), installed by `cargo xtask test` (`IPT_TENSORBOARD_PYTHONPATH`), and
//! by decoding the records here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipt_train::config::{ExperimentConfig, Mode};
use ipt_train::tensorboard::{read_records, Event};
use ipt_train::{train, DataRoots, RunOptions};
use prost::Message;

const CONFIG: &str = r#"
name = "tb-test"
[model]
preset = "tiny"
[tasks]
names = ["sr2", "denoise30"]
[data]
images = 16
image_size = 96
workers = 1
[optim]
batch_size = 2
steps = 4
lr = 2e-4
[checkpoint]
every = 4
[validation]
every = 2
images = 2
save_images = 1
[runtime]
seed = 3
threads = 1
log_every = 1
"#;

/// `(step, value)` by tag.
type Series = BTreeMap<String, Vec<(u64, f64)>>;

/// `(step, width, height)` by tag.
type Images = BTreeMap<String, Vec<(u64, i64, i64)>>;

/// The scalars `metrics.jsonl` says the events must hold.
fn expected(run: &Path) -> Series {
    let mut out = Series::new();
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = v["step"].as_u64().unwrap();
        let mut put = |tag: String, x: f64| out.entry(tag).or_default().push((step, x));
        if v["kind"] == "train" {
            for k in ["loss", "l1", "contrastive", "lr", "patches_per_s"] {
                put(format!("train/{k}"), v[k].as_f64().unwrap());
            }
            for k in ["loss", "l1", "contrastive"] {
                for (task, x) in v[format!("{k}_by_task")].as_object().unwrap() {
                    put(format!("train/{k}_by_task/{task}"), x.as_f64().unwrap());
                }
            }
        } else {
            for (k, prefix) in [("psnr_y", "val/psnr_y"), ("ssim_y", "val/ssim_y")] {
                for (task, x) in v[k].as_object().unwrap() {
                    put(format!("{prefix}/{task}"), x.as_f64().unwrap());
                }
            }
        }
    }
    out
}

fn assert_same(got: &Series, want: &Series, reader: &str) {
    for (tag, w) in want {
        let g = got
            .get(tag)
            .unwrap_or_else(|| panic!("{reader}: no scalar {tag}"));
        assert_eq!(g.len(), w.len(), "{reader}: {tag}: {g:?} vs {w:?}");
        for ((gs, gv), (ws, wv)) in g.iter().zip(w) {
            assert_eq!(gs, ws, "{reader}: {tag}");
            // Event scalars are float32.
            assert_eq!(*gv as f32, *wv as f32, "{reader}: {tag} at step {gs}");
        }
    }
}

fn events_file(run: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// The Python reader's scalars and image sizes, or `None` when it is not installed.
fn python_reader(run: &Path) -> Option<(Series, Images)> {
    let Some(path) = std::env::var_os("IPT_TENSORBOARD_PYTHONPATH") else {
        assert!(
            std::env::var_os("IPT_REQUIRE_TENSORBOARD").is_none(),
            "IPT_REQUIRE_TENSORBOARD is set but IPT_TENSORBOARD_PYTHONPATH is not"
        );
        eprintln!(
            "note: the Python tensorboard reader is not installed (run through `cargo xtask test`); \
             only the records are checked here"
        );
        return None;
    };
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
ea.Reload()
tags = ea.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height] for e in ea.Images(t)] for t in tags["images"]},
}))
"#;
    let python = std::env::var("IPT_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script])
        .arg(run)
        .env("PYTHONPATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scalars = v["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, pts)| {
            let pts = pts
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            (t.clone(), pts)
        })
        .collect();
    let images = v["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, pts)| {
            let pts = pts
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_u64().unwrap(),
                        p[1].as_i64().unwrap(),
                        p[2].as_i64().unwrap(),
                    )
                })
                .collect();
            (t.clone(), pts)
        })
        .collect();
    Some((scalars, images))
}

#[test]
fn event_files_hold_the_run_log_and_the_validation_images() {
    tch::set_num_threads(1);
    let cfg = ExperimentConfig::from_toml_str(CONFIG, Path::new("tb.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        config_path: PathBuf::from("tb.toml"),
        run_dir: dir.path().to_path_buf(),
        mode: Mode::Pretrain,
        stop_after: None,
        verbose: false,
        roots: DataRoots::default(),
        stop: Default::default(),
        distributed: None,
    };
    train(&cfg, &opts).unwrap();
    let want = expected(dir.path());
    assert_eq!(want["train/loss"].len(), 4);
    assert_eq!(want["val/psnr_y/sr2"].len(), 3, "steps 0, 2, 4");

    // The records, decoded here.
    let bytes = std::fs::read(events_file(dir.path())).unwrap();
    let events: Vec<Event> = read_records(&bytes)
        .into_iter()
        .map(|r| Event::decode(r).unwrap())
        .collect();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let mut got = Series::new();
    let mut image_tags = Vec::new();
    for e in &events {
        for v in e.summary.iter().flat_map(|s| &s.value) {
            if let Some(x) = v.simple_value {
                got.entry(v.tag.clone())
                    .or_default()
                    .push((e.step as u64, x as f64));
            }
            if v.image.is_some() {
                image_tags.push((e.step as u64, v.tag.clone()));
            }
        }
    }
    assert_same(&got, &want, "records");
    assert!(
        image_tags.contains(&(4, "val/sr2/procedural-0/output".to_string())),
        "{image_tags:?}"
    );

    // TensorBoard's own reader.
    if let Some((scalars, images)) = python_reader(dir.path()) {
        assert_same(&scalars, &want, "tensorboard");
        // One sample per task and validation: input, output and target, at steps 0, 2, 4.
        let out = &images["val/sr2/procedural-0/output"];
        assert_eq!(out, &vec![(0, 96, 96), (2, 96, 96), (4, 96, 96)]);
        assert_eq!(images["val/sr2/procedural-0/input"][0], (0, 48, 48));
        assert_eq!(images["val/denoise30/procedural-0/target"][0], (0, 48, 48));
    }
}
