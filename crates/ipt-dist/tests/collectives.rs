//! Multi-process tests of the c10d shim: real ranks (the `ipt-dist-check` binary), Gloo over TCP, tiny tensors.
//!
//! - two ranks on loopback run every collective and compare with exact expected values;
//! - a rank killed with SIGKILL, or stopped with SIGSTOP, makes the survivor fail within the timeout with a message
//!   naming rank 1, never hang or abort;
//! - a rank whose peers never come fails to connect within the timeout;
//! - two "machines": two network namespaces joined by a veth pair (root and `ip` only; skipped otherwise).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHECK: &str = env!("CARGO_BIN_EXE_ipt-dist-check");

/// A free TCP port on loopback (the OS picks it; released before the ranks bind it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// A running rank: its process, and its stdout/stderr lines as they come.
struct Rank {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Rank {
    fn spawn(mut cmd: Command) -> Rank {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start ipt-dist-check");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Rank {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait for a line containing `needle`.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Wait for the process to exit (killing it after `limit`); returns its status and all its output.
    fn finish(&mut self, limit: Duration) -> (Option<ExitStatus>, String) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break Some(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // the reader threads end when the pipes close
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        (status, self.seen.join("\n"))
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[wrapper...] ipt-dist-check ARGS` as rank `rank` of `world`, torchrun-style, rendezvous at `master:port`.
fn rank_cmd(
    wrapper: &[&str],
    rank: usize,
    world: usize,
    master: &str,
    port: u16,
    args: &[&str],
) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(CHECK);
            c
        }
        None => Command::new(CHECK),
    };
    cmd.args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("LOCAL_WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", master)
        .env("MASTER_PORT", port.to_string())
        .env_remove("SLURM_PROCID")
        .env_remove("SLURM_NTASKS");
    cmd
}

fn local_ranks(world: usize, args: &[&str]) -> Vec<Rank> {
    let port = free_port();
    (0..world)
        .map(|r| Rank::spawn(rank_cmd(&[], r, world, "127.0.0.1", port, args)))
        .collect()
}

fn assert_all_correct(ranks: &mut [Rank]) {
    for (r, rank) in ranks.iter_mut().enumerate() {
        let (status, out) = rank.finish(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "rank {r} failed ({status:?}):\n{out}"
        );
        assert!(out.contains("all collectives correct"), "rank {r}:\n{out}");
    }
}

#[test]
fn two_ranks_on_loopback_run_every_collective_correctly() {
    let mut ranks = local_ranks(2, &["--timeout", "30"]);
    assert_all_correct(&mut ranks);
}

/// Start 2 ranks all-reducing in a loop with `timeout_s`, wait until both are looping, hit rank 1 with `signal`,
/// and return how long rank 0 took to exit, its status and its output.
fn hit_rank_1(
    signal: nix::sys::signal::Signal,
    timeout_s: &str,
) -> (Duration, Option<ExitStatus>, String) {
    let mut ranks = local_ranks(
        2,
        &["--timeout", timeout_s, "--repeat-until-failure", "65536"],
    );
    for (r, rank) in ranks.iter_mut().enumerate() {
        assert!(
            rank.wait_for("looping", Duration::from_secs(60)),
            "rank {r} never started looping:\n{}",
            rank.seen.join("\n")
        );
    }
    let hit = Instant::now();
    nix::sys::signal::kill(ranks[1].pid(), signal).expect("signal rank 1");
    let (status, out) = ranks[0].finish(Duration::from_secs(60));
    let took = hit.elapsed();
    let _ = ranks[1].child.kill(); // a stopped process dies from SIGKILL too
    (took, status, out)
}

#[test]
fn a_killed_rank_is_reported_by_the_survivor_within_the_timeout() {
    let timeout = Duration::from_secs(10);
    let (took, status, out) = hit_rank_1(nix::sys::signal::Signal::SIGKILL, "10");
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "the survivor must exit with an error, not hang or abort ({status:?}):\n{out}"
    );
    assert!(
        took < timeout,
        "the survivor took {took:?}, over the {timeout:?} timeout"
    );
    assert!(
        out.contains("all_reduce failed on rank 0 of 2: a peer was lost, rank 1"),
        "the message must name the lost rank:\n{out}"
    );
    eprintln!("SIGKILL of rank 1 reported after {took:?}");
}

#[test]
fn a_stopped_rank_times_out_the_survivor() {
    let (took, status, out) = hit_rank_1(nix::sys::signal::Signal::SIGSTOP, "3");
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "the survivor must exit with an error ({status:?}):\n{out}"
    );
    assert!(
        // the op in flight may have started a little before the stop: allow for that, not for an instant error
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "a 3 s timeout fired after {took:?}"
    );
    assert!(
        out.contains("all_reduce failed on rank 0 of 2: timed out, rank 1"),
        "the message must say timeout and name the silent rank:\n{out}"
    );
    eprintln!("SIGSTOP of rank 1 reported after {took:?}");
}

#[test]
fn a_rank_whose_peers_never_come_fails_to_connect_within_the_timeout() {
    // rank 1 alone: the store on rank 0 never appears
    let port = free_port();
    let start = Instant::now();
    let mut lone = Rank::spawn(rank_cmd(&[], 1, 2, "127.0.0.1", port, &["--timeout", "2"]));
    let (status, out) = lone.finish(Duration::from_secs(60));
    let took = start.elapsed();
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "{status:?}:\n{out}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        out.contains(&format!(
            "rank 1 of 2 could not join the process group at 127.0.0.1:{port}"
        )),
        "{out}"
    );
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct Netns {
    names: [String; 2],
}

impl Netns {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}`: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Namespaces `a` (10.231.7.1) and `b` (10.231.7.2).
    fn create() -> Result<Netns, String> {
        let id = std::process::id();
        let ns = Netns {
            names: [format!("ipt-dist-a{id}"), format!("ipt-dist-b{id}")],
        };
        let [a, b] = &ns.names;
        let (va, vb) = (format!("iptva{id}"), format!("iptvb{id}"));
        Self::run(&["netns", "add", a])?;
        Self::run(&["netns", "add", b])?;
        Self::run(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        Self::run(&["link", "set", &va, "netns", a])?;
        Self::run(&["link", "set", &vb, "netns", b])?;
        for (n, v, addr) in [(a, &va, "10.231.7.1/24"), (b, &vb, "10.231.7.2/24")] {
            Self::run(&["-n", n, "addr", "add", addr, "dev", v])?;
            Self::run(&["-n", n, "link", "set", v, "up"])?;
            Self::run(&["-n", n, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Self::run(&["netns", "del", n]); // removes the veth end inside it too
        }
    }
}

#[test]
fn two_machines_in_network_namespaces() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: two_machines_in_network_namespaces needs root (ip netns)");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: two_machines_in_network_namespaces needs the `ip` tool (iproute2)");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!(
                "skipped: two_machines_in_network_namespaces could not create namespaces: {e}"
            );
            return;
        }
    };
    // rank 0 in namespace a hosts the store; rank 1 in namespace b reaches it at a's address
    let port = 29500;
    let mut ranks: Vec<Rank> = (0..2)
        .map(|r| {
            let wrapper = ["ip", "netns", "exec", ns.names[r].as_str()];
            Rank::spawn(rank_cmd(
                &wrapper,
                r,
                2,
                "10.231.7.1",
                port,
                &["--timeout", "30"],
            ))
        })
        .collect();
    assert_all_correct(&mut ranks);
    let outs: Vec<String> = ranks.iter().map(|r| r.seen.join("\n")).collect();
    assert!(
        outs[1].contains("hosts [Some(10.231.7.1), Some(10.231.7.2)]"),
        "each rank must bind its own namespace's address:\n{}",
        outs[1]
    );
}
