//! Where this process sits in a distributed job, read from the launcher's environment variables.
//!
//! Two conventions are understood, torchrun's first (torchrun inside a SLURM allocation sets both):
//!
//! | | rank | world size | local rank | local world size | rendezvous |
//! |---|---|---|---|---|---|
//! | torchrun, `cargo xtask pretrain --nproc-per-node` | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `LOCAL_WORLD_SIZE` | `MASTER_ADDR`, `MASTER_PORT` |
//! | SLURM (`srun`) | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` | from `SLURM_TASKS_PER_NODE` and `SLURM_NODEID` | `MASTER_ADDR`, `MASTER_PORT` (exported by the batch script) |
//!
//! No variable of either kind (or a SLURM job of one task) means "not distributed". A half-set environment is an
//! error naming what is missing, never a silent single-process run: N copies of one job writing the same run
//! folder would be worse than stopping.

use thiserror::Error;

/// The launcher whose variables described the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun's variables (`RANK`, `WORLD_SIZE`, ...), also set by `cargo xtask pretrain --nproc-per-node`.
    Torchrun,
    /// SLURM's (`SLURM_PROCID`, `SLURM_NTASKS`, ...).
    Slurm,
}

/// This process's place in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes in the job.
    pub world_size: usize,
    /// Rank among the processes on this machine; picks the GPU (`cuda:local_rank`).
    pub local_rank: usize,
    /// Number of processes on this machine.
    pub local_world_size: usize,
    /// Host of rank 0, where the rendezvous store listens.
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
    /// Which convention the values came from.
    pub launcher: Launcher,
}

/// A launcher environment that is incomplete or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvError {
    /// Some variables of a convention are set, others are not.
    #[error(
        "incomplete {launcher} environment: {present} set, but {missing} not; set all of {all} \
         (or none, for a single-process run)"
    )]
    Missing {
        /// The convention, in words.
        launcher: &'static str,
        /// The variables that are set.
        present: String,
        /// The variables that are missing.
        missing: String,
        /// Every variable the convention needs.
        all: String,
    },
    /// A variable does not parse.
    #[error("{var}={value:?} is not {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The values contradict each other.
    #[error("inconsistent distributed environment: {0}")]
    Inconsistent(String),
}

const TORCHRUN_VARS: [&str; 6] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
];
const SLURM_VARS: [&str; 5] = [
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_TASKS_PER_NODE",
    "SLURM_NODEID",
];
const RENDEZVOUS_VARS: [&str; 2] = ["MASTER_ADDR", "MASTER_PORT"];

impl DistEnv {
    /// Read the process environment (see the module docs). `Ok(None)`: not a distributed run.
    pub fn from_env() -> Result<Option<DistEnv>, EnvError> {
        DistEnv::from_vars(|k| std::env::var(k).ok())
    }

    /// The same, reading variables through `get` (for tests and for callers with their own environment).
    /// Empty values count as unset.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>, EnvError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if TORCHRUN_VARS[..4].iter().any(|k| get(k).is_some()) {
            return torchrun(&get).map(Some);
        }
        if get("SLURM_PROCID").is_some() || get("SLURM_NTASKS").is_some() {
            return slurm(&get);
        }
        Ok(None)
    }

    /// Whether this is rank 0, the one that writes checkpoints, metrics and plots.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

