//! Decoding limits: images whose header claims more than the limits are refused before their
//! pixels are allocated ("decompression bombs"), for every format and colour type.
//!
//! This test binary counts the bytes it allocates (a wrapping global allocator), so that the
//! bomb tests can assert that nothing large was allocated. Its tests hold a lock while they
//! measure, so that tests running in parallel do not disturb each other's figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use ipt_degrade::io::{
    decode_image_bytes, read_image, read_image_with_options, Channels, ImageLimits, LimitExceeded,
    ReadOptions,
};
use ipt_degrade::DegradeError;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Serialises the measuring tests of this binary.
static MEASURE: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result with the most bytes allocated at once above the level
/// before the call.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// A PNG's bytes with its IHDR width and height replaced (and the chunk's CRC fixed): the
/// header claims a size the compressed data does not hold.
fn png_claiming(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = png.to_vec();
    // signature (8) | length (4) | "IHDR" (4) | width (4) | height (4) | 5 more bytes | CRC (4)
    assert_eq!(&out[12..16], b"IHDR");
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A JPEG's bytes with its baseline frame header (SOF0) claiming another size.
fn jpeg_claiming(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG has an SOF0 marker");
    // FF C0 | length (2) | precision (1) | height (2) | width (2)
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

fn encoded(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn small_rgb() -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(ImageBuffer::from_fn(40, 30, |x, y| {
        Rgb([(x * 6) as u8, (y * 8) as u8, 90u8])
    }))
}

fn expect_too_large(result: Result<ipt_degrade::Image, DegradeError>) -> DegradeError {
    match result {
        Err(e @ DegradeError::TooLarge { .. }) => e,
        Err(other) => panic!("expected TooLarge, got {other:?}"),
        Ok(img) => panic!("decoded unexpectedly: {:?}", img.dim()),
    }
}

#[test]
fn png_bomb_is_refused_from_its_header_naming_the_file() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bomb = png_claiming(
        &encoded(&small_rgb(), image::ImageFormat::Png),
        100_000,
        100_000,
    );
    assert!(bomb.len() < 10_000);
    let path = dir.path().join("bomb.png");
    std::fs::write(&path, &bomb).unwrap();

    let (result, peak) = peak_allocation(|| read_image(&path));
    let err = expect_too_large(result);
    assert!(
        peak < 16 << 20,
        "refusing the bomb allocated {peak} bytes at once"
    );
    match &err {
        DegradeError::TooLarge {
            path: p,
            width,
            height,
            limit: LimitExceeded::Pixels { pixels, max },
        } => {
            assert_eq!(p, &path);
            assert_eq!((*width, *height), (100_000, 100_000));
            assert_eq!(*pixels, 10_000_000_000);
            assert_eq!(*max, ImageLimits::DEFAULT_MAX_PIXELS);
        }
        other => panic!("expected a pixel limit, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("bomb.png") && msg.contains("100000×100000") && msg.contains("268435456"),
        "{msg}"
    );

    // The same bytes from memory, and with a wide but not square claim (width×height order).
    let (result, peak) = peak_allocation(|| {
        decode_image_bytes(&bomb, Path::new("mem.png"), &ReadOptions::default())
    });
    assert!(expect_too_large(result).to_string().contains("mem.png"));
    assert!(peak < 16 << 20, "{peak} bytes");
    let wide = png_claiming(
        &encoded(&small_rgb(), image::ImageFormat::Png),
        70_000,
        5_000,
    );
    let msg = expect_too_large(decode_image_bytes(
        &wide,
        Path::new("wide.png"),
        &ReadOptions::default(),
    ))
    .to_string();
    assert!(msg.contains("70000×5000"), "{msg}");
}

#[test]
fn jpeg_bomb_is_refused_from_its_header() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let jpeg = encoded(&small_rgb(), image::ImageFormat::Jpeg);
    let bomb = jpeg_claiming(&jpeg, 65_000, 65_000);
    let (result, peak) = peak_allocation(|| {
        decode_image_bytes(&bomb, Path::new("bomb.jpg"), &ReadOptions::default())
    });
    let msg = expect_too_large(result).to_string();
    assert!(
        msg.contains("bomb.jpg") && msg.contains("65000×65000"),
        "{msg}"
    );
    assert!(peak < 16 << 20, "{peak} bytes");
}

#[test]
fn images_within_the_limits_decode_and_the_limits_are_inclusive() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.png");
    small_rgb().save(&path).unwrap();
    let img = read_image(&path).unwrap();
    assert_eq!(img.dim(), (3, 30, 40));
    assert_eq!(img[[1, 2, 0]], 16.0);

    let exact = ReadOptions {
        limits: ImageLimits {
            max_pixels: 40 * 30,
            max_bytes: 40 * 30 * 3,
        },
        ..Default::default()
    };
    assert_eq!(read_image_with_options(&path, &exact).unwrap(), img);
    let one_pixel_less = ReadOptions {
        limits: ImageLimits {
            max_pixels: 40 * 30 - 1,
            ..exact.limits
        },
        ..exact
    };
    let msg = expect_too_large(read_image_with_options(&path, &one_pixel_less)).to_string();
    assert!(msg.contains("ok.png") && msg.contains("40×30"), "{msg}");
    let one_byte_less = ReadOptions {
        limits: ImageLimits {
            max_bytes: 40 * 30 * 3 - 1,
            ..exact.limits
        },
        ..exact
    };
    match read_image_with_options(&path, &one_byte_less) {
        Err(DegradeError::TooLarge {
            limit: LimitExceeded::Bytes { bytes, max },
            ..
        }) => assert_eq!((bytes, max), (3600, 3599)),
        other => panic!("expected a byte limit, got {other:?}"),
    }
    // No limits at all still decodes.
    let none = ReadOptions {
        limits: ImageLimits::NONE,
        channels: Channels::Gray,
    };
    assert_eq!(
        read_image_with_options(&path, &none).unwrap().dim(),
        (1, 30, 40)
    );
}

