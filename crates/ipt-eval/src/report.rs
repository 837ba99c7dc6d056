//! Benchmark results and their three outputs: a Markdown table (stdout), a per-image CSV and a
//! JSON summary whose shape other tools read:
//!
//! ```json
//! {"task":"sr","model":"bicubic","results":[
//!   {"set":"Set5","scale":2,"images":5,"psnr_y":33.68,"ssim_y":0.9304,"seconds":0.4}]}
//! ```
//!
//! Denoising results also carry `"sigma"` and `"psnr_rgb"`; results of a task's recipe
//! (`ipt bench --task`, `bench-jpeg`) carry `"task"` and `"psnr_b"`. `seconds` is the wall time of the
//! whole cell (reading, degrading, inference and metrics). The requested sets a run could not
//! find are reported too ([`MissingSet`]; found by [`crate::layout`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::published::{self, Published};
use crate::BenchError;

/// Which benchmark a report belongs to (serialised as `"sr"`, `"denoise"`, `"derain"`,
/// `"recipe"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchTask {
    /// Super-resolution ×2/×3/×4.
    Sr,
    /// Colour Gaussian denoising σ = 30/50.
    Denoise,
    /// Deraining (Rain100L).
    Derain,
    /// Clean images degraded by a task's recipe at a fixed seed (any task; JPEG benchmarks).
    Recipe,
}

/// The averaged result of one cell (a set at one scale or noise level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetResult {
    /// Set name.
    pub set: String,
    /// Upscaling factor (1 for denoising and deraining).
    pub scale: usize,
    /// Noise level (denoising only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<u32>,
    /// Number of images averaged.
    pub images: usize,
    /// Mean PSNR on Y (IPT convention), dB.
    pub psnr_y: f64,
    /// Mean SSIM on Y.
    pub ssim_y: f64,
    /// Mean PSNR on RGB with no shave (SwinIR protocol; denoising only), dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr_rgb: Option<f64>,
    /// The task whose recipe made the inputs (recipe benchmarks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Mean PSNR-B on Y (recipe benchmarks only), dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psnr_b: Option<f64>,
    /// Wall time of the whole cell, seconds.
    pub seconds: f64,
}

/// The metrics of one image (one CSV row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    /// Set name.
    pub set: String,
    /// Upscaling factor (1 for denoising and deraining).
    pub scale: usize,
    /// Noise level (denoising only; empty in the CSV otherwise).
    pub sigma: Option<u32>,
    /// Image name (file stem, or the Rain100L pair key).
    pub image: String,
    /// Height of the evaluated (ground-truth) image.
    pub height: usize,
    /// Width of the evaluated (ground-truth) image.
    pub width: usize,
    /// PSNR on Y (IPT convention), dB.
    pub psnr_y: f64,
    /// SSIM on Y.
    pub ssim_y: f64,
    /// PSNR on RGB, no shave (denoising only).
    pub psnr_rgb: Option<f64>,
    /// Time spent in the method (inference) for this image, seconds.
    pub seconds: f64,
    /// The task whose recipe made the input (recipe benchmarks only).
    pub task: Option<String>,
    /// PSNR-B on Y (recipe benchmarks only), dB.
    pub psnr_b: Option<f64>,
}

impl SetResult {
    /// Averages per-image metrics into one cell result.
    pub fn average(
        set: &str,
        scale: usize,
        sigma: Option<u32>,
        images: &[ImageResult],
        seconds: f64,
    ) -> SetResult {
        let n = images.len().max(1) as f64;
        let mean = |f: &dyn Fn(&ImageResult) -> f64| images.iter().map(f).sum::<f64>() / n;
        let optional_mean = |f: &dyn Fn(&ImageResult) -> Option<f64>| {
            images
                .iter()
                .map(f)
                .collect::<Option<Vec<f64>>>()
                .filter(|v| !v.is_empty())
                .map(|v| v.iter().sum::<f64>() / n)
        };
        SetResult {
            set: set.to_string(),
            scale,
            sigma,
            images: images.len(),
            psnr_y: mean(&|r| r.psnr_y),
            ssim_y: mean(&|r| r.ssim_y),
            psnr_rgb: optional_mean(&|r| r.psnr_rgb),
            task: images.first().and_then(|r| r.task.clone()),
            psnr_b: optional_mean(&|r| r.psnr_b),
            seconds,
        }
    }
}

