//! Parallel directory walks that list candidate video files with the
//! metadata the catalog compares (size, times, inode, device).
//!
//! Built on the `ignore` crate's parallel walker with all of its ignore-file
//! filters turned off. Symlinks are followed only when their target resolves
//! inside an allowed root; loops are detected by the walker.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ignore::{DirEntry, WalkBuilder, WalkState};

use crate::error::{Error, ErrorKind};
use crate::file::FileStat;
use crate::paths;

/// One regular file found by [`walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// The path as reached from the root (through symlinks, if any).
    pub path: PathBuf,
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

/// A path the walk could not list or chose to skip, with the reason.
#[derive(Debug, Clone)]
pub struct WalkError {
    /// The path concerned.
    pub path: PathBuf,
    /// Why it was skipped.
    pub error: Error,
}

/// Everything one walk found.
#[derive(Debug, Clone, Default)]
pub struct WalkOutput {
    /// Matching regular files, sorted by path bytes.
    pub files: Vec<WalkEntry>,
    /// Per-path errors and skipped symlinks, sorted by path bytes.
    pub errors: Vec<WalkError>,
    /// Directories entered, the root included.
    pub dirs: u64,
}

/// What to list and where symlinks may lead.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    extensions: HashSet<Vec<u8>>,
    ignore: GlobSet,
    allowed_roots: Vec<PathBuf>,
    threads: usize,
}

impl WalkOptions {
    /// Builds options: `extensions` with or without the leading dot, matched
    /// case-insensitively; `ignore_globs` matched against each file and
    /// directory name (not the whole path); `allowed_roots` where symlinks
    /// may lead (the walk's root alone when empty).
    ///
    /// Returns an error message naming the pattern when a glob is invalid.
    pub fn new(
        extensions: &[String],
        ignore_globs: &[String],
        allowed_roots: &[PathBuf],
    ) -> std::result::Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for pattern in ignore_globs {
            let glob = Glob::new(pattern)
                .map_err(|err| format!("invalid ignore pattern {pattern:?}: {err}"))?;
            builder.add(glob);
        }
        let ignore = builder
            .build()
            .map_err(|err| format!("invalid ignore patterns: {err}"))?;
        let extensions = extensions
            .iter()
            .map(|ext| {
                ext.trim_start_matches('.')
                    .to_ascii_lowercase()
                    .into_bytes()
            })
            .collect();
        Ok(WalkOptions {
            extensions,
            ignore,
            allowed_roots: paths::canonical_roots(allowed_roots),
            threads: 0,
        })
    }

    /// Sets the number of walker threads (0: chosen by the walker).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    fn wants(&self, name: &OsStr) -> bool {
        let Some(ext) = Path::new(name).extension() else {
            return false;
        };
        self.extensions
            .contains(&ext.as_bytes().to_ascii_lowercase())
    }
}

#[derive(Default)]
struct Collected {
    files: Vec<WalkEntry>,
    errors: Vec<WalkError>,
}

/// Walks `root` in parallel and lists the regular files whose extension is
/// wanted. Errors on single paths are collected; the walk goes on.
#[must_use]
pub fn walk(root: &Path, options: &WalkOptions) -> WalkOutput {
    let mut allowed = options.allowed_roots.clone();
    if allowed.is_empty() {
        allowed = paths::canonical_roots(&[root.to_path_buf()]);
    }
    if let Err(error) = check_root(root, &allowed) {
        return WalkOutput {
            errors: vec![WalkError {
                path: root.to_path_buf(),
                error,
            }],
            ..WalkOutput::default()
        };
    }
    let collected = Mutex::new(Collected::default());
    let dirs = AtomicU64::new(0);
    WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(true)
        .threads(options.threads)
        .build_parallel()
        .run(|| {
            let collected = &collected;
            let dirs = &dirs;
            let allowed = &allowed;
            Box::new(move |entry| {
                let (state, found) = visit(entry, options, allowed, dirs);
                if let Some(found) = found {
                    // A poisoned lock only means another visitor panicked
                    // mid-push; the vectors are still valid, so keep going.
                    let mut guard = collected.lock().unwrap_or_else(PoisonError::into_inner);
                    match found {
                        Found::File(file) => guard.files.push(file),
                        Found::Error(err) => guard.errors.push(err),
                    }
                }
                state
            })
        });
    let mut collected = collected
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    collected.files.sort_by(|a, b| a.path.cmp(&b.path));
    collected.errors.sort_by(|a, b| a.path.cmp(&b.path));
    WalkOutput {
        files: collected.files,
        errors: collected.errors,
        dirs: dirs.into_inner(),
    }
}

