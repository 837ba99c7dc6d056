//! Write a deterministic photo-sized RGB test picture (smooth gradients, edges and fine texture),
//! for timing and memory figures of `ipt restore` on large inputs without shipping large files.
//!
//! ```text
//! cargo run --release -p ipt-model --example synthetic_photo -- 3000 4000 /tmp/photo_12mp.png
//! ```
//! Arguments: height, width, output path (PNG).

use std::path::PathBuf;

use ndarray::Array3;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [h, w, out] = args.as_slice() else {
        anyhow::bail!("usage: synthetic_photo HEIGHT WIDTH OUT.png");
    };
    let (h, w): (usize, usize) = (h.parse()?, w.parse()?);
    anyhow::ensure!(h > 0 && w > 0, "height and width must be positive");
    let img = Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
        let gradient = 60.0 + 120.0 * (fx * (1.0 + c as f32 * 0.3) + 0.5 * fy).fract();
        let rings = 40.0 * ((fx - 0.5).hypot(fy - 0.4) * 60.0).sin();
        let edge = if (x / 97 + y / 61) % 2 == 0 {
            25.0
        } else {
            -25.0
        };
        let texture = ((x * 7 + y * 13 + c * 29 + (x * y) % 23) % 17) as f32 - 8.0;
        (gradient + rings + edge + texture)
            .clamp(0.0, 255.0)
            .round()
    });
    let out = PathBuf::from(out);
    ipt_degrade::io::write_png(&out, &img)?;
    println!("wrote {} ({h}×{w})", out.display());
    Ok(())
}
