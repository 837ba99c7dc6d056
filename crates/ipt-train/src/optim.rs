//! Adam with optimizer state the project owns (so it can be checkpointed and resumed exactly)
//! and gradient clipping (the learning rate is [`crate::schedule`]'s). (Data-parallel jobs average
//! the gradients before clipping; see `parallel.rs`.)
//!
//! The update is PyTorch's `torch.optim.Adam` (no weight decay, no amsgrad), per parameter:
//!
//! ```text
//! t ← t + 1
//! m ← β₁·m + (1 − β₁)·g
//! v ← β₂·v + (1 − β₂)·g²
//! p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! with β = (0.9, 0.999), ε = 1e-8 as the official code. A parameter without a gradient in a step
//! (another task's head or tail) is not touched and its `t` does not advance — PyTorch's
//! behaviour with `set_to_none` gradients; with MindSpore's zero gradients the update of such a
//! parameter is also exactly zero as long as its moments are zero.

use std::collections::HashMap;

use tch::{Kind, Tensor};

/// Errors of restoring optimizer state.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// The state does not fit the parameters.
    #[error("optimizer state does not match the model: {0}")]
    Mismatch(String),
}

/// Adam over a fixed, named list of parameters.
#[derive(Debug)]
pub struct Adam {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: Vec<i64>,
    /// β₁ (0.9).
    pub beta1: f64,
    /// β₂ (0.999).
    pub beta2: f64,
    /// ε (1e-8).
    pub eps: f64,
}

impl Adam {
    /// Adam over `params` (name, tensor sharing storage with the model's variable), sorted by
    /// name for a stable order. Moments start at zero.
    pub fn new(mut params: Vec<(String, Tensor)>) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let zeros = |p: &Tensor| p.zeros_like().detach();
        Adam {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            steps: vec![0; params.len()],
            names,
            params,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// The trainable variables of a `VarStore`, sorted by name.
    pub fn from_var_store(vs: &tch::nn::VarStore) -> Self {
        let params = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        Self::new(params)
    }

    /// Parameter names, in optimizer order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The parameters, in optimizer order (shallow clones of the model's variables).
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Gradients of `loss` with respect to every parameter, in optimizer order; parameters the
    /// loss does not depend on get an undefined tensor. Nothing is accumulated into `.grad()`.
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        Tensor::run_backward(&[loss], &self.params, false, false)
    }

    /// One Adam step with learning rate `lr`; `grads[i]` belongs to `params()[i]` and undefined
    /// gradients are skipped. The gradients are used as scratch space (overwritten), so the
    /// step allocates nothing.
    pub fn step(&mut self, grads: &mut [Tensor], lr: f64) {
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        tch::no_grad(|| {
            for (i, g) in grads.iter_mut().enumerate().take(self.params.len()) {
                if !g.defined() {
                    continue;
                }
                self.steps[i] += 1;
                let t = self.steps[i] as i32;
                if g.kind() != self.m[i].kind() {
                    *g = g.to_kind(self.m[i].kind());
                }
                let bc1 = 1.0 - b1.powi(t);
                let bc2 = 1.0 - b2.powi(t);
                // m ← m + (1 − β₁)(g − m) = β₁·m + (1 − β₁)·g   (torch.optim.Adam uses lerp_ too)
                let _ = self.m[i].lerp_(g, 1.0 - b1);
                // v ← β₂·v + (1 − β₂)·g²
                let _ = g.square_();
                let _ = self.v[i].lerp_(g, 1.0 - b2);
                // g ← −bc1/lr · (√v/√bc2 + ε), then p ← p + m / g = p − lr/bc1 · m / (√v/√bc2 + ε)
                // (tch's `addcdiv_` has no scale argument, so the scale goes into the divisor:
                // five passes over the tensor instead of seven).
                let _ = self.v[i].sqrt_out(g);
                let _ = g.g_div_scalar_(bc2.sqrt());
                let _ = g.g_add_scalar_(eps);
                let _ = g.g_mul_scalar_(-bc1 / lr);
                let kind = self.params[i].kind();
                if kind == g.kind() {
                    let _ = self.params[i].addcdiv_(&self.m[i], g);
                } else {
                    let _ = self.params[i].g_add_(&self.m[i].g_div(g).to_kind(kind));
                }
            }
        });
    }

