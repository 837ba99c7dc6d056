//! What a method is asked to undo for one image.

use ipt_degrade::Task;

/// One restoration job of a benchmark cell: SR at a scale, denoising at a σ, or deraining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Upscale a bicubic-downscaled image by this factor.
    Sr(usize),
    /// Remove Gaussian noise of this standard deviation (0–255 scale).
    Denoise(u32),
    /// Remove rain streaks.
    Derain,
    /// Undo a task's degradation recipe (any task that is not one of the official six).
    Recipe(Task),
}

impl Job {
    /// The job an IPT task was trained for: the official protocols for the six official tasks,
    /// [`Job::Recipe`] for any other.
    pub fn of(task: Task) -> Job {
        match (task.official_index(), task.sigma()) {
            (Some(0..=2), _) => Job::Sr(task.scale()),
            (Some(3), _) => Job::Derain,
            (Some(_), Some(sigma)) => Job::Denoise(sigma as u32),
            _ => Job::Recipe(task),
        }
    }

    /// The IPT task that performs this job, if there is one (SR ×2/×3/×4, σ 30/50, derain, or
    /// the task of a recipe job).
    pub fn task(self) -> Option<Task> {
        match self {
            Job::Recipe(task) => Some(task),
            _ => Task::OFFICIAL.into_iter().find(|&t| Job::of(t) == self),
        }
    }

    /// The task of a [`Job::Recipe`].
    pub fn recipe_task(self) -> Option<Task> {
        match self {
            Job::Recipe(task) => Some(task),
            _ => None,
        }
    }

    /// Output size factor.
    pub fn scale(self) -> usize {
        match self {
            Job::Sr(s) => s,
            Job::Recipe(task) => task.scale(),
            _ => 1,
        }
    }

    /// The noise level of a denoising job.
    pub fn sigma(self) -> Option<u32> {
        match self {
            Job::Denoise(sigma) => Some(sigma),
            _ => None,
        }
    }

    /// Border pixels left out of PSNR/SSIM: the scale for SR (and for a recipe task of scale
    /// above 1), none otherwise (official `utility.calc_psnr`: `shave = scale`, and nothing for
    /// scale 1).
    pub fn shave(self) -> usize {
        match self {
            Job::Sr(s) => s,
            Job::Recipe(task) if task.scale() > 1 => task.scale(),
            _ => 0,
        }
    }
}

impl std::fmt::Display for Job {
    /// `SR x2`, `denoising sigma 30`, `deraining`, `task jpeg10`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Sr(s) => write!(f, "SR x{s}"),
            Job::Denoise(sigma) => write!(f, "denoising sigma {sigma}"),
            Job::Derain => write!(f, "deraining"),
            Job::Recipe(task) => write!(f, "task {task}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_map_to_tasks() {
        assert_eq!(Job::Sr(3).task(), Some(Task::Sr3));
        assert_eq!(Job::Sr(8).task(), None);
        assert_eq!(Job::Denoise(50).task(), Some(Task::Denoise50));
        assert_eq!(Job::Denoise(25).task(), None);
        assert_eq!(Job::Derain.task(), Some(Task::Derain));
        assert_eq!(Job::Sr(4).scale(), 4);
        assert_eq!(Job::Denoise(30).scale(), 1);
        for t in Task::OFFICIAL {
            assert_eq!(Job::of(t).task(), Some(t));
            assert_eq!(Job::of(t).scale(), t.scale());
        }
        assert_eq!((Job::Sr(3).shave(), Job::Derain.shave()), (3, 0));
        assert_eq!(Job::Denoise(30).sigma(), Some(30));
    }
}
