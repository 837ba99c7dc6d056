//! [`TaskMap`]: which head/tail index of a checkpoint serves which task, and the one place a
//! user's task choice (`--task NAME|INDEX`, `--weights TASK=FILE`) is resolved against it.
//!
//! A model has one head and one tail per entry of [`IptConfig::scales`](crate::IptConfig::scales);
//! [`IptConfig::tasks`](crate::IptConfig::tasks) records what each index is when the file says so
//! (ipt-rs safetensors; official `.pt` files have only the scales). The rules, in order:
//!
//! 1. a recorded task list decides: the task at index `i` is the `i`-th recorded task (a
//!    built-in task by name, any other with its whole definition: name, scale, recipe);
//! 2. the official six-task layout (scales `2, 3, 4, 1, 1, 1`) uses the official indices
//!    ([`Task::official_index`]);
//! 3. otherwise a built-in task's name finds the only head of its scale (none when absent, or
//!    when several heads share the scale: "ambiguous"), and a head is known as a task only when
//!    exactly one built-in task fits it that way (an unrecorded scale-1 head could be any of
//!    three).
//!
//! The map is built from a config ([`IptConfig::task_map`](crate::IptConfig::task_map)) and
//! owns copies of the scales and the recorded tasks, so it is cheap to pass around. Each head is
//! described by a [`Head`] (index, scale, the task when known). A user names a task by a
//! [`TaskSelector`] (a name or an index), resolved here against what the file holds.

use std::fmt;
use std::str::FromStr;

use ipt_degrade::Task;

/// What a user asks for: a task by name, or a head by index (`--task sr2`, `--task 3`).
///
/// Parsing accepts a non-negative integer (an index) or a task name (letters, digits, `-` and
/// `_`, starting with a letter: a built-in task or one a checkpoint records); anything else is
/// refused, so clap reports it while parsing arguments. Whether the model has the task is
/// answered by [`TaskMap::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSelector {
    /// A head index into the checkpoint's task list.
    Index(usize),
    /// A task by name.
    Name(String),
}

/// The error of parsing a [`TaskSelector`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither a task name (sr2, sr3, sr4, derain, denoise30, denoise50, or a task the \
     checkpoint defines) nor a head index"
)]
pub struct BadTaskSelector(pub String);

impl FromStr for TaskSelector {
    type Err = BadTaskSelector;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(idx) = t.parse::<usize>() {
            return Ok(TaskSelector::Index(idx));
        }
        if ipt_degrade::task::is_task_name(t) {
            Ok(TaskSelector::Name(t.to_string()))
        } else {
            Err(BadTaskSelector(t.to_string()))
        }
    }
}

impl fmt::Display for TaskSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskSelector::Index(i) => write!(f, "{i}"),
            TaskSelector::Name(t) => write!(f, "{t}"),
        }
    }
}

impl From<Task> for TaskSelector {
    fn from(task: Task) -> Self {
        TaskSelector::Name(task.name().to_string())
    }
}

/// One head/tail pair of a model: its index, its scale and, when it can be told, its task.
///
/// Displays as the label used in messages: `sr2 (task 0, scale 2)`, or `task 1 (scale 1)` when
/// the task is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The task index passed to [`Ipt::forward`](crate::Ipt::forward).
    pub index: usize,
    /// Upscaling factor of this head (1: same-size task).
    pub scale: usize,
    /// The task this head performs, when recorded or implied by the layout (see the module docs).
    pub task: Option<Task>,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(t) => write!(f, "{t} (task {}, scale {})", self.index, self.scale),
            None => write!(f, "task {} (scale {})", self.index, self.scale),
        }
    }
}