/// A cataloged file as [`compare`] matches it against a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownFile {
    /// The path bytes, as the walk would list the file.
    pub path: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time in nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub device: u64,
    /// Whether the file is listed as changed even when its stat matches.
    pub stale: bool,
}

/// The differences between a walk and the catalog's files for the same tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Indexes into the walk's files of those with no matching known file,
    /// a known file whose stat differs, or a stale one; in walk order.
    pub changed: Vec<usize>,
    /// Indexes into the known files of those whose path the walk did not
    /// list; in input order.
    pub missing: Vec<usize>,
}

/// Compares the files of a walk with `known` by path and stat (size, mtime,
/// ctime, inode, device), so that only the differences reach the caller.
///
/// When `known` lists one path twice, the last entry counts.
#[must_use]
pub fn compare(files: &[WalkEntry], known: &[KnownFile]) -> Comparison {
    let mut by_path: HashMap<&[u8], &KnownFile> = HashMap::with_capacity(known.len());
    for file in known {
        by_path.insert(file.path.as_slice(), file);
    }
    let mut walked: HashSet<&[u8]> = HashSet::with_capacity(files.len());
    let mut changed = Vec::new();
    for (index, entry) in files.iter().enumerate() {
        let path = entry.path.as_os_str().as_bytes();
        walked.insert(path);
        let unchanged = by_path.get(path).is_some_and(|file| {
            !file.stale
                && file.size == entry.size
                && file.mtime_ns == entry.mtime_ns
                && file.ctime_ns == entry.ctime_ns
                && file.inode == entry.inode
                && file.device == entry.device
        });
        if !unchanged {
            changed.push(index);
        }
    }
    let missing = known
        .iter()
        .enumerate()
        .filter(|(_, file)| !walked.contains(file.path.as_slice()))
        .map(|(index, _)| index)
        .collect();
    Comparison { changed, missing }
}

fn check_root(root: &Path, allowed: &[PathBuf]) -> crate::Result<()> {
    paths::check_syntax(root)?;
    let resolved = root.canonicalize()?;
    if !paths::is_under_any(&resolved, allowed) {
        return Err(paths::outside_roots_error(&resolved, allowed));
    }
    if !resolved.is_dir() {
        return Err(Error::new(
            ErrorKind::NotAFile,
            "the walk root is not a directory",
        ));
    }
    Ok(())
}

enum Found {
    File(WalkEntry),
    Error(WalkError),
}

fn visit(
    entry: std::result::Result<DirEntry, ignore::Error>,
    options: &WalkOptions,
    allowed: &[PathBuf],
    dirs: &AtomicU64,
) -> (WalkState, Option<Found>) {
    let entry = match entry {
        Ok(entry) => entry,
        Err(err) => return (WalkState::Continue, Some(Found::Error(walk_error(&err)))),
    };
    if entry.depth() > 0 && options.ignore.is_match(Path::new(entry.file_name())) {
        return (WalkState::Skip, None);
    }
    if entry.depth() > 0 && entry.path_is_symlink() {
        if let Err(error) = check_link(entry.path(), allowed) {
            let skipped = WalkError {
                path: entry.path().to_path_buf(),
                error,
            };
            return (WalkState::Skip, Some(Found::Error(skipped)));
        }
    }
    let Some(file_type) = entry.file_type() else {
        return (WalkState::Continue, None);
    };
    if file_type.is_dir() {
        dirs.fetch_add(1, Ordering::Relaxed);
        return (WalkState::Continue, None);
    }
    if !options.wants(entry.file_name()) {
        return (WalkState::Continue, None);
    }
    if !file_type.is_file() {
        // A FIFO or device node named like a video would block or never end
        // when read, so it is reported with its reason instead of probed.
        let skipped = WalkError {
            path: entry.path().to_path_buf(),
            error: Error::new(
                ErrorKind::NotAFile,
                format!(
                    "not a regular file ({}); skipped",
                    describe_file_type(file_type)
                ),
            ),
        };
        return (WalkState::Continue, Some(Found::Error(skipped)));
    }
    let found = match std::fs::metadata(entry.path()) {
        Ok(meta) => {
            let stat = FileStat::from_metadata(&meta);
            Found::File(WalkEntry {
                path: entry.path().to_path_buf(),
                size: stat.size,
                mtime_ns: stat.mtime_ns,
                ctime_ns: stat.ctime_ns,
                inode: stat.inode,
                device: stat.device,
            })
        }
        Err(err) => Found::Error(WalkError {
            path: entry.path().to_path_buf(),
            error: Error::from(err),
        }),
    };
    (WalkState::Continue, Some(found))
}

