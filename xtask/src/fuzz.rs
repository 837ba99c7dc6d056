//! `cargo xtask fuzz [TARGET] --seconds N`: runs the cargo-fuzz targets of `fuzz/` one after
//! another, without the user needing to know cargo-fuzz.
//!
//! It checks for the nightly toolchain and cargo-fuzz (installing cargo-fuzz from crates.io when
//! missing), runs `cargo +nightly fuzz run TARGET` for each target with its seed folders, streams
//! libFuzzer's output, and ends with a table of the executions and coverage each target reached.
//! One libFuzzer process runs at a time (no `-jobs`/`-workers`), so a run takes one core.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

use crate::libtorch::Libtorch;

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// The target to run (`pt_file`, `pt_pickle`, `safetensors`, `image`, `experiment_config`);
    /// all of them, one after another, when omitted.
    pub target: Option<String>,
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Extra libFuzzer options (after `--`), e.g. `-- -max_len=65536`.
    #[arg(last = true, allow_hyphen_values = true)]
    pub libfuzzer_args: Vec<OsString>,
}

/// Folders (relative to the repository root) whose files seed a target's corpus, besides its
/// own growing corpus `fuzz/corpus/TARGET`. Real files from the tests where they exist.
pub fn seed_dirs(target: &str) -> Vec<&'static str> {
    match target {
        "pt_file" => vec!["crates/ipt-model/tests/fixtures"],
        "pt_pickle" => vec!["fuzz/seeds/pt_pickle"],
        "safetensors" => vec!["fuzz/seeds/safetensors"],
        "image" => vec!["fuzz/seeds/image"],
        "experiment_config" => vec!["configs"],
        _ => vec![],
    }
}

/// What libFuzzer reported for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Inputs executed (`#N` of the last status line, or `Done N runs`).
    pub runs: u64,
    /// Covered code edges (`cov:`).
    pub cov: u64,
    /// Coverage features (`ft:`; edges with hit counts and other signals).
    pub features: u64,
    /// Inputs in the corpus at the end (`corp:`).
    pub corpus: u64,
    /// Executions per second (`exec/s:`).
    pub exec_per_s: u64,
    /// Peak memory (`rss:`, MB).
    pub rss_mb: u64,
    /// Seconds the run took (`Done N runs in S second(s)`).
    pub seconds: u64,
    /// Paths libFuzzer wrote a crashing, leaking, timing-out or out-of-memory input to.
    pub artifacts: Vec<String>,
}

