//! End to end: `ipt restore` on a tiny random checkpoint that the test writes itself.

mod common;
use common::{ipt, s, text};

use std::path::{Path, PathBuf};

use ipt_degrade::io::{read_image, write_png};
use ipt_degrade::Image;
use ipt_degrade::Task;
use ipt_model::checkpoint::{self, InferOptions};
use ipt_model::chop::ChopMode;
use ipt_model::restore::{restore_image, RestoreOptions};
use ipt_model::{Ipt, IptConfig};
use ndarray::Array3;
use tch::{nn, Device};

/// A deterministic test picture with values on 0..255 (integers, as a PNG holds them).
fn picture(h: usize, w: usize, seed: usize) -> Image {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        ((x * 7 + y * 13 + c * 50 + seed * 31 + (x * y) % 17) % 256) as f32
    })
}

/// A tiny random checkpoint with the given task scales.
fn write_checkpoint(path: &Path, scales: &[usize]) {
    write_checkpoint_with(path, IptConfig::tiny(scales));
}

fn write_checkpoint_with(path: &Path, cfg: IptConfig) {
    tch::manual_seed(42);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(path, &vs, &cfg).unwrap();
}

#[test]
fn restore_writes_what_the_library_computes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny_sr2.safetensors");
    write_checkpoint(&ckpt, &[2]);
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let a = inputs.join("a.png");
    let b = inputs.join("b.png");
    write_png(&a, &picture(50, 61, 1)).unwrap();
    write_png(&b, &picture(30, 20, 2)).unwrap();
    std::fs::write(inputs.join("readme.txt"), b"not an image").unwrap();
    let single = dir.path().join("c.png");
    write_png(&single, &picture(48, 48, 3)).unwrap();
    let out = dir.path().join("out");

    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--task",
        "sr2",
        "--device",
        "cpu",
        "--crop-batch",
        "5",
        s(&inputs),
        s(&single),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // the same computation in-process
    let loaded = checkpoint::load(&ckpt, Device::Cpu, &InferOptions::default()).unwrap();
    let opts = RestoreOptions {
        crop_batch: 5,
        chop: ChopMode::Fast, // the restore default
        ..Default::default()
    };
    for (src, name) in [(&a, "a.png"), (&b, "b.png"), (&single, "c.png")] {
        let lr = read_image(src).unwrap();
        let want = restore_image(&loaded.model, 0, &lr, Device::Cpu, &opts, |_| {}).unwrap();
        let got = read_image(&out.join(name)).unwrap();
        assert_eq!(got.dim(), (3, 2 * lr.dim().1, 2 * lr.dim().2), "{name}");
        let want_q = ipt_degrade::quantize(&want);
        assert_eq!(
            got, want_q,
            "{name}: written PNG differs from the library result"
        );
    }
    let written: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        written.len(),
        3,
        "only the three outputs, no temporary files: {written:?}"
    );
}

#[test]
fn sixteen_bit_output_keeps_value_times_257() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny_dn.safetensors");
    write_checkpoint(&ckpt, &[1]);
    let src = dir.path().join("noisy.png");
    write_png(&src, &picture(40, 52, 4)).unwrap();
    let out = dir.path().join("out16");
    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--device",
        "cpu",
        "--bit-depth",
        "16",
        s(&src),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let loaded = checkpoint::load(&ckpt, Device::Cpu, &InferOptions::default()).unwrap();
    let lr = read_image(&src).unwrap();
    let want = restore_image(
        &loaded.model,
        0,
        &lr,
        Device::Cpu,
        &RestoreOptions {
            chop: ChopMode::Fast, // the restore default
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    let png = image::open(out.join("noisy.png")).unwrap();
    let png = match png {
        image::DynamicImage::ImageRgb16(b) => b,
        other => panic!("expected a 16-bit RGB PNG, got {:?}", other.color()),
    };
    let (w, h) = png.dimensions();
    assert_eq!((h as usize, w as usize), (40, 52));
    for y in 0..h {
        for x in 0..w {
            let px = png.get_pixel(x, y);
            for c in 0..3 {
                let v = f64::from(want[[c, y as usize, x as usize]]);
                let expected = (v * 257.0).round().clamp(0.0, 65535.0) as u16;
                assert_eq!(px[c], expected, "pixel ({y}, {x}) channel {c}");
            }
        }
    }
}

#[test]
fn unreadable_inputs_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny.safetensors");
    write_checkpoint(&ckpt, &[2]);
    let good = dir.path().join("good.png");
    write_png(&good, &picture(20, 30, 5)).unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n but not really").unwrap();
    let out = dir.path().join("out");
    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--device",
        "cpu",
        s(&bad),
        s(&good),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.png"), "{}", text(&o));
    assert!(
        out.join("good.png").exists(),
        "the readable input is still restored"
    );
    assert!(!out.join("broken.png").exists());
}

