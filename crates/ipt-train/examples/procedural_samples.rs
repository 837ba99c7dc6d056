//! Write a 4×4 contact sheet of embedded procedural training images to a PNG.
//!
//! `cargo run -p ipt-train --example procedural_samples -- OUT.png [SEED]`

use ipt_train::data::ProceduralImages;
use ndarray::{s, Array3};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "procedural.png".into());
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let (n, size) = (4usize, 200usize);
    let gen = ProceduralImages::new(seed, size, size);
    let mut sheet = Array3::<f32>::zeros((3, n * size, n * size));
    for i in 0..n * n {
        let (r, c) = (i / n, i % n);
        sheet
            .slice_mut(s![.., r * size..(r + 1) * size, c * size..(c + 1) * size])
            .assign(&gen.image(i as u64));
    }
    ipt_degrade::io::write_png(std::path::Path::new(&out), &sheet)?;
    println!("wrote {out}");
    Ok(())
}
