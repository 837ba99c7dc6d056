//! Hostile inputs through the `ipt` binary, one probe per root cause of the reliability review
//! (docs/reliability.md): each ends in a clear error that names what is wrong, with a non-zero
//! status, never a hang, an abort, a backtrace or a black image.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ipt_model::{checkpoint, Ipt, IptConfig};
use tch::{nn, Device};

fn ipt_in(dir: &Path, shell_prefix: &str, args: &[&str]) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    Command::new("sh")
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .arg("-c")
        .arg(format!(
            "{shell_prefix} exec '{}' {}",
            env!("CARGO_BIN_EXE_ipt"),
            quoted.join(" ")
        ))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Failed with status 1 and a message in words: no backtrace, no Rust debug output.
fn assert_clear_failure(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    for n in needles {
        assert!(e.contains(n), "{n:?} missing from:\n{e}");
    }
    for bad in ["Stack backtrace", "panicked", "Os {", "IoError("] {
        assert!(!e.contains(bad), "{bad:?} in:\n{e}");
    }
}

fn tiny(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("m.safetensors");
    let cfg = IptConfig::tiny(&[2]);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(&path, &vs, &cfg).unwrap();
    path
}

fn small_png(path: &Path) {
    let img = ndarray::Array3::from_shape_fn((3, 20, 30), |(c, y, x)| ((x + y + c) * 5) as f32);
    ipt_degrade::io::write_png(path, &img).unwrap();
}

#[test]
fn weights_with_nan_are_refused_by_tensor_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(dir.path());
    // the same weights with one NaN, written by another tool (no checksum)
    let mut sd = checkpoint::read_state_dict(&good).unwrap();
    for (k, t) in &mut sd.tensors {
        if k == "body.encoder.layers.0.linear1.weight" {
            *t = t.fill(f64::NAN);
        }
    }
    tch::Tensor::write_safetensors(&sd.tensors, dir.path().join("nan.safetensors")).unwrap();
    small_png(&dir.path().join("a.png"));
    for args in [
        &[
            "restore",
            "--weights",
            "nan.safetensors",
            "a.png",
            "--out",
            "o",
        ][..],
        &["info", "nan.safetensors"][..],
        &["convert", "nan.safetensors", "c.safetensors"][..],
    ] {
        let o = ipt_in(dir.path(), "", args);
        assert_clear_failure(
            &o,
            &[
                "nan.safetensors",
                "body.encoder.layers.0.linear1.weight",
                "non-finite",
            ],
        );
    }
    assert!(!dir.path().join("o").exists() && !dir.path().join("c.safetensors").exists());
}

#[test]
fn a_named_pipe_is_refused_at_once_as_image_and_as_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny(dir.path());
    let fifo = dir.path().join("pipe.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    small_png(&dir.path().join("a.png"));
    let t0 = Instant::now();
    let o = ipt_in(
        dir.path(),
        "",
        &[
            "restore",
            "--weights",
            weights.to_str().unwrap(),
            "pipe.png",
            "a.png",
            "--out",
            "o",
        ],
    );
    assert_clear_failure(&o, &["pipe.png", "named pipe"]);
    assert!(
        dir.path().join("o/a.png").is_file(),
        "the good input is restored"
    );
    let o = ipt_in(dir.path(), "", &["info", "pipe.png"]);
    assert_clear_failure(&o, &["pipe.png", "named pipe"]);
    assert!(t0.elapsed() < Duration::from_secs(120), "no hang");
}

#[test]
fn an_image_beyond_the_address_space_limit_is_refused_before_decoding() {
    // A 16000×16000 grey PNG of ~250 KB; its f32 copy alone would be 3 GB. Under `ulimit -v`
    // of 3 GB the old check (MemAvailable only) let it through and the process aborted.
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny(dir.path());
    let (w, h) = (16000u32, 16000u32);
    let file = std::fs::File::create(dir.path().join("big.png")).unwrap();
    let zeros = vec![0u8; (w * h) as usize];
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(std::io::BufWriter::new(file)),
        &zeros,
        w,
        h,
        image::ExtendedColorType::L8,
    )
    .unwrap();
    drop(zeros);
    let o = ipt_in(
        dir.path(),
        "ulimit -v 3000000;",
        &[
            "restore",
            "--weights",
            weights.to_str().unwrap(),
            "big.png",
            "--out",
            "o",
        ],
    );
    assert_clear_failure(&o, &["big.png", "address-space limit", "--memory-limit"]);
    assert!(
        !stderr(&o).contains("big.png: big.png"),
        "the file is named once"
    );
}

#[test]
fn a_zero_noise_level_is_refused_instead_of_scoring_infinity() {
    let dir = tempfile::tempdir().unwrap();
    let o = ipt_in(
        dir.path(),
        "",
        &["bench-denoise", "--model", "identity", "--sigmas", "0"],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("--sigmas") && e.contains("1..=255"), "{e}");
}

#[test]
fn an_allocation_libtorch_cannot_make_is_a_memory_error_in_words() {
    // --memory-limit overrides the planning check, so the network itself runs out of address
    // space (an 1800×1800 input at ×2 under `ulimit -v` of 1.6 GB): libtorch's allocator fails
    // inside a convolution, which tch turns into a panic. It must end as an error that says
    // memory and names the knobs, with status 1, not a panic dump.
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny(dir.path());
    let (w, h) = (1800usize, 1800usize);
    let img =
        ndarray::Array3::from_shape_fn((3, h, w), |(c, y, x)| ((x * 7 + y * 3 + c) % 251) as f32);
    ipt_degrade::io::write_png(&dir.path().join("big.png"), &img).unwrap();
    drop(img);
    let o = ipt_in(
        dir.path(),
        "ulimit -v 1600000;",
        &[
            "restore",
            "-n",
            weights.to_str().unwrap(),
            "--memory-limit",
            "100",
            "--crop-batch",
            "4096",
            "big.png",
            "-o",
            "o",
        ],
    );
    assert_clear_failure(
        &o,
        &["not enough memory", "can't allocate memory", "--crop-batch"],
    );
    assert!(
        !stderr(&o).contains("frame #"),
        "no C++ stack frames:\n{}",
        stderr(&o)
    );
}
