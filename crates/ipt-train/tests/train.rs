//! End-to-end training tests on the tiny model (CPU, a few steps each).

use std::path::{Path, PathBuf};

use ipt_degrade::Task;
use ipt_train::config::{ExperimentConfig, Mode};
use ipt_train::{train, DataRoots, RunOptions};

/// libtorch's RNG is process-global: runs in parallel test threads would draw from it in
/// interleaved order, so every test that trains holds this lock.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(text: &str) -> ExperimentConfig {
    ExperimentConfig::from_toml_str(text, Path::new("test.toml")).unwrap()
}

fn opts(run_dir: &Path, stop_after: Option<u64>) -> RunOptions {
    RunOptions {
        config_path: PathBuf::from("test.toml"),
        run_dir: run_dir.to_path_buf(),
        mode: Mode::Pretrain,
        stop_after,
        verbose: false,
        roots: DataRoots::default(),
        stop: Default::default(),
        distributed: None,
    }
}

const TINY: &str = r#"
name = "resume-test"
[model]
preset = "tiny"
[tasks]
names = ["sr2", "derain", "denoise30"]
[data]
images = 16
image_size = 96
workers = 2
[optim]
batch_size = 2
steps = 6
lr = 2e-4
[checkpoint]
every = 2
keep_last = 5
[validation]
every = 3
images = 1
[runtime]
seed = 11
threads = 1
log_every = 1
"#;

/// Delete the checkpoint of `step` of the run in `run`, as if the process had been killed before
/// writing it; returns the checkpoint folder.
fn lose_checkpoint(run: &Path, step: u64) -> PathBuf {
    let ck = run.join("checkpoints");
    for ext in ["json", "safetensors", "optim.safetensors"] {
        std::fs::remove_file(ck.join(format!("step-{step:08}.{ext}"))).unwrap();
    }
    ck
}

#[test]
fn interrupted_and_resumed_run_repeats_the_uninterrupted_loss_sequence() {
    let _guard = serial();
    tch::set_num_threads(1);
    let cfg = config(TINY);
    let full_dir = tempfile::tempdir().unwrap();
    let full = train(&cfg, &opts(full_dir.path(), None)).unwrap();
    assert_eq!(full.end_step, 6);
    let full_losses: Vec<f64> = full.losses.iter().map(|l| l.2).collect();
    assert_eq!(full_losses.len(), 6);
    assert!(full_losses.iter().all(|l| l.is_finite() && *l > 0.0));

    // Interrupted after step 3; the checkpoint of step 3 is then lost, as if the process had
    // been killed before writing it, so the resumed run starts again from step 2.
    let dir = tempfile::tempdir().unwrap();
    let first = train(&cfg, &opts(dir.path(), Some(3))).unwrap();
    assert_eq!(first.end_step, 3);
    lose_checkpoint(dir.path(), 3);
    let second = train(&cfg, &opts(dir.path(), None)).unwrap();
    assert_eq!(second.start_step, 2);
    assert_eq!(second.end_step, 6);
    let mut resumed: Vec<(u64, Task, f64)> = first.losses[..2].to_vec();
    resumed.extend(second.losses.iter().cloned());
    assert_eq!(resumed.len(), 6);
    for (a, b) in full.losses.iter().zip(&resumed) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1, "task of step {}", a.0);
        assert!(
            (a.2 - b.2).abs() <= 1e-6 * a.2.abs().max(1.0),
            "step {}: {} vs {}",
            a.0,
            a.2,
            b.2
        );
    }
    // Step 3 was run twice: before the "crash" and after resuming, with the same loss.
    assert!((first.losses[2].2 - second.losses[0].2).abs() <= 1e-6 * first.losses[2].2);

    // Outputs: metrics (no duplicated rows after the resume), plots, resolved config, weights.
    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let train_steps: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(train_steps, vec![1, 2, 3, 4, 5, 6]);
    for f in [
        "loss.png",
        "psnr.png",
        "config.toml",
        "checkpoints/step-00000006.safetensors",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    // The final weights equal the uninterrupted run's.
    let a = ipt_model::checkpoint::read_state_dict(
        &full_dir
            .path()
            .join("checkpoints/step-00000006.safetensors"),
    )
    .unwrap();
    let b = ipt_model::checkpoint::read_state_dict(
        &dir.path().join("checkpoints/step-00000006.safetensors"),
    )
    .unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for ((ka, ta), (kb, tb)) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(ka, kb);
        let d = (ta.to_kind(tch::Kind::Double) - tb.to_kind(tch::Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        assert!(d <= 1e-6, "{ka}: max diff {d}");
    }
}

/// A run with the field's training options: warm-up then cosine, an EMA of the weights, the best
/// sr2 checkpoint kept.
const FIELD: &str = r#"
name = "field-test"
[model]
preset = "tiny"
[tasks]
names = ["sr2", "denoise30"]
[data]
images = 16
image_size = 96
workers = 2
[optim]
batch_size = 2
steps = 6
lr = 4e-4
schedule = "cosine"
min_lr = 1e-5
warmup_steps = 2
ema_decay = 0.9
[checkpoint]
every = 2
keep_last = 5
keep_best = "sr2"
[validation]
every = 1
images = 1
[runtime]
seed = 5
threads = 1
log_every = 1
"#;

fn tensors(file: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t = tch::Tensor::read_safetensors(file).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn assert_bit_identical(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len(), "{} vs {}", a.display(), b.display());
    for ((ka, xa), (kb, xb)) in ta.iter().zip(&tb) {
        assert_eq!(ka, kb);
        assert!(
            xa.equal(xb),
            "{ka} differs: {} vs {}",
            a.display(),
            b.display()
        );
    }
}

fn lrs(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["lr"].as_f64().unwrap())
        .collect()
}

