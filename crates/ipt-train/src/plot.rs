//! The run's PNG plots, redrawn from the run log at every checkpoint: `loss.png` (window mean
//! loss, log scale, and the smoothed per-task means) and `psnr.png` (validation PSNR-Y per task
//! as solid lines, each task's trivial baseline as a dashed line of the same colour). Legends sit
//! in a column beside the chart (dashed swatches for baselines), steps are integer ticks, and
//! [`plot_runs`] marks where a chain's fine-tuning starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::run_log::LogRow;

/// Errors of drawing a plot.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed.
    #[error("{path}: cannot draw plot: {message}")]
    Draw {
        /// The PNG.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// Moving the finished PNG into place failed.
    #[error("{path}: {source}")]
    Io {
        /// The PNG.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
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

/// Draw the mesh (integer step ticks), the marks and every series on a built chart (a macro:
/// the linear and the logarithmic charts have different coordinate types).
macro_rules! finish {
    ($chart:expr, $series:expr, $marks:expr, $y:expr, $text:expr, $log_y:expr, $labels:expr, $err:expr) => {{
        let (series, marks, (y0, y1), text, log_y, (x_label, y_label), err) =
            ($series, $marks, $y, $text, $log_y, $labels, $err);
        let mut chart = $chart;
        let mut mesh = chart.configure_mesh();
        let step_label = |x: &f64| step_tick(*x);
        if text {
            mesh.x_desc(x_label)
                .y_desc(y_label)
                .x_label_formatter(&step_label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
        for m in marks {
            let grey = RGBColor(110, 110, 110);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(m.step, y0), (m.step, y1)],
                    4,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
            if text {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!(" {}", m.label),
                        (m.step, y1),
                        ("sans-serif", 14).into_font().color(&grey),
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        for s in series {
            let color = COLORS[s.color % COLORS.len()];
            let data: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.1.is_finite() && (!log_y || p.1 > 0.0))
                .collect();
            if s.dashed {
                chart.draw_series(DashedLineSeries::new(
                    data.clone(),
                    8,
                    6,
                    color.stroke_width(2),
                ))
            } else {
                chart.draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            }
            .map_err(|e| err(&e))?;
            if !s.dashed && data.len() <= 40 {
                chart
                    .draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(&e))?;
            }
        }
    }};
}

/// An x-axis tick: the step as an integer (`1200`, not `1200.0`), thousands as `k` beyond
/// 10,000 so that long runs' ticks stay short.
fn step_tick(x: f64) -> String {
    let n = x.round() as i64;
    if n.abs() >= 10_000 && n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The legend, beside the chart (never over the data): one swatch per series, dashed for a
/// dashed series, and its name.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[s.color % COLORS.len()];
        let y = 60 + 22 * i as i32;
        let segments: Vec<(i32, i32)> = match s.dashed {
            true => vec![(0, 7), (11, 18), (22, 28)],
            false => vec![(0, 28)],
        };
        for (a, b) in segments {
            area.draw(&PathElement::new(
                vec![(8 + a, y), (8 + b, y)],
                color.stroke_width(3),
            ))?;
        }
        area.draw(&Text::new(
            s.name.clone(),
            (44, y - 8),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    Ok(())
}

/// A labelled vertical line at a step (where fine-tuning starts in [`plot_runs`]).
#[derive(Debug, Clone, PartialEq)]
struct Mark {
    step: f64,
    label: String,
}

/// A named polyline to draw on one chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    /// Index into the palette.
    color: usize,
    /// Drawn dashed, without markers (a baseline).
    dashed: bool,
}

/// The axes' ranges `(x0, x1, y0, y1)` of `series` (finite points; positive ones on a log
/// axis), padded; `None` when there is nothing to draw.
fn bounds(series: &[Series], log_y: bool) -> Option<(f64, f64, f64, f64)> {
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
        return None;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = if log_y {
        0.0
    } else {
        ((y1 - y0) * 0.05).max(1e-3)
    };
    Some(if log_y {
        (x0, x1, y0 * 0.9, y1 * 1.1)
    } else {
        (x0, x1, y0 - pad, y1 + pad)
    })
}

fn draw_chart(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    log_y: bool,
    marks: &[Mark],
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let Some((x0, x1, y0, y1)) = bounds(series, log_y) else {
        return Ok(()); // nothing to draw yet
    };
    let text = ensure_font();
    // The legend's column: wide enough for the longest name (about 8 px a character).
    let longest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let legend_w = if text {
        (60 + 8 * longest as u32).clamp(160, 420)
    } else {
        0
    };
    let draw = |tmp: &Path| -> Result<(), PlotError> {
        let root = BitMapBackend::new(tmp, (900 + legend_w, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (plot_area, legend_area) = root.split_horizontally(900);
        let mut builder = ChartBuilder::on(&plot_area);
        // The right margin leaves room for the last tick's label.
        builder.margin(14).margin_right(36);
        if text {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(70);
        }
        if log_y {
            finish!(
                builder
                    .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                    .map_err(|e| err(&e))?,
                series,
                marks,
                (y0, y1),
                text,
                log_y,
                (x_label, y_label),
                err
            );
        } else {
            finish!(
                builder
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|e| err(&e))?,
                series,
                marks,
                (y0, y1),
                text,
                log_y,
                (x_label, y_label),
                err
            );
        }
        if text {
            draw_legend(&legend_area, series).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))
    };
    ipt_degrade::files::write_atomic(path, draw).map_err(|e| match e {
        ipt_degrade::files::AtomicWriteError::Write { source, .. } => source,
        ipt_degrade::files::AtomicWriteError::Io { path, source } => PlotError::Io { path, source },
    })
}

/// The curves of a run log: total loss, loss by task, PSNR-Y and baseline by task.
struct Curves {
    total: Vec<(f64, f64)>,
    by_task: BTreeMap<String, Vec<(f64, f64)>>,
    psnr: BTreeMap<String, Vec<(f64, f64)>>,
    baseline: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Collect the [`Curves`] of `rows`.
fn curves(rows: &[LogRow]) -> Curves {
    let mut total = Vec::new();
    let mut by_task: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut psnr: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut baseline: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        match r {
            LogRow::Train {
                step,
                loss,
                loss_by_task,
                ..
            } => {
                total.push((*step as f64, *loss));
                for (t, l) in loss_by_task {
                    by_task
                        .entry(t.clone())
                        .or_default()
                        .push((*step as f64, *l));
                }
            }
            LogRow::Validation {
                step,
                psnr_y,
                baseline: base,
                ..
            } => {
                for (t, p) in psnr_y {
                    psnr.entry(t.clone()).or_default().push((*step as f64, *p));
                }
                for (t, p) in base {
                    baseline
                        .entry(t.clone())
                        .or_default()
                        .push((*step as f64, *p));
                }
            }
        }
    }
    Curves {
        total,
        by_task,
        psnr,
        baseline,
    }
}

/// Draw `loss.png` and `psnr.png` into `dir` from the run log's `rows`.
pub fn plot(dir: &Path, rows: &[LogRow]) -> Result<(), PlotError> {
    let Curves {
        total,
        by_task,
        psnr,
        mut baseline,
    } = curves(rows);
    let mut loss_series = vec![Series {
        name: "loss (all tasks)".into(),
        points: total,
        color: 0,
        dashed: false,
    }];
    // Per-task curves are noisy (few steps per window each); smooth them over 5 rows.
    loss_series.extend(
        by_task
            .into_iter()
            .enumerate()
            .map(|(i, (name, pts))| Series {
                name: format!("{name} (smoothed)"),
                points: smooth(&pts, 5),
                color: i + 1,
                dashed: false,
            }),
    );
    draw_chart(
        &dir.join("loss.png"),
        "training loss (L1 + λ·contrastive)",
        ("step", "loss"),
        &loss_series,
        true,
        &[],
    )?;
    let mut psnr_series = Vec::new();
    for (i, (name, points)) in psnr.into_iter().enumerate() {
        if let Some(base) = baseline.remove(&name) {
            psnr_series.push(Series {
                name: format!("{name} baseline ({})", baseline_label(&name)),
                points: base,
                color: i + 1,
                dashed: true,
            });
        }
        psnr_series.push(Series {
            name,
            points,
            color: i + 1,
            dashed: false,
        });
    }
    draw_chart(
        &dir.join("psnr.png"),
        "validation PSNR-Y (held-out images; dashed: trivial baseline)",
        ("step", "PSNR-Y (dB)"),
        &psnr_series,
        false,
        &[],
    )
}

/// One curve of [`plot_runs`]: a label and the run directories it chains; each run's steps
/// continue after the previous run's last step (pre-training, then fine-tuning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunChain {
    /// The legend label.
    pub label: String,
    /// Run directories (each holding a `metrics.jsonl`), in order.
    pub runs: Vec<PathBuf>,
}

/// The validation curve of one chain, as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainCurve {
    /// The chain's label.
    pub label: String,
    /// `(step, PSNR-Y)` of every validation of the task, steps counted from the chain's start.
    pub points: Vec<(f64, f64)>,
    /// The task's baseline, when the runs logged one.
    pub baseline: Option<f64>,
}

/// The validation PSNR-Y of `task` along each chain of runs, read from their run logs, drawn
/// into one chart at `out` (solid: the chains; dashed: the task's trivial baseline). Errors name
/// a run that has no validation of `task`.
pub fn plot_runs(
    out: &Path,
    task: &str,
    chains: &[RunChain],
) -> Result<Vec<ChainCurve>, PlotError> {
    let mut curves = Vec::new();
    let mut marks: Vec<Mark> = Vec::new();
    for chain in chains {
        let (mut offset, mut points, mut baseline) = (0.0, Vec::new(), None);
        for (i, dir) in chain.runs.iter().enumerate() {
            if i > 0 && !marks.iter().any(|m| m.step == offset) {
                marks.push(Mark {
                    step: offset,
                    label: match i {
                        1 => "fine-tuning starts".to_string(),
                        _ => format!("run {} starts", i + 1),
                    },
                });
            }
            let rows = crate::run_log::RunLog::new(dir.join("metrics.jsonl")).read();
            let mut last = 0.0f64;
            let before = points.len();
            for r in &rows {
                match r {
                    LogRow::Train { step, .. } => last = last.max(*step as f64),
                    LogRow::Validation {
                        step,
                        psnr_y,
                        baseline: base,
                        ..
                    } => {
                        if let Some(p) = psnr_y.get(task) {
                            points.push((offset + *step as f64, *p));
                            last = last.max(*step as f64);
                        }
                        if let Some(b) = base.get(task) {
                            baseline = Some(*b);
                        }
                    }
                }
            }
            if points.len() == before {
                return Err(PlotError::Draw {
                    path: dir.clone(),
                    message: format!("no validation of task {task} in its metrics.jsonl"),
                });
            }
            offset += last;
        }
        curves.push(ChainCurve {
            label: chain.label.clone(),
            points,
            baseline,
        });
    }
    let mut series: Vec<Series> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| Series {
            name: c.label.clone(),
            points: c.points.clone(),
            color: i + 1,
            dashed: false,
        })
        .collect();
    if let Some((b, x1)) = curves.iter().find_map(|c| {
        let x1 = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .fold(0.0, f64::max);
        c.baseline.map(|b| (b, x1))
    }) {
        series.push(Series {
            name: format!("{task} baseline ({})", baseline_label(task)),
            points: vec![(0.0, b), (x1, b)],
            color: 0,
            dashed: true,
        });
    }
    draw_chart(
        out,
        &format!("validation PSNR-Y, {task}"),
        ("step", "PSNR-Y (dB)"),
        &series,
        false,
        &marks,
    )?;
    Ok(curves)
}

/// Named `(x, y)` curves with markers in one chart at `out` (e.g. PSNR against the share of
/// pre-training data, the paper's Fig. 6); x ticks are integers. Errors name the file.
pub fn plot_points(
    out: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    let series: Vec<Series> = curves
        .iter()
        .enumerate()
        .map(|(i, (name, points))| Series {
            name: name.clone(),
            points: points.clone(),
            color: i + 1,
            dashed: false,
        })
        .collect();
    draw_chart(out, title, (x_label, y_label), &series, false, &[])
}

/// `bicubic` for SR task names, `input` otherwise.
fn baseline_label(task: &str) -> &'static str {
    if task.starts_with("sr") {
        "bicubic"
    } else {
        "input"
    }
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

    fn write_log(dir: &Path, rows: &[LogRow]) {
        let log = crate::run_log::RunLog::new(dir.join("metrics.jsonl"));
        for r in rows {
            log.append(r).unwrap();
        }
    }

    fn val(step: u64, p: f64) -> LogRow {
        LogRow::Validation {
            step,
            psnr_y: [("sr2".to_string(), p)].into(),
            baseline: [("sr2".to_string(), 30.0)].into(),
            ssim_y: Default::default(),
        }
    }

    #[test]
    fn chained_runs_continue_each_others_steps() {
        let root = tempfile::tempdir().unwrap();
        let (pre, ft, scratch) = (
            root.path().join("pre"),
            root.path().join("ft"),
            root.path().join("scratch"),
        );
        for d in [&pre, &ft, &scratch] {
            std::fs::create_dir_all(d).unwrap();
        }
        write_log(&pre, &[val(0, 10.0), val(100, 20.0)]);
        write_log(&ft, &[val(0, 21.0), val(50, 25.0)]);
        write_log(&scratch, &[val(0, 11.0), val(150, 24.0)]);
        let out = root.path().join("curves.png");
        let curves = plot_runs(
            &out,
            "sr2",
            &[
                RunChain {
                    label: "pre-trained + fine-tuned".into(),
                    runs: vec![pre.clone(), ft],
                },
                RunChain {
                    label: "scratch".into(),
                    runs: vec![scratch],
                },
            ],
        )
        .unwrap();
        assert_eq!(
            curves[0].points,
            vec![(0.0, 10.0), (100.0, 20.0), (100.0, 21.0), (150.0, 25.0)]
        );
        assert_eq!(curves[1].baseline, Some(30.0));
        assert_eq!(&std::fs::read(&out).unwrap()[1..4], b"PNG");
        let err = plot_runs(
            &out,
            "sr3",
            &[RunChain {
                label: "x".into(),
                runs: vec![pre],
            }],
        )
        .unwrap_err();
        assert!(err.to_string().contains("sr3"), "{err}");
    }

    #[test]
    fn step_ticks_are_integers() {
        assert_eq!(step_tick(200.0), "200");
        assert_eq!(step_tick(1200.0000001), "1200");
        assert_eq!(step_tick(12000.0), "12k");
        assert_eq!(step_tick(12500.0), "12500");
    }

    #[test]
    fn plots_are_png_files() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            LogRow::Validation {
                step: 0,
                psnr_y: [("sr2".to_string(), 20.0)].into(),
                baseline: [("sr2".to_string(), 24.0)].into(),
                ssim_y: Default::default(),
            },
            LogRow::Validation {
                step: 10,
                psnr_y: [("sr2".to_string(), 25.0)].into(),
                baseline: [("sr2".to_string(), 24.0)].into(),
                ssim_y: Default::default(),
            },
        ];
        plot(dir.path(), &rows).unwrap();
        let png = std::fs::read(dir.path().join("psnr.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // No training rows yet: loss.png is simply not drawn.
        assert!(!dir.path().join("loss.png").exists());
    }
}
