//! Whole-image restoration with a real (tiny, random) IPT network.

use ipt_model::chop::forward_chop;
use ipt_model::convert::{image_to_tensor, tensor_to_image};
use ipt_model::restore::{restore_image, windows_for, RestoreError, RestoreOptions};
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
    assert_eq!(windows, 6);
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
    assert_eq!(windows, 8 * (1 + 2 + 2 + 1));
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
