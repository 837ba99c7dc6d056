//! Ctrl-C and SIGTERM: `ipt restore` stops after the current image and exits 130 / 143 with
//! what it wrote intact and no temporary file; a second signal ends any command at once with
//! the first signal's status, never with a panic or a crash; stale temporaries of a killed
//! run are removed by the next one.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ipt_degrade::io::write_png;
use ipt_model::{checkpoint, Ipt, IptConfig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tch::{nn, Device};

fn write_checkpoint(path: &Path) {
    let cfg = IptConfig::tiny(&[2]);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &cfg).unwrap();
    checkpoint::save(path, &vs, &cfg).unwrap();
}

/// `n` inputs of `size`×`size` in `dir/in`.
fn inputs(dir: &Path, n: usize, size: usize) {
    let d = dir.join("in");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..n {
        let img = ndarray::Array3::from_shape_fn((3, size, size), |(c, y, x)| {
            ((x * 7 + y * 13 + c * 50 + i * 31) % 256) as f32
        });
        write_png(&d.join(format!("img{i}.png")), &img).unwrap();
    }
}

/// Starts `ipt ARGS` with stdout and stderr read line by line on threads; returns the child,
/// the lines of both as they come, and stderr's reader thread (its whole text).
fn spawn(
    args: &[&str],
) -> (
    Child,
    mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipt"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let tx_out = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx_out.send(line);
        }
    });
    let err = child.stderr.take().unwrap();
    let tx_err = tx.clone();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            s += &line;
            s.push('\n');
            let _ = tx_err.send(line);
        }
        s
    });
    (child, rx, errs)
}

/// Waits for an output line containing `needle` (at most 5 minutes).
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("no line with {needle:?}: {e}"));
        if line.contains(needle) {
            return;
        }
    }
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn restore_stops_after_the_current_image_on_sigint_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    write_checkpoint(&ckpt);
    inputs(dir.path(), 6, 96);
    for (signal, status) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let out = dir.path().join(format!("out-{status}"));
        std::fs::create_dir_all(&out).unwrap();
        // a temporary left by a killed earlier run (a process id that cannot be running)
        let stale = out.join(".tmp-4194305-aB3dE9.png");
        std::fs::write(&stale, b"partial").unwrap();
        let (mut child, rx, errs) = spawn(&[
            "restore",
            "--weights",
            ckpt.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            dir.path().join("in").to_str().unwrap(),
        ]);
        wait_for(&rx, "->");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let code = child.wait().unwrap().code();
        let stderr = errs.join().unwrap();
        assert_eq!(code, Some(status), "{signal}: {stderr}");
        assert!(
            stderr.contains("stopping after the current image") && stderr.contains("stopped:"),
            "{stderr}"
        );
        assert!(
            stderr.contains("left by an interrupted earlier run"),
            "{stderr}"
        );
        assert!(!stale.exists(), "the stale temporary is removed");
        let written = std::fs::read_dir(&out).unwrap().count();
        assert!((1..6).contains(&written), "{written} outputs: {stderr}");
        assert_eq!(temporaries(&out), Vec::<String>::new());
        for e in std::fs::read_dir(&out).unwrap() {
            ipt_degrade::io::read_image(&e.unwrap().path()).expect("every output is complete");
        }
    }
}

#[test]
fn two_quick_interrupts_exit_cleanly_in_restore_and_training() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    write_checkpoint(&ckpt);
    inputs(dir.path(), 4, 160);
    let out = dir.path().join("out");
    let input = dir.path().join("in");
    let restore = [
        "restore",
        "--weights",
        ckpt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        "name = \"t\"\n[model]\npreset = \"tiny\"\n[tasks]\nnames = [\"sr2\"]\n\
         [data]\nsource = \"embedded\"\nimages = 64\nimage_size = 96\nworkers = 1\n\
         [optim]\nbatch_size = 2\nsteps = 100000\nlr = 1e-4\nmilestones = []\n\
         [checkpoint]\nevery = 100000\n[validation]\nevery = 0\n\
         [runtime]\nlog_every = 1\ntensorboard = false\n",
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let train = [
        "pretrain",
        config.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
    ];
    for (args, started) in [(&restore[..], "->"), (&train[..], "step 2/")] {
        let (mut child, rx, errs) = spawn(args);
        wait_for(&rx, started);
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGINT).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _ = kill(pid, Signal::SIGINT);
        let status = child.wait().unwrap();
        let stderr = errs.join().unwrap();
        assert_eq!(status.code(), Some(130), "{args:?}: {status:?}\n{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Invalid (backend"),
            "{stderr}"
        );
    }
}
