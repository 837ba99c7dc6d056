//! Writes the seed images of the `image` fuzz target: one tiny file per format and colour type
//! that `ipt_degrade::io` reads. Used once to fill `fuzz/seeds/image`:
//!
//! ```sh
//! cargo run -p ipt-degrade --example fuzz_seeds -- fuzz/seeds/image
//! ```

use std::path::PathBuf;

use image::{DynamicImage as D, ImageBuffer, ImageFormat as F, Luma, LumaA, Rgb, Rgba};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: fuzz_seeds OUT_DIR")?);
    std::fs::create_dir_all(&dir)?;
    let (w, h) = (8u32, 6u32);
    let v = |x: u32, y: u32| (x * 30 + y * 7) as u8;
    let rgb = D::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([v(x, y), 90, v(y, x)])
    }));
    let seeds: Vec<(&str, D, F)> = vec![
        (
            "gray8.png",
            D::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| Luma([v(x, y)]))),
            F::Png,
        ),
        (
            "graya8.png",
            D::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, y| LumaA([v(x, y), 200]))),
            F::Png,
        ),
        ("rgb8.png", rgb.clone(), F::Png),
        (
            "rgba8.png",
            D::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([v(x, y), 1, 2, 128])
            })),
            F::Png,
        ),
        (
            "gray16.png",
            D::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| {
                Luma([u16::from(v(x, y)) * 257])
            })),
            F::Png,
        ),
        (
            "rgba16.png",
            D::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgba([u16::from(v(x, y)) * 250, 7, 65535, 4000])
            })),
            F::Png,
        ),
        ("rgb.jpg", rgb.clone(), F::Jpeg),
        ("gray.jpg", D::ImageLuma8(rgb.to_luma8()), F::Jpeg),
        ("rgb.bmp", rgb.clone(), F::Bmp),
        ("rgb.tiff", rgb.clone(), F::Tiff),
        (
            "rgb16.tiff",
            D::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                Rgb([u16::from(v(x, y)) * 99, 1, 2])
            })),
            F::Tiff,
        ),
        ("rgb.webp", rgb, F::WebP),
    ];
    for (name, img, format) in seeds {
        img.save_with_format(dir.join(name), format)?;
    }
    Ok(())
}