/// Why a task choice does not resolve against a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskMapError {
    /// No choice was made and the model has several tasks.
    #[error(
        "this checkpoint holds {count} tasks ({held}); choose one with --task \
         (sr2, sr3, sr4, derain, denoise30, denoise50, or an index 0..{count})"
    )]
    Choose {
        /// Number of heads.
        count: usize,
        /// What the model holds, in words ([`TaskMap::held`]).
        held: String,
    },
    /// The index is past the last head.
    #[error("task index {index} is not in this checkpoint: it holds {count} task(s) ({held})")]
    NoIndex {
        /// The index asked for.
        index: usize,
        /// Number of heads.
        count: usize,
        /// What the model holds, in words.
        held: String,
    },
    /// Several unrecorded heads have the task's scale.
    #[error(
        "task {task} is ambiguous in this checkpoint ({heads} tasks have scale {scale} and the \
         file does not record which is which); give the task index instead"
    )]
    Ambiguous {
        /// The task asked for.
        task: String,
        /// Its scale.
        scale: usize,
        /// How many heads have its scale.
        heads: usize,
    },
    /// No head performs the task.
    #[error("task {task} is not in this checkpoint: it holds {held}")]
    Absent {
        /// The task asked for.
        task: String,
        /// What the model holds, in words.
        held: String,
    },
    /// A same-size head whose task is neither recorded nor given (see [`TaskMap::serving`]).
    #[error("cannot tell which task head {head} (scale 1) performs")]
    Unnamed {
        /// The head's index.
        head: usize,
    },
    /// Two heads would serve the same task (see [`TaskMap::serving`]).
    #[error("several heads perform {task} (scales {scales:?}); name the task")]
    Duplicate {
        /// The task.
        task: Task,
        /// The model's scales.
        scales: Vec<usize>,
    },
}

/// Which head of a model serves which task (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMap {
    scales: Vec<usize>,
    recorded: Option<Vec<Task>>,
}

impl TaskMap {
    /// The map of a model with these head scales and, when the file records them, these tasks
    /// (entry by entry; [`IptConfig::validate`](crate::IptConfig::validate) checks that they
    /// agree).
    pub fn new(scales: &[usize], recorded: Option<&[Task]>) -> Self {
        TaskMap {
            scales: scales.to_vec(),
            recorded: recorded.map(<[Task]>::to_vec),
        }
    }

    /// Number of heads.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether the model has no head (an invalid config).
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// The recorded task list, if the file has one.
    pub fn recorded(&self) -> Option<&[Task]> {
        self.recorded.as_deref()
    }

    /// The official six-task layout (scales 2, 3, 4, 1, 1, 1 in [`Task::OFFICIAL`] order).
    pub fn is_official_six_task(&self) -> bool {
        self.scales == Task::OFFICIAL.map(Task::scale)
    }

    /// The head that serves the task named `name` (rules 1–3 of the module docs, rule 3 for the
    /// built-in tasks only; `None` when absent or ambiguous).
    pub fn index_of_name(&self, name: &str) -> Option<usize> {
        if let Some(tasks) = &self.recorded {
            return tasks.iter().position(|t| t.name() == name);
        }
        Task::builtin(name).and_then(|t| self.index_of(t))
    }

    /// The head that serves `task`, if it can tell (rules 1–3 of the module docs; `None` when
    /// absent or ambiguous).
    pub fn index_of(&self, task: Task) -> Option<usize> {
        if let Some(tasks) = &self.recorded {
            return tasks.iter().position(|&t| t == task);
        }
        let official = task.official_index()?;
        if self.is_official_six_task() {
            return Some(official);
        }
        let mut matching = (0..self.scales.len()).filter(|&i| self.scales[i] == task.scale());
        match (matching.next(), matching.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        }
    }

