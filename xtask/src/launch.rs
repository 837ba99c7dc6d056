//! The multi-process launcher of `cargo xtask pretrain|finetune CONFIG --nproc-per-node N [...]`.
//!
//! It does what `torchrun` does for a static job, for the `ipt` binary: start N local ranks with the torchrun
//! environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`,
//! `GROUP_RANK`), prefix every output line with `[rank r]`, forward Ctrl-C and SIGTERM to the ranks, and when a
//! rank exits non-zero or dies by a signal, stop the others (SIGTERM, then SIGKILL after a grace period) and exit
//! non-zero. On a CPU machine each rank also gets `IPT_THREADS = threads / local ranks` intra-op threads unless
//! `IPT_THREADS` is already set.
//!
//! The environment is built by pure functions ([`split_args`], [`plan`]); [`supervise`] runs any commands, so
//! its kill-the-others and exit-code behaviour is tested with `sh -c` children.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::{CommandExt, ExitStatusExt};

/// torchrun's default rendezvous port.
pub const DEFAULT_PORT: u16 = 29500;

/// How long the other ranks get to stop after SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(15);

/// The launcher's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchOpts {
    /// Ranks on this machine.
    pub nproc_per_node: usize,
    /// Machines in the job.
    pub nnodes: usize,
    /// This machine's index, `0..nnodes`.
    pub node_rank: usize,
    /// Host of node 0 (rank 0 hosts the rendezvous store); defaults to loopback on one machine.
    pub master_addr: Option<String>,
    /// Port of the rendezvous store.
    pub master_port: u16,
}

/// A launcher flag or combination that does not work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchError(pub String);

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LaunchError {}

const FLAGS: [&str; 5] = [
    "--nproc-per-node",
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
];

/// Take the launcher's flags (`--flag V` or `--flag=V`, anywhere before a `--`) out of the arguments forwarded
/// to `ipt`. `Ok((None, args))` when none is given: the plain single-process forward of today.
pub fn split_args(args: &[OsString]) -> Result<(Option<LaunchOpts>, Vec<OsString>), LaunchError> {
    let mut values: Vec<(&'static str, String)> = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            rest.push(a.clone());
            rest.extend(it.by_ref().cloned());
            break;
        }
        let s = a.to_string_lossy();
        let hit = FLAGS.iter().find_map(|f| {
            if s == *f {
                Some((*f, None))
            } else {
                s.strip_prefix(f)
                    .and_then(|r| r.strip_prefix('='))
                    .map(|v| (*f, Some(v.to_string())))
            }
        });
        match hit {
            Some((flag, Some(v))) => values.push((flag, v)),
            Some((flag, None)) => {
                let v = it
                    .next()
                    .ok_or_else(|| LaunchError(format!("{flag} needs a value")))?;
                values.push((flag, v.to_string_lossy().into_owned()));
            }
            None => rest.push(a.clone()),
        }
    }
    if values.is_empty() {
        return Ok((None, rest));
    }
    let get = |flag: &str| {
        values
            .iter()
            .rev()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
    };
    let number = |flag: &str, default: usize| -> Result<usize, LaunchError> {
        get(flag).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| LaunchError(format!("{flag} {v:?}: expected a non-negative integer")))
        })
    };
    let Some(nproc) = get("--nproc-per-node") else {
        return Err(LaunchError(
            "--nnodes, --node-rank, --master-addr and --master-port go with --nproc-per-node N"
                .into(),
        ));
    };
    let nproc_per_node: usize = nproc.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        LaunchError(format!(
            "--nproc-per-node {nproc:?}: expected an integer >= 1"
        ))
    })?;
    let master_port = match get("--master-port") {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            LaunchError(format!(
                "--master-port {p:?}: expected a TCP port (1-65535)"
            ))
        })?,
    };
    let opts = LaunchOpts {
        nproc_per_node,
        nnodes: number("--nnodes", 1)?,
        node_rank: number("--node-rank", 0)?,
        master_addr: get("--master-addr").map(str::to_string),
        master_port,
    };
    validate(&opts)?;
    Ok((Some(opts), rest))
}

