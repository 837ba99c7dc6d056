//! A task written in TOML goes through the whole tool without code: pre-trained, fine-tuned
//! (a new task started from it), inspected, used to restore and benchmarked; `bench-jpeg`
//! scores grey JPEG inputs as SwinIR does.

mod common;
use common::{ipt, s, text};

use ipt_degrade::io::{read_image_with, write_png, Channels};
use ipt_degrade::Image;
use ndarray::Array3;

fn photo(c: usize, h: usize, w: usize, seed: usize) -> Image {
    Array3::from_shape_fn((c, h, w), |(ch, y, x)| {
        ((x * 7 + y * 13 + ch * 50 + seed * 31 + (x * y) % 17) % 256) as f32
    })
}

const SPECKLE: &str = "[[tasks.define]]\nname = \"speckle\"\nscale = 1\n\
    recipe = [{ op = \"poisson\", scale = [0.5, 1] }, { op = \"jpeg\", quality = [30, 60] }]\n";

#[test]
fn a_task_written_in_toml_is_pretrained_finetuned_restored_and_benchmarked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = d.join("data/mine");
    std::fs::create_dir_all(&set).unwrap();
    write_png(&set.join("a.png"), &photo(3, 40, 44, 1)).unwrap();
    write_png(&set.join("b.png"), &photo(3, 36, 40, 2)).unwrap();

    let pre = d.join("pre.toml");
    std::fs::write(
        &pre,
        format!(
            "[model]\npreset = \"tiny\"\n[tasks]\nnames = [\"sr2\", \"speckle\"]\n{SPECKLE}\
             [data]\nimages = 8\n[optim]\nbatch_size = 2\nsteps = 2\n\
             [validation]\nevery = 2\nimages = 1\n[runtime]\nthreads = 1\n"
        ),
    )
    .unwrap();
    let o = ipt(&[
        "pretrain",
        s(&pre),
        "--run-dir",
        s(&d.join("run-pre")),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ck = d.join("run-pre/checkpoints/step-00000002.safetensors");
    let o = ipt(&["info", s(&ck)]);
    assert!(
        o.status.success() && text(&o).contains("speckle"),
        "{}",
        text(&o)
    );

    let ft = d.join("ft.toml");
    std::fs::write(
        &ft,
        format!(
            "{SPECKLE}[[tasks.define]]\nname = \"speckle2\"\nscale = 1\n\
             recipe = [{{ op = \"noise\", sigma = [5, 25] }}, {{ op = \"jpeg\", quality = 50 }}]\n\
             [finetune]\ntask = \"speckle2\"\ninit = \"speckle\"\nfrom = \"{}\"\n\
             [data]\nimages = 8\n[optim]\nbatch_size = 2\nsteps = 2\n[validation]\nevery = 0\n\
             [runtime]\nthreads = 1\n",
            ck.display()
        ),
    )
    .unwrap();
    let o = ipt(&[
        "finetune",
        s(&ft),
        "--run-dir",
        s(&d.join("run-ft")),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let model = d.join("run-ft/ipt_speckle2.safetensors");
    let o = ipt(&["info", s(&model)]);
    assert!(
        o.status.success() && text(&o).contains("speckle2"),
        "{}",
        text(&o)
    );

    let out = d.join("restored");
    let o = ipt(&[
        "restore",
        "--weights",
        s(&model),
        "--task",
        "speckle2",
        s(&set.join("a.png")),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("a.png").is_file());

    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--task",
            "speckle2",
            "--sets",
            "mine",
            "--data-root",
        ];
        let root = d.join("data");
        args.push(s(&root));
        args.extend_from_slice(extra);
        let o = ipt(&args);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let ours = bench(&["--weights", s(&model)]);
    assert!(ours.contains("| mine | speckle2 | 2 |"), "{ours}");
    // The baseline needs the task's definition: the config that defines it.
    let base = bench(&["--model", "identity", "--task-file", s(&ft)]);
    assert!(base.contains("| mine | speckle2 | 2 |"), "{base}");
    assert_ne!(ours, base);
}

#[test]
fn bench_jpeg_scores_grey_jpeg_inputs_against_the_clean_images() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("greys");
    std::fs::create_dir_all(&set).unwrap();
    write_png(&set.join("g.png"), &photo(1, 37, 50, 3)).unwrap();
    let o = ipt(&[
        "bench-jpeg",
        "--model",
        "identity",
        "--data-root",
        s(dir.path()),
        "--sets",
        "greys",
        "--qualities",
        "10,40",
        "--json",
        s(&dir.path().join("r.json")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let clean = read_image_with(&set.join("g.png"), Channels::Native).unwrap();
    assert_eq!(clean.dim().0, 1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    for (i, q) in [10u8, 40].into_iter().enumerate() {
        // The identity's output is the grey JPEG round trip itself.
        let jpeg = ipt_degrade::jpeg::jpeg_round_trip(&clean, q).unwrap();
        let psnr = ipt_metrics::psnr_y(jpeg.view(), clean.view(), 0).unwrap();
        let psnr_b = ipt_metrics::psnr_b_y(&jpeg.view(), &clean.view(), 0).unwrap();
        let r = &report["results"][i];
        assert_eq!(r["task"], format!("jpeg{q}"));
        assert!((r["psnr_y"].as_f64().unwrap() - psnr).abs() < 1e-9, "{r}");
        assert!((r["psnr_b"].as_f64().unwrap() - psnr_b).abs() < 1e-9, "{r}");
        assert!(psnr_b <= psnr + 1e-9);
    }
}

/// The JPEG inputs of Classic5 reproduce the published JPEG rows (ARCNN/DnCNN/FBCNN tables:
/// PSNR / SSIM / PSNR-B 27.82 / 0.7600 / 25.21 at q10 … 32.43 / 0.8850 / 29.92 at q40).
#[test]
fn bench_jpeg_inputs_on_classic5_give_the_published_jpeg_rows() {
    let Some(root) = ipt_degrade::data::dataset_root() else {
        eprintln!("SKIPPED: benchmark sets not found (set IPT_DATA)");
        return;
    };
    if !root.join("classic5").is_dir() {
        eprintln!("SKIPPED: {} has no classic5", root.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let o = ipt(&[
        "bench-jpeg",
        "--model",
        "identity",
        "--data-root",
        s(&root),
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let published = [
        (27.82, 0.7600, 25.21),
        (30.12, 0.8341, 27.50),
        (31.48, 0.8670, 28.94),
        (32.43, 0.8850, 29.92),
    ];
    for (i, (psnr, ssim, psnr_b)) in published.into_iter().enumerate() {
        let r = &report["results"][i];
        let got = |k: &str| r[k].as_f64().unwrap();
        assert!((got("psnr_y") - psnr).abs() < 0.005, "{r}");
        assert!((got("psnr_b") - psnr_b).abs() < 0.005, "{r}");
        assert!((got("ssim_y") - ssim).abs() < 0.001, "{r}");
    }
}

#[test]
fn plot_crops_puts_the_same_region_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big) = (dir.path().join("lr.png"), dir.path().join("sr.png"));
    write_png(&small, &photo(3, 10, 12, 4)).unwrap();
    write_png(&big, &photo(3, 40, 48, 5)).unwrap();
    let out = dir.path().join("fig.png");
    let bic = format!("bicubic:{}", s(&small));
    let o = ipt(&[
        "plot-crops",
        "--out",
        s(&out),
        "--crop",
        "8,4,12,10",
        "--zoom",
        "2",
        s(&small),
        &bic,
        s(&big),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let fig = read_image_with(&out, Channels::Rgb).unwrap();
    assert_eq!(fig.dim(), (3, 20, 3 * 24 + 2 * 4));
    // The first panel replicates the small image's pixels: (8,4) in the big frame is (2,1) there.
    let lr = photo(3, 10, 12, 4);
    assert_eq!(fig[[0, 0, 0]], lr[[0, 1, 2]]);
    // The last panel is the big image itself, zoomed.
    let hr = photo(3, 40, 48, 5);
    assert_eq!(fig[[1, 2, 2 * 28 + 2]], hr[[1, 5, 9]]);
    let o = ipt(&[
        "plot-crops",
        "--out",
        s(&out),
        "--crop",
        "40,0,12,10",
        s(&big),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("outside"),
        "{}",
        text(&o)
    );
}