impl Summary {
    /// Takes what one line of libFuzzer's output says into account.
    pub fn update(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if let Some(n) = words.next().and_then(|w| w.parse().ok()) {
                self.runs = self.runs.max(n);
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                let value = || {
                    pair[1]
                        .split('/')
                        .next()
                        .and_then(|v| v.trim_end_matches("Mb").parse().ok())
                };
                match pair[0] {
                    "cov:" => self.cov = value().unwrap_or(self.cov),
                    "ft:" => self.features = value().unwrap_or(self.features),
                    "corp:" => self.corpus = value().unwrap_or(self.corpus),
                    "exec/s:" => self.exec_per_s = value().unwrap_or(self.exec_per_s),
                    "rss:" => self.rss_mb = value().unwrap_or(self.rss_mb),
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 1234 runs in 60 second(s)"
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let Some(n) = words.first().and_then(|w| w.parse().ok()) {
                self.runs = self.runs.max(n);
            }
            if let Some(s) = words.get(3).and_then(|w| w.parse().ok()) {
                self.seconds = s;
            }
        } else if let Some(i) = line.find("Test unit written to ") {
            self.artifacts
                .push(line[i + "Test unit written to ".len()..].trim().to_string());
        }
    }
}

/// Runs `cargo xtask fuzz`.
pub fn run(lt: &Libtorch, args: Args) -> Result<ExitCode> {
    let root = repo_root()?;
    ensure_tools()?;
    let all = list_targets(lt, &root)?;
    let targets = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?}; the targets are {}", all.join(", ")),
        None => all,
    };
    let mut results = Vec::new();
    let mut failed = false;
    for target in &targets {
        eprintln!(
            "xtask: fuzzing {target} for {} s (corpus fuzz/corpus/{target}, seeds {})",
            args.seconds,
            seed_dirs(target).join(", ")
        );
        let (summary, ok) = run_target(lt, &root, target, &args)?;
        failed |= !ok;
        results.push((target.clone(), summary, ok));
    }
    println!();
    println!(
        "{:<18} {:>11} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}  result",
        "target", "executions", "exec/s", "cov", "ft", "corpus", "rss MB", "seconds"
    );
    for (target, s, ok) in &results {
        let result = if *ok {
            "no crash".to_string()
        } else if s.artifacts.is_empty() {
            "FAILED".to_string()
        } else {
            format!("CRASH: {}", s.artifacts.join(", "))
        };
        println!(
            "{:<18} {:>11} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}  {result}",
            target, s.runs, s.exec_per_s, s.cov, s.features, s.corpus, s.rss_mb, s.seconds
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The workspace root (xtask's parent folder).
fn repo_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .context("xtask has no parent folder")?
        .to_path_buf();
    if !root.join("fuzz/Cargo.toml").exists() {
        bail!("{} has no fuzz/Cargo.toml", root.display());
    }
    Ok(root)
}

/// The nightly toolchain must be there; cargo-fuzz is installed when missing.
fn ensure_tools() -> Result<()> {
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !nightly.is_ok_and(|s| s.success()) {
        bail!(
            "fuzzing needs the nightly toolchain (for -Zsanitizer and coverage instrumentation): \
             `rustup toolchain install nightly`"
        );
    }
    let has_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_fuzz {
        eprintln!("xtask: cargo-fuzz is missing; installing it: cargo install cargo-fuzz --locked");
        let status = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("could not run cargo install")?;
        if !status.success() {
            bail!("`cargo install cargo-fuzz --locked` failed (is crates.io reachable?)");
        }
    }
    Ok(())
}

fn fuzz_command(lt: &Libtorch, root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(["+nightly", "fuzz"]);
    for (k, v) in lt.cargo_env() {
        cmd.env(k, v);
    }
    cmd
}

/// The targets `fuzz/Cargo.toml` declares (`cargo fuzz list`).
fn list_targets(lt: &Libtorch, root: &Path) -> Result<Vec<String>> {
    let out = fuzz_command(lt, root)
        .arg("list")
        .output()
        .context("could not run cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Fuzzes one target; returns what libFuzzer reported and whether it ended without a finding.
fn run_target(lt: &Libtorch, root: &Path, target: &str, args: &Args) -> Result<(Summary, bool)> {
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut cmd = fuzz_command(lt, root);
    // No sanitizer: the code is safe Rust (plus libtorch, which is not instrumented), and
    // overflow checks and debug assertions (-a) turn arithmetic mistakes into findings.
    cmd.args(["run", target, "--sanitizer", "none", "--debug-assertions"]);
    cmd.arg(&corpus);
    for dir in seed_dirs(target) {
        let dir = root.join(dir);
        if dir.is_dir() {
            cmd.arg(dir);
        }
    }
    cmd.arg("--");
    cmd.arg(format!("-max_total_time={}", args.seconds));
    cmd.args(["-timeout=60", "-rss_limit_mb=4096", "-print_final_stats=1"]);
    cmd.args(&args.libfuzzer_args);
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().context("could not run cargo fuzz run")?;
    let mut summary = Summary::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("{line}");
            summary.update(&line);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    Ok((summary, status.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_lines_are_summarised() {
        let mut s = Summary::default();
        for line in [
            "INFO: Seed: 1234",
            "#2\tINITED cov: 812 ft: 1020 corp: 12/30Kb exec/s: 0 rss: 250Mb",
            "#4096\tpulse  cov: 900 ft: 1500 corp: 40/60Kb lim: 4096 exec/s: 2048 rss: 300Mb",
            "#52113\tNEW    cov: 933 ft: 1702 corp: 58/71Kb lim: 4096 exec/s: 1737 rss: 311Mb L: 88/4096 MS: 2 ChangeBit-CopyPart-",
            "#60000\tDONE   cov: 934 ft: 1710 corp: 59/72Kb lim: 4096 exec/s: 1000 rss: 320Mb",
            "Done 60000 runs in 60 second(s)",
            "stat::number_of_executed_units: 60000",
        ] {
            s.update(line);
        }
        assert_eq!(
            s,
            Summary {
                runs: 60000,
                cov: 934,
                features: 1710,
                corpus: 59,
                exec_per_s: 1000,
                rss_mb: 320,
                seconds: 60,
                artifacts: vec![],
            }
        );
        s.update("artifact_prefix='fuzz/artifacts/image/'; Test unit written to fuzz/artifacts/image/crash-abc");
        assert_eq!(s.artifacts, vec!["fuzz/artifacts/image/crash-abc"]);
    }

    #[test]
    fn every_target_has_seeds_in_the_repository() {
        let root = repo_root().unwrap();
        for t in [
            "pt_file",
            "pt_pickle",
            "safetensors",
            "image",
            "experiment_config",
        ] {
            let dirs = seed_dirs(t);
            assert!(!dirs.is_empty(), "{t}");
            for d in dirs {
                let n = std::fs::read_dir(root.join(d)).unwrap().count();
                assert!(n > 0, "{t}: {d} is empty");
            }
        }
    }
}
