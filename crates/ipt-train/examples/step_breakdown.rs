//! Where the time of a training step goes: forward with tokens + L1 + λ·SupCon, backward,
//! per-tensor clipping, Adam, for the base or tiny model (six tasks).
//!
//! `cargo run --release -p ipt-train --example step_breakdown -- [PRESET] [BATCH] [STEPS] [LAMBDA] [TASK]`
//! (default base 2 3 0.1 sr2; `tiny 16 20 0.1` for the tiny model).

use std::time::Instant;

use ipt_degrade::Task;
use ipt_loss::PretrainLoss;
use ipt_model::{Ipt, IptConfig};
use ipt_train::optim::{clip_gradients, Adam, Clip};
use tch::{nn, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let preset = args.next().unwrap_or_else(|| "base".into());
    let batch: i64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let lambda: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0.1);
    let task: Task = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(Task::Sr2);
    let device = ipt_model::device::auto_device();
    tch::manual_seed(0);
    let scales = [2, 3, 4, 1, 1, 1];
    let cfg = match preset.as_str() {
        "base" => IptConfig::base(&scales),
        "tiny" => IptConfig::tiny(&scales),
        other => return Err(format!("unknown preset {other:?} (base or tiny)").into()),
    };
    let vs = nn::VarStore::new(device);
    let model = Ipt::new(&vs.root(), &cfg)?;
    let mut adam = Adam::from_var_store(&vs);
    let n: usize = adam.params().iter().map(|p| p.numel()).sum();
    println!(
        "{preset} model: {n} trainable parameters, device {device:?}, {} threads",
        tch::get_num_threads()
    );
    let loss = PretrainLoss {
        lambda,
        ..PretrainLoss::default()
    };
    let (mut sum, mut counted) = ([0.0f64; 4], 0);
    let s = task.scale() as i64;
    for i in 0..steps {
        let x = Tensor::rand([batch, 3, 48, 48], (Kind::Float, device)) * 255.0;
        let y = Tensor::rand([batch, 3, 48 * s, 48 * s], (Kind::Float, device)) * 255.0;
        let t = Instant::now();
        let (out, tokens) = model.forward_with_tokens(&x, task.official_index().unwrap_or(0), true);
        let parts = loss.compute(&out, &y, (lambda > 0.0).then_some(&tokens));
        let t_fwd = t.elapsed().as_secs_f64();
        let mut grads = adam.gradients(&parts.total);
        let t_bwd = t.elapsed().as_secs_f64() - t_fwd;
        let _ = clip_gradients(&mut grads, Clip::PerTensor(1.0));
        let t_clip = t.elapsed().as_secs_f64() - t_fwd - t_bwd;
        adam.step(&mut grads, 5e-5);
        let total = t.elapsed().as_secs_f64();
        let t_adam = total - t_fwd - t_bwd - t_clip;
        if steps < 5 {
            println!(
                "step {i} ({task}, batch {batch}): {total:.3} s = forward + loss {t_fwd:.3} s, \
                 backward {t_bwd:.3} s, clip {t_clip:.3} s, Adam {t_adam:.3} s; loss {:.3}",
                parts.total.double_value(&[])
            );
        }
        if i > 0 {
            // the first step warms up
            for (a, v) in sum.iter_mut().zip([t_fwd, t_bwd, t_clip, t_adam]) {
                *a += v;
            }
            counted += 1;
        }
    }
    if counted > 0 {
        let m: Vec<f64> = sum.iter().map(|v| v / counted as f64 * 1e3).collect();
        let total: f64 = m.iter().sum();
        println!(
            "mean of steps 2..{steps}: {total:.1} ms = forward + loss {:.1} ms ({:.0} %), backward {:.1} ms \
             ({:.0} %), clip {:.1} ms ({:.0} %), Adam {:.1} ms ({:.0} %); {:.1} patches/s",
            m[0],
            100.0 * m[0] / total,
            m[1],
            100.0 * m[1] / total,
            m[2],
            100.0 * m[2] / total,
            m[3],
            100.0 * m[3] / total,
            batch as f64 / total * 1e3
        );
    }
    Ok(())
}
