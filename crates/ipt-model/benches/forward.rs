//! Forward pass of the base IPT model (×2, the paper's configuration: 64 features, 12+12
//! layers, d = 576) on a batch of 48×48 windows, inference mode, with both attention kernels.
//!
//! `cargo bench -p ipt-model --bench forward -- --warm-up-time 1 --measurement-time 3`
//! One window costs ≈33.3 GMAC (66.6 GFLOP) for ×2 (counted from the layer shapes of the official `model/ipt.py`); divide by the time per
//! window for the achieved GFLOP/s. `IPT_BENCH_BATCH` sets the batch (default 4).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipt_model::AttentionKernel;
use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device, Kind, Tensor};

fn forward(c: &mut Criterion) {
    let batch: i64 = std::env::var("IPT_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let device = if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let mut model = Ipt::new(&vs.root(), &IptConfig::base(&[2])).expect("base config is valid");
    let x = Tensor::rand([batch, 3, 48, 48], (Kind::Float, device)) * 255.0;
    let mut group = c.benchmark_group("ipt_base_x2_forward");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    for (name, kernel) in [
        ("explicit_attention", AttentionKernel::Explicit),
        ("fused_attention", AttentionKernel::Fused),
    ] {
        model.set_attention_kernel(kernel);
        group.bench_function(format!("{name}/batch{batch}"), |b| {
            b.iter(|| {
                tch::no_grad(|| {
                    let y = model.forward(&x, 0, false);
                    if device != Device::Cpu {
                        tch::Cuda::synchronize(0);
                    }
                    y
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
