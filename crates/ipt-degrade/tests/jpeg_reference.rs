//! Pixel and byte identity of `ipt_degrade::jpeg` with OpenCV.
//!
//! Reference: OpenCV 5.1.0 (opencv-python-headless, bundled libjpeg-turbo 3.1.2),
//! `cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, q])` then `cv2.imdecode(buf, 1)` for
//! colour, `cv2.imdecode(buf, 0)` for grey, recorded in `tests/fixtures/jpeg_opencv.json` by
//! `tests/fixtures/jpeg_opencv.py`. Regenerate from the repository root with
//! `PYTHONPATH=<opencv site-packages> python3 crates/ipt-degrade/tests/fixtures/jpeg_opencv.py`.
//!
//! Checked for every quality of the fixture (10, 20, 30, 40, 90): the CRC32 of the decoded
//! pixels (CHW, RGB, u8), the JPEG byte length and the CRC32 of the JPEG bytes. The synthetic
//! images always; Classic5 and CBSD68 when the dataset root is present (`IPT_DATA`, else
//! `../shared/datasets` beside the workspace), after checking that the pixels read here are the
//! ones OpenCV read.
#![cfg(feature = "jpeg")]

use std::path::Path;

use ipt_degrade::data::dataset_root;
use ipt_degrade::io::{read_image_with, Channels};
use ipt_degrade::jpeg::{decode_jpeg, encode_jpeg, jpeg_round_trip};
use ipt_degrade::Image;
use serde_json::Value;

/// The fixture's synthetic images: name, width, height, channels.
const SYNTHETIC: [(&str, usize, usize, usize); 3] = [
    ("colour_61x47", 61, 47, 3),
    ("colour_33x50", 33, 50, 3),
    ("grey_40x29", 40, 29, 1),
];

/// `pixel` of `jpeg_opencv.py`: channel `c` (RGB) at row `y`, column `x` of a `w`×`h` image.
fn pixel(c: usize, y: usize, x: usize, w: usize, h: usize) -> u32 {
    let a = [3, 1, 2][c];
    let b = [1, 3, 2][c];
    let g = x * 255 / (w - 1);
    let v = y * 255 / (h - 1);
    let edge = if (x / 6 + y / 9 + c).is_multiple_of(2) {
        60
    } else {
        0
    };
    let tex = (x * x + 3 * y * c + 5 * x * y) % 17;
    ((a * g + b * v) / 4 + edge + tex).min(255) as u32
}

fn synthetic(w: usize, h: usize, c: usize) -> Image {
    Image::from_shape_fn((c, h, w), |(ch, y, x)| pixel(ch, y, x, w, h) as f32)
}

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg_opencv.json");
    let text = std::fs::read_to_string(&path).expect("read fixture");
    serde_json::from_str(&text).expect("parse fixture")
}

/// CRC32 of an image as u8 in CHW order (values must be integers in 0–255).
fn crc(img: &Image) -> u64 {
    let bytes: Vec<u8> = img
        .iter()
        .map(|&v| {
            assert!(
                v == v.round() && (0.0..=255.0).contains(&v),
                "not a u8 value: {v}"
            );
            v as u8
        })
        .collect();
    u64::from(crc32fast::hash(&bytes))
}

fn field(v: &Value, key: &str, name: &str) -> u64 {
    v.get(name)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("fixture {key}: no {name}"))
}

/// Checks one image against the fixture at every quality; returns the number of checks.
fn check(fx: &Value, key: &str, img: &Image) -> usize {
    let entry = fx
        .get(key)
        .unwrap_or_else(|| panic!("fixture has no {key}"));
    let (c, h, w) = img.dim();
    assert_eq!(
        (
            field(entry, key, "channels"),
            field(entry, key, "height"),
            field(entry, key, "width")
        ),
        (c as u64, h as u64, w as u64),
        "{key}: shape"
    );
    assert_eq!(
        crc(img),
        field(entry, key, "input_crc32"),
        "{key}: input pixels differ from OpenCV's"
    );
    let qualities = fx["qualities"].as_array().expect("qualities");
    for q in qualities {
        let q = q.as_u64().expect("quality") as u8;
        let k = format!("{key}/q{q}");
        let want = fx.get(&k).unwrap_or_else(|| panic!("fixture has no {k}"));
        let bytes = encode_jpeg(img, q).expect("encode");
        let decoded = decode_jpeg(&bytes, c).expect("decode");
        assert_eq!(
            bytes.len() as u64,
            field(want, &k, "len"),
            "{k}: JPEG length"
        );
        assert_eq!(
            u64::from(crc32fast::hash(&bytes)),
            field(want, &k, "jpeg_crc32"),
            "{k}: JPEG bytes"
        );
        assert_eq!(
            crc(&decoded),
            field(want, &k, "crc32"),
            "{k}: decoded pixels"
        );
        assert_eq!(
            jpeg_round_trip(img, q).expect("round trip"),
            decoded,
            "{k}: jpeg_round_trip"
        );
    }
    qualities.len()
}

#[test]
fn synthetic_images_match_opencv() {
    let fx = fixture();
    let mut n = 0;
    for (name, w, h, c) in SYNTHETIC {
        n += check(&fx, &format!("synthetic/{name}"), &synthetic(w, h, c));
    }
    assert_eq!(n, 15);
}

/// The files of `set` recorded in the fixture.
fn recorded(fx: &Value, set: &str) -> Vec<String> {
    let prefix = format!("{set}/");
    let obj = fx.as_object().expect("fixture object");
    obj.keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|rest| !rest.contains('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn classic5_and_cbsd68_match_opencv() {
    let Some(root) = dataset_root() else {
        println!("skipped: no dataset root (set IPT_DATA or provide ../shared/datasets)");
        return;
    };
    let fx = fixture();
    let mut n = 0;
    for (set, channels) in [("classic5", Channels::Gray), ("CBSD68", Channels::Rgb)] {
        let files = recorded(&fx, set);
        assert!(!files.is_empty(), "fixture has no {set} images");
        for f in files {
            let path = root.join(set).join(&f);
            if !path.is_file() {
                println!("skipped {}: not found", path.display());
                continue;
            }
            let img = read_image_with(&path, channels).expect("read dataset image");
            n += check(&fx, &format!("{set}/{f}"), &img);
        }
    }
    println!("{n} dataset round trips identical to OpenCV");
}