#[test]
fn wrong_task_and_missing_cuda_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny.safetensors");
    write_checkpoint(&ckpt, &[2]);
    let img = dir.path().join("x.png");
    write_png(&img, &picture(10, 10, 6)).unwrap();
    let out = dir.path().join("out");
    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--task",
        "sr3",
        s(&img),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("sr3") && err.contains("not in this checkpoint"),
        "{}",
        text(&o)
    );
    assert!(!out.join("x.png").exists());

    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--task",
        "bogus",
        s(&img),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("task bogus is not in this checkpoint"),
        "{}",
        text(&o)
    );

    let o = ipt(&[
        "restore",
        "--weights",
        s(&dir.path().join("none.pt")),
        s(&img),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("none.pt"),
        "{}",
        text(&o)
    );

    if !ipt_model::device::init_cuda() {
        let o = ipt(&[
            "restore",
            "--weights",
            s(&ckpt),
            "--device",
            "cuda",
            s(&img),
            "--out",
            s(&out),
        ]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("CUDA is not available"), "{}", text(&o));
    }
}

#[test]
fn fast_mode_and_recorded_task_names() {
    // a checkpoint that records its two scale-1 tasks: `--task denoise50` is index 1, as
    // `ipt info` lists it; the fast layout is what the library computes in fast mode
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny_dn.safetensors");
    let mut cfg = IptConfig::tiny(&[1, 1]);
    cfg.tasks = Some(vec![Task::Denoise30, Task::Denoise50]);
    write_checkpoint_with(&ckpt, cfg);
    let info = ipt(&["info", s(&ckpt)]);
    assert!(info.status.success(), "{}", text(&info));
    let listing = String::from_utf8_lossy(&info.stdout);
    assert!(listing.contains("1: scale 1, denoise50"), "{}", text(&info));

    let src = dir.path().join("noisy.png");
    write_png(&src, &picture(100, 131, 7)).unwrap();
    let loaded = checkpoint::load(&ckpt, Device::Cpu, &InferOptions::default()).unwrap();
    let lr = read_image(&src).unwrap();
    let mut outputs = Vec::new();
    for (mode, task) in [("fast", "denoise50"), ("exact", "1")] {
        let out = dir.path().join(mode);
        let o = ipt(&[
            "restore",
            "--weights",
            s(&ckpt),
            "--task",
            task,
            "--chop",
            mode,
            "--device",
            "cpu",
            s(&src),
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("denoise50 (task 1"),
            "{}",
            text(&o)
        );
        let opts = RestoreOptions {
            chop: mode.parse().unwrap(),
            ..Default::default()
        };
        let want = restore_image(&loaded.model, 1, &lr, Device::Cpu, &opts, |_| {}).unwrap();
        let got = read_image(&out.join("noisy.png")).unwrap();
        assert_eq!(got, ipt_degrade::quantize(&want), "{mode}");
        outputs.push(got);
    }
    assert_ne!(outputs[0], outputs[1], "fast and exact layouts differ");
    assert_eq!(
        "fast".parse::<ChopMode>().unwrap(),
        ChopMode::Fast,
        "the CLI names are the library's"
    );

    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--task",
        "derain",
        s(&src),
        "--out",
        s(&dir.path().join("x")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not in this checkpoint") && err.contains("denoise30, denoise50"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_image_that_does_not_fit_in_memory_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny.safetensors");
    write_checkpoint(&ckpt, &[2]);
    let img = dir.path().join("big.png");
    write_png(&img, &picture(300, 400, 8)).unwrap();
    let out = dir.path().join("out");
    // 300×400 ×2: the output alone is 600×800×3×4 B = 5.8 MB, more than 0.001 GiB
    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--device",
        "cpu",
        "--memory-limit",
        "0.001",
        s(&img),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // 0.001 GiB = 1.0 MiB; the output is 5.5 MiB
    for part in [
        "big.png",
        "400×300",
        "800×600",
        "1.0 MiB",
        "5.5 MiB",
        "--memory-limit",
    ] {
        assert!(err.contains(part), "{part}: {}", text(&o));
    }
    assert!(!out.join("big.png").exists());
    let o = ipt(&[
        "restore",
        "--weights",
        s(&ckpt),
        "--memory-limit=-3",
        s(&img),
        "--out",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("positive number of GiB"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_bad_checkpoint_or_task_creates_no_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.png");
    write_png(&input, &picture(20, 20, 1)).unwrap();
    let ckpt = dir.path().join("tiny_sr2.safetensors");
    write_checkpoint(&ckpt, &[2]);
    for (weights, task) in [
        (dir.path().join("missing.safetensors"), "sr2"),
        (ckpt, "sr4"),
    ] {
        let out = dir.path().join("out");
        let o = ipt(&[
            "restore",
            "--weights",
            s(&weights),
            "--task",
            task,
            "--device",
            "cpu",
            s(&input),
            "--out",
            s(&out),
        ]);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(!out.exists(), "the output folder was created: {}", text(&o));
    }
}

/// A 30×20 PNG whose IHDR is rewritten to claim `width`×`height` (CRC fixed).
fn png_claiming(path: &Path, width: u32, height: u32) {
    let img = Array3::from_shape_fn((3, 20, 30), |(c, y, x)| ((x + y + c) % 256) as f32);
    write_png(path, &img).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// `--max-pixels`: images over the decoding limits are skipped and named, the others restored;
/// the limit can be raised or lowered.
#[test]
fn images_over_the_limit_are_skipped_by_name_and_the_limit_is_adjustable() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny.safetensors");
    write_checkpoint(&ckpt, &[2]);

    let bomb = dir.path().join("bomb.png");
    png_claiming(&bomb, 100_000, 100_000);
    let good = dir.path().join("good.png");
    png_claiming(&good, 30, 20);
    let out = dir.path().join("out");
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--weights", s(&ckpt), "--device", "cpu", "--out"];
        args.push(s(&out));
        args.extend_from_slice(extra);
        ipt(&args)
    };

    // The bomb is refused from its header, the other image is still restored.
    let o = restore(&[s(&bomb), s(&good)]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bomb.png")
            && err.contains("100000×100000")
            && err.contains("too large")
            && err.contains("--max-pixels"),
        "{}",
        text(&o)
    );
    assert!(out.join("good.png").exists(), "{}", text(&o));
    assert!(!out.join("bomb.png").exists());
    std::fs::remove_file(out.join("good.png")).unwrap();

    // A lower limit refuses the 30×20 image; WIDTHxHEIGHT at its size admits it.
    let o = restore(&["--max-pixels", "599", s(&good)]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("good.png") && err.contains("30×20"),
        "{}",
        text(&o)
    );
    assert!(!out.join("good.png").exists());
    let o = restore(&["--max-pixels", "30x20", s(&good)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("good.png").exists());
    // Sizes are printed width×height, as users read them.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("(30×20, ") && stdout.contains("(60×40, 8-bit)"),
        "{}",
        text(&o)
    );

    let o = restore(&["--max-pixels", "lots", s(&good)]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("WIDTHxHEIGHT"),
        "{}",
        text(&o)
    );
}
