//! Ctrl-C and SIGTERM for the long commands (`pretrain`, `finetune`, `restore`): the first
//! signal asks the work to stop at its next safe point (the command decides what that is and
//! says so); a second one ends the process at once with `_exit`, which runs no exit handlers,
//! so it cannot race libtorch's teardown on another thread (a plain `exit` from the signal
//! thread did: "Invalid (backend, op) pair", SIGSEGV). Files are written atomically, so an
//! abrupt end leaves at worst a temporary file, removed by the next run
//! (`ipt_degrade::files::remove_stale_temporaries`). The exit status is 128 + the first signal
//! (130 for SIGINT, 143 for SIGTERM), as shells report it.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The first stop signal received, if any (shared with the handler thread).
#[derive(Debug, Clone, Default)]
pub struct Interrupts(Arc<AtomicI32>);

impl Interrupts {
    /// Catches SIGINT and SIGTERM: `on_first(what)` runs on the first (`what` names the signal
    /// in words); the second ends the process. If the handler cannot be installed, a warning is
    /// printed and signals keep their default action (the process ends at once).
    pub fn install(on_first: impl Fn(&str) + Send + 'static) -> Self {
        let first = Interrupts::default();
        let seen = first.clone();
        match Signals::new([SIGINT, SIGTERM]) {
            Ok(mut signals) => {
                std::thread::spawn(move || {
                    for sig in signals.forever() {
                        if seen.0.load(Ordering::SeqCst) != 0 {
                            eprintln!("\nsecond interrupt: exiting now");
                            // SAFETY: _exit ends the process without running anything else.
                            unsafe { nix::libc::_exit(128 + seen.0.load(Ordering::SeqCst)) };
                        }
                        seen.0.store(sig, Ordering::SeqCst);
                        on_first(if sig == SIGTERM {
                            "SIGTERM"
                        } else {
                            "interrupt"
                        });
                    }
                });
            }
            Err(e) => {
                eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupt stops at once")
            }
        }
        first
    }

    /// The exit status for a command stopped by the first signal: 128 + its number (130 for
    /// SIGINT, 143 for SIGTERM); 130 if none was received.
    pub fn exit_status(&self) -> i32 {
        match self.0.load(Ordering::SeqCst) {
            0 => 128 + SIGINT,
            sig => 128 + sig,
        }
    }
}
