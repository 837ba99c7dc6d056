//! The weights shipped under `data/weights/` work right after a clone and still give the figures
//! `docs/results.md` reports: every row of its "Shipped weights, one image each" table (marked by
//! `<!-- shipped-weights-check -->`) names a file, a task and a benchmark image; the test runs that
//! benchmark on that one image and compares the PSNR-Y with the figure. Every `.safetensors`
//! file in `data/weights/` must have a row. The benchmark images are read through the data root
//! (`IPT_DATA`, else `../shared/datasets`); without them only the loading checks run.

use std::path::{Path, PathBuf};

use ipt_degrade::Task;
use ipt_eval::data_root::{DataRoot, RootSource};
use ipt_eval::{
    run_denoise, run_sr, BenchProgress, DenoiseOptions, IptMethod, Job, Method, SrOptions,
    WeightsSpec,
};
use ipt_model::restore::RestoreOptions;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One row of the table: weights file, task, `Set/image`, PSNR-Y.
#[derive(Debug)]
struct Row {
    file: String,
    task: Task,
    set: String,
    image: String,
    psnr_y: f64,
}

/// The rows of the table that follows the marker in `docs/results.md`.
fn rows() -> Vec<Row> {
    let doc =
        std::fs::read_to_string(repo_root().join("docs/results.md")).expect("read docs/results.md");
    let (_, after) = doc
        .split_once("<!-- shipped-weights-check -->")
        .expect("docs/results.md has the shipped-weights-check marker");
    let mut rows = Vec::new();
    for line in after.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        if cells.len() != 4 || cells[0] == "weights" || cells[0].starts_with("---") {
            continue;
        }
        let (set, image) = cells[2].split_once('/').expect("image cell is Set/name");
        rows.push(Row {
            file: cells[0].to_string(),
            task: cells[1].parse().expect("task cell"),
            set: set.to_string(),
            image: image.to_string(),
            psnr_y: cells[3].parse().expect("PSNR cell"),
        });
    }
    rows
}

fn weights_dir() -> PathBuf {
    repo_root().join("data/weights")
}

#[test]
fn every_shipped_file_has_a_row_and_loads() {
    let rows = rows();
    assert!(!rows.is_empty(), "the table has no rows");
    let mut files: Vec<String> = std::fs::read_dir(weights_dir())
        .expect("data/weights exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no weights shipped");
    for f in &files {
        let size = std::fs::metadata(weights_dir().join(f)).unwrap().len();
        assert!(size < 5 << 20, "{f} is {size} bytes, over 5 MiB");
        let row = rows
            .iter()
            .find(|r| &r.file == f)
            .unwrap_or_else(|| panic!("{f} has no row in docs/results.md"));
        let spec: WeightsSpec = weights_dir().join(f).display().to_string().parse().unwrap();
        let method = IptMethod::load(&[spec], tch::Device::Cpu, RestoreOptions::default())
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        let job = Job::of(row.task);
        assert!(method.check(job).is_ok(), "{f} cannot run {job:?}");
    }
    for r in &rows {
        assert!(
            files.contains(&r.file),
            "docs/results.md names {} but it is not shipped",
            r.file
        );
    }
}

#[test]
fn shipped_weights_reproduce_their_figures() {
    let Some(data) = ipt_degrade::data::dataset_root() else {
        eprintln!("SKIPPED: benchmark sets not found (set IPT_DATA)");
        return;
    };
    let root = DataRoot {
        path: data.clone(),
        source: RootSource::Flag,
    };
    for r in rows() {
        if !data.join(&r.set).is_dir() {
            eprintln!("SKIPPED {}: {} has no {}", r.file, data.display(), r.set);
            continue;
        }
        let spec: WeightsSpec = format!("{}={}", r.task, weights_dir().join(&r.file).display())
            .parse()
            .unwrap();
        let method = IptMethod::load(&[spec], tch::Device::Cpu, RestoreOptions::default()).unwrap();
        let mut method = Method::Ipt(Box::new(method));
        let progress = BenchProgress::hidden();
        // The image is the first of its set (sorted by name), so `limit: 1` scores just it.
        let outcome = match Job::of(r.task) {
            Job::Sr(scale) => run_sr(
                &root,
                &SrOptions {
                    sets: vec![r.set.clone()],
                    scales: vec![scale],
                    limit: Some(1),
                    skip_missing: false,
                },
                &mut method,
                &progress,
            ),
            Job::Denoise(sigma) => run_denoise(
                &root,
                &DenoiseOptions {
                    sets: vec![r.set.clone()],
                    sigmas: vec![sigma],
                    limit: Some(1),
                    ..Default::default()
                },
                &mut method,
                &progress,
            ),
            Job::Derain | Job::Recipe(_) => panic!("no derain or recipe row expected"),
        }
        .unwrap();
        let img = &outcome.images[0];
        assert_eq!(img.image, r.image, "{}: first image of {}", r.file, r.set);
        eprintln!(
            "{} {} {}/{}: PSNR-Y {:.4} dB (docs/results.md: {:.2})",
            r.file, r.task, r.set, r.image, img.psnr_y, r.psnr_y
        );
        assert!(
            (img.psnr_y - r.psnr_y).abs() <= 0.01,
            "{}: {:.4} dB, docs/results.md says {:.2}",
            r.file,
            img.psnr_y,
            r.psnr_y
        );
    }
}
