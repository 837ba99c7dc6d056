//! JPEG compression artefacts as OpenCV makes them (feature `jpeg`).
//!
//! [`jpeg_round_trip`] quantizes an image to 8 bits, encodes it as a JPEG of the given quality
//! and decodes it again, exactly as the Python pipelines that degrade with OpenCV do: BasicSR
//! `basicsr/data/degradations.py`, `add_jpg_compression` (used by Real-ESRGAN's second-order
//! pipeline and the BSRGAN-style recipes) runs `cv2.imencode('.jpg', img * 255.,
//! [cv2.IMWRITE_JPEG_QUALITY, q])` followed by `cv2.imdecode(encimg, 1)`.
//!
//! One difference in the quantization: OpenCV converts a float image to 8 bits with `cvRound`
//! (round half to even), this module with [`quantize_value`] (round half away from zero, the
//! workspace's rule); they differ only for values exactly halfway between two levels.
//!
//! # Settings (OpenCV `modules/imgcodecs/src/grfmt_jpeg.cpp`)
//!
//! `JpegEncoder::write` calls `jpeg_set_defaults`, then `jpeg_set_quality(q, TRUE)` (baseline
//! quantization tables, values clamped to 1–255), with no progressive mode, no optimized Huffman
//! tables (the standard tables of `jpeg_set_defaults`), no restart interval, the default ISLOW
//! DCT, YCbCr 4:2:0 for colour input and a one-component grayscale JPEG for grey input, and a
//! JFIF 1.01 header with density 1:1 (no units). `JpegDecoder::readData` decodes with the
//! `jpeg_read_header` defaults: ISLOW inverse DCT and fancy (triangle) chroma upsampling, to RGB
//! for `IMREAD_COLOR` and to grey (the Y component) for `IMREAD_GRAYSCALE`.
//!
//! Here the same libjpeg-turbo code runs through its TurboJPEG API (crate `turbojpeg`, vendored
//! libjpeg-turbo 3.1.0). Its `setCompDefaults` (`src/turbojpeg.c`) makes the same calls
//! (`jpeg_set_defaults`, `jpeg_set_quality(q, TRUE)`, `jpeg_set_colorspace(YCbCr or
//! GRAYSCALE)`, sampling factors 2×2/1×1/1×1 for 4:2:0, X/Y density 1, density unit 0) with its
//! defaults for the rest: ISLOW DCT (`TJPARAM_FASTDCT` = 0), `optimize_coding` off,
//! not progressive, Huffman (not arithmetic) coding; its decompressor uses ISLOW and fancy
//! upsampling (`TJPARAM_FASTUPSAMPLE` = 0). These are all set explicitly below.
//!
//! # Reference
//!
//! `tests/jpeg_reference.rs` compares against OpenCV 5.1.0 (opencv-python-headless, bundled
//! libjpeg-turbo 3.1.2) for qualities 10, 20, 30, 40 and 90 on three synthetic images (61×47 and
//! 33×50 colour, 40×29 grey), the five Classic5 images (grey) and three CBSD68 images (colour):
//! the decoded pixels and the JPEG bytes are identical. The fixture is made by
//! `tests/fixtures/jpeg_opencv.py` (see its header for the command).

use std::path::{Path, PathBuf};

use turbojpeg::{Compressor, Decompressor, PixelFormat, Subsamp};

use crate::io::ImageLimits;
use crate::quantize::quantize_value;
use crate::{DegradeError, Image};

/// Largest width or height a JPEG can have (libjpeg's `JPEG_MAX_DIMENSION`).
pub const MAX_DIMENSION: usize = 65500;

/// The name used in errors about in-memory JPEG data.
fn mem_path() -> PathBuf {
    PathBuf::from("<in-memory JPEG>")
}

fn check_quality(quality: u8) -> Result<(), DegradeError> {
    if (1..=100).contains(&quality) {
        Ok(())
    } else {
        Err(DegradeError::Parameter(format!(
            "quality must be in 1..=100, got {quality}"
        )))
    }
}

fn check_channels(channels: usize) -> Result<PixelFormat, DegradeError> {
    match channels {
        1 => Ok(PixelFormat::GRAY),
        3 => Ok(PixelFormat::RGB),
        _ => Err(DegradeError::Parameter(format!(
            "channels must be 1 or 3, got {channels}"
        ))),
    }
}

