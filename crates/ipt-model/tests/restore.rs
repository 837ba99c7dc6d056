//! Whole-image restoration with a real (tiny, random) IPT network: the streamed path against
//! the official all-at-once code (`tests/support/official_chop.rs`).

#[path = "support/official_chop.rs"]
mod official;

use ipt_model::chop::{forward_chop, ChopGeometry, ChopMode};
use ipt_model::convert::{image_to_tensor, tensor_to_image};
use ipt_model::restore::{
    memory_estimate, restore_image, windows_for, RestoreError, RestoreOptions, DEFAULT_CROP_BATCH,
};
use ipt_model::{Ipt, IptConfig};
use ndarray::Array3;
use tch::{nn, Device, Kind, Tensor};

fn tiny(scales: &[usize]) -> (nn::VarStore, Ipt) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Ipt::new(&vs.root(), &IptConfig::tiny(scales)).unwrap();
    (vs, model)
}

fn random_image(h: usize, w: usize, seed: i64) -> Array3<f32> {
    tch::manual_seed(seed);
    let t = Tensor::rand([1, 3, h as i64, w as i64], (Kind::Float, Device::Cpu)) * 255.0;
    tensor_to_image(&t).unwrap()
}

fn max_abs_diff(a: &Array3<f32>, b: &Array3<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_patch_sized_image_is_one_forward_pass() {
    let (_vs, model) = tiny(&[2]);
    let img = random_image(48, 48, 1);
    let mut windows = 0;
    let opts = RestoreOptions::default();
    let out = restore_image(&model, 0, &img, Device::Cpu, &opts, |n| windows += n).unwrap();
    // the official code evaluates this window six times (corner, four strips, grid)
    assert_eq!(windows, 1);
    assert_eq!(windows, windows_for(48, 48, 48, &opts));
    let direct = tch::no_grad(|| model.forward(&image_to_tensor(&img), 0, false));
    let direct = tensor_to_image(&direct).unwrap();
    assert_eq!(out.dim(), (3, 96, 96));
    assert_eq!(max_abs_diff(&out, &direct), 0.0);
}

#[test]
fn restore_is_forward_chop_of_the_network_and_batch_independent() {
    let (_vs, model) = tiny(&[1, 3]);
    let img = random_image(61, 50, 2);
    let x = image_to_tensor(&img);
    let chopped = tch::no_grad(|| {
        forward_chop(&x, 3, 48, 64, |b: &Tensor| model.forward(b, 1, false)).unwrap()
    });
    let chopped = tensor_to_image(&chopped).unwrap();
    let run = |crop_batch| {
        let opts = RestoreOptions {
            crop_batch,
            ..Default::default()
        };
        restore_image(&model, 1, &img, Device::Cpu, &opts, |_| {}).unwrap()
    };
    let out64 = run(64);
    assert_eq!(out64.dim(), (3, 183, 150));
    assert_eq!(max_abs_diff(&out64, &chopped), 0.0);
    for b in [1, 7] {
        // LayerNorm and attention act per window, so only the float summation order inside
        // batched kernels can differ between batch sizes
        let err = max_abs_diff(&run(b), &out64);
        assert!(err < 1e-3, "crop batch {b}: max error {err}");
        eprintln!("crop batch {b} vs 64: max abs difference {err:e}");
    }
}

#[test]
fn self_ensemble_runs_eight_tilings() {
    let (_vs, model) = tiny(&[1]);
    let img = random_image(50, 49, 3);
    let opts = RestoreOptions {
        self_ensemble: true,
        ..Default::default()
    };
    let mut windows = 0;
    let out = restore_image(&model, 0, &img, Device::Cpu, &opts, |n| windows += n).unwrap();
    assert_eq!(windows, windows_for(50, 49, 48, &opts));
    // rows {0, 2} × columns {0, 1}, for each of the eight members
    assert_eq!(windows, 8 * 4);
    assert_eq!(out.dim(), (3, 50, 49));
}

#[test]
fn unknown_task_and_grayscale_are_refused() {
    let (_vs, model) = tiny(&[2]);
    let img = random_image(48, 48, 4);
    let opts = RestoreOptions::default();
    let err = restore_image(&model, 1, &img, Device::Cpu, &opts, |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            RestoreError::Task {
                task: 1,
                num_tasks: 1,
                ..
            }
        ),
        "{err}"
    );
    let gray = Array3::<f32>::zeros((1, 48, 48));
    let err = restore_image(&model, 0, &gray, Device::Cpu, &opts, |_| {}).unwrap_err();
    assert!(matches!(err, RestoreError::Channels(1)), "{err}");
}

