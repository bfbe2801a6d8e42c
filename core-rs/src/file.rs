//! Opening and probing one file safely: no symlink swapped in at the last
//! moment, no FIFO that blocks, no file outside the allowed roots, and no
//! panic that escapes.

use std::borrow::Cow;
use std::cell::Cell;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result};
use crate::paths;
use crate::probe::reader::{Reader, DEFAULT_READ_BUDGET};
use crate::probe::{probe_reader, ProbeOutcome};

/// Bytes read from the file per buffer fill. Small, because headers are
/// small and a probe that seeks around should not drag in data it skips.
const BUFFER_SIZE: usize = 4096;

/// An opened regular file and its size.
pub struct OpenedFile {
    /// The file, opened read-only.
    pub file: File,
    /// Its size in bytes at the time of `fstat`.
    pub size: u64,
}

/// Opens `path` for reading without following a final symlink and without
/// blocking on a FIFO, then checks with `fstat` that it is a regular file.
///
/// With `roots` (already resolved, see [`paths::canonical_roots`]), a final
/// symlink is resolved and its target opened the same way, and the opened
/// file's real path, read back from `/proc/self/fd`, must lie under a root.
/// Checking the opened descriptor, not the name, means a symlink swapped in
/// after any earlier check cannot make the core read outside the roots.
pub fn open_regular(path: &Path, roots: Option<&[PathBuf]>) -> Result<OpenedFile> {
    paths::check_syntax(path)?;
    if let Some(opened) = roots.and_then(|roots| open_beneath_fast(path, roots)) {
        return regular_only(opened);
    }
    let file = match open_no_follow(path) {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            if roots.is_none() {
                return Err(Error::new(
                    ErrorKind::NotAFile,
                    "the path is a symbolic link, which is not followed without allowed roots",
                ));
            }
            let target = path.canonicalize()?;
            open_no_follow(&target).map_err(|err| open_error(&err))?
        }
        Err(err) => return Err(open_error(&err)),
    };
    if let Some(roots) = roots {
        let real = real_path(&file)?;
        if !paths::is_under_any(&real, roots) {
            return Err(paths::outside_roots_error(&real, roots));
        }
    }
    regular_only(file)
}

/// Checks with `fstat` that an opened file is a regular file.
fn regular_only(file: File) -> Result<OpenedFile> {
    let metadata = file.metadata()?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let what = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_socket() {
            "a socket"
        } else if file_type.is_block_device() {
            "a block device"
        } else {
            "a character device"
        };
        return Err(Error::new(
            ErrorKind::NotAFile,
            format!("the path is {what}, not a regular file"),
        ));
    }
    Ok(OpenedFile {
        size: metadata.len(),
        file,
    })
}

/// The `struct open_how` argument of `openat2` (linux/openat2.h), declared
/// here because the `libc` crate marks its copy non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Whether `openat2` can be called. It is cleared after the first ENOSYS. A
/// kernel older than 5.6, or a seccomp filter without the call, then costs
/// one failed call per process instead of one per file.
static OPENAT2_AVAILABLE: AtomicBool = AtomicBool::new(true);

/// Opens `path` with `openat2` and `RESOLVE_NO_SYMLINKS` when that alone
/// proves the file lies under a root, which saves the `/proc/self/fd`
/// read-back of [`open_regular`].
///
/// The proof: `path` is absolute, has no `..` component and starts with a
/// resolved root, and the kernel followed no symlink in any component while
/// it opened the path. So every step went down into the child named in the
/// path. The file opened is the one below the root by that name at the time
/// of the open, even when a component is swapped for a symlink meanwhile.
/// Returns None (and the caller takes the slow path, which also
/// builds the error) when the path does not qualify, when any component is
/// a symlink, on any other error, or where `openat2` is missing.
fn open_beneath_fast(path: &Path, roots: &[PathBuf]) -> Option<File> {
    if !path.is_absolute()
        || path.components().any(|c| c == Component::ParentDir)
        || !paths::is_under_any(path, roots)
        || !OPENAT2_AVAILABLE.load(Ordering::Relaxed)
    {
        return None;
    }
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let how = OpenHow {
        flags: u64::try_from(flags).ok()?,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `c_path` is NUL-terminated and `how` is a valid `open_how`;
    // both outlive the call, and the size passed is the struct's own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            std::ptr::addr_of!(how),
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            OPENAT2_AVAILABLE.store(false, Ordering::Relaxed);
        }
        return None;
    }
    let fd = RawFd::try_from(fd).ok()?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else owns.
    Some(unsafe { File::from_raw_fd(fd) })
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