fn require(
    get: &dyn Fn(&str) -> Option<String>,
    launcher: &'static str,
    vars: &[&'static str],
) -> Result<(), EnvError> {
    let (present, missing): (Vec<&str>, Vec<&str>) = vars.iter().partition(|k| get(k).is_some());
    if missing.is_empty() {
        return Ok(());
    }
    Err(EnvError::Missing {
        launcher,
        present: if present.is_empty() {
            "none".to_string()
        } else {
            present.join(", ")
        },
        missing: missing.join(", "),
        all: vars.join(", "),
    })
}

fn parse_usize(get: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Result<usize, EnvError> {
    let value = get(var).unwrap_or_default();
    value.trim().parse().map_err(|_| EnvError::Invalid {
        var,
        value,
        expected: "a non-negative integer",
    })
}

fn rendezvous(get: &dyn Fn(&str) -> Option<String>) -> Result<(String, u16), EnvError> {
    let addr = get("MASTER_ADDR").unwrap_or_default().trim().to_string();
    let port_s = get("MASTER_PORT").unwrap_or_default();
    let port = port_s
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or(EnvError::Invalid {
            var: "MASTER_PORT",
            value: port_s,
            expected: "a TCP port (1-65535)",
        })?;
    Ok((addr, port))
}

fn torchrun(get: &dyn Fn(&str) -> Option<String>) -> Result<DistEnv, EnvError> {
    require(get, "torchrun-style", &TORCHRUN_VARS)?;
    let (master_addr, master_port) = rendezvous(get)?;
    check(DistEnv {
        rank: parse_usize(get, "RANK")?,
        world_size: parse_usize(get, "WORLD_SIZE")?,
        local_rank: parse_usize(get, "LOCAL_RANK")?,
        local_world_size: parse_usize(get, "LOCAL_WORLD_SIZE")?,
        master_addr,
        master_port,
        launcher: Launcher::Torchrun,
    })
}

fn slurm(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<DistEnv>, EnvError> {
    require(get, "SLURM", &SLURM_VARS[..2])?;
    let world_size = parse_usize(get, "SLURM_NTASKS")?;
    if world_size == 1 {
        return Ok(None);
    }
    let mut all: Vec<&'static str> = SLURM_VARS.to_vec();
    all.extend(RENDEZVOUS_VARS);
    require(get, "SLURM", &all)?;
    let node = parse_usize(get, "SLURM_NODEID")?;
    let per_node = get("SLURM_TASKS_PER_NODE").unwrap_or_default();
    let local_world_size = tasks_on_node(&per_node, node).ok_or(EnvError::Invalid {
        var: "SLURM_TASKS_PER_NODE",
        value: per_node.clone(),
        expected: "a SLURM task list like `4(x2),3` covering SLURM_NODEID",
    })?;
    let (master_addr, master_port) = rendezvous(get)?;
    check(DistEnv {
        rank: parse_usize(get, "SLURM_PROCID")?,
        world_size,
        local_rank: parse_usize(get, "SLURM_LOCALID")?,
        local_world_size,
        master_addr,
        master_port,
        launcher: Launcher::Slurm,
    })
    .map(Some)
}

/// The number of tasks on node `node` from SLURM's compressed list (`"2(x3),1"`: nodes 0-2 run 2, node 3 runs 1).
pub fn tasks_on_node(list: &str, node: usize) -> Option<usize> {
    let mut first = 0usize;
    for part in list.split(',') {
        let part = part.trim();
        let (count, repeat) = match part.split_once("(x") {
            Some((c, r)) => (c, r.strip_suffix(')')?.parse::<usize>().ok()?),
            None => (part, 1),
        };
        let count: usize = count.parse().ok()?;
        if node < first + repeat {
            return Some(count);
        }
        first += repeat;
    }
    None
}

fn check(env: DistEnv) -> Result<DistEnv, EnvError> {
    let bad = |m: String| Err(EnvError::Inconsistent(m));
    if env.world_size == 0 {
        return bad("the world size is 0".into());
    }
    if env.rank >= env.world_size {
        return bad(format!(
            "rank {} is not below the world size {}",
            env.rank, env.world_size
        ));
    }
    if env.local_world_size == 0 || env.local_world_size > env.world_size {
        return bad(format!(
            "the local world size {} is not in 1..={}",
            env.local_world_size, env.world_size
        ));
    }
    if env.local_rank >= env.local_world_size {
        return bad(format!(
            "local rank {} is not below the local world size {}",
            env.local_rank, env.local_world_size
        ));
    }
    if env.master_addr.is_empty() {
        return bad("MASTER_ADDR is empty".into());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>, EnvError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_vars(|k| m.get(k).cloned())
    }

    const TORCHRUN: [(&str, &str); 6] = [
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn nothing_set_is_not_distributed() {
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(read(&[("RANK", ""), ("MASTER_ADDR", "x")]), Ok(None));
    }

    #[test]
    fn torchrun_environment_is_read() {
        let env = read(&TORCHRUN).unwrap().unwrap();
        assert_eq!(
            env,
            DistEnv {
                rank: 3,
                world_size: 8,
                local_rank: 1,
                local_world_size: 2,
                master_addr: "node0".into(),
                master_port: 29500,
                launcher: Launcher::Torchrun,
            }
        );
        assert!(!env.is_main());
    }

    #[test]
    fn partial_torchrun_environment_names_the_missing_variables() {
        let err = read(&TORCHRUN[..2]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("RANK, WORLD_SIZE set")
                && msg.contains("LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT not"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_values_name_variable_and_value() {
        let mut v = TORCHRUN.to_vec();
        v[0] = ("RANK", "two");
        assert_eq!(
            read(&v).unwrap_err(),
            EnvError::Invalid {
                var: "RANK",
                value: "two".into(),
                expected: "a non-negative integer"
            }
        );
        let mut v = TORCHRUN.to_vec();
        v[5] = ("MASTER_PORT", "70000");
        assert!(read(&v).unwrap_err().to_string().contains("MASTER_PORT"));
        let mut v = TORCHRUN.to_vec();
        v[0] = ("RANK", "8");
        let msg = read(&v).unwrap_err().to_string();
        assert!(
            msg.contains("rank 8 is not below the world size 8"),
            "{msg}"
        );
        let mut v = TORCHRUN.to_vec();
        v[2] = ("LOCAL_RANK", "2");
        assert!(read(&v).unwrap_err().to_string().contains("local rank 2"));
    }

    #[test]
    fn torchrun_wins_over_slurm() {
        let mut v = TORCHRUN.to_vec();
        v.extend([("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]);
        assert_eq!(read(&v).unwrap().unwrap().launcher, Launcher::Torchrun);
    }

    #[test]
    fn slurm_environment_is_read() {
        let env = read(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "7"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_TASKS_PER_NODE", "2(x3),1"),
            ("SLURM_NODEID", "3"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                env.rank,
                env.world_size,
                env.local_rank,
                env.local_world_size
            ),
            (5, 7, 0, 1)
        );
        assert_eq!(env.launcher, Launcher::Slurm);
    }

    #[test]
    fn slurm_single_task_is_not_distributed_and_missing_master_is_an_error() {
        assert_eq!(
            read(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]),
            Ok(None)
        );
        let err = read(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_TASKS_PER_NODE", "4"),
            ("SLURM_NODEID", "0"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("MASTER_ADDR, MASTER_PORT not"),
            "{err}"
        );
    }

    #[test]
    fn slurm_task_lists() {
        assert_eq!(tasks_on_node("4", 0), Some(4));
        assert_eq!(tasks_on_node("4", 1), None);
        assert_eq!(tasks_on_node("2(x3),1", 0), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 2), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 3), Some(1));
        assert_eq!(tasks_on_node("2(x3),1", 4), None);
        assert_eq!(tasks_on_node("2(x", 0), None);
    }
}