    /// The state as named tensors: `m.<name>`, `v.<name>` (f32, like the parameter) and
    /// `step.<name>` (int64 scalar).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.names.len());
        for (i, n) in self.names.iter().enumerate() {
            out.push((format!("m.{n}"), self.m[i].shallow_clone()));
            out.push((format!("v.{n}"), self.v[i].shallow_clone()));
            out.push((format!("step.{n}"), Tensor::from(self.steps[i])));
        }
        out
    }

    /// Restore a state written by [`Adam::state`]; every parameter must be present with the
    /// right shape.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), OptimError> {
        let map: HashMap<String, Tensor> = state.into_iter().collect();
        let get = |k: &str| {
            map.get(k)
                .ok_or_else(|| OptimError::Mismatch(format!("missing `{k}`")))
        };
        for i in 0..self.names.len() {
            let n = &self.names[i];
            let (m, v, s) = (
                get(&format!("m.{n}"))?,
                get(&format!("v.{n}"))?,
                get(&format!("step.{n}"))?,
            );
            if m.size() != self.params[i].size() || v.size() != self.params[i].size() {
                return Err(OptimError::Mismatch(format!(
                    "`{n}`: moments {:?}/{:?} vs parameter {:?}",
                    m.size(),
                    v.size(),
                    self.params[i].size()
                )));
            }
            let dev = self.params[i].device();
            self.m[i] = m.to_device(dev).to_kind(self.m[i].kind()).detach();
            self.v[i] = v.to_device(dev).to_kind(self.v[i].kind()).detach();
            self.steps[i] = s.int64_value(&[]);
        }
        if map.len() != 3 * self.names.len() {
            return Err(OptimError::Mismatch(format!(
                "{} state tensors for {} parameters",
                map.len(),
                self.names.len()
            )));
        }
        Ok(())
    }
}

/// How gradients are clipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clip {
    /// Each tensor on its own: `g ← g · c / max(‖g‖, c)` (MindSpore `ClipByNorm`, official).
    PerTensor(f64),
    /// All together: `g ← g · min(1, c / (‖g‖_global + 1e-6))` (PyTorch `clip_grad_norm_`).
    Global(f64),
    /// No clipping.
    None,
}

