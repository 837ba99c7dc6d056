//! Tasks as data: a name, a scale (the tail's upscaling) and a degradation [`Recipe`].
//!
//! The six official IPT tasks are built-in definitions with their official names, order and
//! indices (MindSpore `task_id`, scale list `2+3+4+1+1+1`): 0 `sr2`, 1 `sr3`, 2 `sr4`,
//! 3 `derain`, 4 `denoise30`, 5 `denoise50` ([`Task::OFFICIAL`]). Any other task is a
//! [`TaskDef`] a config writes (`[[tasks]]`) or a checkpoint records, made a [`Task`] by
//! [`Task::define`].
//!
//! A [`Task`] is a cheap copyable handle on its definition. Two tasks are equal when their
//! definitions are (name, scale and recipe). Serialized, an official task is its name (so
//! configs and checkpoints that name the six read as before) and any other task is its whole
//! definition (so a checkpoint says what each of its heads does).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};

use serde::{Deserialize, Serialize};

use crate::recipe::{Kernels, Op, Param, Recipe, Step};

/// What a task is: its name, its scale and its recipe.
///
/// Equality compares these three (not whether the definition is a built-in one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    /// Its name (`sr2`, `jpeg10`, …): letters, digits, `-` and `_`, starting with a letter.
    pub name: Cow<'static, str>,
    /// Upscaling factor of the task's tail (1: same-size restoration).
    pub scale: usize,
    /// How a clean patch is degraded into the model's input.
    pub recipe: Recipe,
    /// The official index of a built-in task (never read from a file).
    #[serde(skip)]
    official: Option<usize>,
}

impl TaskDef {
    /// A definition to pass to [`Task::define`].
    pub fn new(name: impl Into<String>, scale: usize, recipe: Recipe) -> TaskDef {
        TaskDef {
            name: Cow::Owned(name.into()),
            scale,
            recipe,
            official: None,
        }
    }

    /// Checks the name, the scale and every parameter of the recipe; the error says what is wrong
    /// (the caller adds where the definition came from).
    pub fn check(&self) -> Result<(), TaskError> {
        let bad = |reason: String| TaskError::BadDefinition {
            name: self.name.to_string(),
            reason,
        };
        let name = &*self.name;
        if !is_task_name(name) {
            return Err(bad(
                "a task name is letters, digits, '-' and '_', starting with a letter".into(),
            ));
        }
        if self.official.is_none() && OFFICIAL_DEFS.iter().any(|d| d.name == name) {
            return Err(TaskError::Builtin(name.to_string()));
        }
        if !(1..=8).contains(&self.scale) {
            return Err(bad(format!("scale {} is outside 1..=8", self.scale)));
        }
        self.recipe
            .check()
            .map_err(|e| bad(format!("recipe {e}")))?;
        if self.scale > 1 && !self.recipe.resizes() {
            return Err(bad(format!(
                "scale {} but the recipe never resizes (add a `downscale` step)",
                self.scale
            )));
        }
        Ok(())
    }
}

impl PartialEq for TaskDef {
    fn eq(&self, other: &TaskDef) -> bool {
        self.name == other.name && self.scale == other.scale && self.recipe == other.recipe
    }
}

