//! Bicubic baseline reproduction on the shared benchmark sets (skipped when the data is absent).
//!
//! HR modcropped to s, LR = bicubic ↓s rounded, SR = bicubic ↑s rounded, Y-PSNR (IPT convention)
//! with shave s, averaged per set. Published (MATLAB) figures: see `docs/degradations.md`.

use std::path::Path;

use ipt_degrade::data::dataset_root;
use ipt_degrade::files::{list_images, Depth};
use ipt_degrade::io::read_image;
use ipt_degrade::{imresize, modcrop, quantize};
use ipt_metrics::{psnr_y, psnr_y_bt601, ssim_y, SetMean};

/// One published row: set, [x2, x3, x4] PSNR, [x2, x3, x4] SSIM, PSNR tolerance, SSIM tolerance.
type Published = (&'static str, [f64; 3], [f64; 3], f64, f64);

#[rustfmt::skip]
const PUBLISHED: [Published; 4] = [
    ("Set5", [33.66, 30.39, 28.42], [0.9299, 0.8682, 0.8104], 0.03, 0.001),
    ("Set14", [30.24, 27.55, 26.00], [0.8688, 0.7742, 0.7027], 0.1, 0.003),
    ("B100", [29.56, 27.21, 25.96], [0.8431, 0.7385, 0.6675], 0.03, 0.001),
    ("Urban100", [26.88, 24.46, 23.14], [0.8403, 0.7349, 0.6577], 0.03, 0.001),
];

/// PSNR / SSIM on MATLAB `rgb2ycbcr` of `uint8` images: Y rounded to integers (the usual
/// MATLAB evaluation scripts), for the record only.
fn y_rounded(img: &ipt_degrade::Image) -> ipt_degrade::Image {
    let y = ipt_metrics::color::y_bt601(img.view()).mapv(|v| v.round() as f32);
    y.insert_axis(ndarray::Axis(0))
}

struct Row {
    psnr: f64,
    psnr_yround: f64,
    ssim_yround: f64,
    psnr_bt601: f64,
    ssim: f64,
}

fn evaluate(dir: &Path, s: usize) -> Row {
    let files = list_images(dir, Depth::Flat).expect("list benchmark folder");
    let (mut p, mut pb, mut ss) = (SetMean::new(), SetMean::new(), SetMean::new());
    let (mut pr, mut sr_) = (SetMean::new(), SetMean::new());
    for f in &files {
        let hr = modcrop(&read_image(f).expect("read benchmark image"), s);
        let lr = quantize(&imresize(&hr, 1.0 / s as f64));
        let sr = quantize(&imresize(&lr, s as f64));
        p.push(psnr_y(sr.view(), hr.view(), s).expect("psnr"));
        pb.push(psnr_y_bt601(sr.view(), hr.view(), s).expect("psnr"));
        ss.push(ssim_y(sr.view(), hr.view(), s).expect("ssim"));
        let (ys, yh) = (y_rounded(&sr), y_rounded(&hr));
        pr.push(psnr_y(ys.view(), yh.view(), s).expect("psnr"));
        sr_.push(ssim_y(ys.view(), yh.view(), s).expect("ssim"));
    }
    Row {
        psnr: p.mean().unwrap_or(f64::NAN),
        psnr_yround: pr.mean().unwrap_or(f64::NAN),
        ssim_yround: sr_.mean().unwrap_or(f64::NAN),
        psnr_bt601: pb.mean().unwrap_or(f64::NAN),
        ssim: ss.mean().unwrap_or(f64::NAN),
    }
}

#[test]
fn bicubic_baseline_reproduces_published_figures() {
    let Some(root) = dataset_root() else {
        println!("SKIPPED bicubic baseline: dataset root not found (set IPT_DATA or provide ../shared/datasets)");
        return;
    };
    let mut failures = Vec::new();
    for (set, psnrs, ssims, tol, ssim_tol) in PUBLISHED {
        let dir = root.join(set);
        if !dir.is_dir() {
            println!(
                "{set:<9} MISSING ({} not found), not evaluated",
                dir.display()
            );
            continue;
        }
        for (i, s) in [2usize, 3, 4].into_iter().enumerate() {
            let r = evaluate(&dir, s);
            println!(
                "{set:<9} x{s}: PSNR-Y {:.3} (published {:.2}, diff {:+.3}) | BT.601-Y {:.3} | SSIM-Y {:.4} (published {:.4}) | Y-rounded {:.3} / {:.4}",
                r.psnr, psnrs[i], r.psnr - psnrs[i], r.psnr_bt601, r.ssim, ssims[i],
                r.psnr_yround, r.ssim_yround
            );
            // SSIM is compared in the usual MATLAB form (Y of uint8 images, rounded).
            if (r.ssim_yround - ssims[i]).abs() > ssim_tol {
                failures.push(format!(
                    "{set} x{s}: SSIM {:.4} vs {:.4} (±{ssim_tol})",
                    r.ssim_yround, ssims[i]
                ));
            }
            if (r.psnr - psnrs[i]).abs() > tol {
                failures.push(format!(
                    "{set} x{s}: {:.3} vs {:.2} (±{tol})",
                    r.psnr, psnrs[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "baseline off: {failures:?}");
}
