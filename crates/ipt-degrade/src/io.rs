//! Reading and writing images.
//!
//! Every reader returns an [`Image`] (CHW, `f32`, 0–255). 8-bit files map to their integer values,
//! 16-bit files are scaled by 255/65535 (not quantized), float files by 255. Alpha is dropped,
//! grayscale is replicated to RGB (or kept as one channel with [`Channels::Gray`]), and the EXIF
//! orientation of JPEG/TIFF/WebP files is applied.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};
use ndarray::Array3;

use crate::quantize::quantize_value;
use crate::{DegradeError, Image};

/// How many channels [`read_image_with`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    /// Always three (RGB); grayscale files are replicated. The default.
    #[default]
    Rgb,
    /// One channel for grayscale files, three for colour files.
    Native,
    /// Always one: grayscale files as stored, colour files reduced to the mean of R, G, B.
    Gray,
}

/// Reads an image file as RGB (grayscale replicated, alpha dropped, 16-bit scaled to 0–255).
pub fn read_image(path: &Path) -> Result<Image, DegradeError> {
    read_image_with(path, Channels::Rgb)
}

/// Reads an image file with an explicit channel policy (see [`Channels`]).
pub fn read_image_with(path: &Path, channels: Channels) -> Result<Image, DegradeError> {
    let dynimg = decode(path)?;
    let (w, h) = (dynimg.width() as usize, dynimg.height() as usize);
    if w == 0 || h == 0 {
        return Err(DegradeError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("image has zero size ({w}x{h})"),
        });
    }
    let is_color = dynimg.color().has_color();
    let out_c = match channels {
        Channels::Rgb => 3,
        Channels::Native if is_color => 3,
        Channels::Native | Channels::Gray => 1,
    };
    let img = match dynimg {
        DynamicImage::ImageLuma8(b) => planes(b.as_raw(), 1, (h, w), out_c, f32::from),
        DynamicImage::ImageLumaA8(b) => planes(b.as_raw(), 2, (h, w), out_c, f32::from),
        DynamicImage::ImageRgb8(b) => planes(b.as_raw(), 3, (h, w), out_c, f32::from),
        DynamicImage::ImageRgba8(b) => planes(b.as_raw(), 4, (h, w), out_c, f32::from),
        DynamicImage::ImageLuma16(b) => planes(b.as_raw(), 1, (h, w), out_c, u16_to_255),
        DynamicImage::ImageLumaA16(b) => planes(b.as_raw(), 2, (h, w), out_c, u16_to_255),
        DynamicImage::ImageRgb16(b) => planes(b.as_raw(), 3, (h, w), out_c, u16_to_255),
        DynamicImage::ImageRgba16(b) => planes(b.as_raw(), 4, (h, w), out_c, u16_to_255),
        DynamicImage::ImageRgb32F(b) => planes(b.as_raw(), 3, (h, w), out_c, f32_to_255),
        DynamicImage::ImageRgba32F(b) => planes(b.as_raw(), 4, (h, w), out_c, f32_to_255),
        other => planes(other.to_rgb32f().as_raw(), 3, (h, w), out_c, f32_to_255),
    };
    Ok(img)
}

fn u16_to_255(v: u16) -> f32 {
    (f64::from(v) * 255.0 / 65535.0) as f32
}

fn f32_to_255(v: f32) -> f32 {
    v * 255.0
}

/// Interleaved pixels with `stride` samples (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to `out_c`
/// planes: gray is replicated, alpha dropped, colour reduced to the mean of R, G, B for one plane.
fn planes<T: Copy>(
    raw: &[T],
    stride: usize,
    (h, w): (usize, usize),
    out_c: usize,
    f: impl Fn(T) -> f32,
) -> Image {
    let color = stride >= 3;
    let mut img = Array3::<f32>::zeros((out_c, h, w));
    for (c, mut plane) in img.outer_iter_mut().enumerate() {
        let Some(dst) = plane.as_slice_mut() else {
            continue; // unreachable: a fresh standard-layout array
        };
        for (d, px) in dst.iter_mut().zip(raw.chunks_exact(stride)) {
            *d = match (color, out_c) {
                (false, _) => f(px[0]),
                (true, 1) => (f(px[0]) + f(px[1]) + f(px[2])) / 3.0,
                (true, _) => f(px[c]),
            };
        }
    }
    img
}

