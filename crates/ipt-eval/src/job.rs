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
}

impl Job {
    /// The job an IPT task was trained for.
    pub fn of(task: Task) -> Job {
        match task {
            Task::Sr2 => Job::Sr(2),
            Task::Sr3 => Job::Sr(3),
            Task::Sr4 => Job::Sr(4),
            Task::Derain => Job::Derain,
            Task::Denoise30 => Job::Denoise(30),
            Task::Denoise50 => Job::Denoise(50),
        }
    }

    /// The IPT task that performs this job, if there is one (SR ×2/×3/×4, σ 30/50, derain).
    pub fn task(self) -> Option<Task> {
        Task::ALL.into_iter().find(|&t| Job::of(t) == self)
    }

    /// Output size factor.
    pub fn scale(self) -> usize {
        match self {
            Job::Sr(s) => s,
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

    /// Border pixels left out of PSNR/SSIM: the scale for SR, none otherwise (official
    /// `utility.calc_psnr`: `shave = scale`, and nothing for scale 1).
    pub fn shave(self) -> usize {
        match self {
            Job::Sr(s) => s,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Job {
    /// `SR x2`, `denoising sigma 30`, `deraining`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Sr(s) => write!(f, "SR x{s}"),
            Job::Denoise(sigma) => write!(f, "denoising sigma {sigma}"),
            Job::Derain => write!(f, "deraining"),
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
        for t in Task::ALL {
            assert_eq!(Job::of(t).task(), Some(t));
            assert_eq!(Job::of(t).scale(), t.scale());
        }
        assert_eq!((Job::Sr(3).shave(), Job::Derain.shave()), (3, 0));
        assert_eq!(Job::Denoise(30).sigma(), Some(30));
    }
}
