//! The network's error type, [`ModelError`] (checkpoint errors live with the checkpoints:
//! [`CheckpointError`](crate::checkpoint::CheckpointError)).

/// Errors from building or running the network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The configuration cannot describe a network (the message says why).
    #[error("invalid IPT config: {0}")]
    InvalidConfig(String),
    /// A task index outside the model's task list.
    #[error("task index {task} is out of range: the model has {num_tasks} task(s)")]
    TaskOutOfRange {
        /// The requested task index.
        task: usize,
        /// The number of tasks (heads/tails) of the model.
        num_tasks: usize,
    },
    /// An input tensor of the wrong shape.
    #[error("bad input shape {got:?}: expected {expected}")]
    BadInput {
        /// The shape that was passed.
        got: Vec<i64>,
        /// What was expected, in words.
        expected: String,
    },
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
