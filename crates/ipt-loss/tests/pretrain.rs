//! L1 and the combined pre-training loss.

use ipt_loss::{contrastive_loss, f_l1_loss, l1_loss, ContrastiveVariant, LossError, PretrainLoss};
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

#[test]
fn l1_is_the_mean_absolute_error() {
    tch::manual_seed(0);
    let out = Tensor::rand([2, 3, 5, 7], (Kind::Float, CPU)) * 255.0;
    let target = Tensor::rand([2, 3, 5, 7], (Kind::Float, CPU)) * 255.0;
    let a = Vec::<f32>::try_from(out.reshape([-1])).unwrap();
    let b = Vec::<f32>::try_from(target.reshape([-1])).unwrap();
    let naive = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64;
    let v = l1_loss(&out, &target).double_value(&[]);
    assert!((v - naive).abs() <= 1e-6 * naive, "{v} vs {naive}");
    // Gradient: sign(out − target) / numel.
    let x = out.detach().set_requires_grad(true);
    l1_loss(&x, &target).backward();
    let expect = (&out - &target).sign() / out.numel() as f64;
    assert!(x.grad().allclose(&expect, 0.0, 1e-12, false));
}

#[test]
fn l1_rejects_mismatched_inputs() {
    let a = Tensor::zeros([1, 3, 4, 4], (Kind::Float, CPU));
    let b = Tensor::zeros([1, 3, 4, 5], (Kind::Float, CPU));
    let err = f_l1_loss(&a, &b).unwrap_err();
    assert!(matches!(err, LossError::ShapeMismatch { .. }));
    assert!(err.to_string().contains("[1, 3, 4, 5]"), "{err}");
    let ints = Tensor::zeros([1, 3, 4, 4], (Kind::Uint8, CPU));
    assert!(matches!(
        f_l1_loss(&ints, &ints),
        Err(LossError::NotFloat { .. })
    ));
}

#[test]
fn default_is_the_official_setting() {
    let loss = PretrainLoss::default();
    assert_eq!(loss.lambda, 0.1);
    assert_eq!(loss.tau, 0.07);
    assert_eq!(loss.variant, ContrastiveVariant::SupCon);
    assert_eq!(loss.chunk, Some(ipt_loss::pretrain::DEFAULT_CHUNK));
    let parsed: PretrainLoss =
        serde_json::from_str(r#"{"variant": "paper_eq5", "chunk": 512}"#).unwrap();
    assert_eq!(
        parsed,
        PretrainLoss {
            variant: ContrastiveVariant::PaperEq5,
            chunk: Some(512),
            ..loss
        }
    );
    assert!(serde_json::from_str::<PretrainLoss>(r#"{"lamda": 1.0}"#).is_err());
}

#[test]
fn total_is_l1_plus_lambda_contrastive_and_backpropagates() {
    tch::manual_seed(1);
    let mut out = (Tensor::rand([2, 3, 6, 6], (Kind::Float, CPU)) * 255.0).set_requires_grad(true);
    let target = Tensor::rand([2, 3, 6, 6], (Kind::Float, CPU)) * 255.0;
    let mut tokens = Tensor::randn([2, 9, 4], (Kind::Float, CPU)).set_requires_grad(true);
    for variant in ContrastiveVariant::ALL {
        let loss = PretrainLoss {
            lambda: 0.25,
            tau: 0.1,
            variant,
            chunk: Some(4),
        };
        let parts = loss.compute(&out, &target, Some(&tokens));
        let l1 = l1_loss(&out, &target).double_value(&[]);
        let c = contrastive_loss(&tokens, 0.1, variant, None).double_value(&[]);
        assert!((parts.l1 - l1).abs() <= 1e-9 * l1);
        assert!(
            (parts.contrastive - c).abs() <= 1e-6 * c.abs(),
            "{} vs {c}",
            parts.contrastive
        );
        let total = parts.total.double_value(&[]);
        assert!((total - (l1 + 0.25 * c)).abs() <= 1e-6 * total.abs());
        tokens.zero_grad();
        out.zero_grad();
        parts.total.backward();
        // The contrastive part reaches the tokens with weight λ.
        let t2 = tokens.detach().set_requires_grad(true);
        (contrastive_loss(&t2, 0.1, variant, None) * 0.25).backward();
        let err = (tokens.grad() - t2.grad()).abs().max().double_value(&[]);
        let scale = t2.grad().abs().max().double_value(&[]);
        assert!(err <= 1e-5 * scale, "{variant}: {err} vs {scale}");
        assert!(out.grad().abs().sum(Kind::Double).double_value(&[]) > 0.0);
    }
}

#[test]
fn without_tokens_only_l1_counts() {
    let out = Tensor::ones([1, 3, 4, 4], (Kind::Float, CPU)) * 10.0;
    let target = Tensor::zeros([1, 3, 4, 4], (Kind::Float, CPU));
    let parts = PretrainLoss::default().compute(&out, &target, None);
    assert_eq!(parts.l1, 10.0);
    assert_eq!(parts.contrastive, 0.0);
    assert_eq!(parts.total.double_value(&[]), 10.0);
}

#[test]
fn bad_tokens_are_reported_not_panicked() {
    let out = Tensor::zeros([1, 3, 4, 4], (Kind::Float, CPU));
    let tokens = Tensor::zeros([4, 9], (Kind::Float, CPU));
    let r = PretrainLoss::default().f_compute(&out, &out, Some(&tokens));
    assert!(matches!(r, Err(LossError::TokensShape { .. })));
}