/// Clip `grads` in place (undefined entries are skipped); returns the global L2 norm before
/// clipping (a 0-dim f32 tensor, not synchronised to the host).
pub fn clip_gradients(grads: &mut [Tensor], clip: Clip) -> Tensor {
    tch::no_grad(|| {
        // One norm per gradient, used for the global norm and for per-tensor clipping alike.
        let norms: Vec<Tensor> = grads
            .iter()
            .filter(|g| g.defined())
            .map(|g| g.to_kind(Kind::Float).norm())
            .collect();
        let global = if norms.is_empty() {
            Tensor::from(0f32)
        } else {
            Tensor::stack(&norms, 0).square().sum(Kind::Float).sqrt()
        };
        match clip {
            Clip::None => {}
            Clip::PerTensor(c) => {
                for (g, norm) in grads.iter_mut().filter(|g| g.defined()).zip(&norms) {
                    let scale = c / norm.clamp_min(c);
                    let _ = g.g_mul_(&scale.to_kind(g.kind()));
                }
            }
            Clip::Global(c) => {
                let coef = (c / (&global + 1e-6)).clamp_max(1.0);
                for g in grads.iter_mut().filter(|g| g.defined()) {
                    let _ = g.g_mul_(&coef.to_kind(g.kind()));
                }
            }
        }
        global
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_slice(v).to_kind(Kind::Float)
    }

    /// Adam written out in f64, step by step, as in the PyTorch docs.
    fn adam_f64(p: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], t: i32, lr: f64) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        for i in 0..p.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mhat = m[i] / (1.0 - b1.powi(t));
            let vhat = v[i] / (1.0 - b2.powi(t));
            p[i] -= lr * mhat / (vhat.sqrt() + eps);
        }
    }

    #[test]
    fn adam_matches_hand_computed_f64_update() {
        let init = [0.5, -1.25, 3.0, 0.0];
        let p = t(&init).set_requires_grad(true);
        let mut opt = Adam::new(vec![("w".into(), p.shallow_clone())]);
        let (mut pr, mut m, mut v) = (init.to_vec(), vec![0.0; 4], vec![0.0; 4]);
        let grads = [
            [0.1, -2.0, 1e-3, 5.0],
            [0.3, -1.0, -2e-3, 4.0],
            [-0.2, 0.5, 1e-3, 0.0],
            [1e-4, 3.0, 0.5, -1.0],
        ];
        for (k, g) in grads.iter().enumerate() {
            let lr = if k < 2 { 1e-2 } else { 5e-3 };
            opt.step(&mut [t(g)], lr);
            adam_f64(&mut pr, &mut m, &mut v, g, k as i32 + 1, lr);
            let got: Vec<f64> = Vec::<f64>::try_from(p.to_kind(Kind::Double)).unwrap();
            for i in 0..4 {
                assert!(
                    (got[i] - pr[i]).abs() < 1e-6,
                    "step {k} p[{i}] {} vs {}",
                    got[i],
                    pr[i]
                );
            }
        }
    }

    #[test]
    fn adam_minimises_a_quadratic_through_gradients() {
        let w = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let unused = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Adam::new(vec![
            ("w".into(), w.shallow_clone()),
            ("u".into(), unused.shallow_clone()),
        ]);
        let target = t(&[1.0, -2.0, 0.5]);
        for _ in 0..400 {
            let loss = (&w - &target).square().sum(Kind::Float);
            let mut grads = opt.gradients(&loss);
            assert!(
                !grads[0].defined(),
                "unused parameter sorted first ('u' < 'w') has no gradient"
            );
            opt.step(&mut grads, 0.05);
        }
        assert!((&w - &target).abs().max().double_value(&[]) < 1e-2);
        assert_eq!(
            Vec::<f64>::try_from(unused.to_kind(Kind::Double)).unwrap(),
            vec![1.0, 1.0]
        );
        assert_eq!(opt.steps, vec![0, 400]);
    }

    #[test]
    fn state_round_trip_resumes_identically() {
        let run = |split: Option<usize>| {
            let w = t(&[0.3, -0.7]).set_requires_grad(true);
            let mut opt = Adam::new(vec![("w".into(), w.shallow_clone())]);
            let mut w_cur = w;
            for k in 0..6 {
                if Some(k) == split {
                    let state: Vec<(String, Tensor)> = opt
                        .state()
                        .into_iter()
                        .map(|(n, x)| (n, x.copy()))
                        .collect();
                    let w2 = w_cur.detach().copy().set_requires_grad(true);
                    opt = Adam::new(vec![("w".into(), w2.shallow_clone())]);
                    opt.load_state(state).unwrap();
                    w_cur = w2;
                }
                let loss = (&w_cur * &w_cur * (k as f64 + 1.0)).sum(Kind::Float);
                let mut g = opt.gradients(&loss);
                opt.step(&mut g, 0.01);
            }
            Vec::<f64>::try_from(w_cur.to_kind(Kind::Double)).unwrap()
        };
        assert_eq!(run(None), run(Some(3)));
    }

    #[test]
    fn load_state_rejects_mismatch() {
        let mut opt = Adam::new(vec![("w".into(), t(&[1.0, 2.0]).set_requires_grad(true))]);
        let bad = vec![
            ("m.w".to_string(), t(&[0.0])),
            ("v.w".to_string(), t(&[0.0])),
            ("step.w".to_string(), Tensor::from(1i64)),
        ];
        assert!(opt.load_state(bad).is_err());
        assert!(opt.load_state(vec![]).is_err());
    }

    #[test]
    fn clipping_per_tensor_and_global() {
        let mut g = vec![t(&[3.0, 4.0]), t(&[0.3, 0.4]), Tensor::new()];
        let norm = clip_gradients(&mut g, Clip::PerTensor(1.0)).double_value(&[]);
        assert!((norm - (25.0f64 + 0.25).sqrt()).abs() < 1e-5);
        let a = Vec::<f64>::try_from(g[0].to_kind(Kind::Double)).unwrap();
        let b = Vec::<f64>::try_from(g[1].to_kind(Kind::Double)).unwrap();
        assert!(
            (a[0] - 0.6).abs() < 1e-6 && (a[1] - 0.8).abs() < 1e-6,
            "{a:?}"
        );
        assert!(
            (b[0] - 0.3).abs() < 1e-7 && (b[1] - 0.4).abs() < 1e-7,
            "small tensor untouched {b:?}"
        );

        let mut g = vec![t(&[3.0, 4.0]), t(&[0.0, 0.0])];
        let _ = clip_gradients(&mut g, Clip::Global(1.0));
        let a = Vec::<f64>::try_from(g[0].to_kind(Kind::Double)).unwrap();
        let c = 1.0 / (5.0 + 1e-6);
        assert!(
            (a[0] - 3.0 * c).abs() < 1e-6 && (a[1] - 4.0 * c).abs() < 1e-6,
            "{a:?}"
        );
    }
}
