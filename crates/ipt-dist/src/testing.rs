//! Helpers for tests that start real ranks as processes (the `testing` feature): a free port, a
//! running rank whose output lines can be awaited, torchrun-style rank commands, and two network
//! namespaces standing in for two machines. Used by this crate's tests and by the trainer's.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A free TCP port on loopback (the OS picks it; released before the ranks bind it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// A running rank: its process, and its stdout/stderr lines as they come.
pub struct Rank {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// The output lines read so far.
    pub seen: Vec<String>,
}

impl Rank {
    /// Start `cmd` with its stdout and stderr read line by line.
    pub fn spawn(mut cmd: Command) -> Rank {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
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
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
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
    pub fn finish(&mut self, limit: Duration) -> (Option<ExitStatus>, String) {
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

    /// The process id, for signals.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[wrapper...] PROGRAM ARGS` as rank `rank` of `world`, torchrun-style, rendezvous at `master:port`.
pub fn rank_cmd(
    program: &Path,
    wrapper: &[&str],
    rank: usize,
    world: usize,
    master: &str,
    port: u16,
    args: &[&str],
) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((wrap, rest)) => {
            let mut c = Command::new(wrap);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
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

/// Two network namespaces joined by a veth pair, removed on drop.
pub struct Netns {
    /// The two namespaces' names.
    pub names: [String; 2],
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
    pub fn create() -> Result<Netns, String> {
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

/// Why two-namespace tests cannot run here (`None`: they can): they need root and `ip`.
pub fn netns_unavailable() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (ip netns)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("needs the `ip` tool (iproute2)");
    }
    None
}