/// Encodes an image as a baseline JPEG of the given `quality` (1–100), as OpenCV's
/// `cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])` does (see the
/// [module documentation](self) for the settings).
///
/// The pixels are first quantized with [`quantize_value`] (round half away from zero, saturate
/// to 0–255). Three channels (RGB) give a YCbCr 4:2:0 JPEG, one channel a grayscale JPEG.
///
/// # Errors
/// [`DegradeError::Parameter`] for a quality outside 1–100; [`DegradeError::Shape`] for a
/// channel count other than 1 or 3, an empty image, or a side over [`MAX_DIMENSION`];
/// [`DegradeError::Encode`] if libjpeg-turbo fails.
pub fn encode_jpeg(img: &Image, quality: u8) -> Result<Vec<u8>, DegradeError> {
    check_quality(quality)?;
    let (c, h, w) = img.dim();
    let shape_err = |reason: &str| DegradeError::Shape {
        shape: vec![c, h, w],
        reason: reason.to_string(),
    };
    let format = check_channels(c).map_err(|_| shape_err("JPEG needs 1 or 3 channels"))?;
    if h == 0 || w == 0 {
        return Err(shape_err("JPEG needs a non-empty image"));
    }
    if h > MAX_DIMENSION || w > MAX_DIMENSION {
        return Err(shape_err("JPEG sides are at most 65500 pixels"));
    }
    // CHW f32 → interleaved HWC u8.
    let mut pixels = vec![0u8; c * h * w];
    for ((ch, y, x), &v) in img.indexed_iter() {
        pixels[(y * w + x) * c + ch] = quantize_value(v) as u8;
    }
    let enc_err = |e: turbojpeg::Error| DegradeError::Encode {
        path: mem_path(),
        reason: e.to_string(),
    };
    let mut comp = Compressor::new().map_err(enc_err)?;
    comp.set_quality(i32::from(quality)).map_err(enc_err)?;
    comp.set_subsamp(if c == 3 {
        Subsamp::Sub2x2
    } else {
        Subsamp::Gray
    })
    .map_err(enc_err)?;
    comp.set_optimize(false).map_err(enc_err)?;
    comp.set_progressive(false).map_err(enc_err)?;
    comp.set_arithmetic(false).map_err(enc_err)?;
    comp.compress_to_vec(turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * c,
        height: h,
        format,
    })
    .map_err(enc_err)
}

/// Decodes JPEG data to an image of `channels` channels (1 or 3), as OpenCV's `cv2.imdecode`
/// does (ISLOW inverse DCT, fancy upsampling): 3 gives RGB (a grayscale JPEG replicated, as
/// `IMREAD_COLOR`), 1 gives grey (the Y component of a colour JPEG, as `IMREAD_GRAYSCALE`).
/// Values are integers in 0–255.
///
/// Images over the default [`ImageLimits`] are refused from the header before decoding.
///
/// # Errors
/// [`DegradeError::Parameter`] for a channel count other than 1 or 3; [`DegradeError::Decode`]
/// for data libjpeg-turbo cannot decode (including CMYK JPEGs); [`DegradeError::TooLarge`] for
/// an image over the limits.
pub fn decode_jpeg(bytes: &[u8], channels: usize) -> Result<Image, DegradeError> {
    let format = check_channels(channels)?;
    let dec_err = |e: turbojpeg::Error| DegradeError::Decode {
        path: mem_path(),
        reason: e.to_string(),
    };
    let mut dec = Decompressor::new().map_err(dec_err)?;
    let header = dec.read_header(bytes).map_err(dec_err)?;
    let (w, h) = (header.width, header.height);
    let dims = (
        u32::try_from(w).unwrap_or(u32::MAX),
        u32::try_from(h).unwrap_or(u32::MAX),
    );
    ImageLimits::default().check(
        Path::new("<in-memory JPEG>"),
        dims,
        (w as u64) * (h as u64) * channels as u64,
    )?;
    if w == 0 || h == 0 {
        return Err(DegradeError::Decode {
            path: mem_path(),
            reason: "the JPEG header gives an empty image".into(),
        });
    }
    dec.set_fast_upsample(false).map_err(dec_err)?;
    let mut pixels = vec![0u8; channels * h * w];
    dec.decompress(
        bytes,
        turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: w,
            pitch: w * channels,
            height: h,
            format,
        },
    )
    .map_err(dec_err)?;
    Ok(Image::from_shape_fn((channels, h, w), |(ch, y, x)| {
        f32::from(pixels[(y * w + x) * channels + ch])
    }))
}