fn describe_file_type(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;

    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

fn check_link(path: &Path, allowed: &[PathBuf]) -> crate::Result<()> {
    let target = path.canonicalize().map_err(|err| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "the symbolic link cannot be resolved: {}",
                err.to_string().to_lowercase()
            ),
        )
    })?;
    if paths::is_under_any(&target, allowed) {
        Ok(())
    } else {
        Err(paths::outside_roots_error(&target, allowed))
    }
}

fn walk_error(err: &ignore::Error) -> WalkError {
    match err {
        ignore::Error::WithPath { path, err } => {
            let mut inner = walk_error(err);
            inner.path.clone_from(path);
            inner
        }
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error(err)
        }
        ignore::Error::Loop { ancestor, child } => WalkError {
            path: child.clone(),
            error: Error::new(
                ErrorKind::Io,
                format!(
                    "symbolic link loop: the directory leads back to its ancestor {}",
                    ancestor.display()
                ),
            ),
        },
        ignore::Error::Io(io) => {
            let io = std::io::Error::new(io.kind(), io.to_string());
            WalkError {
                path: PathBuf::new(),
                error: Error::from(io),
            }
        }
        other => WalkError {
            path: PathBuf::new(),
            error: Error::new(ErrorKind::Io, other.to_string().to_lowercase()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("reelwatch-walk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    fn options(ignore: &[&str], allowed: &[PathBuf]) -> WalkOptions {
        let extensions = vec!["mkv".to_owned(), ".MP4".to_owned()];
        let ignore: Vec<String> = ignore.iter().map(|s| (*s).to_owned()).collect();
        WalkOptions::new(&extensions, &ignore, allowed).unwrap()
    }

    #[test]
    fn walk_lists_matching_files_and_skips_ignored_names() {
        let dir = temp_dir("list");
        fs::create_dir_all(dir.join("a/.cache")).unwrap();
        fs::write(dir.join("a/one.MKV"), b"x").unwrap();
        fs::write(dir.join("a/two.mp4"), b"xy").unwrap();
        fs::write(dir.join("a/notes.txt"), b"x").unwrap();
        fs::write(dir.join("a/.cache/three.mkv"), b"x").unwrap();
        fs::write(dir.join("a/four.part.mkv"), b"x").unwrap();
        let output = walk(&dir, &options(&[".cache", "*.part.*"], &[]));
        let names: Vec<_> = output
            .files
            .iter()
            .map(|f| f.path.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("a/one.MKV"), PathBuf::from("a/two.mp4")]
        );
        assert_eq!(output.files[1].size, 2);
        assert!(output.files[0].inode > 0);
        assert_eq!(output.dirs, 2);
        assert!(output.errors.is_empty(), "{:?}", output.errors);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn walk_rejects_bad_roots() {
        let dir = temp_dir("roots");
        let file = dir.join("clip.mkv");
        fs::write(&file, b"x").unwrap();
        let elsewhere = temp_dir("roots-elsewhere");
        let cases = [
            (file.clone(), ErrorKind::NotAFile),
            (dir.join("missing"), ErrorKind::NotFound),
            (elsewhere.clone(), ErrorKind::OutsideRoots),
        ];
        for (root, kind) in cases {
            let output = walk(&root, &options(&[], std::slice::from_ref(&dir)));

            assert!(output.files.is_empty());
            assert_eq!(output.errors.len(), 1, "{:?}", output.errors);
            assert_eq!(output.errors[0].path, root);
            assert_eq!(output.errors[0].error.kind(), kind, "{root:?}");
        }
        fs::remove_dir_all(dir).unwrap();
        fs::remove_dir_all(elsewhere).unwrap();
    }

    #[test]
    fn walk_reports_special_files_and_dangling_links() {
        let dir = temp_dir("special");
        let fifo = dir.join("pipe.mkv");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let socket = dir.join("control.mkv");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::os::unix::fs::symlink(dir.join("gone.mkv"), dir.join("dangling.mkv")).unwrap();
        fs::write(dir.join("README"), b"no extension").unwrap();

        let output = walk(&dir, &options(&[], &[]).threads(2));

        assert!(output.files.is_empty(), "{:?}", output.files);
        let message = |name: &str| {
            let error = output.errors.iter().find(|e| e.path.ends_with(name));
            error.map(|e| (e.error.kind(), e.error.message().to_owned()))
        };
        let (kind, text) = message("pipe.mkv").unwrap();
        assert_eq!(kind, ErrorKind::NotAFile);
        assert!(text.contains("a FIFO"), "{text}");
        let (kind, text) = message("control.mkv").unwrap();
        assert_eq!(kind, ErrorKind::NotAFile);
        assert!(text.contains("a socket"), "{text}");
        // The walker itself fails to follow the link, before any check of ours.
        let (kind, text) = message("dangling.mkv").unwrap();
        assert_eq!(kind, ErrorKind::NotFound);
        assert!(text.contains("no such file"), "{text}");
        assert_eq!(output.errors.len(), 3, "{:?}", output.errors);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn walk_follows_links_inside_roots_only() {
        let dir = temp_dir("links");
        let root = dir.join("tv");
        let outside = dir.join("tv-old");
        fs::create_dir_all(root.join("shows")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("shows/a.mkv"), b"x").unwrap();
        fs::write(outside.join("b.mkv"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("shows"), root.join("again")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("shows/loop")).unwrap();
        let output = walk(&root, &options(&[], std::slice::from_ref(&root)));
        let names: Vec<_> = output
            .files
            .iter()
            .map(|f| f.path.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("again/a.mkv"), PathBuf::from("shows/a.mkv")]
        );
        let escape = output
            .errors
            .iter()
            .find(|e| e.path.ends_with("escape"))
            .unwrap();
        assert_eq!(escape.error.kind(), ErrorKind::OutsideRoots);
        assert!(
            output
                .errors
                .iter()
                .any(|e| e.error.message().contains("loop")),
            "{:?}",
            output.errors
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn walk_reports_fifo_named_like_a_video() {
        let dir = temp_dir("fifo");
        let fifo = dir.join("stream.mkv");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        fs::write(dir.join("real.mkv"), b"x").unwrap();
        let output = walk(&dir, &options(&[], &[]));
        assert_eq!(output.files.len(), 1);
        assert_eq!(output.errors.len(), 1);
        assert_eq!(output.errors[0].path, fifo);
        assert_eq!(output.errors[0].error.kind(), ErrorKind::NotAFile);
        assert!(output.errors[0].error.message().contains("FIFO"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn walk_of_missing_root_reports_it() {
        let output = walk(Path::new("/nonexistent/reelwatch"), &options(&[], &[]));
        assert_eq!(output.errors.len(), 1);
        assert_eq!(output.errors[0].error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn compare_lists_changed_stale_and_missing_files() {
        let entry = |name: &str, size: u64| WalkEntry {
            path: PathBuf::from(name),
            size,
            mtime_ns: 10,
            ctime_ns: 20,
            inode: 30,
            device: 40,
        };
        let known = |name: &str, size: u64, stale: bool| KnownFile {
            path: name.as_bytes().to_vec(),
            size,
            mtime_ns: 10,
            ctime_ns: 20,
            inode: 30,
            device: 40,
            stale,
        };
        let files = [
            entry("/r/same.mkv", 1),
            entry("/r/grown.mkv", 2),
            entry("/r/new.mkv", 3),
            entry("/r/stale.mkv", 4),
        ];
        let catalog = [
            known("/r/gone.mkv", 5, false),
            known("/r/stale.mkv", 4, true),
            known("/r/grown.mkv", 1, false),
            known("/r/same.mkv", 1, false),
        ];

        let comparison = compare(&files, &catalog);

        assert_eq!(comparison.changed, vec![1, 2, 3]);
        assert_eq!(comparison.missing, vec![0]);
    }

    #[test]
    fn invalid_glob_names_the_pattern() {
        let err = WalkOptions::new(&[], &["a[".to_owned()], &[]).unwrap_err();
        assert!(err.contains("\"a[\""), "{err}");
    }
}
