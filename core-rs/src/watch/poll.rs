//! A polling backend for roots that inotify cannot cover.
//!
//! notify's own `PollWatcher` (9.0.0-rc.7) reports a change only when a file's mtime grows, so
//! a file replaced by one with an older or equal mtime (`mv`, `rsync -t`, `cp -p`) goes unseen.
//! This poller compares inode, size, mtime and ctime at nanosecond precision instead, and it
//! checks the root's identity before reporting removals, so an unmounted root is reported as
//! lost rather than as every file deleted.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use walkdir::WalkDir;

use super::batch::Observation;
use super::ChangeKind;

/// What the poller remembers about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) is_dir: bool,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Stamp {
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            ctime_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
            is_dir: metadata.is_dir(),
        }
    }
}

/// Every path under a root with its stamp, as of one scan.
pub(crate) type Snapshot = HashMap<PathBuf, Stamp>;

/// Walks `root` without following symlinks and skips what `is_ignored` rejects.
///
/// Returns the snapshot and the folders that could not be read, with their error.
pub(crate) fn scan(
    root: &Path,
    is_ignored: &dyn Fn(&Path) -> bool,
) -> (Snapshot, Vec<(PathBuf, String)>) {
    let mut snapshot = Snapshot::new();
    let mut errors = Vec::new();
    let walk = WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_ignored(entry.path()));
    for entry in walk {
        match entry {
            Ok(entry) => match entry.metadata() {
                Ok(metadata) => {
                    snapshot.insert(entry.into_path(), Stamp::of(&metadata));
                }
                Err(error) => errors.push((entry.into_path(), error.to_string().to_lowercase())),
            },
            Err(error) => {
                let path = error
                    .path()
                    .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                let message = error
                    .io_error()
                    .map_or_else(|| error.to_string(), ToString::to_string);
                errors.push((path, message.to_lowercase()));
            }
        }
    }
    (snapshot, errors)
}

/// Compares two snapshots of one root, returning the changes in path order.
///
/// A different inode at the same path is a replacement, reported as `created` so the daemon
/// probes it again. Folders report only creation and removal, because their times change
/// whenever an entry inside them does.
pub(crate) fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Observation> {
    let mut changes = Vec::new();
    for (path, stamp) in new {
        let kind = match old.get(path) {
            None => Some(ChangeKind::Created),
            Some(before) if before.ino != stamp.ino || before.is_dir != stamp.is_dir => {
                Some(ChangeKind::Created)
            }
            Some(_) if stamp.is_dir => None,
            Some(before) if before != stamp => Some(ChangeKind::Modified),
            Some(_) => None,
        };
        if let Some(kind) = kind {
            changes.push(Observation::Simple(kind, path.clone()));
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            changes.push(Observation::Simple(ChangeKind::Removed, path.clone()));
        }
    }
    changes.sort_by(|a, b| observed_path(a).cmp(observed_path(b)));
    changes
}

fn observed_path(observation: &Observation) -> &Path {
    match observation {
        Observation::Simple(_, path) => path,
        _ => Path::new(""),
    }
}

/// The callbacks a poller thread reports through.
pub(crate) trait PollSink: Send + 'static {
    /// Delivers the changes of one poll cycle. Returns false once the poller should stop.
    fn deliver(&self, observations: Vec<Observation>) -> bool;
    /// Checks, right before removals are reported, that the root is still the same folder.
    /// Returns false, after reporting the loss, when it is not.
    fn root_still_there(&self) -> bool;
}

/// A running poller. Dropping it stops the thread after its current scan.
#[derive(Debug)]
pub(crate) struct Poller {
    _stop: mpsc::Sender<()>,
}

impl Poller {
    /// Takes the baseline snapshot of `root` now, then starts a thread that rescans it every
    /// `interval` and reports the differences to `sink`.
    pub(crate) fn start(
        root: PathBuf,
        interval: Duration,
        is_ignored: Box<dyn Fn(&Path) -> bool + Send>,
        sink: impl PollSink,
    ) -> std::io::Result<Poller> {
        let (baseline, errors) = scan(&root, &*is_ignored);
        let mut reported: HashSet<(PathBuf, String)> = HashSet::new();
        let initial = error_observations(errors, &mut reported);
        if !initial.is_empty() && !sink.deliver(initial) {
            return Ok(Poller {
                _stop: mpsc::channel().0,
            });
        }
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("reelwatch poller".to_owned())
            .spawn(move || {
                let mut previous = baseline;
                loop {
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if !sink.root_still_there() {
                        return;
                    }
                    let (current, errors) = scan(&root, &*is_ignored);
                    let mut observations = error_observations(errors, &mut reported);
                    let changes = diff(&previous, &current);
                    let removes = changes.iter().any(|change| {
                        matches!(change, Observation::Simple(ChangeKind::Removed, _))
                    });
                    if removes && !sink.root_still_there() {
                        return;
                    }
                    observations.extend(changes);
                    previous = current;
                    if !observations.is_empty() && !sink.deliver(observations) {
                        return;
                    }
                }
            })?;
        Ok(Poller { _stop: stop })
    }
}

