//! `ipt restore --max-pixels`: images over the decoding limits are skipped and named, the
//! others restored; the limit can be raised or lowered.

use std::path::Path;
use std::process::{Command, Output};

use ipt_degrade::io::write_png;
use ipt_model::checkpoint;
use ipt_model::{Ipt, IptConfig};
use ndarray::Array3;
use tch::{nn, Device};

fn ipt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipt"))
        .args(args)
        .output()
        .expect("running the ipt binary")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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

#[test]
fn images_over_the_limit_are_skipped_by_name_and_the_limit_is_adjustable() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny.safetensors");
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = IptConfig::tiny(&[2]);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(&ckpt, &vs, &cfg).unwrap();

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
