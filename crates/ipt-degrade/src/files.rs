//! Image files on disk: which names count as images, listing them, and writing files atomically.
//!
//! One list of extensions serves every reader of the workspace (training folders, benchmark
//! sets, `ipt restore` inputs): what [`crate::io::read_image`] decodes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Extensions (compared ignoring ASCII case) of the files treated as images: the formats
/// [`crate::io::read_image`] decodes.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (any case). Looks at the name only.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Errors of listing image files.
#[derive(Debug, thiserror::Error)]
#[error("cannot list {path}: {source}")]
pub struct ListError {
    /// The folder (or entry) that could not be read.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// How far [`list_images`] descends into sub-folders (symbolic links are followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Only the files directly in the folder.
    Flat,
    /// Files at most this many folders below it (`Levels(0)` = [`Depth::Flat`]).
    Levels(usize),
    /// Every file below the folder, e.g. ImageNet's `train/<wnid>/*`.
    Recursive,
}

/// The image files in `dir` (see [`is_image_file`]), sorted by path.
pub fn list_images(dir: &Path, depth: Depth) -> Result<Vec<PathBuf>, ListError> {
    let max_depth = match depth {
        Depth::Flat => 1,
        Depth::Levels(n) => n.saturating_add(1),
        Depth::Recursive => usize::MAX,
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .max_depth(max_depth)
    {
        let entry = entry.map_err(|e| ListError {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("file system loop")),
        })?;
        if entry.file_type().is_file() && is_image_file(entry.path()) {
            out.push(entry.into_path());
        }
    }
    out.sort();
    Ok(out)
}

/// Opens `path` for reading if it is a regular file (or a link to one); anything else — a
/// folder, a named pipe (which would block the reader forever), a socket or a device — is an
/// `InvalidInput` error that says what it is.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let kind = std::fs::metadata(path)?.file_type();
    if kind.is_file() {
        return File::open(path);
    }
    let what = if kind.is_dir() {
        "a folder"
    } else {
        special_kind(&kind)
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file: it is {what}"),
    ))
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a file"
}

/// Errors of [`write_atomic`].
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError<E: std::fmt::Display + std::fmt::Debug> {
    /// The temporary file could not be created, synced or renamed into place.
    #[error("{path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The caller's writer failed.
    #[error("{path}: cannot write: {message}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The writer's error.
        source: E,
        /// The writer's error in words, with the temporary file's name replaced by `path`
        /// (the temporary name means nothing to a user, and the file is gone).
        message: String,
    },
}

impl AtomicWriteError<std::io::Error> {
    /// The I/O error behind either variant (a writer of plain bytes fails only with one).
    pub fn into_io_error(self) -> std::io::Error {
        match self {
            AtomicWriteError::Io { source, .. } | AtomicWriteError::Write { source, .. } => source,
        }
    }
}

