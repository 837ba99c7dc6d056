//! `ipt restore` writes faithful files (grey stays grey, alpha kept, 16-bit stays 16-bit, ICC
//! profile and EXIF carried, orientation applied once, the usual file mode) and follows the
//! field's conventions (-i/-o/-s, --suffix, --ext, --quality, --recursive, --skip-existing,
//! names that differ only in extension, shipped models by name).

mod common;
use common::{ipt, s, text};

use std::path::Path;

use image::ImageDecoder;
use ipt_degrade::io::{quantize_u16, read_image, Metadata};
use ipt_degrade::photo::{encode_photo, luma, OutputFormat, Photo};
use ipt_degrade::{imresize_to, quantize, Image};
use ipt_model::checkpoint::{self, InferOptions};
use ipt_model::chop::ChopMode;
use ipt_model::restore::{restore_image, RestoreOptions};
use ipt_model::{Ipt, IptConfig};
use ndarray::Array3;
use tch::{nn, Device};

fn plane(c: usize, h: usize, w: usize, seed: usize) -> Image {
    Array3::from_shape_fn((c, h, w), |(ch, y, x)| {
        ((x * 7 + y * 13 + ch * 50 + seed * 31 + (x * y) % 17) % 256) as f32
    })
}

/// A little-endian EXIF block with one IFD0 entry: Orientation = `o`.
fn exif_with_orientation(o: u16) -> Vec<u8> {
    let mut b = vec![0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0];
    b.extend_from_slice(&0x0112u16.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&o.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    b
}

fn write(path: &Path, photo: &Photo, format: OutputFormat) {
    let enc = encode_photo(path, photo, format).unwrap();
    std::fs::write(path, enc.bytes).unwrap();
}

fn photo(pixels: Image, alpha: Option<Image>, bits: u8, metadata: Metadata) -> Photo {
    Photo {
        pixels,
        alpha,
        bits,
        metadata,
    }
}

/// What the network makes of `rgb` with the tiny ×2 checkpoint, in the restore default layout.
fn network(ckpt: &Path, rgb: &Image) -> Image {
    let loaded = checkpoint::load(ckpt, Device::Cpu, &InferOptions::default()).unwrap();
    let opts = RestoreOptions {
        chop: ChopMode::Fast,
        ..Default::default()
    };
    restore_image(&loaded.model, 0, rgb, Device::Cpu, &opts, |_| {}).unwrap()
}

fn tiny_sr2(dir: &Path) -> std::path::PathBuf {
    let ckpt = dir.join("tiny_sr2.safetensors");
    let cfg = IptConfig::tiny(&[2]);
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(&ckpt, &vs, &cfg).unwrap();
    ckpt
}

fn decoder(path: &Path) -> image::codecs::png::PngDecoder<std::io::BufReader<std::fs::File>> {
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    image::codecs::png::PngDecoder::new(f).unwrap()
}

#[test]
fn grey_alpha_sixteen_bits_icc_and_exif_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny_sr2(dir.path());
    let icc = b"an ICC profile's bytes, carried as they are".to_vec();
    let meta = Metadata {
        icc: Some(icc.clone()),
        exif: Some(exif_with_orientation(1)),
        orientation: 1,
    };
    let grey_in = dir.path().join("grey.png");
    let grey = plane(1, 20, 26, 1);
    write(
        &grey_in,
        &photo(grey.clone(), None, 8, Metadata::default()),
        OutputFormat::Png,
    );
    let rgba_in = dir.path().join("rgba16.png");
    let colour = plane(3, 18, 22, 2);
    let alpha = plane(1, 18, 22, 3);
    write(
        &rgba_in,
        &photo(colour.clone(), Some(alpha.clone()), 16, meta.clone()),
        OutputFormat::Png,
    );
    let out = dir.path().join("out");
    let o = ipt(&[
        "restore",
        "-n",
        s(&ckpt),
        "--device",
        "cpu",
        "-i",
        s(&grey_in),
        "-i",
        s(&rgba_in),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("8-bit grey"), "{}", text(&o));
    assert!(
        stdout.contains("16-bit, alpha resized with bicubic"),
        "{}",
        text(&o)
    );

    // grey in → grey out: the luma of the network's colour result, 8-bit as the input
    let rgb = ndarray::concatenate![ndarray::Axis(0), grey, grey, grey];
    let want = quantize(&luma(&network(&ckpt, &rgb)));
    let got = image::open(out.join("grey.png")).unwrap();
    assert_eq!(got.color(), image::ColorType::L8);
    let got = read_image(&out.join("grey.png")).unwrap();
    assert_eq!(got.slice(ndarray::s![0..1, .., ..]), want.view());

    // RGBA 16-bit in → RGBA 16-bit out, alpha resized with bicubic, ICC and EXIF carried
    let restored = network(&ckpt, &colour);
    let alpha2 = imresize_to(&alpha, 36, 44);
    let mut d = decoder(&out.join("rgba16.png"));
    assert_eq!(d.color_type(), image::ColorType::Rgba16);
    assert_eq!(d.icc_profile().unwrap(), Some(icc));
    assert_eq!(d.exif_metadata().unwrap(), meta.exif);
    let img = image::DynamicImage::from_decoder(d).unwrap().into_rgba16();
    for (x, y, px) in img.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        for c in 0..3 {
            assert_eq!(
                px[c],
                quantize_u16(restored[[c, y, x]]),
                "({y}, {x}) channel {c}"
            );
        }
        assert_eq!(
            px[3],
            quantize_u16(alpha2[[0, y, x]]),
            "alpha at ({y}, {x})"
        );
    }

    // the usual mode of a new file (0666 less the umask), as a plain write in the same folder
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = out.join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out.join("grey.png")), mode(&plain));
    }
}