fn open_error(err: &io::Error) -> Error {
    match err.raw_os_error() {
        // Opening a Unix socket fails with ENXIO.
        Some(libc::ENXIO) => Error::new(
            ErrorKind::NotAFile,
            "the path is a socket or a device without a driver, not a regular file",
        ),
        Some(libc::ELOOP) => Error::new(ErrorKind::Io, "too many levels of symbolic links"),
        Some(libc::ENAMETOOLONG) => Error::new(
            ErrorKind::InvalidPath,
            "the path or one of its components is too long",
        ),
        Some(libc::ENOTDIR) => Error::new(
            ErrorKind::NotFound,
            "a component of the path is not a directory",
        ),
        _ => {
            let kind = Error::from(io::Error::new(err.kind(), "")).kind();
            Error::new(kind, err.to_string().to_lowercase())
        }
    }
}

/// The real path of an open file, as the kernel records it.
fn real_path(file: &File) -> Result<PathBuf> {
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    std::fs::read_link(&link).map_err(|err| {
        Error::new(
            ErrorKind::Io,
            format!(
                "cannot read the opened file's real path from {link}: {err}; is /proc mounted?"
            ),
        )
    })
}

/// The identity of an open file as `fstat` reports it: what a scan compares
/// with the stat from its walk to tell whether the file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time in nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number of the file system holding the file.
    pub device: u64,
}

impl FileStat {
    /// Reads the stat of an open file.
    pub fn of(file: &File) -> io::Result<Self> {
        Ok(Self::from_metadata(&file.metadata()?))
    }

    /// Converts a stat result, with both times in nanoseconds.
    #[must_use]
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        FileStat {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// A probe with what a scan needs to trust it, all read through one
/// descriptor: the stat after the reads and, when asked for, the content
/// fingerprint.
#[derive(Debug)]
pub struct CheckedProbe {
    /// The probe's result.
    pub outcome: ProbeOutcome,
    /// The opened file's stat, taken after the probe and the fingerprint
    /// read it; None when the file could not be opened or `fstat` failed.
    pub stat_after: Option<FileStat>,
    /// The content fingerprint (see [`crate::fingerprint`]); None unless it
    /// was asked for and the file was opened.
    pub fingerprint: Option<Result<[u8; 16]>>,
}

/// Probes one file: opens it with [`open_regular`], detects the container and
/// reads its headers. Never panics: a panic inside a parser becomes an
/// [`ErrorKind::Internal`] error.
#[must_use]
pub fn probe_file(path: &Path, roots: Option<&[PathBuf]>) -> ProbeOutcome {
    probe_file_checked(path, roots, false).outcome
}

/// Probes one file like [`probe_file`], then, through the same descriptor,
/// computes its fingerprint (when `fingerprint` is true) and reads its stat.
///
/// A caller that compares `stat_after` with a stat taken before the call
/// knows whether the file changed while it was read, with no further
/// `stat` of the path (which a swapped-in symlink could redirect).
#[must_use]
pub fn probe_file_checked(
    path: &Path,
    roots: Option<&[PathBuf]>,
    fingerprint: bool,
) -> CheckedProbe {
    let bytes_read = Rc::new(Cell::new(0u64));
    let counter = Rc::clone(&bytes_read);
    let mut stat_after = None;
    let mut digest = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let opened = open_regular(path, roots).map_err(|err| (err, 0))?;
        // The fingerprint's first block also serves the probe's first reads,
        // which saves one `pread` per file.
        let head = fingerprint.then(|| crate::fingerprint::read_head(&opened.file, opened.size));
        let probed = probe_opened(
            &opened,
            &counter,
            head.as_ref().and_then(|h| h.as_deref().ok()),
        );
        if let Some(head) = head {
            let result = head.and_then(|head| {
                crate::fingerprint::fingerprint_with_head(&opened.file, opened.size, &head)
            });
            digest = Some(result.map_err(|err| err.with_path(path)));
        }
        stat_after = FileStat::of(&opened.file).ok();
        probed
    }));
    let (result, size) = match outcome {
        Ok(Ok((info, size))) => (Ok(info), size),
        Ok(Err((err, size))) => (Err(err), size),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let err = Error::new(
                ErrorKind::Internal,
                format!("the probe panicked ({detail}); this is a bug in reelwatch, please report it with the file"),
            );
            (Err(err), 0)
        }
    };
    CheckedProbe {
        outcome: ProbeOutcome {
            result: result.map_err(|err| err.with_path(path)),
            bytes_read: bytes_read.get(),
            size,
        },
        stat_after,
        fingerprint: digest,
    }
}

type ProbeResult = std::result::Result<(crate::probe::MediaInfo, u64), (Error, u64)>;

