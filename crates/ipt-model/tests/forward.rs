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
fn tiny_training_reaches_the_task_parameters_and_lowers_the_loss() {
    let cfg = IptConfig::tiny(&[2, 3, 4, 1, 1, 1]);
    let (vs, model) = build(&cfg, 3);
    let x = Tensor::rand([8, 3, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
    let t = Tensor::rand([8, 3, 96, 96], (Kind::Float, Device::Cpu)) * 255.0;
    // Gradients reach exactly task 0's head and tail, the shared body and query row 0.
    let loss = (model.forward(&x, 0, true) - &t).abs().mean(Kind::Float);
    loss.backward();
    let vars = vs.variables();
    let grad_norm = |k: &str| {
        let g = vars[k].grad();
        if g.defined() {
            f64::try_from(g.abs().sum(Kind::Double)).unwrap()
        } else {
            0.0
        }
    };
    for k in [
        "head.0.0.weight",
        "head.0.2.body.2.bias",
        "tail.0.0.0.weight",
        "body.encoder.layers.0.self_attn.in_proj_weight",
        "body.decoder.layers.0.multihead_attn.out_proj.weight",
        "body.position_encoding.pe.weight",
        "body.mlp_head.3.bias",
    ] {
        assert!(grad_norm(k) > 0.0, "no gradient for {k}");
    }
    for k in ["head.1.0.weight", "tail.5.1.weight", "sub_mean.bias"] {
        assert_eq!(grad_norm(k), 0.0, "{k} must not be trained by task 0");
    }
    let q = vars["body.query_embed.weight"].grad();
    let row_sums = Vec::<f64>::try_from(q.abs().sum_dim_intlist(1, false, Kind::Double)).unwrap();
    assert!(
        row_sums[0] > 0.0 && row_sums[1..].iter().all(|&r| r == 0.0),
        "{row_sums:?}"
    );

    let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-3).unwrap();
    opt.zero_grad();
    let mut times = vec![];
    let mut losses = vec![];
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let y = model.forward(&x, 0, true);
        let loss = (y - &t).abs().mean(Kind::Float);
        opt.backward_step(&loss);
        times.push(start.elapsed().as_secs_f64());
        losses.push(f64::try_from(loss).unwrap());
    }
    let params: i64 = vars
        .iter()
        .filter(|(k, _)| !k.ends_with("position_ids"))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    assert_eq!(params, 792_098);
    eprintln!(
        "tiny 6-task ({params} parameters), batch 8, x2: step times {times:?} s, losses {losses:?}"
    );
    assert!(losses[4] < losses[0], "{losses:?}");
}
