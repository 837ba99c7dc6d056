//! The run's `metrics.jsonl` and its PNG plots.
//!
//! One JSON object per line. Training rows (`"kind": "train"`) summarise the `window` steps that
//! end at `step`: `loss`, `l1` and `contrastive` are means over the window, `task` is the task of
//! step `step` itself, `loss_by_task` the mean loss of each task seen in the window, `lr` the
//! learning rate of step `step` and `patches_per_s` the training throughput over the window.
//! Validation rows (`"kind": "validation"`) hold `psnr_y`: task name → mean PSNR-Y (dB) over the
//! held-out images. Steps count completed optimizer steps (the first row after one step has
//! `step` = 1; validation before training has `step` = 0).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_bytes_atomic;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricsRow {
    /// Training loss over a window of steps.
    Train {
        /// Completed steps.
        step: u64,
        /// Epoch of the last step.
        epoch: u64,
        /// Task of the last step.
        task: String,
        /// Mean total loss over the window.
        loss: f64,
        /// Mean L1 term.
        l1: f64,
        /// Mean contrastive term (unweighted).
        contrastive: f64,
        /// Mean loss per task in the window.
        loss_by_task: BTreeMap<String, f64>,
        /// Learning rate of the last step.
        lr: f64,
        /// Training patches per second over the window.
        patches_per_s: f64,
        /// Steps in the window (skipped NaN/Inf steps excluded).
        window: u64,
    },
    /// Validation PSNR.
    Validation {
        /// Completed steps.
        step: u64,
        /// Task name → mean PSNR-Y in dB.
        psnr_y: BTreeMap<String, f64>,
    },
}

impl MetricsRow {
    /// The row's step.
    pub fn step(&self) -> u64 {
        match self {
            MetricsRow::Train { step, .. } | MetricsRow::Validation { step, .. } => *step,
        }
    }
}

