//! `ipt plot-points`: named `(x, y)` curves in one chart, for figures drawn from benchmark
//! results (e.g. the paper's Fig. 6: PSNR against the share of pre-training data).

use std::path::PathBuf;

use anyhow::{bail, Context};
use ipt_train::plot::plot_points;

/// Arguments of `ipt plot-points`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The PNG to write.
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// The chart's title.
    #[arg(long, default_value = "")]
    pub title: String,
    /// The x axis's label.
    #[arg(long, default_value = "x")]
    pub x_label: String,
    /// The y axis's label.
    #[arg(long, default_value = "y")]
    pub y_label: String,
    /// Curves: `LABEL=X:Y,X:Y…` (e.g. `Set5 x2=0:34.79,25:34.88,50:34.91,100:34.91`).
    #[arg(required = true, value_name = "LABEL=POINTS")]
    pub curves: Vec<String>,
}

/// `LABEL=X:Y,…` as a named curve.
fn parse_curve(arg: &str) -> anyhow::Result<(String, Vec<(f64, f64)>)> {
    let Some((label, points)) = arg.rsplit_once('=') else {
        bail!("curve `{arg}`: expected LABEL=X:Y[,X:Y…]");
    };
    let points = points
        .split(',')
        .map(|p| {
            let (x, y) = p
                .split_once(':')
                .with_context(|| format!("curve `{label}`: point `{p}` is not X:Y"))?;
            let num = |v: &str| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("curve `{label}`: `{v}` is not a finite number"))
            };
            Ok((num(x)?, num(y)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((label.to_string(), points))
}

/// Run `ipt plot-points`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let curves = args
        .curves
        .iter()
        .map(|c| parse_curve(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    plot_points(
        &args.out,
        &args.title,
        (&args.x_label, &args.y_label),
        &curves,
    )
    .with_context(|| format!("drawing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_parse_and_bad_points_are_named() {
        let (l, p) = parse_curve("Set5 x2=0:34.79,25:34.88").unwrap();
        assert_eq!(l, "Set5 x2");
        assert_eq!(p, vec![(0.0, 34.79), (25.0, 34.88)]);
        let e = parse_curve("a=0:1,2").unwrap_err().to_string();
        assert!(e.contains("`2`"), "{e}");
        let e = parse_curve("a=0:nan").unwrap_err().to_string();
        assert!(e.contains("nan"), "{e}");
        assert!(parse_curve("nolabel").is_err());
    }
}