#[test]
fn exif_orientation_is_applied_once_and_jpeg_says_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny_sr2(dir.path());
    // stored 24×16 with orientation 6: displayed 16×24 (portrait)
    let src = dir.path().join("phone.png");
    let meta = Metadata {
        icc: None,
        exif: Some(exif_with_orientation(6)),
        orientation: 1,
    };
    write(
        &src,
        &photo(plane(3, 16, 24, 4), Some(plane(1, 16, 24, 5)), 8, meta),
        OutputFormat::Png,
    );
    let out = dir.path().join("out");
    let o = ipt(&[
        "restore",
        "-n",
        s(&ckpt),
        "--device",
        "cpu",
        s(&src),
        "-o",
        s(&out),
        "--ext",
        "jpg",
        "--quality",
        "90",
        "--suffix",
        "_x2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dropped the input's alpha"),
        "{}",
        text(&o)
    );
    let written = out.join("phone_x2.jpg");
    let f = std::io::BufReader::new(std::fs::File::open(&written).unwrap());
    let mut d = image::codecs::jpeg::JpegDecoder::new(f).unwrap();
    assert_eq!(d.dimensions(), (32, 48), "displayed orientation, ×2");
    assert_eq!(d.exif_metadata().unwrap(), Some(exif_with_orientation(1)));
    // --quality belongs to jpg
    let o = ipt(&[
        "restore",
        "-n",
        s(&ckpt),
        "--device",
        "cpu",
        s(&src),
        "-o",
        s(&out),
        "--quality",
        "90",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--ext jpg"),
        "{}",
        text(&o)
    );
}

#[test]
fn recursive_suffix_collisions_skip_existing_and_outscale() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny_sr2(dir.path());
    let tree = dir.path().join("photos");
    std::fs::create_dir_all(tree.join("trip")).unwrap();
    let rgb = |seed| photo(plane(3, 12, 14, seed), None, 8, Metadata::default());
    write(&tree.join("a.png"), &rgb(1), OutputFormat::Png);
    write(
        &tree.join("a.jpg"),
        &rgb(2),
        OutputFormat::Jpeg { quality: 95 },
    );
    write(&tree.join("trip/b.png"), &rgb(3), OutputFormat::Png);
    // the output folder inside the input tree: its files are never inputs
    let out = tree.join("restored");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "-n",
            s(&ckpt),
            "--device",
            "cpu",
            "-r",
            "-o",
            s(&out),
        ];
        args.extend_from_slice(extra);
        args.push(s(&tree));
        ipt(&args)
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    for name in ["a.png.png", "a.jpg.png", "trip/b.png"] {
        assert!(out.join(name).is_file(), "{name}: {}", text(&o));
    }
    // again: existing outputs are replaced, and said; with --skip-existing they are kept
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("3 outputs already exist and will be replaced"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(out.join("a.jpg.png")).unwrap();
    let before = std::fs::metadata(out.join("trip/b.png"))
        .unwrap()
        .modified()
        .unwrap();
    let o = run(&["--skip-existing"]);
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("restoring 1 image with"), "{}", text(&o));
    assert!(stderr.contains("2 existing outputs kept"), "{}", text(&o));
    assert!(out.join("a.jpg.png").is_file());
    let after = std::fs::metadata(out.join("trip/b.png"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a kept output is not rewritten");
    // -s: any final scale, after the network
    let scaled = dir.path().join("scaled");
    let o = ipt(&[
        "restore",
        "-n",
        s(&ckpt),
        "--device",
        "cpu",
        "-s",
        "3",
        "-o",
        s(&scaled),
        s(&tree.join("trip/b.png")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        image::image_dimensions(scaled.join("b.png")).unwrap(),
        (42, 36)
    );
}

#[test]
fn shipped_models_restore_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.png");
    write(
        &src,
        &photo(plane(3, 20, 20, 6), None, 8, Metadata::default()),
        OutputFormat::Png,
    );
    let out = dir.path().join("out");
    let o = ipt(&[
        "restore",
        "--model",
        "ipt-small-pretrain",
        "--task",
        "denoise30",
        "--device",
        "cpu",
        s(&src),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        image::image_dimensions(out.join("small.png")).unwrap(),
        (20, 20)
    );
    let o = ipt(&["models"]);
    assert!(o.status.success());
    let listing = String::from_utf8_lossy(&o.stdout);
    for name in [
        "ipt-small-scratch-sr2",
        "ipt-small-pretrain",
        "ipt-small-finetune-sr2",
    ] {
        assert!(listing.contains(name), "{listing}");
    }
    // an unknown name is a missing file, said as such
    let o = ipt(&[
        "restore",
        "--model",
        "no-such-model",
        s(&src),
        "-o",
        s(&out),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no-such-model"),
        "{}",
        text(&o)
    );
}
