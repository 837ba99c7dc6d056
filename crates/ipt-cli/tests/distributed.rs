//! Data-parallel training with real ranks: `ipt pretrain` processes joined through Gloo on
//! loopback (torchrun's variables), a tiny model on the embedded images, a few steps each.
//!
//! - two ranks with batch B train what one process with batch 2B trains (λ = 0), the ranks
//!   holding bit-identical weights after every step (`runtime.check_replicas_every = 1`);
//! - with the contrastive term on, the ranks stay finite and identical, and a single process
//!   resumes their checkpoint;
//! - a rank killed with SIGKILL makes the other exit non-zero within the timeout naming it, and
//!   rerunning resumes from the last checkpoint;
//! - two "machines": the ranks in two network namespaces (root only; skipped otherwise).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipt_dist::testing::{free_port, netns_unavailable, rank_cmd, Netns, Rank};
use tch::Tensor;

const IPT: &str = env!("CARGO_BIN_EXE_ipt");

/// A tiny two-task config; `extra` is appended to `[runtime]`.
fn config(dir: &Path, name: &str, batch: usize, lambda: f64, steps: u64, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "{name}"
[model]
preset = "tiny"
[tasks]
names = ["sr2", "denoise30"]
[data]
source = "embedded"
images = 32
image_size = 96
workers = 1
[optim]
batch_size = {batch}
steps = {steps}
lr = 5e-4
[loss]
lambda = {lambda}
[checkpoint]
every = 5
keep_last = 2
[validation]
every = 0
[runtime]
seed = 1
device = "cpu"
threads = 1
log_every = 1
{extra}
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `ipt pretrain CONFIG --run-dir RUN [more]` as rank `r` of 2 at `master:port`.
fn rank(
    wrapper: &[&str],
    r: usize,
    master: &str,
    port: u16,
    cfg: &Path,
    run: &Path,
    more: &[&str],
) -> Rank {
    let mut args = vec![
        "pretrain",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    Rank::spawn(rank_cmd(Path::new(IPT), wrapper, r, 2, master, port, &args))
}

/// Two ranks on loopback.
fn two_ranks(cfg: &Path, run: &Path, more: &[&str]) -> Vec<Rank> {
    let port = free_port();
    (0..2)
        .map(|r| rank(&[], r, "127.0.0.1", port, cfg, run, more))
        .collect()
}

/// Wait for every rank to exit successfully; returns their outputs.
fn succeed(ranks: &mut [Rank]) -> Vec<String> {
    ranks
        .iter_mut()
        .enumerate()
        .map(|(r, rank)| {
            let (status, out) = rank.finish(Duration::from_secs(300));
            assert!(
                status.is_some_and(|s| s.success()),
                "rank {r} failed ({status:?}):\n{out}"
            );
            out
        })
        .collect()
}

/// One process, no distributed variables.
fn single(cfg: &Path, run: &Path, more: &[&str]) -> String {
    let out = Command::new(IPT)
        .args(["pretrain", cfg.to_str().unwrap(), "--run-dir"])
        .arg(run)
        .args(more)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("SLURM_NTASKS")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text
}

fn weights(run: &Path, step: u64) -> BTreeMap<String, Tensor> {
    let file = run.join(format!("checkpoints/step-{step:08}.safetensors"));
    Tensor::read_safetensors(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .into_iter()
        .collect()
}

/// `(world_size, loss)` of every train row of the run's `metrics.jsonl`, by step.
fn train_rows(run: &Path) -> BTreeMap<u64, (u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                (
                    v["world_size"].as_u64().unwrap(),
                    v["loss"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn two_ranks_train_what_one_process_trains_with_the_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let check = "check_replicas_every = 1";
    let one = config(dir.path(), "one", 4, 0.0, 6, check);
    let two = config(dir.path(), "two", 2, 0.0, 6, check);
    let (r1, r2) = (dir.path().join("r1"), dir.path().join("r2"));
    single(&one, &r1, &[]);
    let outs = succeed(&mut two_ranks(&two, &r2, &[]));
    assert!(
        outs[0].contains("batch 4 (2 ranks × 2 per rank)"),
        "{}",
        outs[0]
    );
    assert!(!r2.join("checkpoints").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("rank")));

    // The same loss at every step, and the same weights at the end up to float reduction order.
    let (l1, l2) = (train_rows(&r1), train_rows(&r2));
    assert_eq!(l1.len(), 6);
    for (step, (w2, loss2)) in &l2 {
        let (w1, loss1) = l1[step];
        assert_eq!((w1, *w2), (1, 2));
        assert!(
            (loss1 - loss2).abs() <= 1e-5 * loss1.abs(),
            "step {step}: loss {loss1} vs {loss2}"
        );
    }
    // Adam divides each gradient by its running magnitude, which turns the float noise of a
    // near-zero gradient (its sum over 4 items in one process vs 2 + 2 over two ranks) into an
    // update of up to lr: compare with the size of a step, not with machine epsilon. Observed
    // here: largest difference 9.2e-5 of the tensor's largest value, and 1.3e-4 of the last step's
    // update (norms); a rank training the wrong items would differ by a whole update (ratio ≥ 1).
    let (a, b, before) = (weights(&r1, 6), weights(&r2, 6), weights(&r1, 5));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = (0.0f64, "");
    let (mut diff2, mut step2) = (0.0, 0.0);
    for (k, x) in a.iter().filter(|(_, x)| x.is_floating_point()) {
        let d = x - &b[k];
        let rel = d.abs().max().double_value(&[]) / x.abs().max().double_value(&[]).max(1e-12);
        if rel > worst.0 {
            worst = (rel, k);
        }
        diff2 += d.square().sum(tch::Kind::Double).double_value(&[]);
        step2 += (x - &before[k])
            .square()
            .sum(tch::Kind::Double)
            .double_value(&[]);
    }
    let of_step = (diff2 / step2).sqrt();
    eprintln!(
        "largest difference: {:.2e} of the tensor's largest value ({}); all weights: {of_step:.2e} \
         of the last step's update (norms)",
        worst.0, worst.1
    );
    assert!(worst.0 <= 5e-4, "{worst:?}");
    assert!(of_step <= 1e-2, "{of_step}");
}

/// The same config with the field's options: a moving average of the weights, warm-up then
/// cosine, validation and the best sr2 checkpoint kept.
fn with_ema(cfg: &Path) -> PathBuf {
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace(
            "lr = 5e-4\n",
            "lr = 5e-4\nema_decay = 0.8\nschedule = \"cosine\"\nwarmup_steps = 2\n",
        )
        .replace("keep_last = 2\n", "keep_last = 2\nkeep_best = \"sr2\"\n")
        .replace(
            "[validation]\nevery = 0\n",
            "[validation]\nevery = 3\nimages = 1\n",
        );
    assert!(text.contains("ema_decay") && text.contains("keep_best") && text.contains("every = 3"));
    std::fs::write(cfg, text).unwrap();
    cfg.to_path_buf()
}

#[test]
fn the_weights_average_is_identical_on_every_rank_and_matches_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let check = "check_replicas_every = 1"; // now compares the averages too, every step
    let one = with_ema(&config(dir.path(), "ema1", 4, 0.0, 6, check));
    let two = with_ema(&config(dir.path(), "ema2", 2, 0.0, 6, check));
    let (r1, r2) = (dir.path().join("r1"), dir.path().join("r2"));
    single(&one, &r1, &[]);
    succeed(&mut two_ranks(&two, &r2, &[]));
    let optim = |run: &Path| -> BTreeMap<String, Tensor> {
        Tensor::read_safetensors(run.join("checkpoints/step-00000006.optim.safetensors"))
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("ema."))
            .collect()
    };
    let (a, b) = (optim(&r1), optim(&r2));
    assert!(!a.is_empty());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    // As the weights (see the test above): equal up to the float noise of the reduction order.
    for (k, x) in &a {
        let rel =
            (x - &b[k]).abs().max().double_value(&[]) / x.abs().max().double_value(&[]).max(1e-12);
        assert!(rel <= 5e-4, "{k}: {rel}");
    }
    // The same rates (a pure function of the step) and the same best validation step.
    let lrs = |run: &Path| -> Vec<String> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "train")
            .map(|v| format!("{:.12e}", v["lr"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(lrs(&r1), lrs(&r2));
    let best = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoints/best.json")).unwrap())
            .unwrap()
    };
    let (b1, b2) = (best(&r1), best(&r2));
    assert_eq!((&b1["step"], &b1["task"]), (&b2["step"], &b2["task"]));
    let (p1, p2) = (
        b1["psnr_y"].as_f64().unwrap(),
        b2["psnr_y"].as_f64().unwrap(),
    );
    assert!((p1 - p2).abs() < 0.01, "{p1} vs {p2}");
}

#[test]
fn contrastive_ranks_stay_identical_and_a_single_process_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "con", 2, 0.1, 8, "check_replicas_every = 1");
    let run = dir.path().join("run");
    succeed(&mut two_ranks(&cfg, &run, &["--stop-after", "5"]));
    let rows = train_rows(&run);
    assert_eq!(rows.len(), 5);
    assert!(rows
        .values()
        .all(|&(w, l)| w == 2 && l.is_finite() && l > 0.0));
    let out = single(&cfg, &run, &[]);
    assert!(out.contains("resuming from"), "{out}");
    let rows = train_rows(&run);
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(rows[&8].0 == 1 && rows[&8].1.is_finite());
}

#[test]
fn a_killed_rank_stops_the_other_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "kill", 2, 0.1, 400, "collective_timeout_s = 20");
    let run = dir.path().join("run");
    let mut ranks = two_ranks(&cfg, &run, &[]);
    assert!(
        ranks[0].wait_for("step 12/400", Duration::from_secs(120)),
        "{}",
        ranks[0].seen.join("\n")
    );
    let hit = Instant::now();
    nix::sys::signal::kill(ranks[1].pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    let (status, out) = ranks[0].finish(Duration::from_secs(60));
    let took = hit.elapsed();
    assert!(
        status.is_some_and(|s| !s.success() && s.code().is_some()),
        "the survivor must exit with an error ({status:?}):\n{out}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(out.contains("a peer was lost, rank 1"), "{out}");
    eprintln!("rank 0 exited {took:?} after rank 1 was killed");

    let mut again = two_ranks(&cfg, &run, &["--stop-after", "25"]);
    let outs = succeed(&mut again);
    assert!(outs[0].contains("resuming from"), "{}", outs[0]);
    assert!(run.join("checkpoints/step-00000025.safetensors").is_file());
}

#[test]
fn two_machines_in_network_namespaces_train_together() {
    if let Some(why) = netns_unavailable() {
        eprintln!("skipped: two_machines_in_network_namespaces_train_together {why}");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipped: could not create network namespaces: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ns", 2, 0.1, 5, "check_replicas_every = 1");
    let run = dir.path().join("run");
    let port = free_port();
    let mut ranks: Vec<Rank> = (0..2)
        .map(|r| {
            let wrapper = ["ip", "netns", "exec", ns.names[r].as_str()];
            rank(&wrapper, r, "10.231.7.1", port, &cfg, &run, &[])
        })
        .collect();
    succeed(&mut ranks);
    assert_eq!(train_rows(&run).len(), 5);
}
