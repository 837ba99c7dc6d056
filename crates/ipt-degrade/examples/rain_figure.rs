//! Writes the rain sample figure: clean | streak layer | rainy.
//!
//! `cargo run -p ipt-degrade --example rain_figure -- OUT.png [SEED]`
//!
//! Uses Set5 `baby.png` from the dataset root (`$IPT_DATA` or `../shared/datasets`) when present,
//! else a procedural test image. The streak layer is the procedural (non-official) generator with
//! default parameters.

use std::path::PathBuf;

use ipt_degrade::data::dataset_root;
use ipt_degrade::io::{read_image, write_png};
use ipt_degrade::rain::{add_rain, generate_streaks, RainParams};
use ipt_degrade::{Image, Rng8};
use ndarray::{s, Array3};
use rand::SeedableRng;

fn procedural_image(h: usize, w: usize) -> Image {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
        let base = [60.0 + 120.0 * fy, 90.0 + 80.0 * fx, 140.0 - 60.0 * fy][c];
        let checker = if (y / 32 + x / 32) % 2 == 0 {
            20.0
        } else {
            -20.0
        };
        base + checker
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "rain-sample.png".into()));
    let seed: u64 = match args.next() {
        Some(s) => s.parse()?,
        None => 2017,
    };
    let clean = match dataset_root().map(|r| r.join("Set5/baby.png")) {
        Some(p) if p.is_file() => {
            println!("clean image: {}", p.display());
            read_image(&p)?
        }
        _ => {
            println!("clean image: procedural (dataset root not found)");
            procedural_image(320, 480)
        }
    };
    let (_, h, w) = clean.dim();
    let mut rng = Rng8::seed_from_u64(seed);
    let layer = generate_streaks(h, w, &RainParams::default(), &mut rng);
    let rainy = add_rain(&clean, &layer);
    let gap = 8;
    let mut fig = Array3::<f32>::from_elem((3, h, 3 * w + 2 * gap), 255.0);
    fig.slice_mut(s![.., .., 0..w]).assign(&clean);
    for c in 0..3 {
        fig.slice_mut(s![c, .., w + gap..2 * w + gap])
            .assign(&layer);
    }
    fig.slice_mut(s![.., .., 2 * (w + gap)..]).assign(&rainy);
    write_png(&out, &fig)?;
    println!(
        "wrote {} (clean | streak layer | rainy, seed {seed})",
        out.display()
    );
    Ok(())
}
