//! Photos as files: the pixels plus everything a restorer must carry from its input file to its
//! output file (alpha, grey or colour, bit depth, ICC profile, EXIF), and the output formats.
//!
//! [`read_photo`] keeps what [`crate::io::read_image`] drops: a grey file stays one channel, the
//! alpha plane is kept beside the colour, the file's bits per channel are recorded, and the ICC
//! profile and EXIF block come along (the EXIF orientation is applied to the pixels once and
//! reset to 1 in the block, so no viewer applies it a second time). [`encode_photo`] writes a
//! [`Photo`] as PNG, JPEG or WebP and lists what the chosen format could not hold
//! ([`Dropped`]), so that a caller can say so in one line instead of losing it silently.

use std::fmt;
use std::io::{BufRead, Cursor, Seek};
use std::path::Path;
use std::str::FromStr;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ExtendedColorType, ImageEncoder};

use crate::io::{decode_dynamic, quantize_u16, to_image, Channels, ImageLimits, Metadata};
use crate::quantize::quantize_value;
use crate::{DegradeError, Image};

/// An image file's content: pixels, alpha, depth and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    /// The colour pixels, CHW on the 0–255 scale: 1 channel for a grey file, 3 for colour.
    pub pixels: Image,
    /// The alpha plane (1 channel, 0–255 = transparent–opaque), when the file has one.
    pub alpha: Option<Image>,
    /// Bits per channel: 8 or 16 (files of 16-bit or floating-point samples read as 16).
    pub bits: u8,
    /// ICC profile, EXIF block and the orientation that was applied.
    pub metadata: Metadata,
}

impl Photo {
    /// Whether the colour is one grey channel.
    pub fn is_grey(&self) -> bool {
        self.pixels.dim().0 == 1
    }

    /// The pixels as RGB (a grey image replicated to three channels): what a colour network
    /// takes.
    pub fn rgb(&self) -> Image {
        let (c, h, w) = self.pixels.dim();
        if c == 3 {
            return self.pixels.clone();
        }
        self.pixels
            .broadcast((3, h, w))
            .map_or_else(|| self.pixels.clone(), |v| v.to_owned())
    }
}

/// The luma of an RGB image, one channel: `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601 weights at
/// full range, as JPEG's Y: grey levels stay where they are). What a grey file's restoration
/// keeps of a colour network's output.
pub fn luma(img: &Image) -> Image {
    let (c, h, w) = img.dim();
    if c != 3 {
        return img.clone();
    }
    Image::from_shape_fn((1, h, w), |(_, y, x)| {
        0.299 * img[[0, y, x]] + 0.587 * img[[1, y, x]] + 0.114 * img[[2, y, x]]
    })
}

/// Reads an image file as a [`Photo`] within `limits` (refused from its header when larger,
/// as every reader of the workspace does).
pub fn read_photo(path: &Path, limits: &ImageLimits) -> Result<Photo, DegradeError> {
    let (reader, len) = crate::io::open_image(path)?;
    decode_photo(reader, len, path, limits)
}

/// [`read_photo`] of a file held in memory; `name` only labels errors.
pub fn decode_photo_bytes(
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
) -> Result<Photo, DegradeError> {
    decode_photo(Cursor::new(bytes), bytes.len() as u64, name, limits)
}

fn decode_photo<R: BufRead + Seek>(
    reader: R,
    len: u64,
    path: &Path,
    limits: &ImageLimits,
) -> Result<Photo, DegradeError> {
    let (img, metadata) = decode_dynamic(reader, len, path, limits)?;
    let color = img.color();
    let bits = if color.bytes_per_pixel() / color.channel_count() == 1 {
        8
    } else {
        16
    };
    let alpha = alpha_plane(&img);
    Ok(Photo {
        pixels: to_image(img, Channels::Native),
        alpha,
        bits,
        metadata,
    })
}

