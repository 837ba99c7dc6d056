//! `ipt plot-crops`: the same region of several images side by side (input, bicubic, restored),
//! for figures of images without ground truth.

use std::path::PathBuf;

use anyhow::{bail, Context};
use ipt_degrade::{imresize_to, Image};

/// Arguments of `ipt plot-crops`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The PNG to write.
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// The region `X,Y,W,H`, in pixels of the largest image.
    #[arg(long, value_name = "X,Y,W,H", value_delimiter = ',', required = true)]
    pub crop: Vec<usize>,
    /// Enlarge every crop this many times (pixel replication) so that pixels show.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub zoom: u32,
    /// Panels, left to right: `FILE` (a smaller image is enlarged to the largest's size by pixel
    /// replication, so its pixels show as they are) or `bicubic:FILE` (enlarged by MATLAB
    /// bicubic instead). Every size must divide the largest by a whole factor.
    #[arg(required = true, value_name = "[bicubic:]FILE")]
    pub panels: Vec<String>,
}

/// Pixel replication by `k` in both directions.
fn replicate(img: &Image, k: usize) -> Image {
    let (c, h, w) = img.dim();
    Image::from_shape_fn((c, h * k, w * k), |(ch, y, x)| img[[ch, y / k, x / k]])
}

/// Runs `ipt plot-crops`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let [x, y, cw, ch] = <[usize; 4]>::try_from(args.crop.as_slice())
        .map_err(|_| anyhow::anyhow!("--crop takes X,Y,W,H"))?;
    if cw == 0 || ch == 0 {
        bail!("--crop: the width and height must be at least 1");
    }
    let mut panels = Vec::new();
    for p in &args.panels {
        let (bicubic, file) = match p.strip_prefix("bicubic:") {
            Some(f) => (true, PathBuf::from(f)),
            None => (false, PathBuf::from(p)),
        };
        let img = ipt_degrade::io::read_image(&file)?;
        panels.push((bicubic, file, img));
    }
    let (h, w) = panels
        .iter()
        .map(|(_, _, i)| (i.dim().1, i.dim().2))
        .max_by_key(|&(h, w)| h * w)
        .unwrap_or((0, 0));
    if x + cw > w || y + ch > h {
        bail!("--crop {x},{y},{cw},{ch} is outside the largest image ({w}×{h})");
    }
    let zoom = args.zoom as usize;
    let gap = 4;
    let (pw, ph) = (cw * zoom, ch * zoom);
    let total_w = panels.len() * pw + (panels.len() - 1) * gap;
    let mut canvas = image::RgbImage::from_pixel(total_w as u32, ph as u32, image::Rgb([255; 3]));
    for (i, (bicubic, file, img)) in panels.iter().enumerate() {
        let (_, ih, iw) = img.dim();
        if h % ih != 0 || w % iw != 0 || h / ih != w / iw {
            bail!(
                "{}: {iw}×{ih} does not divide the largest image ({w}×{h}) by a whole factor",
                file.display()
            );
        }
        let k = h / ih;
        let full = match (k, bicubic) {
            (1, _) => img.clone(),
            (_, true) => imresize_to(img, h, w),
            (_, false) => replicate(img, k),
        };
        let full = ipt_degrade::quantize(&full);
        let left = i * (pw + gap);
        for py in 0..ph {
            for px in 0..pw {
                let (sy, sx) = (y + py / zoom, x + px / zoom);
                let rgb = |c: usize| full[[c.min(full.dim().0 - 1), sy, sx]] as u8;
                canvas.put_pixel(
                    (left + px) as u32,
                    py as u32,
                    image::Rgb([rgb(0), rgb(1), rgb(2)]),
                );
            }
        }
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    canvas
        .write_to(&mut bytes, image::ImageFormat::Png)
        .context("encoding the figure")?;
    ipt_degrade::files::write_bytes_atomic(&args.out, bytes.get_ref())
        .map_err(|e| e.into_io_error())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({} panels of {cw}×{ch} ×{zoom})",
        args.out.display(),
        panels.len()
    );
    Ok(())
}
