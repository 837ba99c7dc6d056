//! End-to-end checks of the benchmark protocols on tiny generated data: layouts, pairing,
//! per-image metrics against a naive reference written here, the JSON shape, and a tiny
//! random-weight IPT model through whole-image inference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ipt_degrade::io::{read_image, write_png};
use ipt_degrade::resize::imresize_uint8;
use ipt_degrade::{modcrop, quantize, Image, Task};
use ipt_eval::data_root::{DataRoot, RootSource};
use ipt_eval::denoise::noisy_input;
use ipt_eval::ipt_method::LoadedCheckpoint;
use ipt_eval::report::{write_json, BenchOutcome};
use ipt_eval::{
    run_denoise, run_derain, run_derain_set, run_sr, BenchError, BenchProgress, DenoiseOptions,
    IptMethod, Job, Method, SrOptions, WeightsSpec,
};
use ipt_model::restore::RestoreOptions;
use ndarray::Array3;

/// IPT's Y-PSNR (official `utility.calc_psnr`) written out naively in f64.
fn naive_psnr_y(sr: &Image, hr: &Image, shave: usize) -> f64 {
    let w = [65.738, 129.057, 25.064];
    let (_, h, wd) = hr.dim();
    let mut sum = 0.0;
    let mut n = 0.0;
    for y in shave..h - shave {
        for x in shave..wd - shave {
            let d: f64 = (0..3)
                .map(|c| w[c] * (f64::from(sr[[c, y, x]]) - f64::from(hr[[c, y, x]])) / 255.0)
                .sum::<f64>()
                / 256.0;
            sum += d * d;
            n += 1.0;
        }
    }
    -10.0 * (sum / n).log10()
}

/// Plain RGB PSNR, no shave, in f64.
fn naive_psnr_rgb(a: &Image, b: &Image) -> f64 {
    let mse = a
        .iter()
        .zip(b.iter())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse).log10()
}

/// A smooth, textured 8-bit test image.
fn test_image(h: usize, w: usize, phase: f32) -> Image {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        let v = 128.0
            + 60.0 * ((x as f32 * 0.31 + phase + c as f32).sin())
            + 50.0 * ((y as f32 * 0.23 - phase).cos());
        v.round().clamp(0.0, 255.0)
    })
}

fn save(path: &Path, img: &Image) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_png(path, img).unwrap();
}

