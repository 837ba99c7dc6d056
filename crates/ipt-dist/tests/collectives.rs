//! Multi-process tests of the c10d shim: real ranks (the `ipt-dist-check` binary), Gloo over TCP, tiny tensors.
//!
//! - two ranks on loopback run every collective and compare with exact expected values;
//! - a rank killed with SIGKILL, or stopped with SIGSTOP, makes the survivor fail within the timeout with a message
//!   naming rank 1, never hang or abort;
//! - a rank whose peers never come fails to connect within the timeout;
//! - two "machines": two network namespaces joined by a veth pair (root and `ip` only; skipped otherwise).

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use ipt_dist::testing::{free_port, netns_unavailable, rank_cmd, Netns, Rank};

/// The binary every rank runs.
fn check() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ipt-dist-check"))
}

fn local_ranks(world: usize, args: &[&str]) -> Vec<Rank> {
    let port = free_port();
    (0..world)
        .map(|r| Rank::spawn(rank_cmd(check(), &[], r, world, "127.0.0.1", port, args)))
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
fn a_busy_rendezvous_port_is_reported_as_such() {
    // another program already listens on MASTER_PORT: rank 0 cannot host the store there
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut rank0 = Rank::spawn(rank_cmd(
        check(),
        &[],
        0,
        2,
        "127.0.0.1",
        port,
        &["--timeout", "2"],
    ));
    let (status, out) = rank0.finish(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "{status:?}:\n{out}"
    );
    assert!(
        out.contains("already in use") && !out.contains("a peer was lost"),
        "{out}"
    );
}

#[test]
fn a_rank_whose_peers_never_come_fails_to_connect_within_the_timeout() {
    // rank 1 alone: the store on rank 0 never appears
    let port = free_port();
    let start = Instant::now();
    let mut lone = Rank::spawn(rank_cmd(
        check(),
        &[],
        1,
        2,
        "127.0.0.1",
        port,
        &["--timeout", "2"],
    ));
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

#[test]
fn two_machines_in_network_namespaces() {
    if let Some(why) = netns_unavailable() {
        eprintln!("skipped: two_machines_in_network_namespaces {why}");
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
                check(),
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
