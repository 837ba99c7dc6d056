//! Training pairs: (clean patch) → (degraded input, target) by a task's recipe.

use rand::Rng;

use crate::error::DegradeError;
use crate::rain::RainSource;
use crate::recipe::Context;
use crate::{Image, Task};

/// Synthesizes a training pair for `task` from a clean patch, with procedural rain.
///
/// See [`synthesize_with`].
pub fn synthesize(
    hr: &Image,
    task: Task,
    rng: &mut impl Rng,
) -> Result<(Image, Image), DegradeError> {
    synthesize_with(hr, task, &RainSource::default(), rng)
}

/// Synthesizes `(lr, hr)` for `task` from a clean patch (normally of side
/// [`Task::hr_patch`]`(48)`) by the task's [`Recipe`](crate::recipe::Recipe). The official
/// recipes do what the official MindSpore pre-training pipeline does:
///
/// - SR×s: HR is [`modcrop`](crate::modcrop)ped to a multiple of s; LR =
///   [`quantize()`](crate::quantize())`(`[`imresize`](crate::imresize)`(hr, 1/s))` (MATLAB bicubic,
///   rounded to integers);
/// - derain: LR = clip(HR + streak, 0, 255), streak from `rain` at the patch size, not rounded;
/// - denoise σ: LR = clip(HR + σ·N(0,1), 0, 255), not rounded
///   ([`NoiseOptions::default`](crate::noise::NoiseOptions::default)).
///
/// Errors come from user-defined recipes only (an op's failure, or an input of the wrong size).
pub fn synthesize_with(
    hr: &Image,
    task: Task,
    rain: &RainSource,
    rng: &mut impl Rng,
) -> Result<(Image, Image), DegradeError> {
    let ctx = Context {
        scale: task.scale(),
        rain,
    };
    task.recipe().degrade(hr, ctx, rng)
}

/// Degrades one named clean image at a fixed seed, as `ipt degrade` and the recipe benchmarks
/// do: the generator is [`crate::Rng8`] seeded with
/// [`derive_seed`](crate::seed::derive_seed)`(seed, [task.seed_key(), name_rank(0, name)])`, so
/// an image's input depends on the task, the seed and its name only (not on the other images or
/// their order).
pub fn degrade_named(
    hr: &Image,
    task: Task,
    rain: &RainSource,
    seed: u64,
    name: &str,
) -> Result<(Image, Image), DegradeError> {
    use rand::SeedableRng;
    let key = crate::seed::derive_seed(seed, &[task.seed_key(), crate::seed::name_rank(0, name)]);
    synthesize_with(hr, task, rain, &mut crate::Rng8::seed_from_u64(key))
}