#[test]
fn ema_cosine_and_best_checkpoint_resume_to_the_bit() {
    let _guard = serial();
    tch::set_num_threads(1);
    let cfg = config(FIELD);
    let full = tempfile::tempdir().unwrap();
    let summary = train(&cfg, &opts(full.path(), None)).unwrap();
    assert_eq!(summary.end_step, 6);

    // The schedule: warm-up 2e-4, 4e-4, then half a cosine over the 4 remaining steps.
    let want: Vec<f64> = (0..6u64)
        .map(|s| match s {
            0 | 1 => 4e-4 * (s + 1) as f64 / 2.0,
            _ => {
                let t = (s - 2) as f64 / 4.0;
                1e-5 + (4e-4 - 1e-5) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        })
        .collect();
    let got = lrs(full.path());
    assert_eq!(got.len(), 6);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w, "lr {got:?} vs {want:?}");
    }

    // The average is in the optimizer state and differs from the trained weights.
    let ck = full.path().join("checkpoints");
    let optim = tensors(&ck.join("step-00000006.optim.safetensors"));
    let weights: std::collections::HashMap<String, tch::Tensor> =
        tensors(&ck.join("step-00000006.safetensors"))
            .into_iter()
            .collect();
    let averaged: Vec<_> = optim
        .iter()
        .filter(|(k, _)| k.starts_with("ema."))
        .collect();
    assert!(!averaged.is_empty());
    assert!(
        averaged
            .iter()
            .any(|(k, a)| weights.get(&k["ema.".len()..]).is_some_and(|w| !w.equal(a))),
        "the average must differ from the weights after 6 steps"
    );
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("best.json")).unwrap()).unwrap();
    assert_eq!(best["task"], "sr2");
    assert_eq!(best["averaged"], true);
    let best_file = ck.join(best["weights"].as_str().unwrap());
    assert!(best_file.is_file());
    assert!(summary.best_checkpoint.is_some());
    // The restored validation images (BasicSR's save_img): one per task and validation here.
    for task in ["sr2", "denoise30"] {
        let png = full
            .path()
            .join(format!("validation/step-00000006/{task}/procedural-0.png"));
        let img = ipt_degrade::io::read_image(&png).unwrap();
        let side = if task == "sr2" { 96 } else { 48 };
        assert_eq!(img.dim(), (3, side, side), "{}", png.display());
    }

    // Interrupted after step 3 and its checkpoint lost: resumed from step 2.
    let dir = tempfile::tempdir().unwrap();
    train(&cfg, &opts(dir.path(), Some(3))).unwrap();
    let ck2 = lose_checkpoint(dir.path(), 3);
    let second = train(&cfg, &opts(dir.path(), None)).unwrap();
    assert_eq!((second.start_step, second.end_step), (2, 6));
    assert_bit_identical(
        &ck.join("step-00000006.safetensors"),
        &ck2.join("step-00000006.safetensors"),
    );
    assert_bit_identical(
        &ck.join("step-00000006.optim.safetensors"),
        &ck2.join("step-00000006.optim.safetensors"),
    );
    let best2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck2.join("best.json")).unwrap()).unwrap();
    assert_eq!(best, best2);
    assert_bit_identical(&best_file, &ck2.join(best2["weights"].as_str().unwrap()));
    assert_eq!(lrs(dir.path()), got);
}