/// Turns scan errors into observations, once per path and message so that an unreadable
/// folder is not reported again on every cycle.
fn error_observations(
    errors: Vec<(PathBuf, String)>,
    reported: &mut HashSet<(PathBuf, String)>,
) -> Vec<Observation> {
    let mut observations = Vec::new();
    for (path, message) in errors {
        if reported.insert((path.clone(), message.clone())) {
            observations.push(Observation::WatchError {
                path,
                message: format!("cannot poll this folder: {message}"),
            });
        }
    }
    observations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, size: u64, mtime_ns: i128, ctime_ns: i128) -> Stamp {
        Stamp {
            ino,
            size,
            mtime_ns,
            ctime_ns,
            is_dir: false,
        }
    }

    fn snapshot(entries: &[(&str, Stamp)]) -> Snapshot {
        entries
            .iter()
            .map(|(path, stamp)| (PathBuf::from(path), *stamp))
            .collect()
    }

    #[test]
    fn diff_reports_created_modified_and_removed() {
        let old = snapshot(&[("/r/a", stamp(1, 10, 5, 5)), ("/r/b", stamp(2, 10, 5, 5))]);
        let new = snapshot(&[("/r/a", stamp(1, 20, 6, 6)), ("/r/c", stamp(3, 1, 7, 7))]);
        assert_eq!(
            diff(&old, &new),
            vec![
                Observation::Simple(ChangeKind::Modified, "/r/a".into()),
                Observation::Simple(ChangeKind::Removed, "/r/b".into()),
                Observation::Simple(ChangeKind::Created, "/r/c".into()),
            ]
        );
    }

    #[test]
    fn replacement_with_older_mtime_is_created() {
        let old = snapshot(&[("/r/a", stamp(1, 10, 900, 900))]);
        let new = snapshot(&[("/r/a", stamp(2, 10, 100, 950))]);
        assert_eq!(
            diff(&old, &new),
            vec![Observation::Simple(ChangeKind::Created, "/r/a".into())]
        );
    }

    #[test]
    fn same_second_change_seen_through_nanoseconds_or_ctime() {
        let old = snapshot(&[("/r/a", stamp(1, 10, 1_000_000_000, 1_000_000_000))]);
        let new = snapshot(&[("/r/a", stamp(1, 10, 1_000_000_000, 1_000_000_500))]);
        assert_eq!(
            diff(&old, &new),
            vec![Observation::Simple(ChangeKind::Modified, "/r/a".into())]
        );
    }

    #[test]
    fn folder_time_changes_are_not_reported() {
        let mut before = stamp(1, 4096, 5, 5);
        before.is_dir = true;
        let mut after = before;
        after.mtime_ns = 9;
        let old = snapshot(&[("/r/d", before)]);
        let new = snapshot(&[("/r/d", after)]);
        assert_eq!(diff(&old, &new), Vec::new());
    }

    #[test]
    fn scan_lists_files_and_skips_ignored_folders() {
        let dir = std::env::temp_dir().join(format!("reelwatch-poll-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keep")).unwrap();
        std::fs::create_dir_all(dir.join("@eaDir")).unwrap();
        std::fs::write(dir.join("keep/a.mkv"), b"x").unwrap();
        std::fs::write(dir.join("@eaDir/thumb.jpg"), b"x").unwrap();
        let ignored = |path: &Path| path.file_name().is_some_and(|name| name == "@eaDir");
        let (snapshot, errors) = scan(&dir, &ignored);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(snapshot.contains_key(&dir.join("keep/a.mkv")));
        assert!(!snapshot.contains_key(&dir.join("@eaDir")));
        assert!(!snapshot.contains_key(&dir.join("@eaDir/thumb.jpg")));
    }

    #[test]
    fn missing_root_is_one_error_reported_once() {
        let root = std::env::temp_dir().join(format!("reelwatch-poll-gone-{}", std::process::id()));

        let (snapshot, errors) = scan(&root, &|_: &Path| false);

        assert!(snapshot.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, root);
        assert!(errors[0].1.contains("no such file"), "{errors:?}");
        let mut reported = HashSet::new();
        let first = error_observations(errors.clone(), &mut reported);
        let again = error_observations(errors, &mut reported);
        assert_eq!(first.len(), 1);
        assert!(again.is_empty());
        match &first[0] {
            Observation::WatchError { path, message } => {
                assert_eq!(path, &root);
                assert!(
                    message.starts_with("cannot poll this folder: "),
                    "{message}"
                );
            }
            other => panic!("expected a watch error, got {other:?}"),
        }
    }
}