fn validate(o: &LaunchOpts) -> Result<(), LaunchError> {
    if o.nnodes == 0 {
        return Err(LaunchError("--nnodes must be at least 1".into()));
    }
    if o.node_rank >= o.nnodes {
        return Err(LaunchError(format!(
            "--node-rank {} must be below --nnodes {}",
            o.node_rank, o.nnodes
        )));
    }
    if o.nnodes > 1 && o.master_addr.is_none() {
        return Err(LaunchError(
            "--nnodes above 1 needs --master-addr HOST: the address of node 0, reachable from every node".into(),
        ));
    }
    Ok(())
}

/// One local rank to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankSpec {
    /// Global rank.
    pub rank: usize,
    /// The environment variables to set for it.
    pub env: Vec<(String, String)>,
}

/// The ranks of this machine and their environments. `cpu_threads`: the machine's thread count when the ranks run
/// on the CPU (each gets an equal share as `IPT_THREADS`), `None` on GPU machines or when `IPT_THREADS` is
/// already set (the ranks then inherit it).
pub fn plan(o: &LaunchOpts, cpu_threads: Option<usize>) -> Vec<RankSpec> {
    let world = o.nnodes * o.nproc_per_node;
    let master = o
        .master_addr
        .clone()
        .unwrap_or_else(|| "127.0.0.1".to_string());
    (0..o.nproc_per_node)
        .map(|local| {
            let rank = o.node_rank * o.nproc_per_node + local;
            let mut env: Vec<(String, String)> = [
                ("RANK", rank.to_string()),
                ("WORLD_SIZE", world.to_string()),
                ("LOCAL_RANK", local.to_string()),
                ("LOCAL_WORLD_SIZE", o.nproc_per_node.to_string()),
                ("GROUP_RANK", o.node_rank.to_string()),
                ("MASTER_ADDR", master.clone()),
                ("MASTER_PORT", o.master_port.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if let Some(t) = cpu_threads {
                env.push((
                    "IPT_THREADS".to_string(),
                    (t / o.nproc_per_node).max(1).to_string(),
                ));
            }
            RankSpec { rank, env }
        })
        .collect()
}

/// The path of the executable named `name` in `cargo build --message-format=json` output.
pub fn executable_from_cargo_json(stdout: &str, name: &str) -> Option<PathBuf> {
    stdout.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("reason")?.as_str()? != "compiler-artifact"
            || v.get("target")?.get("name")?.as_str()? != name
        {
            return None;
        }
        v.get("executable")?.as_str().map(PathBuf::from)
    })
}

/// How a rank ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Ending {
    fn of(status: ExitStatus) -> Ending {
        match (status.code(), status.signal()) {
            (Some(c), _) => Ending::Code(c),
            (None, Some(s)) => Ending::Signal(s),
            (None, None) => Ending::Code(1),
        }
    }

    /// Whether the rank failed.
    pub fn failed(self) -> bool {
        self != Ending::Code(0)
    }

    /// The launcher's exit code for this ending: the code, or 128 + the signal number (as shells report it).
    pub fn exit_code(self) -> i32 {
        match self {
            Ending::Code(c) => c,
            Ending::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Code(c) => write!(f, "exit code {c}"),
            Ending::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "signal {sig}"),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// What a supervised job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How each rank ended, in the order given.
    pub endings: Vec<(usize, Ending)>,
    /// The first rank seen failing, and how.
    pub first_failure: Option<(usize, Ending)>,
    /// The launcher's exit code: 0 when every rank exited 0, else the first failure's.
    pub exit_code: i32,
}