/// The JSON summary (`--json OUT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Which benchmark.
    pub task: BenchTask,
    /// The method's name (`bicubic`, `identity`, or the checkpoint names).
    pub model: String,
    /// One entry per measured cell.
    pub results: Vec<SetResult>,
}

/// One row of the Markdown table: a requested cell, measured or missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Set name.
    pub set: String,
    /// Upscaling factor (1 for denoising and deraining).
    pub scale: usize,
    /// Noise level (denoising only).
    pub sigma: Option<u32>,
    /// The task whose recipe made the inputs (recipe benchmarks only).
    pub task: Option<String>,
    /// The result, or `None` when the set is missing.
    pub result: Option<SetResult>,
}

/// A requested set that was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSet {
    /// The set name as requested.
    pub name: String,
    /// The folders that were tried.
    pub looked: Vec<PathBuf>,
    /// Folders among `looked` that exist but hold no image file.
    pub empty: Vec<PathBuf>,
}

impl MissingSet {
    /// `Set14: not found (looked for …)`, or `Set14: … exists but holds no image files (png, …)`.
    pub fn describe(&self) -> String {
        let list = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.empty.is_empty() {
            format!(
                "{}: not found (looked for {})",
                self.name,
                list(&self.looked)
            )
        } else {
            format!(
                "{}: {} exists but holds no image files ({})",
                self.name,
                list(&self.empty),
                ipt_degrade::files::IMAGE_EXTENSIONS.join(", ")
            )
        }
    }
}

/// Everything a benchmark run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOutcome {
    /// Which benchmark.
    pub task: BenchTask,
    /// The method's name.
    pub model: String,
    /// Requested cells in display order.
    pub cells: Vec<Cell>,
    /// Per-image rows, in run order.
    pub images: Vec<ImageResult>,
    /// Requested sets that were not found.
    pub missing: Vec<MissingSet>,
}

impl BenchOutcome {
    /// The JSON summary of the measured cells.
    pub fn report(&self) -> BenchReport {
        BenchReport {
            task: self.task,
            model: self.model.clone(),
            results: self.cells.iter().filter_map(|c| c.result.clone()).collect(),
        }
    }
}

fn create_parent(path: &Path) -> Result<(), BenchError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| BenchError::Write {
                path: path.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Writes the JSON summary (pretty-printed) to `path`, creating its folder, atomically.
pub fn write_json(path: &Path, report: &BenchReport) -> Result<(), BenchError> {
    create_parent(path)?;
    let text = serde_json::to_string_pretty(report).map_err(|e| BenchError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_file(path, (text + "\n").as_bytes())
}

/// Writes `bytes` to `path` atomically (an interrupted run leaves the old file or none, never a
/// truncated one).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    ipt_degrade::files::write_bytes_atomic(path, bytes).map_err(|e| BenchError::Write {
        path: path.to_path_buf(),
        source: e.into_io_error(),
    })
}

/// Writes the per-image rows as CSV (header `set,scale,sigma,image,height,width,psnr_y,
/// ssim_y,psnr_rgb,seconds,task,psnr_b`; absent values are empty fields), atomically.
pub fn write_csv(path: &Path, rows: &[ImageResult]) -> Result<(), BenchError> {
    create_parent(path)?;
    let encode = |e: csv::Error| BenchError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row).map_err(encode)?;
    }
    let bytes = writer.into_inner().map_err(|e| BenchError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_file(path, &bytes)
}

fn fmt_psnr(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.2}"))
}

fn fmt_ssim(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.4}"))
}

fn fmt_published(v: Option<Published>) -> String {
    match v {
        Some(Published {
            psnr,
            ssim: Some(ssim),
        }) => format!("{psnr:.2} / {ssim:.4}"),
        Some(Published { psnr, ssim: None }) => format!("{psnr:.2}"),
        None => "–".to_string(),
    }
}

