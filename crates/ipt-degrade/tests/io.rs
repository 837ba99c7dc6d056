//! Image I/O, including bad inputs (each a clear error naming the file, or a correct result).

use std::path::Path;

use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use ipt_degrade::io::{read_image, read_image_with, write_png, write_png16, Channels};
use ipt_degrade::{DegradeError, Image};
use ndarray::Array3;

fn err_text(path: &Path) -> String {
    match read_image(path) {
        Ok(img) => panic!("{} decoded unexpectedly: {:?}", path.display(), img.dim()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn zero_byte_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.png");
    std::fs::write(&p, b"").unwrap();
    let msg = err_text(&p);
    assert!(msg.contains("empty.png") && msg.contains("empty"), "{msg}");
}

#[test]
fn text_file_named_png_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.png");
    std::fs::write(&p, b"this is not an image\n").unwrap();
    let msg = err_text(&p);
    assert!(
        msg.contains("notes.png") && msg.contains("cannot decode"),
        "{msg}"
    );
}

#[test]
fn truncated_png_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.png");
    let img = ImageBuffer::from_fn(64, 48, |x, y| Rgb([(x * 3) as u8, (y * 5) as u8, 7u8]));
    img.save(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let p = dir.path().join("truncated.png");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let msg = err_text(&p);
    assert!(msg.contains("truncated.png"), "{msg}");
}

#[test]
fn truncated_jpeg_is_an_error_but_padding_after_the_end_is_not() {
    // the JPEG decoder grey-fills a scan that was cut short; read_image must refuse such files
    let dir = tempfile::tempdir().unwrap();
    let img = ImageBuffer::from_fn(96, 80, |x, y| Rgb([(x * 2) as u8, (y * 3) as u8, 77u8]));
    let mut jpeg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let good = dir.path().join("good.JPG");
    std::fs::write(&good, &jpeg).unwrap();
    let padded = dir.path().join("padded.jpg");
    std::fs::write(&padded, [jpeg.as_slice(), &[0u8; 100]].concat()).unwrap();
    let cut = dir.path().join("cut.jpeg");
    std::fs::write(&cut, &jpeg[..jpeg.len() - 40]).unwrap();
    assert_eq!(read_image(&good).unwrap().dim(), (3, 80, 96));
    assert_eq!(read_image(&padded).unwrap(), read_image(&good).unwrap());
    let msg = err_text(&cut);
    assert!(
        msg.contains("cut.jpeg") && msg.contains("truncated JPEG"),
        "{msg}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let p = Path::new("/nonexistent/dir/x.png");
    match read_image(p) {
        Err(DegradeError::Io { path, .. }) => assert_eq!(path, p),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn one_by_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("one.png");
    ImageBuffer::from_pixel(1, 1, Rgb([1u8, 2, 3]))
        .save(&p)
        .unwrap();
    let img = read_image(&p).unwrap();
    assert_eq!(img.dim(), (3, 1, 1));
    assert_eq!(img.iter().copied().collect::<Vec<_>>(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn sixteen_bit_png_is_scaled_to_255() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deep.png");
    let img: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(3, 2, |x, y| {
        Rgb([65535, (x * 257 * 10) as u16, (y * 1000) as u16])
    });
    img.save(&p).unwrap();
    let out = read_image(&p).unwrap();
    assert_eq!(out.dim(), (3, 2, 3));
    assert_eq!(out[[0, 1, 2]], 255.0);
    assert!((out[[1, 0, 2]] - 20.0).abs() < 1e-4);
    assert!((out[[2, 1, 0]] - 1000.0 * 255.0 / 65535.0).abs() < 1e-4);
}

#[test]
fn grayscale_is_replicated_or_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gray.png");
    ImageBuffer::from_fn(4, 3, |x, y| Luma([(x + 10 * y) as u8]))
        .save(&p)
        .unwrap();
    let rgb = read_image(&p).unwrap();
    assert_eq!(rgb.dim(), (3, 3, 4));
    for c in 0..3 {
        assert_eq!(rgb[[c, 2, 3]], 23.0);
    }
    let native = read_image_with(&p, Channels::Native).unwrap();
    assert_eq!(native.dim(), (1, 3, 4));
    assert_eq!(native[[0, 1, 1]], 11.0);
    // Gray + alpha drops alpha.
    let p2 = dir.path().join("graya.png");
    ImageBuffer::from_fn(2, 2, |x, _| LumaA([(x * 100) as u8, 3u8]))
        .save(&p2)
        .unwrap();
    let ga = read_image(&p2).unwrap();
    assert_eq!(ga.dim(), (3, 2, 2));
    assert_eq!(ga[[2, 0, 1]], 100.0);
}

#[test]
fn rgba_drops_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rgba.png");
    ImageBuffer::from_fn(2, 2, |x, y| Rgba([x as u8, y as u8, 200, 0]))
        .save(&p)
        .unwrap();
    let img = read_image(&p).unwrap();
    assert_eq!(img.dim(), (3, 2, 2));
    assert_eq!(img[[0, 1, 1]], 1.0);
    assert_eq!(img[[2, 0, 0]], 200.0);
    let gray = read_image_with(&p, Channels::Gray).unwrap();
    assert_eq!(gray.dim(), (1, 2, 2));
    assert!((gray[[0, 1, 1]] - 202.0 / 3.0).abs() < 1e-4);
}

#[test]
fn png_roundtrip_8_and_16_bit() {
    let dir = tempfile::tempdir().unwrap();
    let img = Array3::from_shape_fn((3, 5, 7), |(c, y, x)| (c * 70 + y * 9 + x) as f32 + 0.25);
    let p8 = dir.path().join("a.png");
    write_png(&p8, &img).unwrap();
    let back: Image = read_image(&p8).unwrap();
    assert_eq!(back, ipt_degrade::quantize(&img));
    let p16 = dir.path().join("b.png");
    write_png16(&p16, &img).unwrap();
    let back16 = read_image(&p16).unwrap();
    let max = back16
        .iter()
        .zip(img.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max <= 0.5 / 257.0 + 1e-4, "16-bit roundtrip error {max}");
    // Single channel writes a gray PNG.
    let g = img.slice(ndarray::s![0..1, .., ..]).to_owned();
    let pg = dir.path().join("g.png");
    write_png(&pg, &g).unwrap();
    assert_eq!(
        read_image_with(&pg, Channels::Native).unwrap(),
        ipt_degrade::quantize(&g)
    );
    // Unwritable shapes and paths are errors naming the file.
    let bad = Array3::<f32>::zeros((2, 3, 3));
    assert!(write_png(&dir.path().join("bad.png"), &bad)
        .unwrap_err()
        .to_string()
        .contains("bad.png"));
    let nowhere = Path::new("/nonexistent/dir/out.png");
    assert!(write_png(nowhere, &img)
        .unwrap_err()
        .to_string()
        .contains("out.png"));
}

#[test]
fn jpeg_bmp_tiff_webp_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let src = ImageBuffer::from_fn(16, 8, |x, y| Rgb([(x * 16) as u8, (y * 32) as u8, 128u8]));
    for ext in ["jpg", "bmp", "tiff", "webp"] {
        let p = dir.path().join(format!("img.{ext}"));
        src.save(&p).unwrap();
        let img = read_image(&p).unwrap();
        assert_eq!(img.dim(), (3, 8, 16), "{ext}");
        let tol = if ext == "jpg" { 12.0 } else { 0.0 };
        assert!(
            (img[[0, 3, 5]] - 80.0).abs() <= tol,
            "{ext}: {}",
            img[[0, 3, 5]]
        );
    }
}

#[test]
fn jpeg_exif_orientation_is_applied() {
    use image::ImageEncoder;
    // Minimal little-endian TIFF/EXIF block: one IFD entry, Orientation (0x0112) = 6 (rotate 90° CW).
    let mut exif = b"II*\0".to_vec();
    exif.extend_from_slice(&8u32.to_le_bytes());
    exif.extend_from_slice(&1u16.to_le_bytes());
    exif.extend_from_slice(&0x0112u16.to_le_bytes());
    exif.extend_from_slice(&3u16.to_le_bytes());
    exif.extend_from_slice(&1u32.to_le_bytes());
    exif.extend_from_slice(&6u16.to_le_bytes());
    exif.extend_from_slice(&0u16.to_le_bytes());
    exif.extend_from_slice(&0u32.to_le_bytes());
    // 32 wide, 16 high; left half dark, right half bright.
    let src = ImageBuffer::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([20u8; 3])
        } else {
            Rgb([230u8; 3])
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rotated.jpg");
    let mut file = std::fs::File::create(&p).unwrap();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 95);
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(src.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    drop(file);
    let img = read_image(&p).unwrap();
    // Rotated 90° clockwise: 16 wide, 32 high; the old left half is now the top.
    assert_eq!(img.dim(), (3, 32, 16));
    assert!(
        img[[0, 4, 8]] < 60.0 && img[[0, 28, 8]] > 190.0,
        "{} {}",
        img[[0, 4, 8]],
        img[[0, 28, 8]]
    );
}

/// Inputs the `image` fuzz target found to crash a decoder (`tests/fixtures/fuzz-*`, see
/// docs/reliability.md): each must give an error naming the file, or an image, never a panic.
#[test]
fn inputs_found_by_fuzzing_are_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("fuzz-") {
            continue;
        }
        found += 1;
        match read_image(&path) {
            Ok(img) => assert!(!img.is_empty(), "{name}"),
            Err(e) => assert!(e.to_string().contains(&name), "{name}: {e}"),
        }
    }
    assert!(found >= 1, "no fuzz-* fixtures in {}", dir.display());
}

