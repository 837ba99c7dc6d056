//! Time one training step of the BASE model (six tasks, 118.9 M parameters) at batch 2:
//! forward with tokens, L1 + 0.1·SupCon, backward, per-tensor clipping, Adam.
//!
//! `cargo run --release -p ipt-train --example base_step -- [STEPS] [TASK]` (default 3, sr2).

use std::time::Instant;

use ipt_degrade::Task;
use ipt_loss::PretrainLoss;
use ipt_model::{Ipt, IptConfig};
use ipt_train::optim::{clip_gradients, Adam, Clip};
use tch::{nn, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let task: Task = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(Task::Sr2);
    let device = ipt_model::device::auto_device();
    tch::manual_seed(0);
    let cfg = IptConfig::base(&[2, 3, 4, 1, 1, 1]);
    let vs = nn::VarStore::new(device);
    let model = Ipt::new(&vs.root(), &cfg)?;
    let mut adam = Adam::from_var_store(&vs);
    let n: usize = adam.params().iter().map(|p| p.numel()).sum();
    println!(
        "base model: {n} trainable parameters, device {device:?}, {} threads",
        tch::get_num_threads()
    );
    let loss = PretrainLoss::default();
    let s = task.scale() as i64;
    for i in 0..steps {
        let x = Tensor::rand([2, 3, 48, 48], (Kind::Float, device)) * 255.0;
        let y = Tensor::rand([2, 3, 48 * s, 48 * s], (Kind::Float, device)) * 255.0;
        let t = Instant::now();
        let (out, tokens) = model.forward_with_tokens(&x, task.index(), true);
        let parts = loss.compute(&out, &y, Some(&tokens));
        let t_fwd = t.elapsed().as_secs_f64();
        let mut grads = adam.gradients(&parts.total);
        let t_bwd = t.elapsed().as_secs_f64() - t_fwd;
        let _ = clip_gradients(&mut grads, Clip::PerTensor(1.0));
        let t_clip = t.elapsed().as_secs_f64() - t_fwd - t_bwd;
        adam.step(&mut grads, 5e-5);
        let total = t.elapsed().as_secs_f64();
        println!(
            "step {i} ({task}, batch 2): {total:.2} s = forward + loss {t_fwd:.2} s, backward {t_bwd:.2} s, \
             clip {t_clip:.2} s, Adam {:.2} s; loss {:.3}",
            total - t_fwd - t_bwd - t_clip,
            parts.total.double_value(&[])
        );
    }
    Ok(())
}
