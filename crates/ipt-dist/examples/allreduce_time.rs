//! Time the per-step gradient average of an IPT model between ranks on this machine (Gloo over loopback).
//!
//! ```sh
//! cargo run --release -p ipt-dist --example allreduce_time -- --model tiny --world 2 --iters 50
//! cargo run --release -p ipt-dist --example allreduce_time -- --model base --world 2 --iters 10
//! ```
//!
//! The program starts `--world` copies of itself as ranks (torchrun-style environment, loopback rendezvous). Each
//! builds the model (six tasks), makes one random gradient per trainable parameter, and times
//! `ProcessGroup::all_reduce_coalesced_avg` with the default 25 MiB buckets: the whole per-step cost (layout
//! check, flattening, the bucket all-reduces, copying back). Rank 0 prints the figures.

use anyhow::{bail, Context, Result};
use ipt_dist::{Backend, DistEnv, ProcessGroup, DEFAULT_BUCKET_BYTES};
use ipt_model::{Ipt, IptConfig};
use std::process::Command;
use std::time::{Duration, Instant};
use tch::{nn, Device, Tensor};

struct Args {
    model: String,
    world: usize,
    iters: usize,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        model: "tiny".into(),
        world: 2,
        iters: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => a.model = v,
            "--world" => a.world = v.parse().context("--world")?,
            "--iters" => a.iters = v.parse().context("--iters")?,
            _ => bail!("unknown flag {flag} (use --model tiny|base, --world N, --iters K)"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse()?;
    match DistEnv::from_env()? {
        None => launch(&args),
        Some(env) => rank(&args, &env),
    }
}

/// Start `world` ranks of this program and wait for them.
fn launch(args: &Args) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for r in 0..args.world {
        children.push(
            Command::new(&exe)
                .args(std::env::args().skip(1))
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", args.world.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("LOCAL_WORLD_SIZE", args.world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .spawn()?,
        );
    }
    let mut ok = true;
    for mut c in children {
        ok &= c.wait()?.success();
    }
    if !ok {
        bail!("a rank failed");
    }
    Ok(())
}

fn rank(args: &Args, env: &DistEnv) -> Result<()> {
    tch::set_num_threads(1);
    let scales = [2, 3, 4, 1, 1, 1];
    let cfg = match args.model.as_str() {
        "tiny" => IptConfig::tiny(&scales),
        "base" => IptConfig::base(&scales),
        m => bail!("--model {m}: expected tiny or base"),
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &cfg)?;
    let mut grads: Vec<Tensor> = vs
        .trainable_variables()
        .iter()
        .map(Tensor::randn_like)
        .collect();
    let floats: i64 = grads.iter().map(|g| g.numel() as i64).sum();
    drop(vs);

    let pg = ProcessGroup::connect(env, Backend::Gloo, Duration::from_secs(120))?;
    let mut buckets = 0;
    for _ in 0..2 {
        buckets = pg.all_reduce_coalesced_avg(&mut grads, DEFAULT_BUCKET_BYTES)?;
    }
    pg.barrier()?;
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t = Instant::now();
        pg.all_reduce_coalesced_avg(&mut grads, DEFAULT_BUCKET_BYTES)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if env.is_main() {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "model {}: {} gradient tensors, {} floats ({:.1} MB), {} buckets of <= {} MiB; \
             world {}, Gloo on loopback, {} iterations: median {:.2} ms, mean {:.2} ms, min {:.2} ms per step",
            args.model,
            grads.len(),
            floats,
            floats as f64 * 4.0 / 1e6,
            buckets,
            DEFAULT_BUCKET_BYTES >> 20,
            env.world_size,
            args.iters,
            median,
            mean,
            times[0]
        );
    }
    Ok(())
}
