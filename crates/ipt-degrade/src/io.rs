//! Reading and writing images.
//!
//! Every reader returns an [`Image`] (CHW, `f32`, 0–255). 8-bit files map to their integer values,
//! 16-bit files are scaled by 255/65535 (not quantized), float files by 255. Alpha is dropped,
//! grayscale is replicated to RGB (or kept as one channel with [`Channels::Gray`]), and the EXIF
//! orientation of JPEG/TIFF/WebP files is applied.
//!
//! Decoding is bounded by [`ImageLimits`] (by default 16384 × 16384 pixels and 2 GiB of decoded
//! pixels): the size a file's header claims is checked before any pixel buffer is allocated, so a
//! small file claiming a huge image (a "decompression bomb") is refused with
//! [`DegradeError::TooLarge`] instead of exhausting memory. [`read_image_with_options`] and
//! [`decode_image_bytes`] take other limits.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};
use ndarray::Array3;

pub use crate::error::LimitExceeded;
use crate::quantize::quantize_value;
use crate::{DegradeError, Image};

/// Upper bounds on the images a reader decodes, checked against the file's header before any
/// pixel buffer is allocated.
///
/// Peak memory while reading one image is about the decoded buffer (at most
/// [`max_bytes`](Self::max_bytes)) plus the returned `f32` image (4 bytes per pixel and channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most pixels (width × height) an image may have.
    /// Default [`ImageLimits::DEFAULT_MAX_PIXELS`] = 16384 × 16384.
    pub max_pixels: u64,
    /// Most bytes the decoded pixels may take as the file stores them (width × height × bytes
    /// per pixel of its colour type: 3 for 8-bit RGB, 8 for 16-bit RGBA, …). The decoders may
    /// allocate [`ImageLimits::DECODER_WORKSPACE`] more for their working buffers (metadata,
    /// TIFF strips). Default [`ImageLimits::DEFAULT_MAX_BYTES`] = 2 GiB.
    pub max_bytes: u64,
}

impl ImageLimits {
    /// Default pixel limit: 16384 × 16384 (268 megapixels), above any camera's photograph.
    pub const DEFAULT_MAX_PIXELS: u64 = 16384 * 16384;
    /// Default byte limit: 2 GiB, a 16384 × 16384 16-bit RGBA image.
    pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

    /// What the decoders may allocate beyond the pixels, for metadata and working buffers:
    /// 512 MiB, the `image` crate's default allocation budget.
    pub const DECODER_WORKSPACE: u64 = 512 << 20;

    /// No limits at all (for trusted files only).
    pub const NONE: ImageLimits = ImageLimits {
        max_pixels: u64::MAX,
        max_bytes: u64::MAX,
    };

    /// Checks the size a header claims (`width`×`height`, `bytes` decoded). `path` names the
    /// file in the error.
    pub fn check(
        &self,
        path: &Path,
        (width, height): (u32, u32),
        bytes: u64,
    ) -> Result<(), DegradeError> {
        let pixels = u64::from(width) * u64::from(height);
        let exceeded = if pixels > self.max_pixels {
            Some(LimitExceeded::Pixels {
                pixels,
                max: self.max_pixels,
            })
        } else if bytes > self.max_bytes {
            Some(LimitExceeded::Bytes {
                bytes,
                max: self.max_bytes,
            })
        } else {
            None
        };
        match exceeded {
            Some(limit) => Err(DegradeError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                limit,
            }),
            None => Ok(()),
        }
    }
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// How to read an image: channel policy and decoding limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOptions {
    /// How many channels to return.
    pub channels: Channels,
    /// Largest image to decode.
    pub limits: ImageLimits,
}

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

/// Reads an image file as RGB (grayscale replicated, alpha dropped, 16-bit scaled to 0–255),
/// within the default [`ImageLimits`].
pub fn read_image(path: &Path) -> Result<Image, DegradeError> {
    read_image_with_options(path, &ReadOptions::default())
}

/// Reads an image file with an explicit channel policy (see [`Channels`]), within the default
/// [`ImageLimits`].
pub fn read_image_with(path: &Path, channels: Channels) -> Result<Image, DegradeError> {
    read_image_with_options(
        path,
        &ReadOptions {
            channels,
            ..Default::default()
        },
    )
}