#[test]
fn the_zune_jpeg_avx2_panic_is_a_decode_error() {
    // 741 bytes: zune-jpeg 0.5.15 unwraps None in its AVX2 IDCT on this file (where the CPU
    // has AVX2; the scalar IDCT may decode it or fail with an ordinary error).
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-zune-avx2-panic.jpg");
    if let Err(e) = read_image(&path) {
        assert!(
            matches!(&e, DegradeError::Decode { path: p, .. } if p == &path),
            "{e:?}"
        );
    }
}

#[test]
fn grey_float_tiffs_read_as_sixteen_bit_grey() {
    use tiff::encoder::{colortype, TiffEncoder};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grey_f32.tif");
    let (w, h) = (7u32, 5u32);
    // values across 0–1, plus one above 1 (clamped) and one below 0
    let mut values: Vec<f32> = (0..w * h).map(|i| i as f32 / (w * h - 1) as f32).collect();
    values[3] = 1.5;
    values[4] = -0.25;
    let file = std::fs::File::create(&path).unwrap();
    TiffEncoder::new(file)
        .unwrap()
        .write_image::<colortype::Gray32Float>(w, h, &values)
        .unwrap();
    let img = ipt_degrade::io::read_image_with(&path, ipt_degrade::io::Channels::Native).unwrap();
    assert_eq!(img.dim(), (1, h as usize, w as usize));
    for (i, &v) in values.iter().enumerate() {
        let want = f64::from(v.clamp(0.0, 1.0)) * 255.0;
        let got = f64::from(img[[0, i / w as usize, i % w as usize]]);
        assert!(
            (got - want).abs() <= 255.0 / 65535.0,
            "sample {i}: {got} vs {want}"
        );
    }
    let photo =
        ipt_degrade::photo::read_photo(&path, &ipt_degrade::io::ImageLimits::default()).unwrap();
    assert!(photo.is_grey() && photo.bits == 16 && photo.alpha.is_none());
    // the limits apply before decoding
    let small = ipt_degrade::io::ImageLimits {
        max_pixels: 10,
        ..Default::default()
    };
    let e = ipt_degrade::photo::read_photo(&path, &small).unwrap_err();
    assert!(
        matches!(e, ipt_degrade::DegradeError::TooLarge { .. }),
        "{e}"
    );
}