/// Whether `s` is a valid task name: letters, digits, `-` and `_`, starting with a letter (the
/// one rule for definitions and for a user's `--task NAME`).
pub fn is_task_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A task: a copyable handle on its [`TaskDef`].
#[derive(Clone, Copy)]
pub struct Task(&'static TaskDef);

/// The error of parsing, checking or looking up a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The name is not one of the built-in tasks (and no definition was given).
    #[error(
        "unknown task {0:?} (built in: sr2, sr3, sr4, derain, denoise30, denoise50; shipped: \
         denoise-blind, jpeg10, jpeg20, jpeg30, jpeg40, realsr4; define others in a config's \
         [[tasks.define]])"
    )]
    UnknownName(String),
    /// The index is not in 0..6.
    #[error("task index {0} out of range (0..=5)")]
    BadIndex(usize),
    /// A definition reuses a built-in task's name.
    #[error("task {0:?} is a built-in task; give a new task another name")]
    Builtin(String),
    /// A definition is invalid.
    #[error("task {name:?}: {reason}")]
    BadDefinition {
        /// The task's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

const fn official(
    index: usize,
    name: &'static str,
    scale: usize,
    steps: &'static [Step],
) -> TaskDef {
    TaskDef {
        name: Cow::Borrowed(name),
        scale,
        recipe: Recipe(Cow::Borrowed(steps)),
        official: Some(index),
    }
}

const SR: &[Step] = &[
    Step::always(Op::Downscale {
        kernel: Kernels::BICUBIC,
    }),
    Step::always(Op::Quantize),
];

const DERAIN: &[Step] = &[Step::always(Op::Rain)];

const DENOISE30: &[Step] = &[Step::always(Op::Noise {
    sigma: Param::Fixed(30.0),
    grey: 0.0,
})];

const DENOISE50: &[Step] = &[Step::always(Op::Noise {
    sigma: Param::Fixed(50.0),
    grey: 0.0,
})];

const OFFICIAL_DEFS: [TaskDef; 6] = [
    official(0, "sr2", 2, SR),
    official(1, "sr3", 3, SR),
    official(2, "sr4", 4, SR),
    official(3, "derain", 1, DERAIN),
    official(4, "denoise30", 1, DENOISE30),
    official(5, "denoise50", 1, DENOISE50),
];

static OFFICIAL_STATIC: [TaskDef; 6] = OFFICIAL_DEFS;

/// Definitions made tasks by [`Task::define`], one per distinct definition.
static DEFINED: Mutex<Vec<&'static TaskDef>> = Mutex::new(Vec::new());

thread_local! {
    /// The tasks a name may refer to while [`with_defined`] runs on this thread.
    static IN_SCOPE: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `tasks` known by name to [`Task`]'s deserializer on this thread (a config
/// that defines tasks in one place and names them in others); the built-in names come first.
pub fn with_defined<R>(tasks: &[Task], f: impl FnOnce() -> R) -> R {
    struct Restore(Vec<Task>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = std::mem::take(&mut self.0);
            IN_SCOPE.with(|s| *s.borrow_mut() = old);
        }
    }
    let _restore =
        Restore(IN_SCOPE.with(|s| std::mem::replace(&mut *s.borrow_mut(), tasks.to_vec())));
    f()
}

/// The task `name` refers to: a built-in task, else one in scope ([`with_defined`]), else a
/// shipped one ([`shipped`]).
pub fn lookup(name: &str) -> Result<Task, TaskError> {
    Task::builtin(name)
        .or_else(|| IN_SCOPE.with(|s| s.borrow().iter().copied().find(|t| t.name() == name)))
        .or_else(|| shipped().iter().copied().find(|t| t.name() == name))
        .ok_or_else(|| TaskError::UnknownName(name.to_string()))
}

/// The text of the shipped task recipes (`configs/tasks.toml`, compiled in).
pub const SHIPPED_TOML: &str = include_str!("../../../configs/tasks.toml");

/// The shipped tasks beyond the official six (`configs/tasks.toml`: `denoise-blind`,
/// `jpeg10`…`jpeg40`, `realsr4`), which every config and command may name. A test checks that
/// the file parses; were it not to, the list would be empty.
pub fn shipped() -> &'static [Task] {
    static SHIPPED: LazyLock<Vec<Task>> = LazyLock::new(|| parse_shipped().unwrap_or_default());
    &SHIPPED
}

/// Parses [`SHIPPED_TOML`]: its `[[tasks.define]]` tables, each checked.
pub fn parse_shipped() -> Result<Vec<Task>, String> {
    #[derive(Deserialize)]
    struct File {
        tasks: Defines,
    }
    #[derive(Deserialize)]
    struct Defines {
        define: Vec<TaskDef>,
    }
    let file: File =
        toml::from_str(SHIPPED_TOML).map_err(|e| format!("configs/tasks.toml: {e}"))?;
    file.tasks
        .define
        .into_iter()
        .map(|d| Task::define(d).map_err(|e| format!("configs/tasks.toml: {e}")))
        .collect()
}

#[allow(non_upper_case_globals)]
impl Task {
    /// Bicubic super-resolution ×2 (official index 0): MATLAB bicubic down by 2, rounded.
    pub const Sr2: Task = Task(&OFFICIAL_STATIC[0]);
    /// Bicubic super-resolution ×3 (official index 1).
    pub const Sr3: Task = Task(&OFFICIAL_STATIC[1]);
    /// Bicubic super-resolution ×4 (official index 2).
    pub const Sr4: Task = Task(&OFFICIAL_STATIC[2]);
    /// Rain-streak removal (official index 3).
    pub const Derain: Task = Task(&OFFICIAL_STATIC[3]);
    /// Gaussian denoising, σ = 30 (official index 4).
    pub const Denoise30: Task = Task(&OFFICIAL_STATIC[4]);
    /// Gaussian denoising, σ = 50 (official index 5).
    pub const Denoise50: Task = Task(&OFFICIAL_STATIC[5]);