/// Every colour type and format goes through the same check: each image is refused one byte
/// (and one pixel) under its decoded size and read at exactly its size.
#[test]
fn every_colour_type_and_format_is_limited() {
    let _guard = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    use image::DynamicImage as D;
    let (w, h) = (6u32, 5u32);
    let cases: Vec<(&str, D, image::ImageFormat, u64)> = vec![
        (
            "gray8.png",
            D::ImageLuma8(ImageBuffer::from_fn(w, h, |x, _| Luma([x as u8]))),
            image::ImageFormat::Png,
            1,
        ),
        (
            "graya8.png",
            D::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, _| LumaA([x as u8, 9]))),
            image::ImageFormat::Png,
            2,
        ),
        (
            "rgba8.png",
            D::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([x as u8, y as u8, 1, 2])
            })),
            image::ImageFormat::Png,
            4,
        ),
        (
            "gray16.png",
            D::ImageLuma16(ImageBuffer::from_fn(w, h, |x, _| Luma([x as u16 * 999]))),
            image::ImageFormat::Png,
            2,
        ),
        (
            "rgb16.png",
            D::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([x as u16, y as u16, 7])
            })),
            image::ImageFormat::Png,
            6,
        ),
        (
            "rgba16.png",
            D::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([x as u16, y as u16, 7, 65535])
            })),
            image::ImageFormat::Png,
            8,
        ),
        (
            "rgb.jpg",
            small_rgb().resize_exact(w, h, image::imageops::Nearest),
            image::ImageFormat::Jpeg,
            3,
        ),
        (
            "rgb.bmp",
            small_rgb().resize_exact(w, h, image::imageops::Nearest),
            image::ImageFormat::Bmp,
            3,
        ),
        (
            "rgb.tiff",
            small_rgb().resize_exact(w, h, image::imageops::Nearest),
            image::ImageFormat::Tiff,
            3,
        ),
        (
            "rgba16.tiff",
            D::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([x as u16, y as u16, 7, 65535])
            })),
            image::ImageFormat::Tiff,
            8,
        ),
        (
            "rgb.webp",
            small_rgb().resize_exact(w, h, image::imageops::Nearest),
            image::ImageFormat::WebP,
            3,
        ),
    ];
    let pixels = u64::from(w * h);
    for (name, img, format, bytes_per_pixel) in cases {
        let bytes = encoded(&img, format);
        let name = Path::new(name);
        let exact = ReadOptions {
            limits: ImageLimits {
                max_pixels: pixels,
                max_bytes: pixels * bytes_per_pixel,
            },
            channels: Channels::Native,
        };
        let ok = decode_image_bytes(&bytes, name, &exact)
            .unwrap_or_else(|e| panic!("{}: {e}", name.display()));
        assert_eq!(
            (ok.dim().1, ok.dim().2),
            (h as usize, w as usize),
            "{name:?}"
        );
        let fewer_bytes = ImageLimits {
            max_bytes: pixels * bytes_per_pixel - 1,
            ..exact.limits
        };
        let fewer_pixels = ImageLimits {
            max_pixels: pixels - 1,
            ..exact.limits
        };
        for limits in [fewer_bytes, fewer_pixels] {
            let opts = ReadOptions { limits, ..exact };
            let msg = expect_too_large(decode_image_bytes(&bytes, name, &opts)).to_string();
            assert!(
                msg.contains(&*name.to_string_lossy()) && msg.contains("6×5"),
                "{msg}"
            );
        }
    }
}

/// `png` with a chunk inserted after IHDR (CRC computed).
fn png_with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc32fast::hash(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    let mut out = png[..33].to_vec();
    out.extend(chunk);
    out.extend_from_slice(&png[33..]);
    out
}

#[test]
fn an_icc_profile_that_inflates_to_512_mib_is_refused_without_taking_it() {
    let _serial = MEASURE.lock().unwrap();
    // 512 MiB of zeros deflate to about 512 KB (the variant of the review's 2 GiB probe)
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        std::io::Write::write_all(&mut z, &zeros).unwrap();
    }
    let stream = z.finish().unwrap();
    let png = encoded(&small_rgb(), image::ImageFormat::Png);
    let bomb = png_with_chunk(&png, b"iCCP", &[b"bomb\0\0".as_slice(), &stream].concat());
    let (result, peak) = peak_allocation(|| {
        ipt_degrade::io::decode_image_bytes(&bomb, Path::new("icc.png"), &ReadOptions::default())
    });
    let msg = result.unwrap_err().to_string();
    assert!(
        msg.contains("icc.png") && msg.contains("iCCP") && msg.contains("16 MiB"),
        "{msg}"
    );
    assert!(peak < 32 << 20, "peak allocation {peak} bytes");
    // A real-sized profile (64 KB) is still read.
    let small = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let mut small = small;
    std::io::Write::write_all(&mut small, &zeros[..64 << 10]).unwrap();
    let ok = png_with_chunk(
        &png,
        b"iCCP",
        &[b"ok\0\0".as_slice(), &small.finish().unwrap()].concat(),
    );
    ipt_degrade::io::decode_image_bytes(&ok, Path::new("ok.png"), &ReadOptions::default())
        .expect("a normal profile decodes");
}