fn decode(path: &Path) -> Result<DynamicImage, DegradeError> {
    let decode_err = |e: image::ImageError| DegradeError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|source| DegradeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() == 0 {
        return Err(DegradeError::Decode {
            path: path.to_path_buf(),
            reason: "file is empty (0 bytes)".into(),
        });
    }
    let reader = ImageReader::open(path)
        .map_err(|source| DegradeError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| DegradeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if reader.format().is_none() {
        return Err(DegradeError::Decode {
            path: path.to_path_buf(),
            reason:
                "unknown or unsupported image format (content is not PNG, JPEG, BMP, TIFF or WebP)"
                    .into(),
        });
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_end_marker(path)? {
        return Err(DegradeError::Decode {
            path: path.to_path_buf(),
            reason: "truncated JPEG (no end-of-image marker)".into(),
        });
    }
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Whether a JPEG file has its end-of-image marker (`FF D9`) in its last 4 KiB. The decoder fills
/// a truncated scan with grey instead of failing, so a file cut short is caught here. `FF D9`
/// cannot occur inside entropy-coded data, so a complete file has it at its end, followed at most
/// by a little padding.
fn jpeg_has_end_marker(path: &Path) -> Result<bool, DegradeError> {
    use std::io::{Read, Seek, SeekFrom};
    let io_err = |source| DegradeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    let tail = len.min(4096);
    f.seek(SeekFrom::Start(len - tail)).map_err(io_err)?;
    let mut buf = Vec::with_capacity(tail as usize);
    f.read_to_end(&mut buf).map_err(io_err)?;
    Ok(buf.windows(2).any(|w| w == [0xFF, 0xD9]))
}

fn check_writable(path: &Path, img: &Image) -> Result<(usize, usize, usize), DegradeError> {
    let (c, h, w) = img.dim();
    if !(c == 1 || c == 3) || h == 0 || w == 0 {
        return Err(DegradeError::Encode {
            path: path.to_path_buf(),
            reason: format!(
                "image shape {:?} is not 1 or 3 channels of non-zero size",
                img.shape()
            ),
        });
    }
    Ok((c, h, w))
}

fn interleave<T>(img: &Image, f: impl Fn(f32) -> T) -> Vec<T> {
    let (c, h, w) = img.dim();
    let mut out = Vec::with_capacity(c * h * w);
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                out.push(f(img[[ch, y, x]]));
            }
        }
    }
    out
}

fn save(path: &Path, dynimg: DynamicImage) -> Result<(), DegradeError> {
    dynimg
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| DegradeError::Encode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Writes an 8-bit PNG (RGB for 3 channels, gray for 1), quantized with [`quantize_value`]
/// (MATLAB `uint8`: round half away from zero, saturate).
pub fn write_png(path: &Path, img: &Image) -> Result<(), DegradeError> {
    let (c, h, w) = check_writable(path, img)?;
    let raw = interleave(img, |v| quantize_value(v) as u8);
    let (w32, h32) = (w as u32, h as u32);
    let dynimg = if c == 3 {
        image::RgbImage::from_raw(w32, h32, raw).map(DynamicImage::ImageRgb8)
    } else {
        image::GrayImage::from_raw(w32, h32, raw).map(DynamicImage::ImageLuma8)
    };
    let dynimg = dynimg.ok_or_else(|| DegradeError::Encode {
        path: path.to_path_buf(),
        reason: "buffer size mismatch".into(),
    })?;
    save(path, dynimg)
}

/// Writes a 16-bit PNG: each value becomes `round(v · 257)` saturated to 0–65535, so an 8-bit
/// image round-trips exactly and fractional values keep 1/257 precision.
pub fn write_png16(path: &Path, img: &Image) -> Result<(), DegradeError> {
    let (c, h, w) = check_writable(path, img)?;
    let raw = interleave(img, |v| {
        if v.is_nan() {
            0u16
        } else {
            (f64::from(v) * 257.0).round().clamp(0.0, 65535.0) as u16
        }
    });
    let (w32, h32) = (w as u32, h as u32);
    let dynimg = if c == 3 {
        image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(w32, h32, raw)
            .map(DynamicImage::ImageRgb16)
    } else {
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w32, h32, raw)
            .map(DynamicImage::ImageLuma16)
    };
    let dynimg = dynimg.ok_or_else(|| DegradeError::Encode {
        path: path.to_path_buf(),
        reason: "buffer size mismatch".into(),
    })?;
    save(path, dynimg)
}
