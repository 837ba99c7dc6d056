//! An exponential moving average of the weights (BasicSR's `model_ema`, used with a decay of
//! 0.999 by BasicSR's and HAT's recipes). After every optimizer step, for every trained
//! parameter `w` and its average `ā`:
//!
//! ```text
//! ā ← decay·ā + (1 − decay)·w        (computed as ā.lerp_(w, 1 − decay))
//! ```
//!
//! The average starts as a copy of the weights the run starts from. Its tensors are part of the
//! optimizer state (`ema.<name>` entries of `step-N.optim.safetensors`), so a resumed run
//! continues the very same average, and a data-parallel job keeps it identical on every rank
//! (each rank averages the same weights). [`Ema::swap`] exchanges the average and the weights in
//! place, which lets validation and the export run the averaged model and then put the trained
//! weights back bit for bit.

use std::collections::HashMap;

use tch::Tensor;

use crate::optim::OptimError;

/// Prefix of the average's entries in the optimizer state.
const PREFIX: &str = "ema.";

/// The moving average of a fixed, named list of parameters.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    names: Vec<String>,
    average: Vec<Tensor>,
}

impl Ema {
    /// An average of `params` (in optimizer order, named by `names`) starting at their values.
    pub fn new(decay: f64, names: &[String], params: &[Tensor]) -> Self {
        Ema {
            decay,
            names: names.to_vec(),
            average: params.iter().map(|p| p.detach().copy()).collect(),
        }
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The averaged tensors, in optimizer order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.average
    }

    /// Fold the current weights into the average (once per optimizer step).
    pub fn update(&mut self, params: &[Tensor]) {
        tch::no_grad(|| {
            for (a, p) in self.average.iter_mut().zip(params) {
                let _ = a.lerp_(p, 1.0 - self.decay);
            }
        });
    }

    /// Restart the average at the current weights.
    pub fn reset(&mut self, params: &[Tensor]) {
        tch::no_grad(|| {
            for (a, p) in self.average.iter_mut().zip(params) {
                a.copy_(p);
            }
        });
    }

    /// Exchange the average and the weights in place; a second call undoes the first exactly.
    pub fn swap(&mut self, params: &[Tensor]) {
        tch::no_grad(|| {
            for (a, p) in self.average.iter_mut().zip(params) {
                let held = p.copy();
                let mut p = p.shallow_clone();
                p.copy_(a);
                a.copy_(&held);
            }
        });
    }

    /// The state as named tensors `ema.<name>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.average)
            .map(|(n, a)| (format!("{PREFIX}{n}"), a.shallow_clone()))
            .collect()
    }

    /// Take the `ema.` entries out of `state`. Returns `false` (and leaves the average as it
    /// is) when there are none, an error when they do not match the parameters.
    pub fn load_state(&mut self, state: &mut Vec<(String, Tensor)>) -> Result<bool, OptimError> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(state)
            .into_iter()
            .partition(|(n, _)| n.starts_with(PREFIX));
        *state = rest;
        if mine.is_empty() {
            return Ok(false);
        }
        let mut map: HashMap<String, Tensor> = mine.into_iter().collect();
        if map.len() != self.names.len() {
            return Err(OptimError::Mismatch(format!(
                "{} averaged tensors for {} parameters",
                map.len(),
                self.names.len()
            )));
        }
        for (n, a) in self.names.iter().zip(self.average.iter_mut()) {
            let t = map
                .remove(&format!("{PREFIX}{n}"))
                .ok_or_else(|| OptimError::Mismatch(format!("missing `{PREFIX}{n}`")))?;
            if t.size() != a.size() {
                return Err(OptimError::Mismatch(format!(
                    "`{PREFIX}{n}`: {:?} vs parameter {:?}",
                    t.size(),
                    a.size()
                )));
            }
            *a = t.to_device(a.device()).to_kind(a.kind()).detach();
        }
        Ok(true)
    }
}

/// Drop the `ema.` entries of an optimizer state (a run without an average resuming a
/// checkpoint written with one).
pub fn strip(state: &mut Vec<(String, Tensor)>) {
    state.retain(|(n, _)| !n.starts_with(PREFIX));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn the_average_follows_the_definition_and_swaps_back_exactly() {
        let names = vec!["a".to_string(), "b".to_string()];
        let params = vec![t(&[1.0, 2.0]), t(&[-4.0])];
        let mut ema = Ema::new(0.9, &names, &params);
        // Move the weights, fold them in twice, and check against the float64 recurrence.
        let _ = params[0].shallow_clone().fill_(3.0);
        ema.update(&params);
        ema.update(&params);
        let got = Vec::<f64>::try_from(ema.tensors()[0].to_kind(tch::Kind::Double)).unwrap();
        let mut want = [1.0f64, 2.0];
        for _ in 0..2 {
            for w in &mut want {
                *w = 0.9 * *w + 0.1 * 3.0;
            }
        }
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        let before: Vec<Tensor> = params.iter().map(|p| p.copy()).collect();
        let avg: Vec<Tensor> = ema.tensors().iter().map(|p| p.copy()).collect();
        ema.swap(&params);
        assert!(params[0].equal(&avg[0]) && ema.tensors()[0].equal(&before[0]));
        ema.swap(&params);
        assert!(params.iter().zip(&before).all(|(p, b)| p.equal(b)));
        assert!(ema.tensors().iter().zip(&avg).all(|(p, b)| p.equal(b)));
    }

    #[test]
    fn state_round_trips_and_mismatches_are_refused() {
        let names = vec!["a".to_string()];
        let params = vec![t(&[1.0, 2.0])];
        let mut ema = Ema::new(0.5, &names, &params);
        let _ = params[0].shallow_clone().fill_(5.0);
        ema.update(&params);
        let mut state = ema.state();
        state.push(("m.a".into(), t(&[0.0, 0.0])));
        let mut other = Ema::new(0.5, &names, &params);
        assert!(other.load_state(&mut state).unwrap());
        assert_eq!(state.len(), 1, "the other entries stay");
        assert!(other.tensors()[0].equal(&ema.tensors()[0]));
        assert!(
            !other.load_state(&mut state).unwrap(),
            "no entries: untouched"
        );
        let mut bad = vec![("ema.a".to_string(), t(&[1.0]))];
        assert!(other.load_state(&mut bad).is_err());
        let mut wrong = vec![("ema.z".to_string(), t(&[1.0, 2.0]))];
        assert!(other.load_state(&mut wrong).is_err());
    }
}
