//! The learning rate by step: an optional linear warm-up followed by a multi-step or a cosine
//! decay. Every rate is a pure function of the step, so a resumed run uses exactly the rates of
//! the uninterrupted one (nothing to checkpoint).
//!
//! - **Multi-step** (the official recipe, PyTorch `MultiStepLR`): `base · γ^k`, `k` the number
//!   of milestones ≤ the step.
//! - **Cosine** with a floor (PyTorch `CosineAnnealingLR`, BasicSR `CosineAnnealingRestartLR`
//!   with one period): `min + (base − min) · ½(1 + cos(π·t/T))` over the steps after the
//!   warm-up, `t` counted from the warm-up's end and `T` the steps that remain (the form of
//!   timm's and Hugging Face's cosine-with-warm-up schedules).
//! - **Warm-up** (BasicSR's `warmup_iter`): for the first `W` steps the rate is
//!   `(s + 1)/W` of the decayed rate, so step 0 already moves and step `W − 1` uses it whole.
//! - **By epoch**: the decay may be evaluated at the first step of each epoch only (the rate is
//!   constant within an epoch, as an epoch-stepped PyTorch scheduler); the warm-up stays by step.

/// How the rate decays after the warm-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Decay {
    /// `base · γ^(milestones ≤ step)`.
    MultiStep {
        /// Decay factor per milestone.
        gamma: f64,
        /// Milestones in optimizer steps (absolute, counted from step 0).
        milestones: Vec<u64>,
    },
    /// Half a cosine from `base` at the warm-up's end down to `min_lr` at `total_steps`.
    Cosine {
        /// The run's planned steps.
        total_steps: u64,
        /// The floor.
        min_lr: f64,
    },
}

/// The learning rate of every step.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    /// The peak rate.
    pub base: f64,
    /// Steps of linear warm-up (0: none).
    pub warmup_steps: u64,
    /// The decay.
    pub decay: Decay,
    /// Evaluate the decay at each epoch's first step only: the steps of an epoch (`None`: by
    /// step).
    pub epoch_steps: Option<u64>,
}

impl LrSchedule {
    /// A constant rate.
    pub fn constant(base: f64) -> Self {
        Self::multistep(base, 1.0, Vec::new())
    }

    /// `base · γ^(milestones ≤ step)`, no warm-up.
    pub fn multistep(base: f64, gamma: f64, milestones: Vec<u64>) -> Self {
        LrSchedule {
            base,
            warmup_steps: 0,
            decay: Decay::MultiStep { gamma, milestones },
            epoch_steps: None,
        }
    }

    /// The learning rate used at optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let at = match self.epoch_steps {
            Some(n) if n > 0 => step - step % n,
            _ => step,
        };
        let decayed = match &self.decay {
            Decay::MultiStep { gamma, milestones } => {
                let passed = milestones.iter().filter(|&&m| m <= at).count();
                self.base * gamma.powi(passed as i32)
            }
            Decay::Cosine {
                total_steps,
                min_lr,
            } => {
                let span = total_steps.saturating_sub(self.warmup_steps).max(1);
                let t = at.saturating_sub(self.warmup_steps).min(span);
                let cos = (std::f64::consts::PI * t as f64 / span as f64).cos();
                min_lr + (self.base - min_lr) * 0.5 * (1.0 + cos)
            }
        };
        if step < self.warmup_steps {
            decayed * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            decayed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_halves_at_each_milestone() {
        let s = LrSchedule::multistep(5e-5, 0.5, vec![200, 300]);
        assert_eq!(s.lr(0), 5e-5);
        assert_eq!(s.lr(199), 5e-5);
        assert_eq!(s.lr(200), 2.5e-5);
        assert_eq!(s.lr(300), 1.25e-5);
    }

    #[test]
    fn warmup_ramps_linearly_then_hands_over() {
        let s = LrSchedule {
            warmup_steps: 4,
            ..LrSchedule::multistep(1.0, 0.5, vec![10])
        };
        let lrs: Vec<f64> = (0..6).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        assert_eq!(s.lr(10), 0.5);
    }

    #[test]
    fn cosine_runs_from_base_to_the_floor_after_the_warmup() {
        let s = LrSchedule {
            base: 2e-4,
            warmup_steps: 10,
            decay: Decay::Cosine {
                total_steps: 110,
                min_lr: 1e-6,
            },
            epoch_steps: None,
        };
        assert!((s.lr(0) - 2e-5).abs() < 1e-18);
        assert_eq!(s.lr(10), 2e-4);
        // Halfway through the 100 decay steps: the mean of base and floor.
        assert!((s.lr(60) - (2e-4 + 1e-6) / 2.0).abs() < 1e-15);
        assert!((s.lr(110) - 1e-6).abs() < 1e-18);
        assert!((s.lr(500) - 1e-6).abs() < 1e-18, "stays at the floor");
        // Monotone after the warm-up.
        assert!((10..110).all(|i| s.lr(i + 1) <= s.lr(i)));
        // A float64 reference at an arbitrary step.
        let t = 37.0 / 100.0;
        let want = 1e-6 + (2e-4 - 1e-6) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        assert_eq!(s.lr(47), want);
    }

    #[test]
    fn by_epoch_holds_the_rate_within_an_epoch() {
        let s = LrSchedule {
            epoch_steps: Some(10),
            ..LrSchedule {
                base: 1.0,
                warmup_steps: 0,
                decay: Decay::Cosine {
                    total_steps: 100,
                    min_lr: 0.0,
                },
                epoch_steps: None,
            }
        };
        assert_eq!(s.lr(10), s.lr(19));
        assert!(s.lr(20) < s.lr(19));
        assert_eq!(s.lr(0), 1.0);
    }
}