/// Reads an image file with explicit channels and limits. An image over the limits is refused
/// from its header with [`DegradeError::TooLarge`], before its pixels are decoded.
pub fn read_image_with_options(path: &Path, options: &ReadOptions) -> Result<Image, DegradeError> {
    let (reader, len) = open_image(path)?;
    decode(reader, len, path, options)
}

/// A regular file opened for decoding ([`crate::files::open_regular`]), buffered, with its length.
pub(crate) fn open_image(
    path: &Path,
) -> Result<(std::io::BufReader<std::fs::File>, u64), DegradeError> {
    let io_err = |source| DegradeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::files::open_regular(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    Ok((std::io::BufReader::new(file), len))
}

/// Width and height from an image file's header, without decoding its pixels: only regular
/// files are opened, the format is told from the content, and a PNG's compressed metadata
/// chunks are checked first ([`crate::png_metadata`]), so a header read is as bounded as a
/// decode.
pub fn read_header_size(path: &Path) -> Result<(u32, u32), DegradeError> {
    let (reader, len) = open_image(path)?;
    header_size(reader, len, path)
}

/// [`read_header_size`] of a file held in memory; `name` only labels errors.
pub fn header_size_bytes(bytes: &[u8], name: &Path) -> Result<(u32, u32), DegradeError> {
    header_size(Cursor::new(bytes), bytes.len() as u64, name)
}

fn header_size<R: BufRead + Seek>(
    mut reader: R,
    len: u64,
    path: &Path,
) -> Result<(u32, u32), DegradeError> {
    let format = checked_format(&mut reader, len, path)?;
    let mut image_reader = ImageReader::new(reader);
    image_reader.set_format(format);
    guarded(path, || image_reader.into_dimensions())?.map_err(|e| DegradeError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Decodes an image held in memory (same formats, conversions and limits as
/// [`read_image_with_options`]). `name` only labels errors.
pub fn decode_image_bytes(
    bytes: &[u8],
    name: &Path,
    options: &ReadOptions,
) -> Result<Image, DegradeError> {
    decode(Cursor::new(bytes), bytes.len() as u64, name, options)
}

/// Converts a decoded image to an [`Image`] with the channel policy.
pub(crate) fn to_image(dynimg: DynamicImage, channels: Channels) -> Image {
    let (w, h) = (dynimg.width() as usize, dynimg.height() as usize);
    let is_color = dynimg.color().has_color();
    let out_c = match channels {
        Channels::Rgb => 3,
        Channels::Native if is_color => 3,
        Channels::Native | Channels::Gray => 1,
    };
    match dynimg {
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
    }
}

pub(crate) fn u16_to_255(v: u16) -> f32 {
    (f64::from(v) * 255.0 / 65535.0) as f32
}

pub(crate) fn f32_to_255(v: f32) -> f32 {
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

/// The format of an image told from its content (unknown formats refused), with a PNG's
/// compressed metadata chunks checked ([`crate::png_metadata`]); the reader is rewound.
fn checked_format<R: BufRead + Seek>(
    reader: &mut R,
    len: u64,
    path: &Path,
) -> Result<image::ImageFormat, DegradeError> {
    let io_err = |source| DegradeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let decode_error = |reason: String| DegradeError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let format = ImageReader::new(&mut *reader)
        .with_guessed_format()
        .map_err(io_err)?
        .format()
        .ok_or_else(|| {
            decode_error(
                "unknown or unsupported image format (content is not PNG, JPEG, BMP, TIFF or \
                 WebP)"
                    .into(),
            )
        })?;
    if format == image::ImageFormat::Png {
        crate::png_metadata::check(reader, len)
            .map_err(io_err)?
            .map_err(decode_error)?;
    }
    reader.rewind().map_err(io_err)?;
    Ok(format)
}

/// Decodes `reader` (`len` bytes long) within the limits into an [`Image`] with the channel
/// policy of `options`.
fn decode<R: BufRead + Seek>(
    reader: R,
    len: u64,
    path: &Path,
    options: &ReadOptions,
) -> Result<Image, DegradeError> {
    let (img, _) = decode_dynamic(reader, len, path, &options.limits)?;
    Ok(to_image(img, options.channels))
}

/// What a file carries besides its pixels, as [`decode_dynamic`] found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The embedded ICC colour profile (PNG `iCCP`, JPEG `APP2`, WebP `ICCP`, TIFF tag 34675).
    pub icc: Option<Vec<u8>>,
    /// The raw EXIF block (TIFF-structured), with its orientation entry reset to 1 ("no
    /// transform") when the decoder applied an orientation, so that it is applied only once.
    pub exif: Option<Vec<u8>>,
    /// The EXIF orientation that was applied to the pixels (1–8; 1 = none).
    pub orientation: u8,
}

/// Decodes `reader` (`len` bytes long) within `limits`: the header is read first, and the size
/// it claims is checked before any pixel buffer is allocated. The EXIF orientation is applied
/// to the pixels; the ICC profile and EXIF block are returned beside them (a metadata block the
/// decoder cannot read is left out, not an error: the pixels are what counts).
pub(crate) fn decode_dynamic<R: BufRead + Seek>(
    mut reader: R,
    len: u64,
    path: &Path,
    limits: &ImageLimits,
) -> Result<(DynamicImage, Metadata), DegradeError> {
    let io_err = |source| DegradeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let decode_err = |e: image::ImageError| DegradeError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if len == 0 {
        return Err(DegradeError::Decode {
            path: path.to_path_buf(),
            reason: "file is empty (0 bytes)".into(),
        });
    }
    let format = checked_format(&mut reader, len, path)?;
    if format == image::ImageFormat::Jpeg
        && !jpeg_has_end_marker(&mut reader, len).map_err(io_err)?
    {
        return Err(DegradeError::Decode {
            path: path.to_path_buf(),
            reason: "truncated JPEG (no end-of-image marker)".into(),
        });
    }
    reader.rewind().map_err(io_err)?;
    if format == image::ImageFormat::Tiff {
        if let Some(found) = guarded(path, || grey_float_tiff(&mut reader, path, limits))?? {
            return Ok(found);
        }
        reader.rewind().map_err(io_err)?;
    }
    let mut reader = ImageReader::new(reader);
    reader.set_format(format);
    // The decoders' budget: the pixels (checked below from the header) plus their working
    // buffers (metadata chunks, TIFF strips, …).
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(
        limits
            .max_bytes
            .saturating_add(ImageLimits::DECODER_WORKSPACE),
    );
    reader.limits(decoder_limits);
    let mut decoder = guarded(path, || reader.into_decoder())?.map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    limits.check(path, (w, h), decoder.total_bytes())?;
    if w == 0 || h == 0 {
        return Err(DegradeError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("image has zero size ({w}×{h})"),
        });
    }
    guarded(path, || {
        let icc = decoder.icc_profile().ok().flatten();
        let mut exif = decoder.exif_metadata().ok().flatten();
        // TIFF keeps its orientation in its own tag, the others in the EXIF block
        let orientation = decoder.orientation()?;
        if let Some(chunk) = exif.as_mut() {
            let _ = image::metadata::Orientation::remove_from_exif_chunk(chunk);
        }
        let mut img = DynamicImage::from_decoder(decoder)?;
        img.apply_orientation(orientation);
        let metadata = Metadata {
            icc,
            exif,
            orientation: orientation.to_exif(),
        };
        Ok((img, metadata))
    })?
    .map_err(decode_err)
}

/// A grey TIFF of 32-bit float samples, which the `image` crate does not decode: read with the
/// `tiff` crate within `limits` into 16-bit grey (`v · 65535`, rounded, clamped to 0–1 first, as
/// the RGB float files are), its orientation tag applied. `None` for every other TIFF (the
/// `image` crate decodes those).
fn grey_float_tiff<R: std::io::Read + Seek>(
    reader: &mut R,
    path: &Path,
    limits: &ImageLimits,
) -> Result<Option<(DynamicImage, Metadata)>, DegradeError> {
    use tiff::decoder::{Decoder, DecodingResult};
    let decode_err = |e: tiff::TiffError| DegradeError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let Ok(mut decoder) = Decoder::new(&mut *reader) else {
        return Ok(None);
    };
    if !matches!(decoder.colortype(), Ok(tiff::ColorType::Gray(32))) {
        return Ok(None);
    }
    let (w, h) = decoder.dimensions().map_err(decode_err)?;
    limits.check(path, (w, h), u64::from(w) * u64::from(h) * 4)?;
    let mut tiff_limits = tiff::decoder::Limits::default();
    tiff_limits.decoding_buffer_size = usize::try_from(limits.max_bytes).unwrap_or(usize::MAX);
    let mut decoder = decoder.with_limits(tiff_limits);
    let orientation = decoder
        .find_tag(tiff::tags::Tag::Orientation)
        .ok()
        .flatten()
        .and_then(|v| v.into_u16().ok())
        .and_then(|v| image::metadata::Orientation::from_exif(v.min(255) as u8))
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let DecodingResult::F32(values) = decoder.read_image().map_err(decode_err)? else {
        return Ok(None); // 32-bit integer grey: left to the `image` crate's answer
    };
    let levels: Vec<u16> = values
        .iter()
        .map(|&v| (f64::from(v.clamp(0.0, 1.0)) * 65535.0).round() as u16)
        .collect();
    let Some(buffer) = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w, h, levels) else {
        return Err(DegradeError::Decode {
            path: path.to_path_buf(),
            reason: format!("a {w}×{h} grey float image with {} samples", values.len()),
        });
    };
    let mut img = DynamicImage::ImageLuma16(buffer);
    img.apply_orientation(orientation);
    let metadata = Metadata {
        orientation: orientation.to_exif(),
        ..Metadata::default()
    };
    Ok(Some((img, metadata)))
}

/// Runs the third-party decoder code in `f`, turning a panic into a decode error. Decoders are
/// meant to return errors on malformed files but do not always: zune-jpeg 0.5.15 (the JPEG
/// decoder of `image` 0.25) panics in its AVX2 IDCT on some corrupt JPEGs (found by the `image`
/// fuzz target; upstream issue etemesi254/zune-image#409). Only the decoder calls are guarded,
/// so a panic in our own code is not hidden.
fn guarded<T>(path: &Path, f: impl FnOnce() -> T) -> Result<T, DegradeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        DegradeError::Decode {
            path: path.to_path_buf(),
            reason: format!("the decoder failed on this corrupt file (internal error: {what})"),
        }
    })
}