    /// The task at index `idx`, when it can be told: the recorded task, else the one task that
    /// [`index_of`](Self::index_of) places there (`None` when several could be, e.g. an
    /// unrecorded scale-1 head).
    pub fn task_at(&self, idx: usize) -> Option<Task> {
        if let Some(tasks) = &self.recorded {
            return tasks.get(idx).copied();
        }
        let mut named = Task::OFFICIAL
            .into_iter()
            .filter(|&t| self.index_of(t) == Some(idx));
        match (named.next(), named.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    /// Head `idx`, if the model has it.
    pub fn head(&self, idx: usize) -> Option<Head> {
        let scale = *self.scales.get(idx)?;
        Some(Head {
            index: idx,
            scale,
            task: self.task_at(idx),
        })
    }

    /// Every head, in index order.
    pub fn heads(&self) -> impl Iterator<Item = Head> + '_ {
        (0..self.len()).filter_map(|i| self.head(i))
    }

    /// What the model holds, in words: `tasks denoise30, denoise50` when recorded, else
    /// `task scales [2, 3, 4, 1, 1, 1]`.
    pub fn held(&self) -> String {
        match &self.recorded {
            Some(tasks) => {
                let names: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
                format!("tasks {}", names.join(", "))
            }
            None => format!("task scales {:?}", self.scales),
        }
    }

    /// The head for a user's choice: `None` is fine for a single-task model; an index must
    /// exist; a name resolves by [`index_of`](Self::index_of). The errors are the wording every
    /// front end shows.
    pub fn resolve(&self, choice: Option<TaskSelector>) -> Result<Head, TaskMapError> {
        let n = self.len();
        let head = |idx: usize| {
            self.head(idx).ok_or_else(|| TaskMapError::NoIndex {
                index: idx,
                count: n,
                held: self.held(),
            })
        };
        match choice {
            None if n == 1 => head(0),
            None => Err(TaskMapError::Choose {
                count: n,
                held: self.held(),
            }),
            Some(TaskSelector::Index(idx)) => head(idx),
            Some(TaskSelector::Name(name)) => {
                if let Some(idx) = self.index_of_name(&name) {
                    return head(idx);
                }
                if let (None, Some(task)) = (&self.recorded, Task::builtin(&name)) {
                    let heads = self.scales.iter().filter(|&&s| s == task.scale()).count();
                    if heads > 1 {
                        return Err(TaskMapError::Ambiguous {
                            task: name,
                            scale: task.scale(),
                            heads,
                        });
                    }
                }
                Err(TaskMapError::Absent {
                    task: name,
                    held: self.held(),
                })
            }
        }
    }

    /// Every (task, head index) the model serves when each head must stand for one task (a
    /// benchmark picking checkpoints by task): with `explicit`, only that task (resolved as by
    /// [`resolve`](Self::resolve)); else the recorded tasks, or the official six; else each head
    /// of scale 2, 3 or 4 performs SR at its scale and a scale-1 head performs `same_size` (a
    /// hint such as the file name; [`TaskMapError::Unnamed`] without one). Heads of other scales
    /// serve nothing; two heads for one task are [`TaskMapError::Duplicate`].
    pub fn serving(
        &self,
        explicit: Option<Task>,
        same_size: Option<Task>,
    ) -> Result<Vec<(Task, usize)>, TaskMapError> {
        if let Some(task) = explicit {
            let head = self.resolve(Some(TaskSelector::from(task)))?;
            return Ok(vec![(task, head.index)]);
        }
        if let Some(tasks) = &self.recorded {
            return Ok(tasks.iter().enumerate().map(|(i, &t)| (t, i)).collect());
        }
        if self.is_official_six_task() {
            return Ok(Task::OFFICIAL.iter().copied().zip(0..).collect());
        }
        let mut served: Vec<(Task, usize)> = Vec::new();
        for (i, &s) in self.scales.iter().enumerate() {
            let task = match s {
                2 => Task::Sr2,
                3 => Task::Sr3,
                4 => Task::Sr4,
                1 => same_size.ok_or(TaskMapError::Unnamed { head: i })?,
                _ => continue,
            };
            if served.iter().any(|(t, _)| *t == task) {
                return Err(TaskMapError::Duplicate {
                    task,
                    scales: self.scales.clone(),
                });
            }
            served.push((task, i));
        }
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(scales: &[usize]) -> TaskMap {
        TaskMap::new(scales, None)
    }

    fn resolve(choice: Option<&str>, m: &TaskMap) -> Result<(usize, String), TaskMapError> {
        let choice = choice.map(|c| c.parse::<TaskSelector>().unwrap());
        m.resolve(choice).map(|h| (h.index, h.to_string()))
    }

    #[test]
    fn selectors_parse() {
        assert_eq!("3".parse(), Ok(TaskSelector::Index(3)));
        assert_eq!(" sr2 ".parse(), Ok(TaskSelector::Name("sr2".into())));
        assert_eq!("jpeg10".parse(), Ok(TaskSelector::Name("jpeg10".into())));
        let err = "2x".parse::<TaskSelector>().unwrap_err().to_string();
        assert!(err.contains("neither a task name"), "{err}");
        // Any name parses; whether the model has it is for `resolve` to say.
        let err = resolve(Some("sr5"), &map(&[2])).unwrap_err().to_string();
        assert!(err.contains("task sr5 is not in this checkpoint"), "{err}");
    }

    #[test]
    fn task_indices() {
        let six = map(&[2, 3, 4, 1, 1, 1]);
        for t in Task::OFFICIAL {
            assert_eq!(six.index_of(t), t.official_index());
        }
        let sr3 = map(&[3]);
        assert_eq!(sr3.index_of(Task::Sr3), Some(0));
        assert_eq!(sr3.index_of(Task::Sr2), None);
        let two = map(&[1, 1]);
        assert_eq!(two.index_of(Task::Denoise30), None, "ambiguous");
        let named = TaskMap::new(&[1, 1], Some(&[Task::Denoise50, Task::Derain]));
        assert_eq!(named.index_of(Task::Derain), Some(1));
        assert_eq!(named.index_of(Task::Denoise30), None);
    }

    #[test]
    fn tasks_resolve_against_the_checkpoint_layout() {
        let six = map(&[2, 3, 4, 1, 1, 1]);
        assert_eq!(resolve(Some("sr3"), &six).unwrap().0, 1);
        assert_eq!(resolve(Some("denoise50"), &six).unwrap().0, 5);
        assert_eq!(resolve(Some("4"), &six).unwrap().0, 4);
        assert!(resolve(None, &six).is_err());
        assert!(resolve(Some("6"), &six).is_err());
        assert!(resolve(Some("sr5"), &six).is_err());

        let sr2 = map(&[2]);
        assert_eq!(resolve(None, &sr2).unwrap().0, 0);
        assert_eq!(resolve(Some("sr2"), &sr2).unwrap().0, 0);
        let err = resolve(Some("sr3"), &sr2).unwrap_err().to_string();
        assert!(err.contains("not in this checkpoint"), "{err}");
        assert!(resolve(Some("denoise30"), &sr2).is_err());

        let dn = map(&[1]);
        assert_eq!(resolve(Some("denoise30"), &dn).unwrap().0, 0);

        let two = map(&[1, 1]);
        let err = resolve(Some("derain"), &two).unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert_eq!(resolve(Some("1"), &two).unwrap().0, 1);
    }

    #[test]
    fn recorded_tasks_decide_names() {
        // two scale-1 tasks whose names the checkpoint records: names resolve, as `ipt info`
        // lists them, and indices keep working
        let dn = TaskMap::new(&[1, 1], Some(&[Task::Denoise30, Task::Denoise50]));
        let (idx, label) = resolve(Some("denoise50"), &dn).unwrap();
        assert_eq!(idx, 1);
        assert!(label.starts_with("denoise50"), "{label}");
        assert_eq!(resolve(Some("denoise30"), &dn).unwrap().0, 0);
        let (idx, label) = resolve(Some("0"), &dn).unwrap();
        assert_eq!(idx, 0);
        assert!(label.starts_with("denoise30"), "{label}");
        let err = resolve(Some("derain"), &dn).unwrap_err().to_string();
        assert!(
            err.contains("not in this checkpoint") && err.contains("denoise30, denoise50"),
            "{err}"
        );
        let err = resolve(None, &dn).unwrap_err().to_string();
        assert!(err.contains("denoise30, denoise50"), "{err}");
        for (i, t) in [Task::Denoise30, Task::Denoise50].into_iter().enumerate() {
            assert_eq!(dn.task_at(i), Some(t));
            assert_eq!(dn.index_of(t), Some(i));
        }

        // a recorded list overrides the official six-task layout's indices
        let six = TaskMap::new(
            &[2, 3, 4, 1, 1, 1],
            Some(&[
                Task::Sr2,
                Task::Sr3,
                Task::Sr4,
                Task::Denoise50,
                Task::Denoise30,
                Task::Derain,
            ]),
        );
        assert_eq!(resolve(Some("derain"), &six).unwrap().0, 5);
        assert_eq!(resolve(Some("denoise50"), &six).unwrap().0, 3);

        // unrecorded single scale-1 task: every scale-1 name finds it, none names it
        let one = map(&[1]);
        assert_eq!(one.task_at(0), None);
        assert!(resolve(None, &one).unwrap().1.starts_with("task 0"));
    }

    #[test]
    fn serving_rules() {
        let all = map(&[2, 3, 4, 1, 1, 1]).serving(None, None).unwrap();
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|(t, i)| t.official_index() == Some(*i)));
        assert_eq!(
            map(&[1]).serving(None, Some(Task::Derain)).unwrap(),
            vec![(Task::Derain, 0)]
        );
        assert_eq!(
            map(&[1]).serving(None, None),
            Err(TaskMapError::Unnamed { head: 0 })
        );
        assert!(matches!(
            map(&[2, 2]).serving(None, None),
            Err(TaskMapError::Duplicate { .. })
        ));
        assert_eq!(
            map(&[2, 8, 4]).serving(None, None).unwrap(),
            vec![(Task::Sr2, 0), (Task::Sr4, 2)]
        );
    }
}