/// Write `path` atomically: `write` fills a fresh temporary file in the same folder (given by
/// path; its name ends with `path`'s extension so format-sniffing writers work), which is then
/// fsynced and renamed onto `path`; the folder is fsynced last. A crash at any moment leaves
/// either the old file or the new one, never a partial one; on any error the temporary file is
/// removed (it never outlives the call, so a full disk is not kept full).
pub fn write_atomic<E: std::fmt::Display + std::fmt::Debug>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), AtomicWriteError<E>> {
    let io = |source| AtomicWriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut builder = tempfile::Builder::new();
    let prefix = temporary_prefix();
    builder.prefix(&prefix).suffix(&suffix);
    // The usual mode of a new file (0666 less the umask), not the temporary file's private 0600,
    // which the rename would otherwise keep.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).map_err(io)?;
    write(tmp.path()).map_err(|source| AtomicWriteError::Write {
        path: path.to_path_buf(),
        message: source.to_string().replace(
            &tmp.path().display().to_string(),
            &path.display().to_string(),
        ),
        source,
    })?;
    // The writer may have replaced the file behind the handle: sync what the path names now.
    File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // Directory fsync makes the rename durable (best effort where unsupported).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The start of this process's temporary names: `.tmp-<pid>-`, so that a later process can tell
/// whose temporary file it finds ([`remove_stale_temporaries`]).
fn temporary_prefix() -> String {
    format!(".tmp-{}-", std::process::id())
}

/// The process that made temporary file `name` (`.tmp-<pid>-…`), if the name is one of
/// [`write_atomic`]'s.
fn temporary_owner(name: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix(".tmp-")?.split_once('-')?;
    (!rest.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Removes the temporary files that [`write_atomic`] left in `dir` when a process was killed
/// mid-write (SIGKILL, a second Ctrl-C, a power cut): files named `.tmp-<pid>-…` whose process
/// no longer runs. Files of running processes and every other name are left alone. Returns the
/// removed paths. Where the process table cannot be read (no `/proc`), nothing is removed.
pub fn remove_stale_temporaries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_owner) else {
            continue;
        };
        if pid == std::process::id() || proc.join(pid.to_string()).exists() {
            continue;
        }
        if entry.file_type()?.is_file() {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed.push(entry.path()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// [`write_atomic`] of a byte string.
pub fn write_bytes_atomic(
    path: &Path,
    bytes: &[u8],
) -> Result<(), AtomicWriteError<std::io::Error>> {
    write_atomic(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        f.flush()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.png");
        nix_free_mkfifo(&fifo);
        let e = open_regular(&fifo).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("named pipe"), "{e}");
        let e = open_regular(dir.path()).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
        let f = dir.path().join("x.png");
        std::fs::write(&f, b"x").unwrap();
        assert!(open_regular(&f).is_ok());
    }

    /// `mkfifo PATH` (the command, so that the library needs no libc binding for a test).
    #[cfg(unix)]
    fn nix_free_mkfifo(path: &Path) {
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A process id that is not running: the largest pid_max allows is 2^22.
        let dead = (4_194_304u32..4_194_404)
            .find(|p| !Path::new("/proc").join(p.to_string()).exists())
            .unwrap();
        let names = [
            format!(".tmp-{dead}-aB3dE9.png"),
            format!(".tmp-{}-xYz123.png", std::process::id()),
            ".tmp-123456.png".to_string(),
            "photo.png".to_string(),
            format!(".tmp-{dead}-"),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let removed = remove_stale_temporaries(dir.path()).unwrap();
        if Path::new("/proc/self").exists() {
            assert_eq!(removed, vec![dir.path().join(&names[0])]);
            for n in &names[1..] {
                assert!(dir.path().join(n).exists(), "{n} is kept");
            }
        } else {
            assert!(removed.is_empty());
        }
        assert_eq!(
            temporary_owner(&format!("{}x", temporary_prefix())),
            Some(std::process::id())
        );
    }

    #[test]
    fn extensions_any_case() {
        for ok in [
            "a.JPEG",
            "b.jpg",
            "c.Png",
            "d.bmp",
            "e.WEBP",
            "dir/x.jpeg",
            "f.TIF",
            "g.tiff",
        ] {
            assert!(is_image_file(Path::new(ok)), "{ok}");
        }
        for bad in ["a.txt", "b", "d.jpg.bak", "png"] {
            assert!(!is_image_file(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn listing_is_sorted_and_flat_or_recursive() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("n01/inner");
        std::fs::create_dir_all(&sub).unwrap();
        for p in [
            sub.join("b.JPEG"),
            dir.path().join("c.tif"),
            dir.path().join("a.png"),
            dir.path().join("notes.txt"),
        ] {
            std::fs::write(&p, b"x").unwrap();
        }
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            rel(list_images(dir.path(), Depth::Recursive).unwrap()),
            ["a.png", "c.tif", "n01/inner/b.JPEG"]
        );
        assert_eq!(
            rel(list_images(dir.path(), Depth::Flat).unwrap()),
            ["a.png", "c.tif"]
        );
        assert_eq!(
            list_images(dir.path(), Depth::Levels(1)).unwrap().len(),
            2,
            "b.JPEG is two levels down"
        );
        assert_eq!(list_images(dir.path(), Depth::Levels(2)).unwrap().len(), 3);
        let err = list_images(&dir.path().join("absent"), Depth::Flat).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_writes_get_the_mode_of_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = tmp.path().join("plain.txt");
        File::create(&plain).unwrap();
        let atomic = tmp.path().join("atomic.txt");
        write_bytes_atomic(&atomic, b"x").unwrap();
        // 0666 less the umask, as `File::create` gives, not tempfile's private 0600.
        assert_eq!(mode(&atomic), mode(&plain));
        // A writer that writes through the path (as image's `save` does) keeps it too.
        let png = tmp.path().join("out.png");
        write_atomic(&png, |p| std::fs::write(p, b"y")).unwrap();
        assert_eq!(mode(&png), mode(&plain));
    }

    #[test]
    fn atomic_write_replaces_and_cleans_up_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_bytes_atomic(&p, b"one").unwrap();
        write_bytes_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // A failing writer keeps the old file and leaves no temporary file behind.
        let r = write_atomic(&p, |tmp: &Path| {
            std::fs::write(tmp, b"partial").unwrap();
            Err::<(), _>("disk full")
        });
        assert!(matches!(r, Err(AtomicWriteError::Write { .. })));
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.json"]);
        // The temporary path keeps the extension (format-sniffing writers need it).
        write_atomic(&dir.path().join("y.png"), |tmp: &Path| {
            assert_eq!(tmp.extension().unwrap(), "png");
            std::fs::write(tmp, b"p")
        })
        .unwrap();
    }
}