fn write_good_images(dir: &Path, n: usize) {
    let g = ipt_train::data::ProceduralImages::new(5, 64, 72);
    for i in 0..n {
        ipt_degrade::io::write_png(&dir.join(format!("good{i}.png")), &g.image(i as u64)).unwrap();
    }
}

#[test]
fn corrupt_files_are_skipped_and_counted() {
    let _guard = serial();
    let data = tempfile::tempdir().unwrap();
    write_good_images(data.path(), 6);
    // A truncated JPEG.
    let mut jpeg = Vec::new();
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
    });
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    std::fs::write(data.path().join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    // A text file with an image name.
    std::fs::write(data.path().join("x.jpg"), b"this is not an image\n").unwrap();

    let cfg = config(&format!(
        r#"
[model]
preset = "tiny"
[tasks]
names = ["denoise30"]
[data]
source = "folder"
path = "{}"
[optim]
batch_size = 2
steps = 4
[validation]
every = 0
[runtime]
threads = 1
"#,
        data.path().display()
    ));
    let run = tempfile::tempdir().unwrap();
    let s = train(&cfg, &opts(run.path(), None)).unwrap();
    assert_eq!(s.end_step, 4);
    assert_eq!(s.bad_files, 2);
    assert!(s.losses.iter().all(|l| l.2.is_finite()));
}

#[test]
fn too_many_bad_files_stop_the_run() {
    let _guard = serial();
    let data = tempfile::tempdir().unwrap();
    write_good_images(data.path(), 2);
    for i in 0..4 {
        std::fs::write(data.path().join(format!("bad{i}.png")), b"nope").unwrap();
    }
    let cfg = config(&format!(
        r#"
[model]
preset = "tiny"
[tasks]
names = ["denoise30"]
[data]
source = "folder"
path = "{}"
bad_file_grace = 1
max_bad_fraction = 0.2
workers = 1
[optim]
batch_size = 2
steps = 3
[validation]
every = 0
"#,
        data.path().display()
    ));
    let run = tempfile::tempdir().unwrap();
    let err = train(&cfg, &opts(run.path(), None)).unwrap_err();
    assert!(err.to_string().contains("could not be decoded"), "{err}");
}

#[test]
fn missing_data_folder_fails_before_building_the_model() {
    let cfg = config("[data]\nsource = \"folder\"\npath = \"/nonexistent/imagenet/train\"\n");
    let run = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let err = train(&cfg, &opts(run.path(), None)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/imagenet/train") && msg.contains("data.path"),
        "{msg}"
    );
    // The base model (119 M parameters) was not built.
    assert!(t.elapsed().as_secs_f64() < 2.0);
}

#[test]
fn every_config_in_the_repository_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let cfg = ExperimentConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
            if cfg.finetune.is_none() {
                cfg.network(&p).unwrap_or_else(|e| panic!("{e}"));
            }
            n += 1;
        }
    }
    assert!(
        n >= 8,
        "expected demo, imagenet and six fine-tune configs, found {n}"
    );
}

#[test]
fn validation_tiles_images_larger_than_the_patch() {
    let _guard = serial();
    let tasks = [Task::Sr2, Task::Denoise30];
    let cfg = ipt_model::IptConfig::tiny(&[2, 1]);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = ipt_model::Ipt::new(&vs.root(), &cfg).unwrap();
    // LR 60×60 > 48 and LR 48×48: both whole-image restored, finite PSNRs in a sane range.
    for size in [48, 60] {
        let set = ipt_train::validation::ValidationSet::embedded(1, &tasks, 2, size).unwrap();
        assert_eq!(set.tasks[0].pairs[0].input.dim(), (3, size, size));
        assert_eq!(set.tasks[0].pairs[0].target.dim(), (3, 2 * size, 2 * size));
        let res = set.evaluate(&model, tch::Device::Cpu).unwrap();
        assert_eq!(res.len(), 2);
        for s in res {
            assert!(
                s.psnr_y.is_finite() && (3.0..60.0).contains(&s.psnr_y),
                "{} at LR {size}: {}",
                s.task,
                s.psnr_y
            );
        }
    }
}

/// TINY with checkpoints every 2 steps, run to `stop` in `dir`.
fn tiny_until(
    dir: &Path,
    stop: Option<u64>,
) -> Result<ipt_train::RunSummary, ipt_train::TrainError> {
    train(&config(TINY), &opts(dir, stop))
}

