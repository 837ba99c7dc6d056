//! The six IPT tasks with their official indices.

use std::fmt;
use std::str::FromStr;

/// One of the six IPT pre-training tasks, in the official order (MindSpore `task_id`,
/// scale list `2+3+4+1+1+1`): 0 SR×2, 1 SR×3, 2 SR×4, 3 derain, 4 denoise σ30, 5 denoise σ50.
///
/// Serialized (serde) and parsed ([`FromStr`]) by its short [`name`](Task::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// Bicubic super-resolution ×2 (index 0).
    Sr2,
    /// Bicubic super-resolution ×3 (index 1).
    Sr3,
    /// Bicubic super-resolution ×4 (index 2).
    Sr4,
    /// Rain-streak removal (index 3).
    Derain,
    /// Gaussian denoising, σ = 30 (index 4).
    Denoise30,
    /// Gaussian denoising, σ = 50 (index 5).
    Denoise50,
}

/// The error of [`Task::from_str`] and [`Task::from_index`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The name is not one of the six task names.
    #[error("unknown task {0:?} (expected one of sr2, sr3, sr4, derain, denoise30, denoise50)")]
    UnknownName(String),
    /// The index is not in 0..6.
    #[error("task index {0} out of range (0..=5)")]
    BadIndex(usize),
}

impl Task {
    /// All tasks in index order.
    pub const ALL: [Task; 6] = [
        Task::Sr2,
        Task::Sr3,
        Task::Sr4,
        Task::Derain,
        Task::Denoise30,
        Task::Denoise50,
    ];

    /// The official index (0..=5).
    pub fn index(self) -> usize {
        match self {
            Task::Sr2 => 0,
            Task::Sr3 => 1,
            Task::Sr4 => 2,
            Task::Derain => 3,
            Task::Denoise30 => 4,
            Task::Denoise50 => 5,
        }
    }

    /// The task with official index `idx`.
    pub fn from_index(idx: usize) -> Result<Task, TaskError> {
        Task::ALL.get(idx).copied().ok_or(TaskError::BadIndex(idx))
    }

    /// Upscaling factor of the task's tail: 2, 3, 4 for SR, 1 otherwise.
    pub fn scale(self) -> usize {
        match self {
            Task::Sr2 => 2,
            Task::Sr3 => 3,
            Task::Sr4 => 4,
            Task::Derain | Task::Denoise30 | Task::Denoise50 => 1,
        }
    }

    /// Short name: `sr2`, `sr3`, `sr4`, `derain`, `denoise30`, `denoise50`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Sr2 => "sr2",
            Task::Sr3 => "sr3",
            Task::Sr4 => "sr4",
            Task::Derain => "derain",
            Task::Denoise30 => "denoise30",
            Task::Denoise50 => "denoise50",
        }
    }

    /// Noise standard deviation (0–255 scale) for the denoising tasks.
    pub fn sigma(self) -> Option<f32> {
        match self {
            Task::Denoise30 => Some(30.0),
            Task::Denoise50 => Some(50.0),
            _ => None,
        }
    }

    /// Side of the HR patch that goes with an LR patch of side `patch` (= `patch · scale`).
    pub fn hr_patch(self, patch: usize) -> usize {
        patch * self.scale()
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| TaskError::UnknownName(s.to_string()))
    }
}

impl serde::Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Task {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