/// Whether a JPEG of `len` bytes has its end-of-image marker (`FF D9`) in its last 4 KiB. The
/// decoder fills a truncated scan with grey instead of failing, so a file cut short is caught
/// here. `FF D9` cannot occur inside entropy-coded data, so a complete file has it at its end,
/// followed at most by a little padding.
fn jpeg_has_end_marker<R: std::io::Read + Seek>(r: &mut R, len: u64) -> std::io::Result<bool> {
    use std::io::{Read, SeekFrom};
    let tail = len.min(4096);
    r.seek(SeekFrom::Start(len - tail))?;
    let mut buf = Vec::with_capacity(tail as usize);
    r.take(tail).read_to_end(&mut buf)?;
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
    save(path, png_image(path, img)?)
}

/// The bytes of the 8-bit PNG that [`write_png`] writes, in memory; `name` names the image in
/// errors.
pub fn encode_png(name: &Path, img: &Image) -> Result<Vec<u8>, DegradeError> {
    let mut out = std::io::Cursor::new(Vec::new());
    png_image(name, img)?
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| DegradeError::Encode {
            path: name.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(out.into_inner())
}

/// `img` quantised to 8 bits (RGB or grey) for a PNG.
fn png_image(path: &Path, img: &Image) -> Result<DynamicImage, DegradeError> {
    let (c, h, w) = check_writable(path, img)?;
    let raw = interleave(img, |v| quantize_value(v) as u8);
    let (w32, h32) = (w as u32, h as u32);
    let dynimg = if c == 3 {
        image::RgbImage::from_raw(w32, h32, raw).map(DynamicImage::ImageRgb8)
    } else {
        image::GrayImage::from_raw(w32, h32, raw).map(DynamicImage::ImageLuma8)
    };
    dynimg.ok_or_else(|| DegradeError::Encode {
        path: path.to_path_buf(),
        reason: "buffer size mismatch".into(),
    })
}

/// A 0–255 value as a 16-bit level: `round(v · 257)` saturated to 0–65535, NaN as 0 (the 16-bit
/// counterpart of [`quantize_value`]).
pub fn quantize_u16(v: f32) -> u16 {
    if v.is_nan() {
        0
    } else {
        (f64::from(v) * 257.0).round().clamp(0.0, 65535.0) as u16
    }
}

/// Writes a 16-bit PNG: each value becomes `round(v · 257)` saturated to 0–65535, so an 8-bit
/// image round-trips exactly and fractional values keep 1/257 precision.
pub fn write_png16(path: &Path, img: &Image) -> Result<(), DegradeError> {
    let (c, h, w) = check_writable(path, img)?;
    let raw = interleave(img, quantize_u16);
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
