//! `ipt plot-runs`: one task's validation curves of several runs in one chart, e.g. a
//! pre-trained-then-fine-tuned model against the same model trained from scratch.

use std::path::PathBuf;

use anyhow::{bail, Context};
use ipt_train::plot::{plot_runs, RunChain};

/// Arguments of `ipt plot-runs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The task whose validation PSNR-Y is drawn (sr2, sr3, sr4, derain, denoise30, denoise50).
    #[arg(long)]
    pub task: String,
    /// The PNG to write.
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// Curves: `LABEL=RUN_DIR[,RUN_DIR…]`; the runs of one curve are chained, each continuing
    /// the step count of the previous one (e.g. `pretrained=runs/small-pretrain,runs/small-finetune-sr2`).
    #[arg(required = true, value_name = "LABEL=RUNS")]
    pub curves: Vec<String>,
}

/// `LABEL=DIR[,DIR…]` as a chain.
fn parse_chain(arg: &str) -> anyhow::Result<RunChain> {
    let Some((label, runs)) = arg.split_once('=') else {
        bail!("curve `{arg}`: expected LABEL=RUN_DIR[,RUN_DIR…]");
    };
    let runs: Vec<PathBuf> = runs.split(',').map(PathBuf::from).collect();
    for r in &runs {
        if !r.join("metrics.jsonl").is_file() {
            bail!(
                "curve `{label}`: {} has no metrics.jsonl (not a run directory?)",
                r.display()
            );
        }
    }
    Ok(RunChain {
        label: label.to_string(),
        runs,
    })
}

/// Run `ipt plot-runs`: draw the chart and print each curve's last and best PSNR.
pub fn run(args: Args) -> anyhow::Result<()> {
    let chains = args
        .curves
        .iter()
        .map(|c| parse_chain(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let curves = plot_runs(&args.out, &args.task, &chains)
        .with_context(|| format!("drawing {}", args.out.display()))?;
    for c in &curves {
        let last = c.points.last().map_or(f64::NAN, |p| p.1);
        let best = c.points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        println!(
            "{}: last {last:.2} dB, best {best:.2} dB over {} validations{}",
            c.label,
            c.points.len(),
            c.baseline
                .map(|b| format!(" (baseline {b:.2} dB)"))
                .unwrap_or_default()
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