    /// The six official tasks in index order.
    pub const OFFICIAL: [Task; 6] = [
        Task::Sr2,
        Task::Sr3,
        Task::Sr4,
        Task::Derain,
        Task::Denoise30,
        Task::Denoise50,
    ];

    /// A task from its definition, after [`TaskDef::check`]. Equal definitions give equal
    /// tasks; each distinct definition is kept for the life of the process (a few hundred bytes).
    pub fn define(def: TaskDef) -> Result<Task, TaskError> {
        if let Some(t) = Task::OFFICIAL.into_iter().find(|t| *t.0 == def) {
            return Ok(t);
        }
        def.check()?;
        let mut defined = DEFINED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = defined.iter().find(|d| ***d == def) {
            return Ok(Task(d));
        }
        let leaked: &'static TaskDef = Box::leak(Box::new(def));
        defined.push(leaked);
        Ok(Task(leaked))
    }

    /// The definition.
    pub fn def(self) -> &'static TaskDef {
        self.0
    }

    /// The official index (0..=5) of a built-in task, `None` for any other.
    pub fn official_index(self) -> Option<usize> {
        self.0.official
    }

    /// Whether this is one of the six official tasks.
    pub fn is_official(self) -> bool {
        self.0.official.is_some()
    }

    /// The official task with index `idx`.
    pub fn from_index(idx: usize) -> Result<Task, TaskError> {
        Task::OFFICIAL
            .get(idx)
            .copied()
            .ok_or(TaskError::BadIndex(idx))
    }

    /// The built-in task of this name.
    pub fn builtin(name: &str) -> Option<Task> {
        Task::OFFICIAL.into_iter().find(|t| t.name() == name)
    }

    /// Upscaling factor of the task's tail (1: same-size restoration).
    pub fn scale(self) -> usize {
        self.0.scale
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        &self.0.name
    }

    /// Its degradation.
    pub fn recipe(self) -> &'static Recipe {
        &self.0.recipe
    }

    /// The noise level of a fixed-σ Gaussian denoising task (one `noise` step with a fixed σ and
    /// no grey noise), e.g. 30 for `denoise30`.
    pub fn sigma(self) -> Option<f32> {
        match &*self.0.recipe.0 {
            [Step {
                probability,
                op:
                    Op::Noise {
                        sigma: Param::Fixed(s),
                        grey,
                    },
            }] if *probability == 1.0 && *grey == 0.0 => Some(*s as f32),
            _ => None,
        }
    }

    /// A number that tells tasks apart in seed derivations: the official index for a built-in
    /// task (so seeded data of the six is what it always was), else a hash of the name above
    /// 2³² ([`crate::seed::name_rank`] with seed 0).
    pub fn seed_key(self) -> u64 {
        match self.0.official {
            Some(i) => i as u64,
            None => crate::seed::name_rank(0, self.name()) | (1 << 32),
        }
    }

    /// Side of the HR patch that goes with an LR patch of side `patch` (= `patch · scale`).
    pub fn hr_patch(self, patch: usize) -> usize {
        patch * self.scale()
    }
}

impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

// Parameters are checked finite (`TaskDef::check`), so equality is reflexive.
impl Eq for Task {}

impl Hash for Task {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl PartialOrd for Task {
    fn partial_cmp(&self, other: &Task) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Task {
    /// Official tasks first in index order, then the others by name.
    fn cmp(&self, other: &Task) -> std::cmp::Ordering {
        let key = |t: &Task| (t.0.official.unwrap_or(usize::MAX), t.0.name.clone());
        key(self).cmp(&key(other)).then_with(|| {
            if self == other {
                std::cmp::Ordering::Equal
            } else {
                (self.0 as *const TaskDef).cmp(&(other.0 as *const TaskDef))
            }
        })
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.official {
            Some(_) => write!(f, "Task({})", self.0.name),
            None => write!(f, "Task({:?})", self.0),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = TaskError;
    /// A built-in task by name (other tasks come from their definitions).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::builtin(s).ok_or_else(|| TaskError::UnknownName(s.to_string()))
    }
}

impl Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.official {
            Some(_) => s.serialize_str(self.name()),
            None => self.0.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Task {
    /// A built-in task's name, a task in scope ([`with_defined`]), or a whole definition.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a built-in task name or a task definition {name, scale, recipe}"
        )]
        enum NameOrDef {
            Name(String),
            Def(TaskDef),
        }
        match NameOrDef::deserialize(d)? {
            NameOrDef::Name(s) => lookup(&s).map_err(serde::de::Error::custom),
            NameOrDef::Def(def) => Task::define(def).map_err(serde::de::Error::custom),
        }
    }
}