fn probe_opened(opened: &OpenedFile, counter: &Rc<Cell<u64>>, head: Option<&[u8]>) -> ProbeResult {
    let size = opened.size;
    if size == 0 {
        return Err((
            Error::new(ErrorKind::Empty, "the file is empty (0 bytes)"),
            0,
        ));
    }
    let mut source = BufferedFile::new(&opened.file, size, Rc::clone(counter));
    if let Some(head) = head {
        source.preload(head);
    }
    let mut reader = Reader::new(source, size, DEFAULT_READ_BUDGET);
    probe_reader(&mut reader)
        .map(|info| (info, size))
        .map_err(|err| (err, size))
}

/// Probes many files in parallel on `threads` threads (0: one per CPU) and
/// returns the outcomes in input order.
#[must_use]
pub fn probe_many(
    paths: &[PathBuf],
    roots: Option<&[PathBuf]>,
    threads: usize,
) -> Vec<ProbeOutcome> {
    let roots = roots.map(paths::canonical_roots);
    let run = || -> Vec<ProbeOutcome> {
        paths
            .par_iter()
            .map(|path| probe_file(path, roots.as_deref()))
            .collect()
    };
    run_in_pool(threads, run)
}

/// Probes many files in parallel like [`probe_many`], each with
/// [`probe_file_checked`], and returns the results in input order.
#[must_use]
pub fn probe_many_checked(
    paths: &[PathBuf],
    roots: Option<&[PathBuf]>,
    threads: usize,
    fingerprint: bool,
) -> Vec<CheckedProbe> {
    let roots = roots.map(paths::canonical_roots);
    let run = || -> Vec<CheckedProbe> {
        paths
            .par_iter()
            .map(|path| probe_file_checked(path, roots.as_deref(), fingerprint))
            .collect()
    };
    run_in_pool(threads, run)
}

/// Runs `work` on a pool of `threads` threads, or on rayon's global pool
/// (one thread per CPU) when `threads` is 0 or a pool cannot be built.
pub fn run_in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    if threads == 0 {
        return work();
    }
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

/// A file read with positioned reads (`pread`) through a small buffer that
/// survives seeks within it, counting the bytes it takes from the file.
struct BufferedFile<'a> {
    file: &'a File,
    len: u64,
    pos: u64,
    buffer: Cow<'a, [u8]>,
    buffer_start: u64,
    /// Bytes of a preloaded buffer not yet added to `counter`: they count
    /// once the probe first takes data from that buffer.
    uncounted: u64,
    counter: Rc<Cell<u64>>,
}

impl<'a> BufferedFile<'a> {
    fn new(file: &'a File, len: u64, counter: Rc<Cell<u64>>) -> Self {
        BufferedFile {
            file,
            len,
            pos: 0,
            buffer: Cow::Borrowed(&[]),
            buffer_start: 0,
            uncounted: 0,
            counter,
        }
    }

    /// Serves reads from `data`, the file's bytes from offset 0 already read
    /// by the caller, until the position leaves them.
    fn preload(&mut self, data: &'a [u8]) {
        self.uncounted = data.len() as u64;
        self.buffer = Cow::Borrowed(data);
        self.buffer_start = 0;
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let count = self.file.read_at(buf, offset)?;
        self.counter.set(self.counter.get() + count as u64);
        Ok(count)
    }
}

impl Read for BufferedFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if self.pos < self.buffer_start || self.pos >= buffer_end {
            if buf.len() >= BUFFER_SIZE {
                let count = self.read_at(buf, self.pos)?;
                self.pos += count as u64;
                return Ok(count);
            }
            let mut fresh = vec![0; BUFFER_SIZE];
            let count = self.read_at(&mut fresh, self.pos)?;
            fresh.truncate(count);
            self.buffer = Cow::Owned(fresh);
            self.buffer_start = self.pos;
            self.uncounted = 0;
            if count == 0 {
                return Ok(0);
            }
        }
        self.counter.set(self.counter.get() + self.uncounted);
        self.uncounted = 0;
        // `pos` is inside the buffer here, so the offset fits in usize.
        let offset = usize::try_from(self.pos - self.buffer_start).unwrap_or(0);
        let available = &self.buffer[offset..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.pos += count as u64;
        Ok(count)
    }
}