/// Where prefixed output goes (stdout and stderr of the launcher in real use; buffers in tests).
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// Copy `stream` to `sink` line by line, each line prefixed (bytes that are not UTF-8 pass through).
fn pump(
    stream: impl Read + Send + 'static,
    prefix: String,
    sink: Sink,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    if let Ok(mut out) = sink.lock() {
                        let _ = out.write_all(prefix.as_bytes());
                        let _ = out.write_all(&line);
                        let _ = out.flush();
                    }
                }
            }
        }
    })
}

fn signal_group(child: &Child, sig: Signal) {
    // Each rank leads its own process group (see `supervise`), so wrappers and their children are reached too.
    let _ = killpg(Pid::from_raw(child.id() as i32), sig);
}

/// Start `ranks` (global rank, command) and watch them until all have ended.
///
/// - Every rank runs in its own process group with stdin closed, so a terminal's Ctrl-C reaches the launcher
///   only; `pending_signals` is polled (every 20 ms) and each signal it returns is forwarded to every live rank.
/// - Output lines are prefixed with `[rank r] ` and written to `out` (stdout) and `err` (stderr).
/// - When a rank fails (non-zero exit or a signal), the others get SIGTERM, and SIGKILL after `grace`.
pub fn supervise(
    ranks: Vec<(usize, Command)>,
    out: Sink,
    err: Sink,
    grace: Duration,
    pending_signals: &mut dyn FnMut() -> Vec<Signal>,
) -> std::io::Result<Outcome> {
    let mut live: Vec<(usize, Child)> = Vec::new();
    let mut pumps = Vec::new();
    for (rank, mut cmd) in ranks {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                for (_, c) in &live {
                    signal_group(c, Signal::SIGKILL);
                }
                for (_, c) in &mut live {
                    let _ = c.wait();
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot start rank {rank} ({:?}): {e}", cmd.get_program()),
                ));
            }
        };
        let prefix = format!("[rank {rank}] ");
        if let Some(s) = child.stdout.take() {
            pumps.push(pump(s, prefix.clone(), out.clone()));
        }
        if let Some(s) = child.stderr.take() {
            pumps.push(pump(s, prefix, err.clone()));
        }
        live.push((rank, child));
    }

    let mut endings = Vec::new();
    let mut first_failure: Option<(usize, Ending)> = None;
    let mut kill_at: Option<Instant> = None;
    while !live.is_empty() {
        for sig in pending_signals() {
            for (_, c) in &live {
                signal_group(c, sig);
            }
        }
        let mut i = 0;
        while i < live.len() {
            match live[i].1.try_wait()? {
                Some(status) => {
                    let (rank, _) = live.remove(i);
                    let ending = Ending::of(status);
                    endings.push((rank, ending));
                    if ending.failed() && first_failure.is_none() {
                        first_failure = Some((rank, ending));
                        if let Ok(mut e) = err.lock() {
                            let _ = writeln!(
                                e,
                                "[launcher] rank {rank} ended with {ending}; stopping the other ranks"
                            );
                        }
                        for (_, c) in &live {
                            signal_group(c, Signal::SIGTERM);
                        }
                        kill_at = Some(Instant::now() + grace);
                    }
                }
                None => i += 1,
            }
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            for (_, c) in &live {
                signal_group(c, Signal::SIGKILL);
            }
            kill_at = None;
        }
        if !live.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for p in pumps {
        let _ = p.join();
    }
    let exit_code = match first_failure {
        Some((_, e)) => e.exit_code().max(1),
        None => 0,
    };
    Ok(Outcome {
        endings,
        first_failure,
        exit_code,
    })
}

/// Forward to the ranks: SIGINT (Ctrl-C) and SIGTERM received by the launcher.
pub fn signal_source() -> std::io::Result<impl FnMut() -> Vec<Signal>> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    Ok(move || {
        signals
            .pending()
            .filter_map(|s| Signal::try_from(s).ok())
            .collect()
    })
}