/// Errors of the metrics log and plots.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Plotting failed.
    #[error("{path}: cannot draw plot: {message}")]
    Plot {
        /// The PNG.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Appends rows to `metrics.jsonl`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// The log at `path` (created on first write).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one row (and flush).
    pub fn append(&self, row: &MetricsRow) -> Result<(), MetricsError> {
        let io = |source| MetricsError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let line = serde_json::to_string(row).unwrap_or_default();
        writeln!(f, "{line}").map_err(io)?;
        f.flush().map_err(io)
    }

    /// All rows; lines that do not parse (e.g. cut by a crash) are ignored.
    pub fn read(&self) -> Vec<MetricsRow> {
        std::fs::read_to_string(&self.path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keep only the rows with `step ≤ step` (used when resuming from a checkpoint, so the log
    /// has no rows from the lost tail of the interrupted run). Atomic.
    pub fn truncate_after(&self, step: u64) -> Result<(), MetricsError> {
        if !self.path.exists() {
            return Ok(());
        }
        let kept: String = self
            .read()
            .into_iter()
            .filter(|r| r.step() <= step)
            .map(|r| serde_json::to_string(&r).unwrap_or_default() + "\n")
            .collect();
        write_bytes_atomic(&self.path, kept.as_bytes()).map_err(|e| MetricsError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

/// Register a TrueType font for plot labels: `$IPT_FONT`, else a few common system fonts.
/// Returns false (plots are then drawn without text) when none is found.
fn ensure_font() -> bool {
    use std::sync::OnceLock;
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::env::var_os("IPT_FONT")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        candidates.extend(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
                "/System/Library/Fonts/Supplemental/Arial.ttf",
                "/Library/Fonts/Arial.ttf",
                "C:\\Windows\\Fonts\\arial.ttf",
            ]
            .map(PathBuf::from),
        );
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

const COLORS: [RGBColor; 7] = [
    RGBColor(20, 20, 20),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A set of named polylines to draw on one chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn draw_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<(), MetricsError> {
    let err = |e: &dyn std::fmt::Display| MetricsError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if y.is_finite() && (!log_y || y > 0.0) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        return Ok(()); // nothing to draw yet
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = if log_y {
        0.0
    } else {
        ((y1 - y0) * 0.05).max(1e-3)
    };
    let (y0, y1) = if log_y {
        (y0 * 0.9, y1 * 1.1)
    } else {
        (y0 - pad, y1 + pad)
    };
    let text = ensure_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(14);
        if text {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(70);
        }
        macro_rules! finish {
            ($chart:expr) => {{
                let mut chart = $chart;
                let mut mesh = chart.configure_mesh();
                if text {
                    mesh.x_desc("step").y_desc(y_label);
                } else {
                    mesh.x_labels(0).y_labels(0);
                }
                mesh.draw().map_err(|e| err(&e))?;
                for (i, s) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    let data: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| p.1.is_finite() && (!log_y || p.1 > 0.0))
                        .collect();
                    let line = chart
                        .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                        .map_err(|e| err(&e))?;
                    if text {
                        line.label(s.name.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                        });
                    }
                    if data.len() <= 40 {
                        chart
                            .draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))
                            .map_err(|e| err(&e))?;
                    }
                }
                if text {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::UpperRight)
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .draw()
                        .map_err(|e| err(&e))?;
                }
            }};
        }
        if log_y {
            finish!(builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| err(&e))?);
        } else {
            finish!(builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?);
        }
        root.present().map_err(|e| err(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Draw `loss.png` (window mean loss, log scale, plus the per-task means) and `psnr.png`
/// (validation PSNR-Y per task) into `dir` from `rows`.
pub fn plot(dir: &Path, rows: &[MetricsRow]) -> Result<(), MetricsError> {
    let mut total = Series {
        name: "loss (all tasks)".into(),
        points: Vec::new(),
    };
    let mut by_task: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut psnr: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        match r {
            MetricsRow::Train {
                step,
                loss,
                loss_by_task,
                ..
            } => {
                total.points.push((*step as f64, *loss));
                for (t, l) in loss_by_task {
                    by_task
                        .entry(t.clone())
                        .or_default()
                        .push((*step as f64, *l));
                }
            }
            MetricsRow::Validation { step, psnr_y } => {
                for (t, p) in psnr_y {
                    psnr.entry(t.clone()).or_default().push((*step as f64, *p));
                }
            }
        }
    }
    let mut loss_series = vec![total];
    // Per-task curves are noisy (few steps per window each); smooth them over 5 rows.
    loss_series.extend(by_task.into_iter().map(|(name, pts)| Series {
        name: format!("{name} (smoothed)"),
        points: smooth(&pts, 5),
    }));
    draw_chart(
        &dir.join("loss.png"),
        "training loss (L1 + λ·contrastive)",
        "loss",
        &loss_series,
        true,
    )?;
    let psnr_series: Vec<Series> = psnr
        .into_iter()
        .map(|(name, points)| Series { name, points })
        .collect();
    draw_chart(
        &dir.join("psnr.png"),
        "validation PSNR-Y (held-out images)",
        "PSNR-Y (dB)",
        &psnr_series,
        false,
    )
}

fn smooth(pts: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    (0..pts.len())
        .map(|i| {
            let lo = i.saturating_sub(k - 1);
            let w = &pts[lo..=i];
            (
                pts[i].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_row(step: u64, loss: f64) -> MetricsRow {
        MetricsRow::Train {
            step,
            epoch: 0,
            task: "sr2".into(),
            loss,
            l1: loss,
            contrastive: 0.0,
            loss_by_task: [("sr2".to_string(), loss)].into(),
            lr: 1e-4,
            patches_per_s: 10.0,
            window: 1,
        }
    }

    #[test]
    fn log_round_trip_truncate_and_plot() {
        let dir = tempfile::tempdir().unwrap();
        let log = MetricsLog::new(dir.path().join("metrics.jsonl"));
        for s in 1..=6 {
            log.append(&train_row(s, 10.0 / s as f64)).unwrap();
        }
        log.append(&MetricsRow::Validation {
            step: 6,
            psnr_y: [("sr2".to_string(), 25.0)].into(),
        })
        .unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for key in [
            "step",
            "task",
            "loss",
            "l1",
            "contrastive",
            "lr",
            "patches_per_s",
        ] {
            assert!(first.get(key).is_some(), "missing {key} in {first}");
        }
        assert_eq!(log.read().len(), 7);
        log.truncate_after(4).unwrap();
        let rows = log.read();
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.step() <= 4));
        plot(dir.path(), &log.read()).unwrap();
        let png = std::fs::read(dir.path().join("loss.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