#[test]
fn the_mixed_precision_forward_is_the_network_forward() {
    // `forward_windows(.., bf16 = true)` runs only the body under autocast (through
    // Ipt::forward_with_body); on the CPU (no autocast) it must agree with Ipt::forward exactly.
    let (_vs, model) = tiny(&[2, 1]);
    tch::manual_seed(9);
    let x = Tensor::rand([3, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    for task in 0..2 {
        let (a, b) = tch::no_grad(|| {
            (
                model.forward(&x, task, false),
                ipt_model::restore::forward_windows(&model, &x, task, true),
            )
        });
        assert_eq!(a.size(), b.size());
        let err = (a - b).abs().max().double_value(&[]);
        assert_eq!(err, 0.0, "task {task}");
    }
}

/// Reflect-pad a `[1, C, h, w]` tensor at the bottom/right to at least 48×48, as the library
/// does for small inputs (the official code cannot tile them).
fn pad48(x: &Tensor) -> Tensor {
    let mut out = x.shallow_clone();
    for dim in [2i64, 3] {
        let n = x.size()[dim as usize];
        if n >= 48 {
            continue;
        }
        let idx: Vec<i64> = (0..48)
            .map(|i| {
                let period = 2 * (n - 1).max(1);
                let m = i % period;
                if n == 1 {
                    0
                } else if m < n {
                    m
                } else {
                    period - m
                }
            })
            .collect();
        out = out.index_select(dim, &Tensor::from_slice(&idx));
    }
    out
}

/// The previous all-at-once path: the official `forward_chop` (or `forward_chop_new`) of the
/// network, optionally inside the official `forward_x8`.
fn all_at_once(
    model: &Ipt,
    task: usize,
    img: &Array3<f32>,
    mode: ChopMode,
    ensemble: bool,
) -> Array3<f32> {
    let scale = model.config().scales[task] as i64;
    let x = image_to_tensor(img);
    let (h, w) = (x.size()[2], x.size()[3]);
    let chop = |xi: &Tensor| {
        let (hi, wi) = (xi.size()[2], xi.size()[3]);
        let y =
            official::official_chop(&pad48(xi), scale, 48, 64, mode == ChopMode::Fast, |_, b| {
                model.forward(b, task, false)
            });
        y.narrow(2, 0, hi * scale).narrow(3, 0, wi * scale)
    };
    let y = tch::no_grad(|| {
        if ensemble {
            official::official_x8(&x, chop)
        } else {
            chop(&x)
        }
    });
    assert_eq!(y.size(), vec![1, 3, h * scale, w * scale]);
    tensor_to_image(&y).unwrap()
}

#[test]
fn streaming_restore_equals_the_all_at_once_path() {
    // sr2 and a scale-1 task; smaller than a window, not multiples of the stride, one row or
    // column past a band (48 + 1, 48 + 2·12 + 1); with and without the self-ensemble
    let (_vs, model) = tiny(&[2, 1]);
    let sizes = [(30, 20), (61, 50), (49, 73)];
    let mut worst = 0f32;
    for (k, &(h, w)) in sizes.iter().enumerate() {
        let img = random_image(h, w, 20 + k as i64);
        for task in 0..2 {
            for ensemble in [false, true] {
                let opts = RestoreOptions {
                    self_ensemble: ensemble,
                    crop_batch: 7,
                    ..Default::default()
                };
                let mut windows = 0;
                let got = restore_image(&model, task, &img, Device::Cpu, &opts, |n| windows += n)
                    .unwrap();
                assert_eq!(windows, windows_for(h, w, 48, &opts));
                let want = all_at_once(&model, task, &img, ChopMode::Exact, ensemble);
                let err = max_abs_diff(&got, &want);
                assert!(
                    err <= 1e-3,
                    "{h}x{w} task {task} ensemble {ensemble}: max error {err}"
                );
                worst = worst.max(err);
            }
        }
    }
    eprintln!("streamed vs all-at-once: max abs difference {worst:e} (0-255 scale)");
}

#[test]
fn fast_mode_equals_the_official_second_variant() {
    let (_vs, model) = tiny(&[2, 1]);
    for (k, &(h, w)) in [(100usize, 77usize), (85, 121)].iter().enumerate() {
        let img = random_image(h, w, 40 + k as i64);
        for task in 0..2 {
            let opts = RestoreOptions {
                chop: ChopMode::Fast,
                ..Default::default()
            };
            let got = restore_image(&model, task, &img, Device::Cpu, &opts, |_| {}).unwrap();
            let want = all_at_once(&model, task, &img, ChopMode::Fast, false);
            let err = max_abs_diff(&got, &want);
            assert!(err <= 1e-3, "{h}x{w} task {task}: max error {err}");
            let exact = restore_image(&model, task, &img, Device::Cpu, &Default::default(), |_| {})
                .unwrap();
            assert!(
                max_abs_diff(&got, &exact) > 1e-2,
                "fast and exact stitch differently"
            );
        }
    }
}

#[test]
fn window_counts_and_memory_follow_the_geometry() {
    let opts = RestoreOptions::default();
    assert_eq!(opts.crop_batch, DEFAULT_CROP_BATCH);
    let g = ChopGeometry::new(321, 481, 48, 1, ChopMode::Exact).unwrap();
    assert_eq!(windows_for(321, 481, 48, &opts), g.window_count());
    let x8 = RestoreOptions {
        self_ensemble: true,
        ..opts
    };
    assert_eq!(windows_for(321, 481, 48, &x8), 8 * g.window_count());
    let fast = RestoreOptions {
        chop: ChopMode::Fast,
        ..opts
    };
    assert!(windows_for(321, 481, 48, &fast) * 7 < g.window_count());
    assert_eq!(
        windows_for(100, 100, 50, &opts),
        0,
        "patch 50 cannot be tiled"
    );

    // 2048×1536 ×2: the output is 151 MB; besides the input copies (2 × 38 MB), the working
    // set is a few bands and a batch, which do not grow with the height
    let m = memory_estimate(1536, 2048, 2, 48, &opts);
    assert_eq!(m.output, 3 * 3072 * 4096 * 4);
    let input = 3 * 1536 * 2048 * 4;
    assert!(m.working - 2 * input < m.output / 4, "{m:?}");
    let tall = memory_estimate(10 * 1536, 2048, 2, 48, &opts);
    assert_eq!(tall.output, 10 * m.output);
    assert_eq!(
        tall.working - m.working,
        2 * 9 * input,
        "only the input copies grow"
    );
    let x8 = memory_estimate(1536, 2048, 2, 48, &x8);
    assert_eq!(
        x8.output, m.output,
        "the ensemble accumulates into one image"
    );
}
