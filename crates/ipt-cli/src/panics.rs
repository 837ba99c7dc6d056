//! The last line of defence: a panic that reaches `main` (tch turns a failed libtorch call into a
//! panic; an allocation libtorch cannot make is the common one) ends the command with an error in
//! words, not a Rust panic dump.
//!
//! [`install`] replaces the panic hook: on the main thread it only records the message and the
//! place (the panics that the code catches on purpose, such as a decoder's on a corrupt file, are
//! then no longer printed either); on other threads it prints as Rust does. [`run`] catches a
//! panic of the main thread and turns it into a [`Crash`]: memory errors say so and name the
//! knobs, anything else is reported as an internal error with where it happened.

use std::sync::Mutex;

/// The last panic of the main thread: message and location.
static LAST: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Installs the hook described in the module docs.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("main") {
            default(info);
            return;
        }
        let message = payload_text(info.payload());
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((message, place));
    }));
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A panic that reached `main`, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// libtorch (or the allocator) could not get memory.
    Memory {
        /// libtorch's words (the size it tried).
        detail: String,
    },
    /// Anything else: a bug.
    Internal {
        /// The panic message.
        message: String,
        /// Where it happened.
        place: String,
    },
}

impl Crash {
    /// Classifies a panic message: allocation failures of libtorch's CPU and CUDA allocators and
    /// of Rust's are memory; everything else is internal.
    pub fn of(message: &str, place: &str) -> Crash {
        let lower = message.to_ascii_lowercase();
        let memory = [
            "can't allocate memory",
            "out of memory",
            "memory allocation of",
            "cannot allocate memory",
            "bad_alloc",
        ];
        if memory.iter().any(|m| lower.contains(m)) {
            // libtorch's sentence (from the allocator's name when it is there), without tch's
            // `Torch("…")` wrapping and the C++ stack frames that follow (`\n` escaped or not)
            let start = message.find("DefaultCPUAllocator").unwrap_or(0);
            let rest = &message[start..];
            let end = [rest.find("\\n"), rest.find('\n')]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(rest.len());
            let detail = rest[..end]
                .trim_start_matches("called `Result::unwrap()` on an `Err` value: ")
                .trim_start_matches("Torch(\"")
                .trim_end_matches("\")")
                .trim()
                .to_string();
            Crash::Memory { detail }
        } else {
            Crash::Internal {
                message: message.to_string(),
                place: place.to_string(),
            }
        }
    }

    /// The exit status: 1 for memory (a condition of this run), 101 for a bug (as Rust's panics).
    pub fn exit_status(&self) -> u8 {
        match self {
            Crash::Memory { .. } => 1,
            Crash::Internal { .. } => 101,
        }
    }
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Crash::Memory { detail } => write!(
                f,
                "error: not enough memory: {detail}\n  what helps: a smaller batch (optim.batch_size \
                 in the config), fewer windows per call (--crop-batch), the fast window layout \
                 (--chop fast), or a smaller image; --memory-limit sets what restore may plan for"
            ),
            Crash::Internal { message, place } => write!(
                f,
                "error: internal error (a bug in ipt-rs; please report it with the command you ran): \
                 {message} (at {place})"
            ),
        }
    }
}

/// Runs `f`; a panic of it becomes `Err(Crash)`.
pub fn run<T>(f: impl FnOnce() -> T) -> Result<T, Crash> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let recorded = LAST.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (message, place) = recorded.unwrap_or_else(|| (payload_text(&*payload), String::new()));
        Crash::of(&message, &place)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_failures_are_memory_errors_in_words() {
        let tch = "called `Result::unwrap()` on an `Err` value: Torch(\"[enforce fail at \
                   alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried \
                   to allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)\")";
        let crash = Crash::of(tch, "x.rs:1");
        let Crash::Memory { detail } = &crash else {
            panic!("{crash:?}")
        };
        assert!(
            detail.starts_with("DefaultCPUAllocator") && detail.ends_with("memory)"),
            "{detail}"
        );
        // with libtorch's stack frames after it, escaped as tch's Debug output has them
        let framed = format!(
            "{}\\nframe #0: c10::ThrowEnforceNotMet(…)\\n\")",
            &tch[..tch.len() - 2]
        );
        assert_eq!(Crash::of(&framed, ""), crash);
        let text = crash.to_string();
        assert!(
            text.contains("40000000000 bytes") && text.contains("--crop-batch"),
            "{text}"
        );
        assert_eq!(crash.exit_status(), 1);
        assert!(matches!(
            Crash::of("CUDA out of memory. Tried to allocate 2.00 GiB", ""),
            Crash::Memory { .. }
        ));
        let bug = Crash::of(
            "index out of bounds: the len is 3 but the index is 7",
            "a.rs:9",
        );
        assert_eq!(bug.exit_status(), 101);
        assert!(bug.to_string().contains("a bug in ipt-rs") && bug.to_string().contains("a.rs:9"));
    }

    #[test]
    fn a_panic_becomes_a_crash_value() {
        let got = run(|| -> u32 { panic!("DefaultCPUAllocator: can't allocate memory: 9 bytes") });
        assert!(matches!(got, Err(Crash::Memory { .. })), "{got:?}");
        assert_eq!(run(|| 5), Ok(5));
    }
}
