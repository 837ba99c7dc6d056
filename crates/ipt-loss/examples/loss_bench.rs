//! Time and peak memory of the contrastive loss, forward + backward, one-shot and chunked.
//!
//! ```text
//! cargo run -p ipt-loss --example loss_bench                      # the default grid, one process per row
//! cargo run -p ipt-loss --example loss_bench -- 16,64 256 576 none,1024 supcon 3
//!                                               B-list  N  d  chunks     variants reps
//! ```
//!
//! Each configuration runs in a fresh child process (this same executable with `--one`), so that its peak
//! resident memory (`VmHWM` from `/proc/self/status`) is its own. The child creates the tokens, records
//! `VmHWM` (libtorch + tokens: the baseline), runs one warm-up step and `reps` timed steps of
//! `loss = contrastive_loss(tokens); loss.backward()`, and reports the median time and the peak `VmHWM` above
//! the baseline. Results are printed as a Markdown table (see `docs/losses.md`).

use std::process::Command;
use std::time::Instant;

use ipt_loss::{contrastive_loss, ContrastiveVariant};
use tch::{Device, Kind, Tensor};

const TAU: f64 = 0.07;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        return one(&args[1..]);
    }
    let get = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let batches = get(0, "16,64");
    let n = get(1, "256");
    let d = get(2, "576");
    let chunks = get(3, "none,1024");
    let variants = get(4, "supcon");
    let reps = get(5, "3");

    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
    println!(
        "threads: {} (libtorch intra-op), device: cpu",
        tch::get_num_threads()
    );
    println!();
    println!("| variant | B | N | d | M = B·N | chunk | fwd+bwd median (s) | peak RSS above baseline (MiB) | baseline (MiB) | loss |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for variant in variants.split(',') {
        for b in batches.split(',') {
            for chunk in chunks.split(',') {
                let out = Command::new(&exe)
                    .args(["--one", b, &n, &d, chunk, variant, &reps])
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                if out.status.success() {
                    print!("{stdout}");
                } else {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let last = stderr.lines().last().unwrap_or("");
                    println!(
                        "| {variant} | {b} | {n} | {d} | | {chunk} | failed ({}): {last} | | | |",
                        out.status
                    );
                }
            }
        }
    }
    Ok(())
}

/// `VmHWM` (peak resident set) of this process, in MiB.
fn peak_rss_mib() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("/proc/self/status has no VmHWM line")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot parse {line:?}"))?;
    Ok(kib / 1024.0)
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what}: {s:?}"))
}

fn one(args: &[String]) -> Result<(), String> {
    let [b, n, d, chunk, variant, reps] = args else {
        return Err(format!(
            "--one expects B N d chunk variant reps, got {args:?}"
        ));
    };
    let (b, n, d): (i64, i64, i64) = (parse("B", b)?, parse("N", n)?, parse("d", d)?);
    let chunk: Option<usize> = match chunk.as_str() {
        "none" => None,
        c => Some(parse("chunk", c)?),
    };
    let variant: ContrastiveVariant = parse("variant", variant)?;
    let reps: usize = parse("reps", reps)?;

    tch::manual_seed(0);
    let tokens = Tensor::randn([b, n, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let baseline = peak_rss_mib()?;
    let step = || {
        let start = Instant::now();
        let loss = contrastive_loss(&tokens, TAU, variant, chunk);
        loss.backward();
        let grad_norm = tokens.grad().norm().double_value(&[]);
        let _ = tokens.grad().zero_();
        (
            start.elapsed().as_secs_f64(),
            loss.double_value(&[]),
            grad_norm,
        )
    };
    let (_, loss, _) = step();
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| step().0).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let peak = peak_rss_mib()?;
    let chunk = chunk.map_or("none".to_string(), |c| c.to_string());
    println!(
        "| {variant} | {b} | {n} | {d} | {} | {chunk} | {median:.3} | {:.0} | {baseline:.0} | {loss:.6} |",
        b * n,
        peak - baseline
    );
    Ok(())
}