/// The command for one rank: `program args...` with the rank's environment.
pub fn rank_command(program: &OsStr, args: &[OsString], spec: &RankSpec) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn env_of(spec: &RankSpec) -> std::collections::HashMap<&str, &str> {
        spec.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn no_launcher_flag_keeps_the_plain_forward() {
        let args = os(&["configs/demo.toml", "--resume", "x"]);
        assert_eq!(split_args(&args).unwrap(), (None, args));
    }

    #[test]
    fn launcher_flags_are_taken_out_wherever_they_are() {
        let (opts, rest) = split_args(&os(&[
            "configs/demo.toml",
            "--nproc-per-node",
            "2",
            "--device",
            "cpu",
            "--nnodes=3",
            "--node-rank",
            "1",
            "--master-addr",
            "node0",
            "--master-port=1234",
            "--",
            "--nnodes",
            "9",
        ]))
        .unwrap();
        assert_eq!(
            opts,
            Some(LaunchOpts {
                nproc_per_node: 2,
                nnodes: 3,
                node_rank: 1,
                master_addr: Some("node0".into()),
                master_port: 1234,
            })
        );
        assert_eq!(
            rest,
            os(&[
                "configs/demo.toml",
                "--device",
                "cpu",
                "--",
                "--nnodes",
                "9"
            ])
        );
    }

    #[test]
    fn bad_launcher_flags_are_refused_with_the_reason() {
        let err = |v: &[&str]| split_args(&os(v)).unwrap_err().to_string();
        assert!(err(&["c", "--nnodes", "2"]).contains("go with --nproc-per-node"));
        assert!(err(&["c", "--nproc-per-node", "0"]).contains("integer >= 1"));
        assert!(err(&["c", "--nproc-per-node"]).contains("needs a value"));
        assert!(err(&["c", "--nproc-per-node", "2", "--nnodes", "2"]).contains("--master-addr"));
        assert!(err(&[
            "c",
            "--nproc-per-node",
            "2",
            "--nnodes",
            "2",
            "--node-rank",
            "2",
            "--master-addr",
            "h"
        ])
        .contains("below --nnodes 2"));
        assert!(err(&["c", "--nproc-per-node", "2", "--master-port", "0"]).contains("TCP port"));
    }

    #[test]
    fn rank_environments_follow_torchrun() {
        let opts = LaunchOpts {
            nproc_per_node: 2,
            nnodes: 2,
            node_rank: 1,
            master_addr: Some("10.0.0.1".into()),
            master_port: 29501,
        };
        let specs = plan(&opts, None);
        assert_eq!(specs.iter().map(|s| s.rank).collect::<Vec<_>>(), vec![2, 3]);
        let e = env_of(&specs[1]);
        assert_eq!(e["RANK"], "3");
        assert_eq!(e["WORLD_SIZE"], "4");
        assert_eq!(e["LOCAL_RANK"], "1");
        assert_eq!(e["LOCAL_WORLD_SIZE"], "2");
        assert_eq!(e["GROUP_RANK"], "1");
        assert_eq!(e["MASTER_ADDR"], "10.0.0.1");
        assert_eq!(e["MASTER_PORT"], "29501");
        assert!(!e.contains_key("IPT_THREADS"));
    }

    #[test]
    fn cpu_ranks_share_the_threads_and_one_node_uses_loopback() {
        let opts = LaunchOpts {
            nproc_per_node: 3,
            nnodes: 1,
            node_rank: 0,
            master_addr: None,
            master_port: DEFAULT_PORT,
        };
        let specs = plan(&opts, Some(8));
        let e = env_of(&specs[0]);
        assert_eq!(e["IPT_THREADS"], "2");
        assert_eq!(e["MASTER_ADDR"], "127.0.0.1");
        assert_eq!(e["MASTER_PORT"], "29500");
        assert_eq!(env_of(&plan(&opts, Some(2))[2])["IPT_THREADS"], "1");
    }

    #[test]
    fn the_executable_is_found_in_cargo_json() {
        let out = r#"{"reason":"compiler-artifact","target":{"name":"ipt_model"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"ipt"},"executable":"/w/target/release/ipt"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_cargo_json(out, "ipt"),
            Some(PathBuf::from("/w/target/release/ipt"))
        );
        assert_eq!(executable_from_cargo_json(out, "other"), None);
    }

    fn buffer() -> (Arc<Mutex<Vec<u8>>>, Sink) {
        let b = Arc::new(Mutex::new(Vec::new()));
        let s: Sink = b.clone();
        (b, s)
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    fn text(b: &Arc<Mutex<Vec<u8>>>) -> String {
        String::from_utf8_lossy(&b.lock().unwrap()).into_owned()
    }

    #[test]
    fn all_ranks_succeeding_exit_zero_with_prefixed_lines() {
        let (out, out_s) = buffer();
        let (_err, err_s) = buffer();
        let ranks = vec![(0, sh("echo hello; echo there")), (1, sh("echo world"))];
        let o = supervise(ranks, out_s, err_s, KILL_GRACE, &mut Vec::new).unwrap();
        assert_eq!(o.exit_code, 0);
        assert_eq!(o.first_failure, None);
        let t = text(&out);
        for l in ["[rank 0] hello\n", "[rank 0] there\n", "[rank 1] world\n"] {
            assert!(t.contains(l), "{t:?}");
        }
    }

    #[test]
    fn a_failing_rank_stops_the_others_and_its_code_is_returned() {
        let (_out, out_s) = buffer();
        let (err, err_s) = buffer();
        let start = Instant::now();
        let ranks = vec![
            (0, sh("exec sleep 30")),
            (1, sh("echo oops >&2; sleep 0.2; exit 3")),
        ];
        let o = supervise(ranks, out_s, err_s, KILL_GRACE, &mut Vec::new).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        assert_eq!(o.first_failure, Some((1, Ending::Code(3))));
        assert_eq!(o.exit_code, 3);
        assert!(o
            .endings
            .contains(&(0, Ending::Signal(Signal::SIGTERM as i32))));
        let e = text(&err);
        assert!(e.contains("[rank 1] oops\n"), "{e:?}");
        assert!(e.contains("rank 1 ended with exit code 3"), "{e:?}");
    }

    #[test]
    fn a_rank_killed_by_a_signal_fails_the_job_and_stubborn_ranks_get_sigkill() {
        let (_out, out_s) = buffer();
        let (_err, err_s) = buffer();
        let start = Instant::now();
        let ranks = vec![
            // ignores SIGTERM: must be SIGKILLed after the grace period
            (0, sh("trap '' TERM; while :; do sleep 0.05; done")),
            (1, sh("sleep 0.2; kill -9 $$")),
        ];
        let o = supervise(
            ranks,
            out_s,
            err_s,
            Duration::from_millis(500),
            &mut Vec::new,
        )
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(o.first_failure, Some((1, Ending::Signal(9))));
        assert_eq!(o.exit_code, 137);
        assert!(o.endings.contains(&(0, Ending::Signal(9))));
    }

    #[test]
    fn signals_are_forwarded_to_every_rank() {
        let (out, out_s) = buffer();
        let (_err, err_s) = buffer();
        let script = "trap 'echo got INT; exit 0' INT; echo up; while :; do sleep 0.05; done";
        let ranks = vec![(0, sh(script)), (1, sh(script))];
        let mut sent = false;
        let seen = out.clone();
        let mut source = || {
            // once both ranks have installed their trap and said so
            if !sent && text(&seen).matches("up\n").count() == 2 {
                sent = true;
                vec![Signal::SIGINT]
            } else {
                Vec::new()
            }
        };
        let o = supervise(ranks, out_s, err_s, KILL_GRACE, &mut source).unwrap();
        assert_eq!(o.exit_code, 0, "{o:?}");
        let t = text(&out);
        assert!(
            t.contains("[rank 0] got INT") && t.contains("[rank 1] got INT"),
            "{t:?}"
        );
    }
}
