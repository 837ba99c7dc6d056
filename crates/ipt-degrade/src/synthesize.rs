//! The six IPT degradations: (HR patch) → (LR input, HR target).

use rand::Rng;

use crate::noise::{add_gaussian_noise, NoiseOptions};
use crate::rain::{add_rain, RainSource};
use crate::{imresize, modcrop, quantize, Image, Task};

/// Synthesizes a training pair for `task` from a clean patch, with procedural rain.
///
/// See [`synthesize_with`].
pub fn synthesize(hr: &Image, task: Task, rng: &mut impl Rng) -> (Image, Image) {
    synthesize_with(hr, task, &RainSource::default(), rng)
}

/// Synthesizes `(lr, hr)` for `task` from a clean patch (normally of side
/// [`Task::hr_patch`]`(48)`), as the official MindSpore pre-training pipeline does:
///
/// - SR×s: HR is [`modcrop`]ped to a multiple of s; LR = [`quantize()`]`(`[`imresize`]`(hr, 1/s))`
///   (MATLAB bicubic, rounded to integers);
/// - derain: LR = clip(HR + streak, 0, 255), streak from `rain` at the patch size, not rounded;
/// - denoise σ: LR = clip(HR + σ·N(0,1), 0, 255), not rounded ([`NoiseOptions::default`]).
pub fn synthesize_with(
    hr: &Image,
    task: Task,
    rain: &RainSource,
    rng: &mut impl Rng,
) -> (Image, Image) {
    match task {
        Task::Sr2 | Task::Sr3 | Task::Sr4 => {
            let s = task.scale();
            let hr = modcrop(hr, s);
            let lr = quantize(&imresize(&hr, 1.0 / s as f64));
            (lr, hr)
        }
        Task::Derain => {
            let (_, h, w) = hr.dim();
            let streak = rain.streak(h, w, rng);
            (add_rain(hr, &streak), hr.to_owned())
        }
        Task::Denoise30 | Task::Denoise50 => {
            let sigma = task.sigma().unwrap_or(0.0);
            let lr = add_gaussian_noise(hr, sigma, NoiseOptions::default(), rng);
            (lr, hr.to_owned())
        }
    }
}
