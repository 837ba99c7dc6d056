//! Criterion benches: SSIM (Y and RGB) and PSNR of a 512×512 RGB pair.
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p ipt-metrics --bench metrics -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipt_metrics::ssim::ssim_plane;
use ipt_metrics::{psnr_y, ssim_rgb, ssim_y};
use ndarray::{Array3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pair(n: usize) -> (Array3<f32>, Array3<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let a = Array3::from_shape_fn((3, n, n), |_| f32::from(rng.random_range(0u8..=255)));
    let b = a.mapv(|v| (v + rng.random_range(-20.0f32..20.0)).clamp(0.0, 255.0));
    (a, b)
}

fn metrics(c: &mut Criterion) {
    let (a, b) = pair(512);
    let mut g = c.benchmark_group("metrics_512_rgb");
    g.throughput(Throughput::Elements(512 * 512));
    g.bench_function("ssim_y", |bch| bch.iter(|| ssim_y(a.view(), b.view(), 4)));
    g.bench_function("ssim_rgb", |bch| {
        bch.iter(|| ssim_rgb(a.view(), b.view(), 4))
    });
    g.bench_function("psnr_y", |bch| bch.iter(|| psnr_y(a.view(), b.view(), 4)));
    // The SSIM core alone, on one 512×512 plane (no colour conversion).
    let (pa, pb) = (
        a.index_axis(Axis(0), 0).mapv(f64::from),
        b.index_axis(Axis(0), 0).mapv(f64::from),
    );
    g.bench_function("ssim_plane", |bch| {
        bch.iter(|| ssim_plane(pa.view(), pb.view()))
    });
    g.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