/// The alpha plane of an image that has one, on the 0–255 scale.
fn alpha_plane(img: &DynamicImage) -> Option<Image> {
    use crate::io::{f32_to_255, u16_to_255};
    let (h, w) = (img.height() as usize, img.width() as usize);
    let take = |raw: Vec<f32>| Image::from_shape_vec((1, h, w), raw).ok();
    match img {
        DynamicImage::ImageLumaA8(b) => take(every(b.as_raw(), 2, 1, f32::from)),
        DynamicImage::ImageRgba8(b) => take(every(b.as_raw(), 4, 3, f32::from)),
        DynamicImage::ImageLumaA16(b) => take(every(b.as_raw(), 2, 1, u16_to_255)),
        DynamicImage::ImageRgba16(b) => take(every(b.as_raw(), 4, 3, u16_to_255)),
        DynamicImage::ImageRgba32F(b) => take(every(b.as_raw(), 4, 3, f32_to_255)),
        other if other.color().has_alpha() => {
            take(every(other.to_rgba32f().as_raw(), 4, 3, f32_to_255))
        }
        _ => None,
    }
}

/// Sample `index` of every `stride` samples, converted with `f`.
fn every<T: Copy>(raw: &[T], stride: usize, index: usize, f: impl Fn(T) -> f32) -> Vec<f32> {
    raw.chunks_exact(stride).map(|px| f(px[index])).collect()
}

/// An output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// PNG: 8 or 16 bits, grey or colour, alpha, ICC and EXIF. The default.
    #[default]
    Png,
    /// JPEG (baseline, 4:2:0 chroma for colour) at a quality of 1–100: 8 bits, no alpha.
    Jpeg {
        /// Quality factor, 1–100.
        quality: u8,
    },
    /// Lossless WebP: 8 bits, alpha, ICC and EXIF.
    Webp,
}

impl OutputFormat {
    /// Default JPEG quality: 95, as OpenCV's `imwrite` (what Real-ESRGAN's script writes with).
    pub const DEFAULT_JPEG_QUALITY: u8 = 95;

    /// The file extension: `png`, `jpg` or `webp`.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg { .. } => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// Whether the format stores 16 bits per channel.
    pub fn has_16_bits(self) -> bool {
        matches!(self, OutputFormat::Png)
    }

    /// Whether the format stores alpha.
    pub fn has_alpha(self) -> bool {
        !matches!(self, OutputFormat::Jpeg { .. })
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    /// `png`, `jpg`/`jpeg` (at [`OutputFormat::DEFAULT_JPEG_QUALITY`]) or `webp`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Ok(OutputFormat::Png),
            "jpg" | "jpeg" => Ok(OutputFormat::Jpeg {
                quality: Self::DEFAULT_JPEG_QUALITY,
            }),
            "webp" => Ok(OutputFormat::Webp),
            _ => Err(format!("output format must be png, jpg or webp, not {s:?}")),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// Something of a [`Photo`] that the output format could not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The alpha plane (JPEG has none).
    Alpha,
    /// 16-bit precision, written as 8 bits.
    SixteenBits,
    /// The ICC profile.
    Icc,
    /// The EXIF block.
    Exif,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dropped::Alpha => "alpha",
            Dropped::SixteenBits => "16-bit depth (written as 8-bit)",
            Dropped::Icc => "ICC profile",
            Dropped::Exif => "EXIF",
        })
    }
}

/// An encoded file and what its format dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// What the format could not hold, in a fixed order (alpha, depth, ICC, EXIF).
    pub dropped: Vec<Dropped>,
}