/// Renders the Markdown table: our numbers next to the paper's IPT and (SR) the published
/// bicubic row, one line per requested cell (missing sets marked), followed by the list of
/// missing sets and where they were looked for.
pub fn render_markdown(outcome: &BenchOutcome) -> String {
    let mut s = String::new();
    let model = &outcome.model;
    let missing = "missing";
    match outcome.task {
        BenchTask::Sr => {
            let _ = writeln!(
                s,
                "### Super-resolution, model `{model}` (Y channel, IPT convention, shave = scale)\n"
            );
            s.push_str("| Set | Scale | Images | PSNR-Y | SSIM-Y | IPT paper PSNR | Bicubic published PSNR / SSIM | Seconds |\n");
            s.push_str("|---|---|---|---|---|---|---|---|\n");
            for c in &outcome.cells {
                let ipt = fmt_published(published::ipt_sr(&c.set, c.scale));
                let bic = fmt_published(published::bicubic_sr(&c.set, c.scale));
                let _ = match &c.result {
                    Some(r) => writeln!(
                        s,
                        "| {} | ×{} | {} | {:.2} | {:.4} | {ipt} | {bic} | {:.1} |",
                        c.set, c.scale, r.images, r.psnr_y, r.ssim_y, r.seconds
                    ),
                    None => writeln!(
                        s,
                        "| {} | ×{} | {missing} | – | – | {ipt} | {bic} | – |",
                        c.set, c.scale
                    ),
                };
            }
        }
        BenchTask::Denoise => {
            let _ = writeln!(
                s,
                "### Colour denoising, model `{model}` (PSNR-Y: IPT protocol; PSNR-RGB: SwinIR protocol; shave 0)\n"
            );
            s.push_str(
                "| Set | σ | Images | PSNR-Y | PSNR-RGB | SSIM-Y | IPT paper PSNR-Y | Seconds |\n",
            );
            s.push_str("|---|---|---|---|---|---|---|---|\n");
            for c in &outcome.cells {
                let sigma = c.sigma.unwrap_or(0);
                let ipt = fmt_published(published::ipt_denoise(&c.set, sigma));
                let _ = match &c.result {
                    Some(r) => writeln!(
                        s,
                        "| {} | {sigma} | {} | {:.2} | {} | {:.4} | {ipt} | {:.1} |",
                        c.set,
                        r.images,
                        r.psnr_y,
                        fmt_psnr(r.psnr_rgb),
                        r.ssim_y,
                        r.seconds
                    ),
                    None => writeln!(
                        s,
                        "| {} | {sigma} | {missing} | – | – | – | {ipt} | – |",
                        c.set
                    ),
                };
            }
        }
        BenchTask::Derain => {
            let _ = writeln!(
                s,
                "### Deraining, model `{model}` (Y channel, IPT convention, shave 0)\n"
            );
            s.push_str("| Set | Images | PSNR-Y | SSIM-Y | IPT paper PSNR / SSIM | Seconds |\n");
            s.push_str("|---|---|---|---|---|---|\n");
            for c in &outcome.cells {
                let ipt = fmt_published(published::ipt_derain(&c.set));
                let _ = match &c.result {
                    Some(r) => writeln!(
                        s,
                        "| {} | {} | {:.2} | {} | {ipt} | {:.1} |",
                        c.set,
                        r.images,
                        r.psnr_y,
                        fmt_ssim(Some(r.ssim_y)),
                        r.seconds
                    ),
                    None => writeln!(s, "| {} | {missing} | – | – | {ipt} | – |", c.set),
                };
            }
        }
        BenchTask::Recipe => {
            let _ = writeln!(
                s,
                "### Task recipes, model `{model}` (inputs made by each task's recipe at a fixed seed; Y channel, IPT convention, shave = scale; PSNR-B on Y)\n"
            );
            s.push_str("| Set | Task | Images | PSNR-Y | SSIM-Y | PSNR-B | Seconds |\n");
            s.push_str("|---|---|---|---|---|---|---|\n");
            for c in &outcome.cells {
                let task = c.task.as_deref().unwrap_or("–");
                let _ = match &c.result {
                    Some(r) => writeln!(
                        s,
                        "| {} | {task} | {} | {:.2} | {:.4} | {} | {:.1} |",
                        c.set,
                        r.images,
                        r.psnr_y,
                        r.ssim_y,
                        fmt_psnr(r.psnr_b),
                        r.seconds
                    ),
                    None => writeln!(s, "| {} | {task} | {missing} | – | – | – | – |", c.set),
                };
            }
        }
    }
    for m in &outcome.missing {
        let _ = write!(s, "\nMissing set (skipped): {}", m.describe());
    }
    if !outcome.missing.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn row(set: &str, image: &str, psnr: f64, rgb: Option<f64>) -> ImageResult {
        ImageResult {
            set: set.into(),
            scale: 1,
            sigma: rgb.map(|_| 30),
            image: image.into(),
            height: 4,
            width: 5,
            psnr_y: psnr,
            ssim_y: psnr / 100.0,
            psnr_rgb: rgb,
            seconds: 0.5,
            task: None,
            psnr_b: None,
        }
    }

    #[test]
    fn average_is_the_per_image_mean() {
        let rows = [
            row("S", "a", 30.0, Some(28.0)),
            row("S", "b", 32.0, Some(29.0)),
        ];
        let r = SetResult::average("S", 1, Some(30), &rows, 2.5);
        assert_eq!(r.images, 2);
        assert!((r.psnr_y - 31.0).abs() < 1e-12);
        assert!((r.ssim_y - 0.31).abs() < 1e-12);
        assert_eq!(r.psnr_rgb, Some(28.5));
        let r = SetResult::average("S", 2, None, &[row("S", "a", 30.0, None)], 1.0);
        assert_eq!(r.psnr_rgb, None);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let sr = BenchReport {
            task: BenchTask::Sr,
            model: "bicubic".into(),
            results: vec![SetResult {
                set: "Set5".into(),
                scale: 2,
                sigma: None,
                images: 5,
                psnr_y: 33.66,
                ssim_y: 0.93,
                psnr_rgb: None,
                task: None,
                psnr_b: None,
                seconds: 1.2,
            }],
        };
        let v = serde_json::to_value(&sr).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"task":"sr","model":"bicubic","results":[{"set":"Set5","scale":2,
                "images":5,"psnr_y":33.66,"ssim_y":0.93,"seconds":1.2}]})
        );
        let dn = BenchReport {
            task: BenchTask::Denoise,
            model: "identity".into(),
            results: vec![SetResult {
                sigma: Some(30),
                psnr_rgb: Some(18.5),
                scale: 1,
                ..sr.results[0].clone()
            }],
        };
        let v = serde_json::to_value(&dn).unwrap();
        let mut keys: Vec<&str> = v["results"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        let mut expected = [
            "set", "scale", "sigma", "images", "psnr_y", "ssim_y", "psnr_rgb", "seconds",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["task"], "denoise");
        // Round trip.
        let back: BenchReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, dn);
    }

    #[test]
    fn csv_and_json_files() {
        let tmp = tempfile::tempdir().unwrap();
        let csv_path = tmp.path().join("sub/rows.csv");
        write_csv(
            &csv_path,
            &[row("S,1", "a", 30.0, None), row("S", "b", 31.0, Some(29.0))],
        )
        .unwrap();
        let text = std::fs::read_to_string(&csv_path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "set,scale,sigma,image,height,width,psnr_y,ssim_y,psnr_rgb,seconds,task,psnr_b"
        );
        assert_eq!(lines[1], "\"S,1\",1,,a,4,5,30.0,0.3,,0.5,,");
        assert_eq!(lines[2], "S,1,30,b,4,5,31.0,0.31,29.0,0.5,,");

        let json_path = tmp.path().join("out.json");
        let report = BenchReport {
            task: BenchTask::Derain,
            model: "identity".into(),
            results: vec![],
        };
        write_json(&json_path, &report).unwrap();
        let back: BenchReport =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn markdown_lists_every_cell_and_the_missing_sets() {
        let measured = SetResult::average("Set5", 2, None, &[row("Set5", "a", 33.7, None)], 0.3);
        let outcome = BenchOutcome {
            task: BenchTask::Sr,
            model: "bicubic".into(),
            cells: vec![
                Cell {
                    set: "Set5".into(),
                    scale: 2,
                    sigma: None,
                    task: None,
                    result: Some(measured),
                },
                Cell {
                    set: "Urban100".into(),
                    scale: 2,
                    sigma: None,
                    task: None,
                    result: None,
                },
            ],
            images: vec![],
            missing: vec![MissingSet {
                name: "Urban100".into(),
                looked: vec![PathBuf::from("/data/Urban100")],
                empty: vec![],
            }],
        };
        let md = render_markdown(&outcome);
        assert!(
            md.contains("| Set5 | ×2 | 1 | 33.70 | 0.3370 | 38.37 | 33.66 / 0.9299 | 0.3 |"),
            "{md}"
        );
        assert!(
            md.contains("| Urban100 | ×2 | missing | – | – | 33.76 | 26.88 / 0.8403 | – |"),
            "{md}"
        );
        assert!(
            md.contains("Missing set (skipped): Urban100: not found (looked for /data/Urban100)"),
            "{md}"
        );
        assert_eq!(outcome.report().results.len(), 1);
    }
}