fn root(path: &Path) -> DataRoot {
    DataRoot {
        path: path.to_path_buf(),
        source: RootSource::Flag,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn json_keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn json_of(outcome: &BenchOutcome, dir: &Path) -> serde_json::Value {
    let path = dir.join("out/summary.json");
    write_json(&path, &outcome.report()).unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bicubic_sr_on_a_generated_flat_set() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("Gen/a.png");
    let b = tmp.path().join("Gen/b.png");
    save(&a, &test_image(50, 62, 0.0));
    save(&b, &test_image(37, 45, 1.0));
    let opts = SrOptions {
        sets: vec!["Gen".into(), "Nope".into()],
        scales: vec![2, 3],
        limit: None,
        skip_missing: true,
    };
    // Without --skip-missing, a missing set stops the run before anything is evaluated.
    let err = run_sr(
        &root(tmp.path()),
        &SrOptions {
            skip_missing: false,
            ..opts.clone()
        },
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Nope: not found"), "{err}");
    let outcome = run_sr(
        &root(tmp.path()),
        &opts,
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap();

    // Every requested cell, scale-major; the missing set is listed.
    let cells: Vec<(String, usize, bool)> = outcome
        .cells
        .iter()
        .map(|c| (c.set.clone(), c.scale, c.result.is_some()))
        .collect();
    assert_eq!(
        cells,
        vec![
            ("Gen".into(), 2, true),
            ("Nope".into(), 2, false),
            ("Gen".into(), 3, true),
            ("Nope".into(), 3, false),
        ]
    );
    assert_eq!(outcome.missing.len(), 1);
    assert_eq!(outcome.missing[0].name, "Nope");
    assert_eq!(outcome.images.len(), 4);

    // Each image's PSNR equals the protocol recomputed here with a naive metric.
    for row in &outcome.images {
        let path = if row.image == "a" { &a } else { &b };
        let hr = modcrop(&read_image(path).unwrap(), row.scale);
        assert_eq!((row.height, row.width), (hr.dim().1, hr.dim().2));
        let lr = imresize_uint8(&hr, 1.0 / row.scale as f64);
        let sr = quantize(&imresize_uint8(&lr, row.scale as f64));
        let expected = naive_psnr_y(&sr, &hr, row.scale);
        assert!(
            close(row.psnr_y, expected),
            "{} x{}: {} vs {expected}",
            row.image,
            row.scale,
            row.psnr_y
        );
        assert!(row.psnr_y > 20.0 && row.ssim_y > 0.5 && row.ssim_y <= 1.0);
    }
    let b3 = outcome
        .images
        .iter()
        .find(|r| r.image == "b" && r.scale == 3)
        .unwrap();
    assert_eq!((b3.height, b3.width), (36, 45));

    // Set means are the per-image means.
    let x2 = outcome.cells[0].result.as_ref().unwrap();
    let mean = outcome
        .images
        .iter()
        .filter(|r| r.scale == 2)
        .map(|r| r.psnr_y)
        .sum::<f64>()
        / 2.0;
    assert_eq!(x2.images, 2);
    assert!(close(x2.psnr_y, mean));

    // The JSON shape other tools read.
    let v = json_of(&outcome, tmp.path());
    assert_eq!(json_keys(&v), keys(&["task", "model", "results"]));
    assert_eq!(v["task"], "sr");
    assert_eq!(v["model"], "bicubic");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(
            json_keys(r),
            keys(&["set", "scale", "images", "psnr_y", "ssim_y", "seconds"])
        );
    }
    assert_eq!(results[1]["scale"], 3);
    assert_eq!(results[1]["images"], 2);

    // --limit
    let limited = run_sr(
        &root(tmp.path()),
        &SrOptions {
            limit: Some(1),
            ..opts
        },
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap();
    assert_eq!(limited.images.len(), 2);
    assert!(limited.images.iter().all(|r| r.image == "a"));
    let err = run_sr(
        &root(tmp.path()),
        &SrOptions {
            sets: vec!["Gen".into()],
            scales: vec![2],
            limit: Some(0),
            skip_missing: false,
        },
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--limit"), "{err}");
}

#[test]
fn edsr_layout_uses_the_lr_file_and_crops_hr_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let hr_path = tmp.path().join("Set5/HR/a.png");
    let lr_path = tmp.path().join("Set5/LR_bicubic/X4/ax4.png");
    save(&hr_path, &test_image(50, 62, 0.5));
    // Deliberately smaller than HR/4 (11x14 instead of 12x15): HR must be cropped to 44x56.
    save(&lr_path, &test_image(11, 14, 2.0));
    let outcome = run_sr(
        &root(tmp.path()),
        &SrOptions {
            sets: vec!["Set5".into()],
            scales: vec![4],
            limit: None,
            skip_missing: false,
        },
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap();
    let row = &outcome.images[0];
    assert_eq!((row.height, row.width), (44, 56));
    let hr = read_image(&hr_path)
        .unwrap()
        .slice(ndarray::s![.., ..44, ..56])
        .to_owned();
    let sr = quantize(&imresize_uint8(&read_image(&lr_path).unwrap(), 4.0));
    assert!(close(row.psnr_y, naive_psnr_y(&sr, &hr, 4)));
}

#[test]
fn no_sets_at_all_is_an_error_that_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_sr(
        &root(tmp.path()),
        &SrOptions::default(),
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap_err();
    assert!(matches!(err, BenchError::NoSets { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&tmp.path().join("Urban100").display().to_string()),
        "{msg}"
    );
}

#[test]
fn denoise_identity_reports_both_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let images: Vec<(PathBuf, Image)> = [("p", 0.0), ("q", 1.5)]
        .iter()
        .map(|(n, ph)| {
            let path = tmp.path().join(format!("CBSD68/{n}.png"));
            let img = test_image(33, 41, *ph);
            save(&path, &img);
            (path, img)
        })
        .collect();
    let opts = DenoiseOptions {
        sets: vec!["CBSD68".into()],
        sigmas: vec![30, 50],
        limit: None,
        skip_missing: false,
        seed: 7,
    };
    let outcome = run_denoise(
        &root(tmp.path()),
        &opts,
        &mut Method::Identity,
        &BenchProgress::hidden(),
    )
    .unwrap();
    assert_eq!(outcome.images.len(), 4);
    for row in &outcome.images {
        let (_, clean) = images
            .iter()
            .find(|(p, _)| p.file_stem().unwrap() == row.image.as_str())
            .unwrap();
        let sigma = row.sigma.unwrap();
        let noisy = quantize(&noisy_input(clean, "CBSD68", &row.image, sigma, 7));
        assert!(close(row.psnr_y, naive_psnr_y(&noisy, clean, 0)));
        assert!(close(row.psnr_rgb.unwrap(), naive_psnr_rgb(&noisy, clean)));
        // Y averages the channel noise, so it scores well above RGB.
        assert!(row.psnr_y > row.psnr_rgb.unwrap() + 3.0);
    }
    let v = json_of(&outcome, tmp.path());
    assert_eq!(v["task"], "denoise");
    assert_eq!(v["model"], "identity");
    let r0 = &v["results"][0];
    assert_eq!(
        json_keys(r0),
        keys(&["set", "scale", "sigma", "images", "psnr_y", "ssim_y", "psnr_rgb", "seconds"])
    );
    assert_eq!(r0["sigma"], 30);
    assert_eq!(v["results"][1]["sigma"], 50);

    // The noise of an image does not depend on which other images run.
    let limited = run_denoise(
        &root(tmp.path()),
        &DenoiseOptions {
            limit: Some(1),
            skip_missing: false,
            sigmas: vec![50],
            ..opts
        },
        &mut Method::Identity,
        &BenchProgress::hidden(),
    )
    .unwrap();
    let full = outcome
        .images
        .iter()
        .find(|r| r.image == "p" && r.sigma == Some(50))
        .unwrap();
    assert_eq!(limited.images[0].psnr_y, full.psnr_y);
}

#[test]
fn derain_identity_on_generated_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_derain(
        &root(tmp.path()),
        None,
        &mut Method::Identity,
        &BenchProgress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Rain100L"), "{err}");

    let dir = tmp.path().join("Rain100L");
    let mut expected = Vec::new();
    for (i, ph) in [(1, 0.0f32), (2, 0.7)] {
        let clean = test_image(30, 40, ph);
        let streaks =
            Array3::from_shape_fn(
                (3, 30, 40),
                |(_, y, x)| {
                    if (x + 2 * y) % 9 == 0 {
                        90.0
                    } else {
                        0.0
                    }
                },
            );
        let rainy = quantize(&(&clean + &streaks));
        save(&dir.join(format!("rainy/rain-{i:03}.png")), &rainy);
        save(&dir.join(format!("norain-{i:03}.png")), &clean);
        expected.push(naive_psnr_y(&rainy, &clean, 0));
    }
    save(&dir.join("rainy/rain-003.png"), &test_image(30, 40, 0.0)); // unpaired
    let outcome = run_derain(
        &root(tmp.path()),
        None,
        &mut Method::Identity,
        &BenchProgress::hidden(),
    )
    .unwrap();
    let names: Vec<&str> = outcome.images.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(names, ["001", "002"]);
    for (row, e) in outcome.images.iter().zip(&expected) {
        assert!(close(row.psnr_y, *e));
    }
    let v = json_of(&outcome, tmp.path());
    assert_eq!(v["task"], "derain");
    assert_eq!(v["results"][0]["set"], "Rain100L");
    assert_eq!(v["results"][0]["images"], 2);
}

#[test]
fn derain_on_rain100h_in_mspfn_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_derain_set(
        &root(tmp.path()),
        "Rain100H",
        None,
        &mut Method::Identity,
        &BenchProgress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Rain100H not usable"), "{err}");
    let dir = tmp.path().join("Rain100H");
    let clean = test_image(30, 40, 0.3);
    let rainy = quantize(&clean.mapv(|v| (v + 40.0).min(255.0)));
    for n in [1, 2, 10] {
        save(&dir.join(format!("inputcrop/{n}.png")), &rainy);
        save(&dir.join(format!("cleancrop/{n}.png")), &clean);
    }
    let outcome = run_derain_set(
        &root(tmp.path()),
        "Rain100H",
        None,
        &mut Method::Identity,
        &BenchProgress::hidden(),
    )
    .unwrap();
    let names: Vec<&str> = outcome.images.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(names, ["1", "10", "2"]);
    let expected = naive_psnr_y(&rainy, &clean, 0);
    assert!(outcome.images.iter().all(|r| close(r.psnr_y, expected)));
    assert_eq!(
        json_of(&outcome, tmp.path())["results"][0]["set"],
        "Rain100H"
    );
}

/// A tiny random-weight network; also saved to `save_to` when given.
fn tiny_ipt(
    scales: &[usize],
    tasks: Vec<(Task, usize)>,
    save_to: Option<&Path>,
) -> LoadedCheckpoint {
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let cfg = ipt_model::IptConfig::tiny(scales);
    let model = ipt_model::Ipt::new(&vs.root(), &cfg).unwrap();
    if let Some(path) = save_to {
        ipt_model::checkpoint::save(path, &vs, &cfg).unwrap();
    }
    LoadedCheckpoint::new(PathBuf::from("tiny_random.safetensors"), vs, model, tasks)
}

#[test]
fn tiny_random_ipt_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    save(&tmp.path().join("Gen/a.png"), &test_image(50, 62, 0.0));
    let options = RestoreOptions {
        crop_batch: 7,
        ..RestoreOptions::default()
    };
    let ipt = IptMethod::from_checkpoints(
        vec![tiny_ipt(&[2], vec![(Task::Sr2, 0)], None)],
        tch::Device::Cpu,
        options,
    )
    .unwrap();
    let mut method = Method::Ipt(Box::new(ipt));
    assert_eq!(method.name(), "tiny_random");
    // No checkpoint does x3: refused before any image is read.
    let err = run_sr(
        &root(tmp.path()),
        &SrOptions {
            sets: vec!["Gen".into()],
            scales: vec![3],
            limit: None,
            skip_missing: false,
        },
        &mut method,
        &BenchProgress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("sr3"), "{err}");

    let progress = BenchProgress::hidden();
    let outcome = run_sr(
        &root(tmp.path()),
        &SrOptions {
            sets: vec!["Gen".into()],
            scales: vec![2],
            limit: None,
            skip_missing: false,
        },
        &mut method,
        &progress,
    )
    .unwrap();
    let row = &outcome.images[0];
    assert_eq!((row.height, row.width), (50, 62));
    assert!(row.psnr_y.is_finite() && row.ssim_y.is_finite());
    // LR 25x31 is padded to one 48x48 window, evaluated once (the official tiling would run
    // that same window 6 times: corner, 2 strips of 1, 2 strips of 1, grid of 1).
    assert_eq!(progress.windows.length(), Some(1));
    assert_eq!(progress.windows.position(), 1);
}

#[test]
fn tiny_checkpoint_file_gives_the_same_numbers_as_the_network_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    save(&tmp.path().join("Gen/a.png"), &test_image(40, 52, 0.3));
    let file = tmp.path().join("tiny_sr2.safetensors");
    let in_memory = tiny_ipt(&[2], vec![(Task::Sr2, 0)], Some(&file));
    let opts = SrOptions {
        sets: vec!["Gen".into()],
        scales: vec![2],
        limit: None,
        skip_missing: false,
    };
    let run = |ipt: IptMethod| {
        run_sr(
            &root(tmp.path()),
            &opts,
            &mut Method::Ipt(Box::new(ipt)),
            &BenchProgress::hidden(),
        )
        .unwrap()
    };
    let a = run(IptMethod::from_checkpoints(
        vec![in_memory],
        tch::Device::Cpu,
        RestoreOptions::default(),
    )
    .unwrap());
    let spec: WeightsSpec = file.display().to_string().parse().unwrap();
    let loaded = IptMethod::load(&[spec], tch::Device::Cpu, RestoreOptions::default()).unwrap();
    assert_eq!(loaded.name(), "tiny_sr2");
    let b = run(loaded);
    assert_eq!(a.images[0].psnr_y, b.images[0].psnr_y);
    assert_eq!(a.images[0].ssim_y, b.images[0].ssim_y);

    // A scale-1 checkpoint needs its task named.
    let dn = tmp.path().join("tiny_one.safetensors");
    drop(tiny_ipt(&[1], vec![], Some(&dn)));
    let spec: WeightsSpec = dn.display().to_string().parse().unwrap();
    let err = IptMethod::load(&[spec], tch::Device::Cpu, RestoreOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("denoise30="), "{err}");
    let spec: WeightsSpec = format!("denoise50={}", dn.display()).parse().unwrap();
    let named = IptMethod::load(&[spec], tch::Device::Cpu, RestoreOptions::default()).unwrap();
    assert!(named.check(Job::Denoise(50)).is_ok());
    assert!(named.check(Job::Denoise(30)).is_err());
}

#[test]
fn bicubic_reproduces_the_published_set5_row() {
    let Some(data) = ipt_degrade::data::dataset_root() else {
        eprintln!("SKIPPED: shared datasets not found (set IPT_DATA)");
        return;
    };
    if !data.join("Set5").is_dir() {
        eprintln!("SKIPPED: {} has no Set5", data.display());
        return;
    }
    let outcome = run_sr(
        &root(&data),
        &SrOptions {
            sets: vec!["Set5".into()],
            scales: vec![2, 3, 4],
            limit: None,
            skip_missing: false,
        },
        &mut Method::Bicubic,
        &BenchProgress::hidden(),
    )
    .unwrap();
    for (cell, published) in outcome.cells.iter().zip([33.66, 30.39, 28.42]) {
        let r = cell.result.as_ref().unwrap();
        assert_eq!(r.images, 5);
        assert!(
            (r.psnr_y - published).abs() <= 0.03,
            "Set5 x{}: {:.3} vs published {published}",
            cell.scale,
            r.psnr_y
        );
    }
}