/// Encodes `photo` as `format`: its pixels quantized to its [`bits`](Photo::bits) (8: MATLAB
/// `uint8` rounding, [`quantize_value`]; 16: `round(v·257)`, [`quantize_u16`]), grey or colour,
/// with its alpha plane, ICC profile and EXIF block where the format holds them. `name` labels
/// errors.
pub fn encode_photo(
    name: &Path,
    photo: &Photo,
    format: OutputFormat,
) -> Result<Encoded, DegradeError> {
    let encode_error = |reason: String| DegradeError::Encode {
        path: name.to_path_buf(),
        reason,
    };
    let (c, h, w) = photo.pixels.dim();
    if !(c == 1 || c == 3) || h == 0 || w == 0 {
        return Err(encode_error(format!(
            "image shape {:?} is not 1 or 3 channels of non-zero size",
            photo.pixels.shape()
        )));
    }
    let mut dropped = Vec::new();
    let alpha = match &photo.alpha {
        Some(a) if a.dim() != (1, h, w) => {
            return Err(encode_error(format!(
                "alpha plane of shape {:?} does not match the {w}×{h} image",
                a.shape()
            )))
        }
        Some(_) if !format.has_alpha() => {
            dropped.push(Dropped::Alpha);
            None
        }
        other => other.as_ref(),
    };
    let sixteen = photo.bits > 8;
    if sixteen && !format.has_16_bits() {
        dropped.push(Dropped::SixteenBits);
    }
    let sixteen = sixteen && format.has_16_bits();
    let channels = c + usize::from(alpha.is_some());
    let mut raw: Vec<u8> = Vec::with_capacity(channels * h * w * if sixteen { 2 } else { 1 });
    for y in 0..h {
        for x in 0..w {
            let samples = (0..c)
                .map(|ch| photo.pixels[[ch, y, x]])
                .chain(alpha.map(|a| a[[0, y, x]]));
            for v in samples {
                if sixteen {
                    raw.extend_from_slice(&quantize_u16(v).to_ne_bytes());
                } else {
                    raw.push(quantize_value(v) as u8);
                }
            }
        }
    }
    let color = match (channels, sixteen) {
        (1, false) => ExtendedColorType::L8,
        (2, false) => ExtendedColorType::La8,
        (3, false) => ExtendedColorType::Rgb8,
        (4, false) => ExtendedColorType::Rgba8,
        (1, true) => ExtendedColorType::L16,
        (2, true) => ExtendedColorType::La16,
        (3, true) => ExtendedColorType::Rgb16,
        _ => ExtendedColorType::Rgba16,
    };
    let mut bytes = Vec::new();
    let (w32, h32) = (w as u32, h as u32);
    let meta = &photo.metadata;
    let result = match format {
        OutputFormat::Png => write_with(
            PngEncoder::new(&mut bytes),
            meta,
            &mut dropped,
            (&raw, w32, h32, color),
        ),
        OutputFormat::Jpeg { quality } => write_with(
            JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100)),
            meta,
            &mut dropped,
            (&raw, w32, h32, color),
        ),
        OutputFormat::Webp => write_with(
            WebPEncoder::new_lossless(&mut bytes),
            meta,
            &mut dropped,
            (&raw, w32, h32, color),
        ),
    };
    result.map_err(|e| encode_error(e.to_string()))?;
    Ok(Encoded { bytes, dropped })
}

/// Hands the metadata to `encoder` (noting what it refuses) and encodes the pixels.
fn write_with(
    mut encoder: impl ImageEncoder,
    meta: &Metadata,
    dropped: &mut Vec<Dropped>,
    (raw, w, h, color): (&[u8], u32, u32, ExtendedColorType),
) -> image::ImageResult<()> {
    if let Some(icc) = &meta.icc {
        if encoder.set_icc_profile(icc.clone()).is_err() {
            dropped.push(Dropped::Icc);
        }
    }
    if let Some(exif) = &meta.exif {
        if encoder.set_exif_metadata(exif.clone()).is_err() {
            dropped.push(Dropped::Exif);
        }
    }
    encoder.write_image(raw, w, h, color)
}

