//! `ipt-dist-check`: join a distributed job and check the collectives end to end, before trusting a cluster with
//! a long run. Launch it like the trainer:
//!
//! ```sh
//! torchrun --nproc-per-node 2 --no-python target/release/ipt-dist-check
//! srun --ntasks 8 target/release/ipt-dist-check      # with MASTER_ADDR/MASTER_PORT exported
//! ```
//!
//! Every rank runs all-reduce (sum, avg, max), broadcast, barrier, the bucketed gradient average (compared with
//! per-tensor averages) and a scalar agreement, on values whose results are exact, and exits non-zero on any
//! difference or failure. `--repeat-until-failure` instead all-reduces a buffer in a loop until a collective fails
//! (used by the fault tests: kill or stop one rank and watch the others report it).

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use ipt_dist::{Backend, DistEnv, ProcessGroup, ReduceOp};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
#[command(
    name = "ipt-dist-check",
    about = "Join a distributed job (torchrun or SLURM environment) and check c10d's collectives"
)]
struct Args {
    /// Collective timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Backend: gloo (CPU tensors) or nccl (CUDA tensors on cuda:LOCAL_RANK).
    #[arg(long, default_value = "gloo", value_parser = ["gloo", "nccl"])]
    backend: String,
    /// All-reduce a buffer of this many floats in a loop until a collective fails; print each failure.
    #[arg(long, value_name = "FLOATS")]
    repeat_until_failure: Option<i64>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipt-dist-check: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let env = DistEnv::from_env()?.context(
        "no distributed environment (RANK/WORLD_SIZE/... or SLURM_PROCID/SLURM_NTASKS/...): \
         launch with torchrun, srun or `cargo xtask` (see docs/distributed.md)",
    )?;
    let backend = if args.backend == "nccl" {
        Backend::Nccl
    } else {
        Backend::Gloo
    };
    ensure!(
        args.timeout > 0.0 && args.timeout.is_finite(),
        "--timeout must be positive"
    );
    let timeout = Duration::from_secs_f64(args.timeout);
    let t0 = Instant::now();
    let pg = ProcessGroup::connect(&env, backend, timeout)?;
    let who = format!("rank {}/{}", pg.rank(), pg.world_size());
    println!(
        "{who}: joined {:?} group in {:.2} s (hosts {:?})",
        backend,
        t0.elapsed().as_secs_f64(),
        pg.hosts()
    );
    if let Some(numel) = args.repeat_until_failure {
        return repeat(&pg, numel, &who);
    }
    check(&pg)?;
    println!("{who}: all collectives correct");
    Ok(())
}

/// All-reduce `numel` floats until a collective fails; report the failure and how long it took to surface.
fn repeat(pg: &ProcessGroup, numel: i64, who: &str) -> Result<()> {
    let t = Tensor::ones([numel], (Kind::Float, pg.device()));
    let mut n = 0u64;
    loop {
        let start = Instant::now();
        if let Err(e) = pg.all_reduce(std::slice::from_ref(&t), ReduceOp::Avg) {
            eprintln!(
                "{who}: collective {} failed after {:.2} s: {e}",
                n + 1,
                start.elapsed().as_secs_f64()
            );
            return Err(e.into());
        }
        n += 1;
        if n == 1 {
            println!("{who}: looping");
        }
    }
}

fn cpu(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu)
}

fn same(what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    let (got, want) = (cpu(got), cpu(want));
    if got.size() != want.size() || !got.equal(&want) {
        bail!("{what}: got {got:?} = {got}, want {want}");
    }
    Ok(())
}

/// Run every collective on values whose results are exact in floating point and compare.
fn check(pg: &ProcessGroup) -> Result<()> {
    let dev = pg.device();
    let (r, w) = (pg.rank() as f64, pg.world_size() as f64);
    let f = (Kind::Float, dev);
    let ranks_sum = w * (w - 1.0) / 2.0;

    // all_reduce sum/avg/max over a list, one of them non-contiguous
    let a = Tensor::full([3], r + 1.0, f);
    let b = (Tensor::arange(6, f).view([2, 3]) * (r + 1.0)).tr();
    pg.all_reduce(&[a.shallow_clone(), b.shallow_clone()], ReduceOp::Sum)?;
    let tri = ranks_sum + w; // sum of (r + 1)
    same("all_reduce sum", &a, &Tensor::full([3], tri, f))?;
    same(
        "all_reduce sum (non-contiguous)",
        &b,
        &(Tensor::arange(6, f).view([2, 3]) * tri).tr(),
    )?;
    let c = Tensor::full([4], 2.0 * r, f);
    pg.all_reduce(std::slice::from_ref(&c), ReduceOp::Avg)?;
    same(
        "all_reduce avg",
        &c,
        &Tensor::full([4], 2.0 * ranks_sum / w, f),
    )?;
    let d = Tensor::from_slice(&[pg.rank() as i64, -(pg.rank() as i64)]).to_device(dev);
    pg.all_reduce(std::slice::from_ref(&d), ReduceOp::Max)?;
    same(
        "all_reduce max",
        &d,
        &Tensor::from_slice(&[w as i64 - 1, 0]),
    )?;

    // broadcast from the last rank, into a parameter that requires grad
    let root = pg.world_size() - 1;
    let p = Tensor::full([2, 2], r, f).set_requires_grad(true);
    pg.broadcast(std::slice::from_ref(&p), root)?;
    same(
        "broadcast",
        &p.detach(),
        &Tensor::full([2, 2], root as f64, f),
    )?;

    pg.barrier()?;

    // bucketed gradient average == per-tensor average; integer values keep every sum exact
    let shapes: [&[i64]; 6] = [&[3, 4], &[5], &[2, 2, 2], &[1], &[7], &[16]];
    let mut grads: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 3 {
                Tensor::new() // an undefined gradient: skipped
            } else {
                let n: i64 = s.iter().product();
                ((Tensor::arange(n, f) * (i as f64 + 1.0) + r * 3.0).remainder(17.0) - 8.0).view(*s)
            }
        })
        .collect();
    let per_tensor: Vec<Tensor> = grads
        .iter()
        .filter(|g| g.defined())
        .map(|g| g.copy())
        .collect();
    pg.all_reduce(&per_tensor, ReduceOp::Avg)?;
    // 64-byte buckets: 12 floats alone, 5+8 share... several buckets, fewer than tensors
    let buckets = pg.all_reduce_coalesced_avg(&mut grads, 64)?;
    let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
    ensure!(
        buckets > 1 && buckets < defined.len(),
        "expected between 2 and {} buckets, got {buckets}",
        defined.len() - 1
    );
    ensure!(
        !grads[3].defined(),
        "the undefined gradient must stay undefined"
    );
    for (i, (g, want)) in defined.iter().zip(&per_tensor).enumerate() {
        same(&format!("coalesced avg, tensor {i}"), g, want)?;
    }

    // scalar agreement
    let agreed = pg.agree_u64(100 + pg.rank() as u64, ReduceOp::Max)?;
    ensure!(agreed == 100 + w as u64 - 1, "agree_u64 max: got {agreed}");
    Ok(())
}
