//! How far each float32 attention kernel is from the float64 network, on the base ×2 model
//! (randomly initialised, seed 0) and four random 48×48 windows: the numbers behind the choice of
//! the fused kernel for inference (docs/performance.md).
//!
//! `cargo run --release -p ipt-model --example kernel_error`

use ipt_model::{AttentionKernel, Ipt, IptConfig};
use tch::{nn, Device, Kind, Tensor};

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = Ipt::new(&vs.root(), &IptConfig::base(&[2]))?;
    let x = Tensor::rand([4, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    let run = |m: &Ipt, x: &Tensor| tch::no_grad(|| m.forward(x, 0, false));
    model.set_attention_kernel(AttentionKernel::Explicit);
    let explicit = run(&model, &x);
    model.set_attention_kernel(AttentionKernel::Fused);
    let fused = run(&model, &x);
    vs.double();
    model.set_attention_kernel(AttentionKernel::Explicit);
    let reference = run(&model, &x.to_kind(Kind::Double));
    println!(
        "outputs up to {:.0}; max |float32 − float64|: explicit {:.2e}, fused {:.2e}; explicit vs fused {:.2e}",
        reference.abs().max().double_value(&[]),
        max_abs(&explicit, &reference),
        max_abs(&fused, &reference),
        max_abs(&explicit, &fused)
    );
    Ok(())
}
