//! Criterion benches: resize of a 1024×1024 RGB image by 1/4 and by 4, Gaussian noise, rain.
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p ipt-degrade --bench degrade -- --warm-up-time 1 --measurement-time 3`
//! (set `RAYON_NUM_THREADS=2` for two threads). The Pillow / OpenCV comparison is
//! `benches/compare_python.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipt_degrade::noise::{add_gaussian_noise, NoiseOptions};
use ipt_degrade::rain::{add_rain, generate_streaks, RainParams};
use ipt_degrade::{imresize, Image, Rng8};
use ndarray::Array3;
use rand::{Rng, SeedableRng};

fn test_image(h: usize, w: usize) -> Image {
    let mut rng = Rng8::seed_from_u64(0);
    Array3::from_shape_fn((3, h, w), |_| f32::from(rng.random_range(0u8..=255)))
}

fn resize(c: &mut Criterion) {
    let img = test_image(1024, 1024);
    let mut g = c.benchmark_group("imresize_1024_rgb");
    g.throughput(Throughput::Elements(1024 * 1024));
    for (name, f) in [("down_x0.25", 0.25), ("up_x4", 4.0)] {
        // Warm the weight-table cache so the bench measures the resampling.
        let _ = imresize(&img, f);
        g.bench_with_input(BenchmarkId::from_parameter(name), &f, |b, &f| {
            b.iter(|| imresize(&img, f))
        });
    }
    g.finish();
}

fn noise(c: &mut Criterion) {
    let img = test_image(512, 512);
    let mut g = c.benchmark_group("noise_512_rgb");
    g.throughput(Throughput::Elements(512 * 512));
    let mut rng = Rng8::seed_from_u64(1);
    g.bench_function("sigma50", |b| {
        b.iter(|| add_gaussian_noise(&img, 50.0, NoiseOptions::default(), &mut rng))
    });
    g.finish();
}

fn rain(c: &mut Criterion) {
    let img = test_image(512, 512);
    let mut g = c.benchmark_group("rain_512");
    g.throughput(Throughput::Elements(512 * 512));
    let mut rng = Rng8::seed_from_u64(2);
    let params = RainParams::default();
    g.bench_function("generate_and_add", |b| {
        b.iter(|| {
            let layer = generate_streaks(512, 512, &params, &mut rng);
            add_rain(&img, &layer)
        })
    });
    g.finish();
}

criterion_group!(benches, resize, noise, rain);
criterion_main!(benches);
