//! Shapes, task selection, determinism and cost of the forward pass on small configs.

use ipt_model::{Ipt, IptConfig, ModelError};
use tch::{nn, Device, Kind, Tensor};

fn build(cfg: &IptConfig, seed: i64) -> (nn::VarStore, Ipt) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Ipt::new(&vs.root(), cfg).unwrap();
    (vs, model)
}

#[test]
fn tiny_six_task_forward_shapes() {
    let cfg = IptConfig::tiny(&[2, 3, 4, 1, 1, 1]);
    let (_vs, model) = build(&cfg, 0);
    let x = Tensor::rand([2, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    tch::no_grad(|| {
        for (task, &s) in cfg.scales.iter().enumerate() {
            let (y, tokens) = model.forward_with_tokens(&x, task, false);
            let s = s as i64;
            assert_eq!(y.size(), vec![2, 3, 48 * s, 48 * s], "task {task}");
            assert_eq!(tokens.size(), vec![2, 144, 128]);
            assert!(bool::try_from(y.isfinite().all()).unwrap());
        }
    });
}

#[test]
fn batch_items_are_independent_and_eval_is_deterministic() {
    let cfg = IptConfig::tiny(&[2]);
    let (_vs, model) = build(&cfg, 1);
    let x = Tensor::rand([3, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    tch::no_grad(|| {
        let all = model.forward(&x, 0, false);
        let one = model.forward(&x.narrow(0, 1, 1), 0, false);
        let diff = f64::try_from((all.narrow(0, 1, 1) - &one).abs().max()).unwrap();
        assert!(diff < 1e-3, "batch dependence {diff}");
        let again = model.forward(&x, 0, false);
        assert_eq!(f64::try_from((all - again).abs().max()).unwrap(), 0.0);
    });
}

#[test]
fn bad_task_and_shape_are_reported() {
    let cfg = IptConfig::tiny(&[2, 1]);
    let (_vs, model) = build(&cfg, 2);
    let x = Tensor::zeros([1, 3, 48, 48], (Kind::Float, Device::Cpu));
    assert!(matches!(
        model.check_input(&x, 2),
        Err(ModelError::TaskOutOfRange {
            task: 2,
            num_tasks: 2
        })
    ));
    let y = Tensor::zeros([1, 3, 40, 48], (Kind::Float, Device::Cpu));
    let e = model.check_input(&y, 0).unwrap_err().to_string();
    assert!(e.contains("[B, 3, 48, 48]"), "{e}");
    model.check_input(&x, 1).unwrap();
}

#[test]
fn tiny_training_step_is_fast() {
    let cfg = IptConfig::tiny(&[2, 3, 4, 1, 1, 1]);
    let (vs, model) = build(&cfg, 3);
    let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-4).unwrap();
    let x = Tensor::rand([8, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    let t = Tensor::rand([8, 3, 96, 96], (Kind::Float, Device::Cpu)) * 255.0;
    let mut times = vec![];
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let y = model.forward(&x, 0, true);
        let loss = (y - &t).abs().mean(Kind::Float);
        opt.backward_step(&loss);
        times.push(start.elapsed().as_secs_f64());
    }
    eprintln!("tiny training step, batch 8, x2: {times:?} s");
}