impl Seek for BufferedFile<'_> {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let new = match target {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let new = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        self.pos = new;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("reelwatch-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn empty_file_is_reported_as_empty() {
        let dir = temp_dir("empty");
        let path = dir.join("empty.mp4");
        File::create(&path).unwrap();
        let outcome = probe_file(&path, None);
        assert_eq!(outcome.result.unwrap_err().kind(), ErrorKind::Empty);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn directory_and_fifo_are_not_files() {
        let dir = temp_dir("special");
        let outcome = probe_file(&dir, None);
        assert_eq!(outcome.result.unwrap_err().kind(), ErrorKind::NotAFile);
        let fifo = dir.join("pipe.mkv");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let outcome = probe_file(&fifo, None);
        assert_eq!(outcome.result.unwrap_err().kind(), ErrorKind::NotAFile);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn symlink_out_of_roots_is_rejected() {
        let dir = temp_dir("symlink");
        let root = dir.join("root");
        let outside = dir.join("root-old");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let target = outside.join("secret.mp4");
        File::create(&target).unwrap().write_all(b"data").unwrap();
        std::os::unix::fs::symlink(&target, root.join("link.mp4")).unwrap();
        let roots = vec![root.clone()];
        let outcome = probe_file(&root.join("link.mp4"), Some(&roots));
        assert_eq!(outcome.result.unwrap_err().kind(), ErrorKind::OutsideRoots);
        assert_eq!(outcome.bytes_read, 0);
        let unchecked = probe_file(&root.join("link.mp4"), None);
        assert_eq!(unchecked.result.unwrap_err().kind(), ErrorKind::NotAFile);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fast_open_symlink_free_paths_only() {
        let dir = temp_dir("fast-open");
        let root = dir.join("root");
        let outside = dir.join("outside");
        std::fs::create_dir_all(root.join("shows")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        File::create(root.join("shows/clip.mp4"))
            .unwrap()
            .write_all(b"data")
            .unwrap();
        File::create(outside.join("secret.mp4"))
            .unwrap()
            .write_all(b"secret")
            .unwrap();
        // A folder inside the root swapped for a symlink to a folder outside.
        std::os::unix::fs::symlink(&outside, root.join("swapped")).unwrap();
        let roots = vec![root.clone()];

        let plain = open_beneath_fast(&root.join("shows/clip.mp4"), &roots);
        let through_link = open_beneath_fast(&root.join("swapped/secret.mp4"), &roots);
        let dotdot = open_beneath_fast(&root.join("shows/../shows/clip.mp4"), &roots);
        let elsewhere = open_beneath_fast(&outside.join("secret.mp4"), &roots);
        let relative = open_beneath_fast(Path::new("root/shows/clip.mp4"), &roots);
        let rejected = open_regular(&root.join("swapped/secret.mp4"), Some(&roots));

        assert_eq!(plain.unwrap().metadata().unwrap().len(), 4);
        assert!(through_link.is_none());
        assert!(dotdot.is_none());
        assert!(elsewhere.is_none());
        assert!(relative.is_none());
        assert_eq!(rejected.err().unwrap().kind(), ErrorKind::OutsideRoots);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fast_open_fallback_for_links() {
        let dir = temp_dir("fast-fallback");
        let target = dir.join("clip.mp4");
        File::create(&target).unwrap().write_all(b"data").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("link.mp4")).unwrap();
        let roots = vec![dir.clone()];

        let via_link = open_regular(&dir.join("link.mp4"), Some(&roots)).unwrap();
        let folder = open_regular(&dir, Some(&roots));
        let missing = open_regular(&dir.join("missing.mp4"), Some(&roots));

        assert_eq!(via_link.size, 4);
        assert_eq!(folder.err().unwrap().kind(), ErrorKind::NotAFile);
        assert_eq!(missing.err().unwrap().kind(), ErrorKind::NotFound);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_content_is_unsupported_and_counts_bytes() {
        let dir = temp_dir("unknown");
        let path = dir.join("notes.mp4");
        File::create(&path)
            .unwrap()
            .write_all(b"just some text")
            .unwrap();
        let outcome = probe_file(&path, None);
        let err = outcome.result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("text"), "{err}");
        assert_eq!(outcome.bytes_read, 14);
        assert_eq!(outcome.size, 14);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn socket_and_file_as_folder_are_rejected() {
        let dir = temp_dir("socket");
        let socket = dir.join("control.mkv");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let file = dir.join("clip.mp4");
        File::create(&file).unwrap().write_all(b"data").unwrap();

        let socket_err = probe_file(&socket, None).result.unwrap_err();
        let below_file_err = probe_file(&file.join("inner.mp4"), None)
            .result
            .unwrap_err();

        assert_eq!(socket_err.kind(), ErrorKind::NotAFile);
        assert!(socket_err.message().contains("socket"), "{socket_err}");
        assert_eq!(below_file_err.kind(), ErrorKind::NotFound);
        assert!(
            below_file_err.message().contains("not a directory"),
            "{below_file_err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn probe_many_keeps_input_order_on_a_pool() {
        let dir = temp_dir("many");
        let text = dir.join("notes.mp4");
        File::create(&text)
            .unwrap()
            .write_all(b"plain text")
            .unwrap();
        let empty = dir.join("empty.mkv");
        File::create(&empty).unwrap();
        let missing = dir.join("missing.avi");
        let paths = vec![text, empty, missing];

        let outcomes = probe_many(&paths, Some(std::slice::from_ref(&dir)), 2);

        let kinds: Vec<ErrorKind> = outcomes
            .iter()
            .map(|outcome| outcome.result.as_ref().unwrap_err().kind())
            .collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::Unsupported,
                ErrorKind::Empty,
                ErrorKind::NotFound
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn buffered_file_seeks_and_reads_large_blocks() {
        let dir = temp_dir("buffered");
        let path = dir.join("data.bin");
        let data: Vec<u8> = (0..3 * BUFFER_SIZE)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let counter = Rc::new(Cell::new(0));
        let file = File::open(&path).unwrap();
        let mut source = BufferedFile::new(&file, data.len() as u64, counter);

        let block = i64::try_from(BUFFER_SIZE).unwrap();
        let mut large = vec![0; BUFFER_SIZE];
        source.seek(SeekFrom::End(-block)).unwrap();
        source.read_exact(&mut large).unwrap();
        let mut small = [0; 4];
        source.seek(SeekFrom::Current(-8)).unwrap();
        source.read_exact(&mut small).unwrap();
        let before_start = source.seek(SeekFrom::Current(-4 * block));

        assert_eq!(large, data[2 * BUFFER_SIZE..]);
        assert_eq!(small, data[data.len() - 8..data.len() - 4]);
        assert_eq!(
            before_start.unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(source.read(&mut small).unwrap(), 4);
        source.seek(SeekFrom::Start(data.len() as u64)).unwrap();
        assert_eq!(source.read(&mut small).unwrap(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn preloaded_head_serves_reads_and_counts_once() {
        let dir = temp_dir("preload");
        let path = dir.join("data.bin");
        let data: Vec<u8> = (0..2 * BUFFER_SIZE)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let counter = Rc::new(Cell::new(0));
        let file = File::open(&path).unwrap();
        let head = data[..100].to_vec();
        let mut source = BufferedFile::new(&file, data.len() as u64, Rc::clone(&counter));
        source.preload(&head);

        let before_reads = counter.get();
        let mut first = [0; 10];
        source.read_exact(&mut first).unwrap();
        let mut second = [0; 10];
        source.read_exact(&mut second).unwrap();
        let after_head = counter.get();
        source.seek(SeekFrom::Start(200)).unwrap();
        let mut beyond = [0; 4];
        source.read_exact(&mut beyond).unwrap();

        assert_eq!(before_reads, 0);
        assert_eq!(first, data[..10]);
        assert_eq!(second, data[10..20]);
        assert_eq!(after_head, 100);
        assert_eq!(beyond, data[200..204]);
        assert_eq!(counter.get(), 100 + BUFFER_SIZE as u64);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn checked_probe_returns_stat_and_fingerprint() {
        let dir = temp_dir("checked");
        let path = dir.join("notes.mp4");
        File::create(&path)
            .unwrap()
            .write_all(b"plain text")
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();

        let checked = probe_file_checked(&path, Some(std::slice::from_ref(&dir)), true);
        let plain = probe_file_checked(&path, None, false);
        let missing = probe_file_checked(&dir.join("missing.mkv"), None, true);

        let stat = checked.stat_after.unwrap();
        assert_eq!(stat.size, 10);
        assert_eq!(stat.inode, meta.ino());
        assert_eq!(stat.device, meta.dev());
        assert_eq!(
            stat.mtime_ns,
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
        );
        assert_eq!(
            stat.ctime_ns,
            meta.ctime() * 1_000_000_000 + meta.ctime_nsec()
        );
        assert_eq!(
            checked.fingerprint.unwrap().unwrap(),
            crate::fingerprint::fingerprint_file(&path).unwrap()
        );
        assert_eq!(
            checked.outcome.result.unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(checked.outcome.bytes_read, 10);
        assert_eq!(plain.stat_after, Some(stat));
        assert!(plain.fingerprint.is_none());
        assert!(missing.stat_after.is_none());
        assert!(missing.fingerprint.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_file_is_not_found() {
        let outcome = probe_file(Path::new("/nonexistent/reelwatch/a.mp4"), None);
        assert_eq!(outcome.result.unwrap_err().kind(), ErrorKind::NotFound);
    }
}