/// [`encode_photo`] into `path`, atomically ([`crate::files::write_atomic`]); returns what the
/// format dropped.
pub fn write_photo(
    path: &Path,
    photo: &Photo,
    format: OutputFormat,
) -> Result<Vec<Dropped>, crate::files::AtomicWriteError<DegradeError>> {
    let mut dropped = Vec::new();
    crate::files::write_atomic(path, |tmp| {
        let encoded = encode_photo(path, photo, format)?;
        dropped = encoded.dropped;
        std::fs::write(tmp, &encoded.bytes).map_err(|e| DegradeError::Encode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    })?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        Array3::from_shape_fn((c, h, w), |(ch, y, x)| {
            ((ch * 40 + y * 7 + x * 13) % 256) as f32
        })
    }

    fn photo(c: usize, alpha: bool, bits: u8, metadata: Metadata) -> Photo {
        Photo {
            pixels: ramp(c, 5, 7),
            alpha: alpha.then(|| ramp(1, 5, 7).mapv(|v| 255.0 - v)),
            bits,
            metadata,
        }
    }

    fn round_trip(p: &Photo, format: OutputFormat) -> (Photo, Vec<Dropped>) {
        let enc = encode_photo(Path::new("t"), p, format).unwrap();
        let back = decode_photo_bytes(&enc.bytes, Path::new("t"), &ImageLimits::default()).unwrap();
        (back, enc.dropped)
    }

    /// A little-endian EXIF block with one IFD0 entry: Orientation = `o`.
    fn exif_with_orientation(o: u16) -> Vec<u8> {
        let mut b = vec![0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0];
        b.extend_from_slice(&0x0112u16.to_le_bytes()); // tag: Orientation
        b.extend_from_slice(&3u16.to_le_bytes()); // type SHORT
        b.extend_from_slice(&1u32.to_le_bytes()); // count
        b.extend_from_slice(&o.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, next IFD = 0
        b
    }

    #[test]
    fn png_keeps_grey_alpha_depth_and_metadata() {
        let meta = Metadata {
            icc: Some(b"not really a profile, but bytes to carry".to_vec()),
            exif: Some(exif_with_orientation(1)),
            orientation: 1,
        };
        for (c, alpha, bits) in [(1, false, 8), (1, true, 16), (3, true, 8), (3, false, 16)] {
            let p = photo(c, alpha, bits, meta.clone());
            let (back, dropped) = round_trip(&p, OutputFormat::Png);
            assert!(dropped.is_empty(), "{dropped:?}");
            assert_eq!(back, p, "channels {c}, alpha {alpha}, {bits} bits");
        }
    }

    #[test]
    fn jpeg_and_webp_say_what_they_drop() {
        let meta = Metadata {
            icc: Some(vec![7; 300]),
            exif: Some(exif_with_orientation(1)),
            orientation: 1,
        };
        let p = photo(3, true, 16, meta.clone());
        let (back, dropped) = round_trip(&p, OutputFormat::Jpeg { quality: 90 });
        assert_eq!(dropped, vec![Dropped::Alpha, Dropped::SixteenBits]);
        assert_eq!(
            (back.alpha, back.bits, back.pixels.dim()),
            (None, 8, (3, 5, 7))
        );
        assert_eq!(
            back.metadata, meta,
            "JPEG carries ICC (APP2) and EXIF (APP1)"
        );
        let (back, dropped) = round_trip(&p, OutputFormat::Webp);
        assert_eq!(dropped, vec![Dropped::SixteenBits]);
        assert_eq!(back.metadata, meta, "WebP carries ICCP and EXIF chunks");
        // lossless: the 8-bit pixels and alpha come back exactly
        assert_eq!(back.pixels, p.pixels);
        assert_eq!(back.alpha, p.alpha);
        let grey = photo(1, false, 8, Metadata::default());
        let (back, dropped) = round_trip(&grey, OutputFormat::Jpeg { quality: 100 });
        assert!(dropped.is_empty());
        assert!(back.is_grey(), "a grey JPEG stays grey");
    }

    #[test]
    fn exif_orientation_is_applied_once_and_reset() {
        // a 7×5 image stored with orientation 6 (rotate 90° clockwise to display)
        let stored = photo(
            3,
            false,
            8,
            Metadata {
                icc: None,
                exif: Some(exif_with_orientation(6)),
                orientation: 1,
            },
        );
        let enc = encode_photo(Path::new("t"), &stored, OutputFormat::Png).unwrap();
        let read = decode_photo_bytes(&enc.bytes, Path::new("t"), &ImageLimits::default()).unwrap();
        assert_eq!(read.pixels.dim(), (3, 7, 5), "rotated for display");
        assert_eq!(read.metadata.orientation, 6);
        assert_eq!(read.metadata.exif, Some(exif_with_orientation(1)));
        // the top-left displayed pixel is the stored bottom-left one (90° clockwise)
        assert_eq!(read.pixels[[0, 0, 0]], stored.pixels[[0, 4, 0]]);
        // written again, it is read as displayed, without a second rotation
        let (again, _) = round_trip(&read, OutputFormat::Png);
        assert_eq!(again.pixels, read.pixels);
        assert_eq!(again.metadata.orientation, 1);
    }

    #[test]
    fn formats_parse_and_shapes_are_checked() {
        assert_eq!("JPG".parse(), Ok(OutputFormat::Jpeg { quality: 95 }));
        assert_eq!("webp".parse(), Ok(OutputFormat::Webp));
        assert!("gif"
            .parse::<OutputFormat>()
            .unwrap_err()
            .contains("png, jpg or webp"));
        let mut p = photo(3, true, 8, Metadata::default());
        p.alpha = Some(ramp(1, 2, 2));
        let e = encode_photo(Path::new("x.png"), &p, OutputFormat::Png).unwrap_err();
        assert!(e.to_string().contains("alpha plane"), "{e}");
        assert_eq!(
            photo(1, false, 8, Metadata::default()).rgb().dim(),
            (3, 5, 7)
        );
    }
}