#[test]
fn truncated_latest_checkpoint_falls_back_to_the_previous_one_and_is_kept() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    tiny_until(dir.path(), Some(4)).unwrap();
    let ck = dir.path().join("checkpoints");
    let w4 = ck.join("step-00000004.safetensors");
    let bytes = std::fs::read(&w4).unwrap();
    std::fs::write(&w4, &bytes[..bytes.len() / 2]).unwrap();
    let s = tiny_until(dir.path(), None).unwrap();
    assert_eq!(
        s.start_step, 2,
        "resumed from the previous complete checkpoint"
    );
    assert_eq!(s.end_step, 6);
    assert_eq!(
        s.skipped_checkpoints.len(),
        1,
        "{:?}",
        s.skipped_checkpoints
    );
    assert!(
        s.skipped_checkpoints[0].contains("step 4"),
        "{:?}",
        s.skipped_checkpoints
    );
    // The corrupt files are kept, set aside; the new step-4 checkpoint is a complete one.
    assert!(ck.join("step-00000004.safetensors.corrupt").is_file());
    assert!(ck.join("step-00000004.json.corrupt").is_file());
    assert!(ck.join("step-00000004.json").is_file());
}

#[test]
fn damaged_weights_and_optimizer_files_are_set_aside_by_checksum_and_value() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    tiny_until(dir.path(), Some(6)).unwrap();
    let ck = dir.path().join("checkpoints");
    // step 6: one flipped byte in the weights (a readable file of the right size and shape);
    // step 4: the optimizer state turned to NaN by another tool (no checksum to catch it).
    let w6 = ck.join("step-00000006.safetensors");
    let mut bytes = std::fs::read(&w6).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x01;
    std::fs::write(&w6, &bytes).unwrap();
    let o4 = ck.join("step-00000004.optim.safetensors");
    let nan: Vec<(String, tch::Tensor)> = tensors(&o4)
        .into_iter()
        .map(|(k, t)| {
            let t = if t.is_floating_point() {
                t.fill(f64::NAN)
            } else {
                t
            };
            (k, t)
        })
        .collect();
    tch::Tensor::write_safetensors(&nan, &o4).unwrap();
    let s = tiny_until(dir.path(), None).unwrap();
    assert_eq!(s.start_step, 2, "both damaged checkpoints were passed over");
    let why = s.skipped_checkpoints.join(" | ");
    assert_eq!(s.skipped_checkpoints.len(), 2, "{why}");
    assert!(
        s.skipped_checkpoints[0].contains("step 6")
            && s.skipped_checkpoints[0].contains("checksum"),
        "{why}"
    );
    assert!(
        s.skipped_checkpoints[1].contains("step 4")
            && s.skipped_checkpoints[1].contains("non-finite"),
        "{why}"
    );
    assert!(ck.join("step-00000006.safetensors.corrupt").is_file());
    assert!(ck.join("step-00000004.optim.safetensors.corrupt").is_file());
}

#[test]
fn a_stop_request_ends_the_run_after_the_current_step_with_a_checkpoint() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), None);
    o.stop.request();
    let err = train(&config(TINY), &o).unwrap_err();
    match &err {
        ipt_train::TrainError::Interrupted { step, checkpoint } => {
            assert_eq!(*step, 1);
            assert!(checkpoint.is_file(), "{}", checkpoint.display());
        }
        other => panic!("expected Interrupted, got {other}"),
    }
    assert!(err.to_string().contains("resume"), "{err}");
    let s = tiny_until(dir.path(), None).unwrap();
    assert_eq!((s.start_step, s.end_step), (1, 6));
}

#[test]
fn stop_after_at_or_below_the_current_step_is_an_error() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    tiny_until(dir.path(), Some(4)).unwrap();
    for stop in [2, 4] {
        let err = tiny_until(dir.path(), Some(stop)).unwrap_err();
        assert!(
            matches!(err, ipt_train::TrainError::NothingToDo { step: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("already at step 4"), "{err}");
    }
}

#[test]
fn a_deleted_config_toml_does_not_disable_the_experiment_check() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    tiny_until(dir.path(), Some(2)).unwrap();
    std::fs::remove_file(dir.path().join("config.toml")).unwrap();
    let other = config(&TINY.replace("seed = 11", "seed = 12"));
    let err = train(&other, &opts(dir.path(), None)).unwrap_err();
    assert!(
        err.to_string().contains("runtime.seed"),
        "the checkpoint's own config is compared: {err}"
    );
}

#[test]
fn a_second_run_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let held = ipt_train::run_dir::RunDir::open(dir.path()).unwrap();
    let err = tiny_until(dir.path(), Some(1)).unwrap_err();
    assert!(
        err.to_string().contains(&std::process::id().to_string()),
        "names the holder: {err}"
    );
    drop(held);
}