/// JPEG compression artefacts: [`encode_jpeg`] then [`decode_jpeg`] with the same channel count,
/// pixel-for-pixel what `cv2.imdecode(cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY,
/// quality])[1], flags)` gives (flags 1 for colour, 0 for grey; checked against OpenCV 5.1.0
/// with libjpeg-turbo 3.1.2, see the [module documentation](self)).
///
/// The input is quantized with [`quantize_value`] (the workspace's one rounding rule); the
/// output holds integers in 0–255 with the input's channel count (1 or 3).
///
/// # Errors
/// As [`encode_jpeg`]: [`DegradeError::Parameter`] for a quality outside 1–100,
/// [`DegradeError::Shape`] for a bad shape.
pub fn jpeg_round_trip(img: &Image, quality: u8) -> Result<Image, DegradeError> {
    let bytes = encode_jpeg(img, quality)?;
    decode_jpeg(&bytes, img.dim().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        Image::from_shape_fn((c, h, w), |(ch, y, x)| (x * 4 + y * 3 + ch * 20) as f32)
    }

    #[test]
    fn bad_parameters_are_errors() {
        let img = ramp(3, 8, 8);
        for q in [0u8, 101, 255] {
            match jpeg_round_trip(&img, q) {
                Err(DegradeError::Parameter(m)) => assert!(m.contains("quality"), "{m}"),
                other => panic!("quality {q}: {other:?}"),
            }
        }
        assert!(matches!(
            jpeg_round_trip(&ramp(2, 8, 8), 50),
            Err(DegradeError::Shape { .. })
        ));
        assert!(matches!(
            jpeg_round_trip(&ramp(3, 0, 8), 50),
            Err(DegradeError::Shape { .. })
        ));
        assert!(matches!(
            decode_jpeg(&[0xff, 0xd8, 0, 1], 3),
            Err(DegradeError::Decode { .. })
        ));
        match decode_jpeg(&[], 4) {
            Err(DegradeError::Parameter(m)) => assert!(m.contains("channels"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trip_keeps_shape_and_is_close_at_high_quality() {
        for c in [1, 3] {
            let img = ramp(c, 21, 35);
            let out = jpeg_round_trip(&img, 100).expect("round trip");
            assert_eq!(out.dim(), img.dim());
            assert!(out
                .iter()
                .all(|&v| v == v.round() && (0.0..=255.0).contains(&v)));
            let mae = (&out - &img).mapv(f32::abs).mean().unwrap_or(f32::NAN);
            assert!(mae < 3.0, "{c} channels: mean abs error {mae}");
            let low = jpeg_round_trip(&img, 10).expect("round trip");
            let mae_low = (&low - &img).mapv(f32::abs).mean().unwrap_or(f32::NAN);
            assert!(mae_low > mae, "q10 {mae_low} vs q100 {mae}");
        }
    }

    #[test]
    fn grey_jpeg_decodes_to_rgb_and_colour_to_grey() {
        let grey = ramp(1, 16, 16);
        let bytes = encode_jpeg(&grey, 90).expect("encode");
        let rgb = decode_jpeg(&bytes, 3).expect("decode");
        let g = decode_jpeg(&bytes, 1).expect("decode");
        for ch in 0..3 {
            assert_eq!(
                rgb.index_axis(ndarray::Axis(0), ch),
                g.index_axis(ndarray::Axis(0), 0)
            );
        }
        let colour = ramp(3, 16, 16);
        let y = decode_jpeg(&encode_jpeg(&colour, 90).expect("encode"), 1).expect("decode");
        assert_eq!(y.dim(), (1, 16, 16));
    }

    #[test]
    fn input_is_quantized_with_the_workspace_rule() {
        // 0.5 rounds up (half away from zero), −3 and 300 saturate: same bytes as the integers.
        let a = Image::from_elem((1, 8, 8), 0.5);
        let b = Image::from_elem((1, 8, 8), 1.0);
        assert_eq!(encode_jpeg(&a, 75).ok(), encode_jpeg(&b, 75).ok());
        let a = Image::from_shape_fn((3, 8, 8), |(c, _, _)| [-3.0, 300.0, 128.4][c]);
        let b = Image::from_shape_fn((3, 8, 8), |(c, _, _)| [0.0, 255.0, 128.0][c]);
        assert_eq!(encode_jpeg(&a, 75).ok(), encode_jpeg(&b, 75).ok());
    }
}
